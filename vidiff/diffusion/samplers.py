"""Samplers are plain functions of a denoiser (k-diffusion style).

`denoise(x_t, t) -> (x0_hat, eps_hat)` with x_t of shape (B, C, F, H, W) and t a (B,) long tensor.
Guidance (classifier-free, reconstruction) wraps `denoise`; samplers never know about it.
The step functions below are checked against diffusers' DDPMScheduler / DDIMScheduler /
DPMSolverMultistepScheduler in the tests.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from vidiff.diffusion.schedules import Noise, half_log_snr

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], tuple]


def sampling_timesteps(num_train_timesteps: int, num_steps: int, spacing: str = "trailing") -> list[int]:
    """Descending timesteps to visit. "trailing" starts at T-1 (Lin et al. 2024, table 2), "leading" at T - T/n."""
    if not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(f"number of sampling steps must be in 1..{num_train_timesteps}, got {num_steps}")
    if spacing == "trailing":
        ts = torch.arange(num_train_timesteps, 0, -num_train_timesteps / num_steps).round().long() - 1
        return ts.tolist()
    if spacing == "leading":
        step = num_train_timesteps // num_steps
        return list(range(0, num_steps * step, step))[::-1]
    raise ValueError(f"unknown timestep spacing {spacing!r}")


def _alpha(alphas_cumprod: torch.Tensor, t: int) -> torch.Tensor:
    # alpha_bar for t >= 0, and 1 for the "step past the end" t = -1 (diffusers' set_alpha_to_one)
    return alphas_cumprod[t] if t >= 0 else torch.ones((), dtype=alphas_cumprod.dtype)


def ddim_step(x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, a_t: torch.Tensor, a_prev: torch.Tensor,
              eta: float = 0.0, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Song et al. 2021, eq. 12: x_{t-1} = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z,
    with sigma = eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev) (eq. 16)."""
    a_t, a_prev = a_t.double(), a_prev.double()
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
    x_prev = a_prev.sqrt().float() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt().float() * eps
    if eta > 0 and noise is not None:
        x_prev = x_prev + sigma.float() * noise
    return x_prev


def ddpm_step(x_t: torch.Tensor, x0: torch.Tensor, a_t: torch.Tensor, a_prev: torch.Tensor,
              noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Ancestral step from the posterior q(x_{t-1} | x_t, x0) (Ho et al. 2020, eq. 6-7), 'fixed small' variance.
    Works for strided timesteps: the per-step beta is 1 - a_t / a_prev."""
    a_t, a_prev = a_t.double(), a_prev.double()
    alpha = a_t / a_prev
    beta = 1 - alpha
    coef_x0 = (a_prev.sqrt() * beta / (1 - a_t)).float()
    coef_xt = (alpha.sqrt() * (1 - a_prev) / (1 - a_t)).float()
    mean = coef_x0 * x0 + coef_xt * x_t
    var = ((1 - a_prev) / (1 - a_t) * beta).clamp(min=1e-20)
    if noise is not None:
        mean = mean + var.sqrt().float() * noise
    return mean


def dpmpp_2m_step(x_t: torch.Tensor, x0: torch.Tensor, a_t: torch.Tensor, a_prev: torch.Tensor,
                  x0_before: Optional[torch.Tensor] = None, a_before: Optional[torch.Tensor] = None,
                  sde: bool = False, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One step of DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", alg. 2, in data prediction), from alpha_bar
    a_t to a_prev, or of its SDE form (sec. 4 of the same paper; `sde=True`, fresh `noise` each step).
    x0_before / a_before: the previous step's x0 estimate and the alpha_bar it started from (that step went from
    a_before to a_t); without them (the first step) or into a_prev = 1 (the last) the step is first order. The
    second-order term is the midpoint form of diffusers' DPMSolverMultistepScheduler: D = x0 + (x0 - x0_before) /
    (2 r), r = h_before / h, h the step in lambda = log(alpha / sigma)."""
    a_t, a_prev = a_t.double(), a_prev.double()
    if a_prev >= 1:  # sigma = 0: every form of the step lands on the estimate
        return x0
    sigma_t, sigma_prev, alpha_prev = (1 - a_t).sqrt(), (1 - a_prev).sqrt(), a_prev.sqrt()
    h = half_log_snr(a_prev) - half_log_snr(a_t)
    d = x0
    if x0_before is not None and a_before is not None:
        h_before = half_log_snr(a_t) - half_log_snr(a_before.double())
        d = x0 + (0.5 * h / h_before).float() * (x0 - x0_before)
    if not sde:  # x_prev = (sigma_prev / sigma_t) x_t - alpha_prev (e^-h - 1) D
        return (sigma_prev / sigma_t).float() * x_t - (alpha_prev * torch.expm1(-h)).float() * d
    # x_prev = (sigma_prev / sigma_t) e^-h x_t + alpha_prev (1 - e^-2h) D + sigma_prev sqrt(1 - e^-2h) z
    x_prev = (sigma_prev / sigma_t * torch.exp(-h)).float() * x_t - (alpha_prev * torch.expm1(-2 * h)).float() * d
    if noise is not None:
        x_prev = x_prev + (sigma_prev * (-torch.expm1(-2 * h)).sqrt()).float() * noise
    return x_prev


def _run(denoise: DenoiseFn, x: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps: list[int], step,
         generator, clip_x0: bool, callback, progress: bool):
    from tqdm.auto import tqdm

    alphas_cumprod = alphas_cumprod.detach().cpu().double()
    B = x.shape[0]
    self_cond = getattr(denoise, "self_conditioning", False)  # a self-conditioned model takes the previous x0
    x0 = None
    it = tqdm(range(len(timesteps)), desc="sampling", leave=False, disable=not progress)
    for i in it:
        t = timesteps[i]
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        a_t, a_prev = _alpha(alphas_cumprod, t), _alpha(alphas_cumprod, t_prev)
        tt = torch.full((B,), t, dtype=torch.long, device=x.device)
        with torch.no_grad():
            x0, eps = denoise(x, tt, x_self=x0) if self_cond else denoise(x, tt)
        if clip_x0:  # keep eps consistent with the clipped x0 (diffusers' use_clipped_model_output)
            x0 = x0.clamp(-1, 1)
            eps = (x - a_t.sqrt().float() * x0) / (1 - a_t).sqrt().float()
        x = step(x, x0, eps, a_t, a_prev, t_prev)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0": x0})
    return x


def sample_ddim(denoise: DenoiseFn, x: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps: list[int],
                eta: float = 0.0, generator: Optional[torch.Generator] = None, clip_x0: bool = True,
                callback=None, progress: bool = False, noise: Noise = Noise()) -> torch.Tensor:
    """DDIM (Song et al. 2021) from x = x_T over the given descending timesteps; returns x_0.
    `noise`: the kind of noise the model was trained with (the denoiser's `.noise`), drawn fresh when eta > 0."""

    def step(x, x0, eps, a_t, a_prev, t_prev):
        z = noise.like(x, generator) if eta > 0 and t_prev >= 0 else None
        return ddim_step(x, x0, eps, a_t, a_prev, eta, z)

    return _run(denoise, x, alphas_cumprod, timesteps, step, generator, clip_x0, callback, progress)


def sample_ddpm(denoise: DenoiseFn, x: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps: list[int],
                generator: Optional[torch.Generator] = None, clip_x0: bool = True, callback=None,
                progress: bool = False, noise: Noise = Noise()) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, alg. 2) over the given descending timesteps; returns x_0.
    `noise`: the kind of noise the model was trained with (the denoiser's `.noise`), drawn fresh every step."""

    def step(x, x0, eps, a_t, a_prev, t_prev):
        return ddpm_step(x, x0, a_t, a_prev, noise.like(x, generator) if t_prev >= 0 else None)

    return _run(denoise, x, alphas_cumprod, timesteps, step, generator, clip_x0, callback, progress)


def sample_dpmpp_2m(denoise: DenoiseFn, x: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps: list[int],
                    sde: bool = False, generator: Optional[torch.Generator] = None, clip_x0: bool = True,
                    callback=None, progress: bool = False, noise: Noise = Noise()) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022), or its SDE form with `sde`, from x = x_T; returns x_0. Second order from
    the second step on, reusing the previous step's estimate (one network call per step, as DDIM); first order at
    the first and last steps (as diffusers' DPMSolverMultistepScheduler with solver_order=2)."""
    state = {"x0": None, "a": None}  # the previous step's estimate and the alpha_bar it started from

    def step(x, x0, eps, a_t, a_prev, t_prev):
        z = noise.like(x, generator) if sde and t_prev >= 0 else None
        x_prev = dpmpp_2m_step(x, x0, a_t, a_prev, state["x0"], state["a"], sde, z)
        state.update(x0=x0, a=a_t)
        return x_prev

    return _run(denoise, x, alphas_cumprod, timesteps, step, generator, clip_x0, callback, progress)


def sample_dpmpp_2m_sde(denoise: DenoiseFn, x: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps: list[int],
                        **kwargs) -> torch.Tensor:
    """SDE-DPM-Solver++(2M): fresh noise every step, like DDPM, with a second-order step (see sample_dpmpp_2m)."""
    return sample_dpmpp_2m(denoise, x, alphas_cumprod, timesteps, sde=True, **kwargs)


SAMPLERS = {"ddim": sample_ddim, "ddpm": sample_ddpm, "dpmpp-2m": sample_dpmpp_2m,
            "dpmpp-2m-sde": sample_dpmpp_2m_sde}


def sample(denoise: DenoiseFn, shape: tuple, alphas_cumprod: torch.Tensor, sampler: str = "ddim",
           num_steps: int = 50, eta: float = 0.0, generator: Optional[torch.Generator] = None,
           device: torch.device | str = "cpu", clip_x0: bool = True, x_T: Optional[torch.Tensor] = None,
           spacing: str = "trailing", callback=None, progress: bool = False, noise: Noise = Noise()) -> torch.Tensor:
    """Draw x_T of `shape` (B, C, F, H, W) from `noise` (N(0, I), or the frame-correlated or colour-scaled noise the
    model was trained with: the denoiser's `.noise`) and run `sampler` for `num_steps`; returns x_0 in [-1, 1]."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {sorted(SAMPLERS)}")
    T = alphas_cumprod.shape[0]
    timesteps = sampling_timesteps(T, num_steps, spacing)
    x = x_T if x_T is not None else noise.draw(shape, generator, device)
    kwargs = dict(generator=generator, clip_x0=clip_x0, callback=callback, progress=progress, noise=noise)
    if sampler == "ddim":
        kwargs["eta"] = eta
    return SAMPLERS[sampler](denoise, x, alphas_cumprod, timesteps, **kwargs)
