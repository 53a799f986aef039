"""What the network predicts (eps, v or x0), the conversions between them, and the training loss.

The network never sees the schedule; `Denoiser` wraps it and turns its raw output into the
(x0, eps) estimates that samplers and guidance work with (EDM / k-diffusion style preconditioning).
v is Salimans & Ho 2022: v = sqrt(a) eps - sqrt(1 - a) x0, with a = alpha_bar_t.
"""

from __future__ import annotations

import enum
from typing import Callable, Optional

import torch
from torch import nn

from vidiff.diffusion.schedules import Noise, frame_dims, make_alphas_cumprod, q_sample


class Objective(str, enum.Enum):
    EPS = "eps"
    V = "v"
    X0 = "x0"


def training_target(objective: Objective, x0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    a = frame_dims(alpha_bar.to(x0.dtype), x0.ndim)
    if objective == Objective.EPS:
        return noise
    if objective == Objective.X0:
        return x0
    return a.sqrt() * noise - (1 - a).sqrt() * x0


def to_x0_eps(objective: Objective, pred: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor):
    """Turn a network prediction into (x0_hat, eps_hat), given x_t and alpha_bar_t of shape (B,) (or (B, F): one
    noise level per frame)."""
    a = frame_dims(alpha_bar.to(pred.dtype), pred.ndim)
    sa, s1a = a.sqrt(), (1 - a).sqrt()
    if objective == Objective.EPS:
        eps = pred
        x0 = (x_t - s1a * eps) / sa
    elif objective == Objective.X0:
        x0 = pred
        eps = (x_t - sa * x0) / s1a
    else:  # v: x0 = sqrt(a) x_t - sqrt(1-a) v, eps = sqrt(a) v + sqrt(1-a) x_t
        x0 = sa * x_t - s1a * pred
        eps = sa * pred + s1a * x_t
    return x0, eps


def loss_weight(objective: Objective, snr: torch.Tensor, min_snr_gamma: Optional[float]) -> torch.Tensor:
    """Min-SNR-gamma weighting (Hang et al. 2023, eq. 9) expressed for each objective's MSE."""
    if min_snr_gamma is None:
        return torch.ones_like(snr)
    clipped = snr.clamp(max=min_snr_gamma)
    if objective == Objective.EPS:
        return clipped / snr
    if objective == Objective.V:
        return clipped / (snr + 1)
    return clipped


def _masked_mean(x: torch.Tensor, m: Optional[torch.Tensor]) -> torch.Tensor:
    """Per-sample mean of x (B, ...) over the elements where m (same shape, or None: all) is 1."""
    if m is None:
        return x.flatten(1).mean(1)
    return (x * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1)


class Denoiser(nn.Module):
    """Wraps a network `net(x_t, c_noise, cond) -> pred` with a discrete schedule and an objective.

    `forward` returns (x0_hat, eps_hat); `loss` returns one value per sample (EDM style: the
    training loop reduces). The network is conditioned on c_noise = t (the timestep as a float).
    """

    def __init__(self, net: nn.Module, schedule: str = "cosine", timesteps: int = 1000, objective: str = "v",
                 min_snr_gamma: Optional[float] = None, shift: float = 1.0, noise_correlation: float = 0.0,
                 chroma_noise: float = 1.0, frame_difference_weight: float = 0.0, input_perturbation: float = 0.0):
        super().__init__()
        self.net = net
        self.objective = Objective(objective)
        self.min_snr_gamma = min_snr_gamma
        self.num_timesteps = timesteps
        self.noise = Noise(noise_correlation, chroma_noise)  # the noise of training and sampling
        self.frame_difference_weight = frame_difference_weight  # loss on the error's frame-to-frame changes
        self.input_perturbation = input_perturbation  # training inputs from noise + gamma * xi, targets from noise
        self.register_buffer("alphas_cumprod", make_alphas_cumprod(schedule, timesteps, shift), persistent=False)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        return self.alphas_cumprod.to(t.device)[t].float()

    @property
    def self_conditioning(self) -> bool:
        """Whether the network takes its previous x0 estimate (samplers then pass it as `x_self`)."""
        return bool(getattr(getattr(self.net, "config", None), "self_condition", False))

    @property
    def num_labels(self) -> int:
        """The label vocabulary of a label-conditioned network (0: unconditional)."""
        return int(getattr(getattr(self.net, "config", None), "num_labels", 0))

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: Optional[torch.Tensor] = None,
                net: Optional[Callable] = None, x_self: Optional[torch.Tensor] = None,
                labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        # x_t: (B, C, F, H, W), t: (B,) long (or (B, F): a noise level per frame, U-Net only), labels: (B, L) long
        # (-1: none) -> raw network output (B, C, F, H, W).
        # `net` replaces self.net for this call (a DDP- or torch.compile-wrapped copy of it).
        args = (x_t, t.float(), cond) + ((x_self,) if self.self_conditioning else ())
        if labels is not None and self.num_labels:
            return (self.net if net is None else net)(*args, labels=labels)
        return (self.net if net is None else net)(*args)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Optional[torch.Tensor] = None,
                x_self: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None):
        pred = self.predict(x_t, t, cond, x_self=x_self, labels=labels).float()
        return to_x0_eps(self.objective, pred, x_t.float(), self.alpha_bar(t))

    def loss(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, cond: Optional[torch.Tensor] = None,
             loss_mask: Optional[torch.Tensor] = None, net: Optional[Callable] = None,
             self_condition_prob: float = 0.5, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Per-sample weighted MSE, shape (B,). `loss_mask` (broadcastable to x0) marks the elements that count.
        A self-conditioned network gets its own x0 estimate fed back in a fraction `self_condition_prob` of calls."""
        alpha_bar = self.alpha_bar(t)
        if self.input_perturbation:  # Ning et al. 2023: the input is off the forward process, the target is not
            x_t = q_sample(x0, alpha_bar, noise + self.input_perturbation * torch.randn_like(noise))
        else:
            x_t = q_sample(x0, alpha_bar, noise)
        x_self = None
        if self.self_conditioning and torch.rand(()).item() < self_condition_prob:
            # Self-conditioning: half of the steps first estimate x0 without gradient and feed it back in,
            # as the sampler does with the previous step's estimate (clipped like the sampler's).
            with torch.no_grad():
                first = self.predict(x_t, t, cond, net, labels=labels).float()
                x_self = to_x0_eps(self.objective, first, x_t.float(), alpha_bar)[0].clamp(-1, 1)
        pred = self.predict(x_t, t, cond, net, x_self, labels=labels).float()
        target = training_target(self.objective, x0, noise, alpha_bar)
        diff = pred - target  # (B, C, F, H, W)
        m = None if loss_mask is None else loss_mask.expand_as(diff).float()
        mse = _masked_mean(diff ** 2, m)
        if self.frame_difference_weight and diff.shape[2] > 1:  # (B, C, F - 1, H, W): how the error changes
            m_pairs = None if m is None else m[:, :, 1:] * m[:, :, :-1]
            mse = mse + self.frame_difference_weight * _masked_mean((diff[:, :, 1:] - diff[:, :, :-1]) ** 2, m_pairs)
        snr = alpha_bar / (1 - alpha_bar)  # (B,), or (B, F): the clip's weight is then its frames' mean
        weight = loss_weight(self.objective, snr, self.min_snr_gamma)
        return mse * (weight if weight.ndim == 1 else weight.mean(1))


DenoiseFn = Callable[[torch.Tensor, torch.Tensor], tuple]  # (x_t, t) -> (x0_hat, eps_hat); see `self_conditioning`
