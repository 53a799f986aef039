"""Diffusion math, independent of any network: schedules, objectives/losses and samplers."""

from vidiff.diffusion.objectives import Denoiser, Objective, to_x0_eps, training_target
from vidiff.diffusion.samplers import SAMPLERS, ddim_step, ddpm_step, dpmpp_2m_step, sample, sampling_timesteps
from vidiff.diffusion.schedules import append_dims, make_alphas_cumprod, q_sample

__all__ = ["Denoiser", "Objective", "to_x0_eps", "training_target", "SAMPLERS", "ddim_step", "ddpm_step",
           "dpmpp_2m_step", "sample", "sampling_timesteps", "append_dims", "make_alphas_cumprod", "q_sample"]
