"""Denoise a video with a classical PDE filter or with a trained vidiff diffusion model.

Noise levels (sigma) follow one rule: a library function takes sigma in the units of the tensor it
describes, so for library videos (values in [-1, 1]) sigma_lib = 2 * sigma_pixel, where sigma_pixel is
the noise standard deviation on the [0, 1] pixel scale that people quote (and that `vidiff denoise` and
bench/denoise.py take). Contrast parameters (Perona-Malik kappa) follow the same rule.

Learned denoising (`diffusion_denoise`): the forward process gives x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps
(Ho et al. 2020, eq. 4), so x_t / sqrt(a_t) = x_0 + sigma_t eps with sigma_t = sqrt((1 - a_t) / a_t).
A noisy video y = x + sigma n is therefore x_{t*} / sqrt(a_{t*}) for the timestep t* whose sigma_t matches
sigma: start the reverse process there with x_{t*} = sqrt(a_{t*}) y and run deterministic DDIM (eta = 0,
Song et al. 2021) down to t = 0. One step returns the model's x0-prediction at t*, its estimate of the
posterior mean E[x | y] (the MMSE denoiser); more steps follow the probability-flow ODE to a sharper
sample that fits y. This is the "start from a noised input" idea of SDEdit (Meng et al. 2022), with
the start time set by the input's own noise instead of added noise.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
import torch.nn.functional as F

from vidiff.classical import EdgeStop, Scheme, estimate_noise_sigma, heat_diffusion, perona_malik
from vidiff.classical.discretization import check_video
from vidiff.diffusion.samplers import sample_ddim
from vidiff.errors import VidiffError

METHODS = ("heat", "perona-malik", "model")


def noise_sigmas(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """sigma_t = sqrt((1 - a_t) / a_t): the noise level of x_t / sqrt(a_t), shape (T,), float64, increasing."""
    a = alphas_cumprod.detach().double().cpu()
    return ((1 - a) / a).sqrt()


def matching_timestep(alphas_cumprod: torch.Tensor, sigma: float) -> int:
    """The timestep t* whose sigma_t = sqrt((1 - a_t) / a_t) is closest to `sigma` (same units as the data)."""
    return int((noise_sigmas(alphas_cumprod) - float(sigma)).abs().argmin())


def denoise_timesteps(t_start: int, steps: int) -> list[int]:
    """`steps` descending timesteps from t_start to 0, evenly spaced (fewer if t_start + 1 < steps)."""
    if steps < 1:
        raise VidiffError(f"number of denoising steps must be >= 1, got {steps}")
    if steps == 1:
        return [t_start]
    ts = torch.linspace(t_start, 0, min(steps, t_start + 1), dtype=torch.float64).round().long().tolist()
    return sorted(set(ts), reverse=True)


@torch.no_grad()
def diffusion_denoise(denoiser, noisy: torch.Tensor, sigma: float, steps: int = 10,
                      progress: bool = False) -> torch.Tensor:
    """Denoise a batch (B, C, F, H, W) holding x + sigma * n (library units) with DDIM from the matching timestep.

    `denoiser(x_t, t) -> (x0_hat, eps_hat)` with an `alphas_cumprod` (T,) attribute, e.g. a trained
    `vidiff.diffusion.Denoiser`. Returns (B, C, F, H, W) in [-1, 1].
    """
    if noisy.ndim != 5:
        raise ValueError(f"expected (B, C, F, H, W), got shape {tuple(noisy.shape)}")
    a = denoiser.alphas_cumprod.detach().double().cpu()
    t_star = matching_timestep(a, sigma)
    x_t = noisy.float() * math.sqrt(float(a[t_star]))  # x_{t*} = sqrt(a_{t*}) y
    return sample_ddim(denoiser, x_t, a, denoise_timesteps(t_star, steps), eta=0.0, progress=progress)


def _starts(length: int, window: int) -> list[int]:
    """Window starts covering 0..length: non-overlapping, the last one aligned to the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, window))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    # (N, C, F, h, w) -> (N, C, F, h', w') with h', w' multiples of `multiple`; reflection keeps noise statistics
    ph, pw = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (0, pw, 0, ph, 0, 0), mode=mode)


@torch.no_grad()
def model_denoise(pipe, video: torch.Tensor, sigma: Optional[float] = None, steps: int = 10, batch_size: int = 8,
                  progress: bool = False) -> torch.Tensor:
    """Denoise (C, F, H, W) or (B, C, F, H, W) in [-1, 1] with a `VideoPipeline`'s model; same shape out.

    sigma: the noise standard deviation in library units ([-1, 1] scale, i.e. 2x the [0, 1] pixel
        sigma); None estimates it for each video (`estimate_noise_sigma`).
    steps: DDIM steps from the matching timestep down to 0 (1 = the model's one-shot x0-prediction).
    Videos larger than what the model was trained on (frames, height, width) are cut into windows of
    the training size, the last one aligned to the end, and put back together (overlaps averaged).
    """
    check_video(video)
    denoiser, cfg = pipe.denoiser, pipe.config
    if cfg.model.cond_channels:
        raise VidiffError("this model needs conditioning inputs (cond_channels > 0); denoise with an "
                          "unconditional model")
    if getattr(pipe, "autoencoder", None) is not None:
        raise VidiffError("this model works on autoencoder latents, where pixel noise has no timestep; denoise with "
                          "a pixel model (or the heat / Perona-Malik filters)")
    if video.shape[-4] != cfg.model.in_channels:
        raise VidiffError(f"the model takes {cfg.model.in_channels}-channel video, got {video.shape[-4]} channels")
    batched = video.ndim == 5
    videos = video if batched else video[None]
    if sigma is not None and not (math.isfinite(sigma) and sigma >= 0):
        raise VidiffError(f"noise sigma must be a number >= 0, got {sigma}")
    sigma_max = float(noise_sigmas(denoiser.alphas_cumprod)[-1])
    multiple = cfg.model.patch_size * 2 ** (len(cfg.model.channel_mults) - 1)
    Fm, Sm = cfg.data.num_frames, cfg.data.size
    device = next(denoiser.parameters()).device if hasattr(denoiser, "parameters") else torch.device("cpu")

    out = []
    for y in videos:  # (C, F, H, W); every video gets its own noise level and start timestep
        s = float(estimate_noise_sigma(y)) if sigma is None else float(sigma)
        if s == 0:
            out.append(y.clone().clamp(-1, 1))
            continue
        if s > sigma_max:
            warnings.warn(f"noise sigma {s:.3g} is above the schedule's largest ({sigma_max:.3g}); starting at t=T-1")
        C, Fr, H, W = y.shape
        windows = [(f, i, j) for f in _starts(Fr, Fm) for i in _starts(H, Sm) for j in _starts(W, Sm)]
        acc = torch.zeros_like(y, dtype=torch.float32)  # on the input's device, like the result
        count = torch.zeros((1, Fr, H, W), device=y.device)
        for k in range(0, len(windows), batch_size):
            chunk = windows[k:k + batch_size]
            crops = torch.stack([y[:, f:f + Fm, i:i + Sm, j:j + Sm] for f, i, j in chunk]).float()  # (N, C, f, h, w)
            h, w = crops.shape[-2:]
            x = _pad_to_multiple(crops, multiple).to(device)
            x0 = diffusion_denoise(denoiser, x, s, steps, progress=progress)[..., :h, :w].to(y.device)
            for (f, i, j), clean in zip(chunk, x0):
                acc[:, f:f + Fm, i:i + Sm, j:j + Sm] += clean
                count[:, f:f + Fm, i:i + Sm, j:j + Sm] += 1
        out.append((acc / count).to(video.dtype))
    result = torch.stack(out)
    return result if batched else result[0]


# Settings tuned by bench/denoise.py (best mean PSNR on its tuning split of `shapes` clips, 16 frames x
# 32x32, unclipped Gaussian noise; explicit scheme, D_space = 1), per noise sigma on the [0, 1] scale.
# kappa is on the [0, 1] scale, temporal is D_time. `vidiff denoise` uses them when it is given none.
TUNED = {  # `python bench/denoise.py --tune-num 16`; the tuning split depends only on the demo data config
    0.05: {"heat": {"time": 0.0833, "temporal": 1.0},
           "exponential": {"kappa": 0.1, "time": 1.17, "temporal": 0.5},
           "rational": {"kappa": 0.025, "time": 4.0, "temporal": 0.5}},
    0.1: {"heat": {"time": 0.167, "temporal": 1.0},
          "exponential": {"kappa": 0.2, "time": 0.833, "temporal": 1.0},
          "rational": {"kappa": 0.05, "time": 3.92, "temporal": 0.5}},
    0.2: {"heat": {"time": 0.333, "temporal": 1.0},
          "exponential": {"kappa": 0.4, "time": 1.0, "temporal": 1.0},
          "rational": {"kappa": 0.15, "time": 2.33, "temporal": 0.5}},
}
DEFAULT_EDGE_STOP = "rational"  # the better of the two in bench/denoise.py at every noise level


def classical_settings(method: str, sigma: float, time: Optional[float] = None, kappa: Optional[float] = None,
                       temporal: Optional[float] = None, edge_stop: Optional[str] = None) -> dict:
    """Settings for `method` ("heat" or "perona-malik") at noise `sigma` on the [0, 1] pixel scale.

    Returns {"time", "kappa", "temporal", "edge_stop"}, kappa on the [0, 1] scale (as the CLI takes it):
    the values given, the others from `TUNED`, interpolated linearly in log sigma between the tuned
    noise levels and clamped to their range.
    """
    edge_stop = edge_stop or DEFAULT_EDGE_STOP
    key = "heat" if method == "heat" else EdgeStop(edge_stop).value
    levels = sorted(TUNED)
    s = min(max(sigma, levels[0]), levels[-1]) if sigma > 0 else levels[0]
    i = min(max(k for k in range(len(levels)) if levels[k] <= s), len(levels) - 2)
    w = (math.log(s) - math.log(levels[i])) / (math.log(levels[i + 1]) - math.log(levels[i]))
    lo, hi = TUNED[levels[i]][key], TUNED[levels[i + 1]][key]
    tuned = {name: lo[name] + w * (hi[name] - lo[name]) for name in lo}
    given = {"time": time, "kappa": kappa, "temporal": temporal}
    out = {name: given[name] if given[name] is not None else tuned.get(name) for name in given}
    out["edge_stop"] = edge_stop
    return out


def denoise_video(video: torch.Tensor, method: str, *, sigma: Optional[float] = None, time: float = 1.0,
                  kappa: float = 0.1, edge_stop: EdgeStop | str = EdgeStop.EXPONENTIAL, spatial: float = 1.0,
                  temporal: float = 1.0, scheme: Scheme | str = Scheme.EXPLICIT, dt: Optional[float] = None,
                  pipe=None, steps: int = 10, progress: bool = False) -> torch.Tensor:
    """One entry point for the three methods, on a (C, F, H, W) or (B, C, F, H, W) video in [-1, 1].

    heat: `heat_diffusion(time, spatial, temporal, scheme, dt)`; perona-malik: `perona_malik` with `kappa`
    and `edge_stop` as well; model: `model_denoise(pipe, sigma, steps)`. sigma and kappa in library units
    (2x their [0, 1] pixel-scale values). The result is clipped to [-1, 1].
    """
    if method == "heat":
        out = heat_diffusion(video, time, spatial=spatial, temporal=temporal, scheme=scheme, dt=dt, progress=progress)
    elif method == "perona-malik":
        out = perona_malik(video, time, kappa, edge_stop=edge_stop, spatial=spatial, temporal=temporal, scheme=scheme,
                           dt=dt, progress=progress)
    elif method == "model":
        if pipe is None:
            raise VidiffError("method 'model' needs a trained model (a VideoPipeline)")
        out = model_denoise(pipe, video, sigma=sigma, steps=steps, progress=progress)
    else:
        raise VidiffError(f"unknown denoising method {method!r}; choose from {', '.join(METHODS)}")
    return out.clamp(-1, 1)
