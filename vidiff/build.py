"""Build the denoiser (network + diffusion wrapper) that a RunConfig describes."""

from __future__ import annotations

import dataclasses

from vidiff.config import RunConfig
from vidiff.diffusion import Denoiser
from vidiff.models import VideoUNet


def network_config(cfg: RunConfig):
    """The model config, with the conditioning channels that masked training needs (known frames + mask)."""
    if cfg.masks.enabled:
        return dataclasses.replace(cfg.model, cond_channels=cfg.model.in_channels + 1)
    return cfg.model


def build_denoiser(cfg: RunConfig) -> Denoiser:
    net = VideoUNet(network_config(cfg))
    return Denoiser(net, schedule=cfg.diffusion.schedule, timesteps=cfg.diffusion.timesteps,
                    objective=cfg.diffusion.objective, min_snr_gamma=cfg.diffusion.min_snr_gamma,
                    shift=cfg.diffusion.shift, noise_correlation=cfg.diffusion.noise_correlation)
