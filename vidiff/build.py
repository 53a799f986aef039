"""Build the denoiser (network + diffusion wrapper) that a RunConfig describes."""

from __future__ import annotations

import dataclasses

from vidiff.config import RunConfig
from vidiff.diffusion import Denoiser
from vidiff.models import VideoDiT, VideoUNet


def network_config(cfg: RunConfig):
    """The model config, with the conditioning channels that masked training needs (known frames + mask)."""
    if cfg.masks.enabled:
        return dataclasses.replace(cfg.model, cond_channels=cfg.model.in_channels + 1)
    return cfg.model


def build_autoencoder(cfg: RunConfig):
    """The frozen FrameAutoencoder of a latent diffusion run (model.autoencoder), or None for a pixel run."""
    if not cfg.model.autoencoder:
        return None
    from vidiff.errors import ConfigError
    from vidiff.training.autoencoder import load_autoencoder

    ae = load_autoencoder(cfg.model.autoencoder)
    a = ae.config
    if cfg.model.in_channels != a.latent_channels:
        raise ConfigError(f"model.in_channels must be the autoencoder's latent_channels ({a.latent_channels}) "
                          f"for model.autoencoder={cfg.model.autoencoder}, got {cfg.model.in_channels}")
    if cfg.data.size % a.factor:
        raise ConfigError(f"data.size {cfg.data.size} must be divisible by the autoencoder's factor {a.factor}")
    if cfg.data.num_frames % a.time_factor:
        raise ConfigError(f"data.num_frames {cfg.data.num_frames} must be divisible by the autoencoder's time factor "
                          f"{a.time_factor}")
    return ae


def sample_shape(cfg: RunConfig, n: int, autoencoder=None) -> tuple[int, ...]:
    """(n, C, F, H, W) of what the denoiser works on: pixels, or the latents of `autoencoder` (F / t, size / f)."""
    if autoencoder is None:
        return (n, cfg.model.in_channels, cfg.data.num_frames, cfg.data.size, cfg.data.size)
    a = autoencoder.config
    return (n, cfg.model.in_channels, cfg.data.num_frames // a.time_factor, cfg.data.size // a.factor,
            cfg.data.size // a.factor)


def check_image_model(cfg: RunConfig, name: str) -> RunConfig:
    """The config of the image model `name` (a run folder or a shipped name) that image guidance of a model of `cfg`
    would use; a one-line ConfigError if it cannot guide it: it must be a pixel model of single frames that takes the
    same labels, channels, frame size and colour noise (its noise schedule may differ: image guidance asks it at its
    timestep of the same noise level)."""
    from vidiff.config import load_config
    from vidiff.errors import ConfigError
    from vidiff.training.checkpoint import CONFIG, resolve_run

    image = load_config(resolve_run(name) / CONFIG)
    m, mi, d, di = cfg.model, image.model, cfg.diffusion, image.diffusion
    mine = (m.num_labels, m.in_channels, cfg.data.size, d.chroma_noise)
    theirs = (mi.num_labels, mi.in_channels, image.data.size, di.chroma_noise)
    if mine != theirs or m.autoencoder or mi.autoencoder or image.data.num_frames != 1:
        got = f"{theirs} with {image.data.num_frames} frame(s){' over latents' if mi.autoencoder else ''}"
        raise ConfigError(f"{name} cannot guide this model: image guidance needs an image model (1 frame, pixels) of "
                          f"the same (labels, channels, frame size, colour noise) = "
                          f"{mine}, got {got}")
    return image


def build_denoiser(cfg: RunConfig) -> Denoiser:
    net = (VideoDiT if cfg.model.architecture == "dit" else VideoUNet)(network_config(cfg))
    return Denoiser(net, schedule=cfg.diffusion.schedule, timesteps=cfg.diffusion.timesteps,
                    objective=cfg.diffusion.objective, min_snr_gamma=cfg.diffusion.min_snr_gamma,
                    shift=cfg.diffusion.shift, noise_correlation=cfg.diffusion.noise_correlation,
                    chroma_noise=cfg.diffusion.chroma_noise,
                    frame_difference_weight=cfg.diffusion.frame_difference_weight,
                    input_perturbation=cfg.diffusion.input_perturbation)
