"""Build the denoiser (network + diffusion wrapper) that a RunConfig describes."""

from __future__ import annotations

from vidiff.config import RunConfig
from vidiff.diffusion import Denoiser
from vidiff.models import VideoUNet


def build_denoiser(cfg: RunConfig) -> Denoiser:
    net = VideoUNet(cfg.model)
    return Denoiser(net, schedule=cfg.diffusion.schedule, timesteps=cfg.diffusion.timesteps,
                    objective=cfg.diffusion.objective, min_snr_gamma=cfg.diffusion.min_snr_gamma)
