"""Discrete noise schedules: beta_t for t = 0..T-1 and the cumulative products alpha_bar_t.

The forward process is q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) (Ho et al. 2020, eq. 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch


def linear_betas(timesteps: int) -> torch.Tensor:
    """Ho et al. 2020, sec. 4: beta from 1e-4 to 0.02 over 1000 steps, rescaled for other T."""
    scale = 1000 / timesteps
    return torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17: alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) * pi/2), betas clipped."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / timesteps) / alpha_bar(i / timesteps), max_beta) for i in range(timesteps)]
    return torch.tensor(betas, dtype=torch.float64)


SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}


def make_alphas_cumprod(schedule: str, timesteps: int, shift: float = 1.0) -> torch.Tensor:
    """alpha_bar_t, float64 of shape (T,). Kept in float64 and cast where used, for parity with references.

    `shift` s divides the signal-to-noise ratio alpha_bar / (1 - alpha_bar) by s^2 at every t (log-SNR
    minus 2 log s, Hoogeboom et al. 2023 sec. 3.1): s = 2 gives each t the noise level of a 2x larger image.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {sorted(SCHEDULES)}")
    if not shift > 0:
        raise ValueError(f"schedule shift must be > 0, got {shift}")
    alpha_bar = torch.cumprod(1.0 - SCHEDULES[schedule](timesteps), dim=0)
    return alpha_bar / (alpha_bar + shift**2 * (1 - alpha_bar))


def half_log_snr(a: torch.Tensor) -> torch.Tensor:
    """lambda = log(alpha / sigma) of alpha_bar `a` (float64); +inf at a = 1, the step past the end."""
    return 0.5 * (a.log() - (1 - a).log())


def append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Broadcast a (B,) tensor against a (B, ...) tensor of rank `ndim` (k-diffusion's append_dims)."""
    return x.reshape(x.shape + (1,) * (ndim - x.ndim))


def frame_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Broadcast a per-clip (B,) or per-frame (B, F) tensor (alpha_bar of one timestep per frame) against a video
    (B, C, F, H, W): (B, 1, 1, 1, 1) or (B, 1, F, 1, 1)."""
    if x.ndim == 2:
        return x.reshape(x.shape[0], 1, x.shape[1], *(1,) * (ndim - 3))
    return append_dims(x, ndim)


def video_noise(shape: tuple, correlation: float = 0.0, generator: Optional[torch.Generator] = None,
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                chroma: float = 1.0) -> torch.Tensor:
    """Standard normal noise of `shape` (B, C, F, H, W) whose frames are correlated by `correlation` rho:
    eps_f = sqrt(rho) eps_shared + sqrt(1 - rho) eps_f' (the "mixed noise" of Ge et al. 2023, PYoCo).
    Every element stays N(0, 1) (unless `chroma` != 1); rho = 0 is i.i.d. noise. Drawn on the generator's device,
    then moved. `chroma` != 1 (RGB only, C = 3) scales the noise's colour part, what is left after each pixel's
    mean over the channels (its brightness), by that factor (`scale_colour`): with chroma > 1 a pixel's colour is
    drowned at lower noise levels than its brightness."""
    gen_device = generator.device if generator is not None else device
    noise = torch.randn(shape, generator=generator, device=gen_device, dtype=dtype)
    if correlation:
        shared = torch.randn(shape[:2] + (1,) + tuple(shape[3:]), generator=generator, device=gen_device, dtype=dtype)
        noise = math.sqrt(correlation) * shared + math.sqrt(1 - correlation) * noise
    return scale_colour(noise, chroma).to(device)


@dataclass(frozen=True)
class Noise:
    """The noise a model is trained and sampled with (`video_noise`): frames correlated by `correlation`, its colour
    part scaled by `chroma`. A Denoiser keeps its own as `.noise`; samplers, guidance and tasks draw from it."""

    correlation: float = 0.0
    chroma: float = 1.0

    def draw(self, shape: tuple, generator: Optional[torch.Generator] = None, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return video_noise(shape, self.correlation, generator, device, dtype, chroma=self.chroma)

    def like(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Fresh noise shaped like x, on its device."""
        return self.draw(x.shape, generator, x.device)


def scale_colour(noise: torch.Tensor, chroma: float) -> torch.Tensor:
    """(B, 3, ...) noise with its colour part, what is left after each pixel's mean over the channels (its
    brightness), times `chroma`; the brightness part unchanged (see `video_noise`)."""
    if chroma == 1:
        return noise
    if noise.shape[1] != 3:
        raise ValueError(f"colour noise (chroma={chroma}) needs 3 (RGB) channels, got {noise.shape[1]}")
    brightness = noise.mean(dim=1, keepdim=True)  # (B, 1, F, H, W)
    return brightness + chroma * (noise - brightness)


def q_sample(x0: torch.Tensor, alpha_bar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps, any rank; alpha_bar is (B,), or (B, F) for a video with
    one noise level per frame."""
    a = frame_dims(alpha_bar.to(x0.dtype), x0.ndim)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise
