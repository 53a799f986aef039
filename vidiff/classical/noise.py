"""Estimate the standard deviation of additive white Gaussian noise in a video from the video alone.

Donoho & Johnstone (1994) / Donoho (1995): the finest diagonal wavelet sub-band of a natural image is
almost all noise, and its median absolute value is robust to the few large coefficients that edges
leave there: sigma ~= median(|HH|) / 0.6745, where 0.6745 = Phi^-1(3/4) is the MAD of a unit Gaussian.
HH is the orthonormal Haar diagonal detail of each frame (so white noise keeps its sigma in it).
"""

from __future__ import annotations

import torch

from vidiff.classical.discretization import check_video
from vidiff.errors import VidiffError

MAD_TO_SIGMA = 0.6744897501960817  # Phi^-1(0.75)


def haar_diagonal(video: torch.Tensor) -> torch.Tensor:
    """(..., H, W) -> (..., H//2, W//2): the orthonormal 2-D Haar HH coefficients of every frame."""
    H, W = video.shape[-2] // 2 * 2, video.shape[-1] // 2 * 2
    x = video[..., :H, :W]
    return (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2


def estimate_noise_sigma(video: torch.Tensor) -> torch.Tensor:
    """Noise sigma of each video, in the units of its values: (C, F, H, W) -> () or (B, C, F, H, W) -> (B,).

    Pooled over channels and frames. Meant for additive Gaussian noise that is not clipped: clipping
    (e.g. a noisy video saved to a file, where black stays black) makes it an underestimate.
    """
    check_video(video)
    if video.shape[-1] < 2 or video.shape[-2] < 2:
        raise VidiffError(f"need frames of at least 2x2 pixels to estimate noise, got {tuple(video.shape[-2:])}")
    hh = haar_diagonal(video.float())
    flat = hh.flatten(-4) if video.ndim == 5 else hh.flatten()
    return flat.abs().median(dim=-1).values / MAD_TO_SIGMA
