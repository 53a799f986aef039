"""Conditioning at sampling time: classifier-free guidance on labels, and known pixels. Each function wraps a denoise function
`denoise(x_t, t) -> (x0_hat, eps_hat)` into another one, so that any sampler can use it (a self-conditioned
model's also takes `x_self=`, the previous x0 estimate, and passes it on).

known: (B, C, F, H, W) in [-1, 1]; mask: (B, 1, F, 1 or H, 1 or W), 1 where `known` is given.
"""

from __future__ import annotations

from typing import Optional

import torch

from vidiff.diffusion.masks import conditioning_channels
from vidiff.diffusion.schedules import Noise, append_dims, half_log_snr, q_sample
from vidiff.errors import VidiffError


def masked_model_denoise(denoiser, known: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None):
    """For a model trained with masks (MCVD): the known frames and the mask go in as extra channels.
    With no `known`, the model is asked for unconditional samples (an all-zero mask); a label-conditioned one also
    takes `labels=` (so that `classifier_free_guidance` can wrap this function)."""

    def denoise(x_t, t, x_self=None, labels=None):
        if known is None:
            k = torch.zeros_like(x_t)
            m = torch.zeros(x_t.shape[0], 1, x_t.shape[2], 1, 1, device=x_t.device)
        else:
            k, m = known.to(x_t.device), mask.to(x_t.device)
            if k.shape[0] != x_t.shape[0]:  # classifier-free guidance stacks copies of the batch: repeat to match
                reps = x_t.shape[0] // k.shape[0]
                k, m = k.repeat(reps, 1, 1, 1, 1), m.repeat(reps, 1, 1, 1, 1) if m.shape[0] > 1 else m
        x0, eps = denoiser(x_t, t, conditioning_channels(k.expand_as(x_t), m), x_self=x_self, labels=labels)
        return _keep_known(x0, eps, x_t, t, None if known is None else k, m, denoiser.alphas_cumprod)

    return _like(denoise, denoiser)  # so that replacement / guidance can wrap it like a Denoiser


def clean_context(denoiser, known: torch.Tensor, mask: torch.Tensor):
    """For a model trained with `diffusion.clean_context`: the known frames go in clean, at noise level 0, and the
    others at the sampler's level (one timestep per frame, as in training; Diffusion Forcing, Chen et al. 2024).
    `mask` is a frame mask (B or 1, 1, F, 1, 1). Like `masked_model_denoise` it takes `labels=`, so that
    `classifier_free_guidance` can wrap it."""

    def denoise(x_t, t, x_self=None, labels=None):
        k, m = known.to(x_t.device), mask.to(x_t.device)
        if k.shape[0] != x_t.shape[0]:  # classifier-free guidance stacks copies of the batch: repeat to match
            reps = x_t.shape[0] // k.shape[0]
            k, m = k.repeat(reps, 1, 1, 1, 1), m.repeat(reps, 1, 1, 1, 1) if m.shape[0] > 1 else m
        given = m.expand(x_t.shape[0], 1, x_t.shape[2], 1, 1) > 0.5  # (B, 1, F, 1, 1)
        z = torch.where(given, k.expand_as(x_t), x_t)
        t_frames = torch.where(given[:, 0, :, 0, 0], 0, t[:, None])  # (B, F)
        kw = {} if labels is None else {"labels": labels}
        if getattr(denoiser, "self_conditioning", False):
            kw["x_self"] = None if x_self is None else torch.where(given, k.expand_as(x_self), x_self)
        x0, eps = denoiser(z, t_frames, **kw)
        return _keep_known(x0, eps, x_t, t, k, m, denoiser.alphas_cumprod)

    return _like(denoise, denoiser)


def _eps_from_x0(x0, x_t, t, alphas_cumprod):
    """The eps that a clean-clip estimate x0 implies at x_t: x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps."""
    a = append_dims(alphas_cumprod.to(x_t.device)[t].float(), x_t.ndim)
    return (x_t - a.sqrt() * x0) / (1 - a).sqrt()


def _keep_known(x0, eps, x_t, t, known, mask, alphas_cumprod):
    """Put the known pixels into x0_hat and recompute eps from it, so that the sampler's last step
    (which returns x0_hat) reproduces them exactly."""
    if known is None:
        return x0, eps
    m = mask.to(x0.device).expand_as(x0)
    x0 = torch.where(m > 0.5, known.to(x0.device).expand_as(x0), x0)
    return x0, _eps_from_x0(x0, x_t, t, alphas_cumprod)


def replacement(denoiser, known: torch.Tensor, mask: torch.Tensor, generator: Optional[torch.Generator] = None):
    """The replacement method (Ho et al. 2022, "Video Diffusion Models", sec. 3.1; Song et al. 2021):
    before each model call the known part of x_t is replaced by a fresh sample of q(x_t | x_known)."""

    def denoise(x_t, t, x_self=None):
        z = _replace(x_t, t, known, mask, denoiser, generator)
        x0, eps = _call(denoiser, z, t, x_self)
        return _keep_known(x0, eps, x_t, t, known, mask, denoiser.alphas_cumprod)

    return _like(denoise, denoiser)


def reconstruction_guidance(denoiser, known: torch.Tensor, mask: torch.Tensor, weight: float = 2.0,
                            generator: Optional[torch.Generator] = None):
    """Reconstruction guidance (Ho et al. 2022, eq. 7): replacement, plus a gradient step that makes the
    model's reconstruction of the known part agree with it:
        x~0 = x^0 - (w_r * alpha_t / 2) * grad_{z_t} || x_known - x^0_known(z_t) ||^2,   alpha_t = sqrt(a_t).
    Slower (one backward pass per step) but much more coherent than replacement alone."""

    def denoise(x_t, t, x_self=None):
        z = _replace(x_t, t, known, mask, denoiser, generator).detach().requires_grad_(True)
        with torch.enable_grad():
            x0, _ = _call(denoiser, z, t, x_self)
            m = mask.to(x0.device).expand_as(x0)
            err = ((known.to(x0.device) - x0) ** 2 * m).sum()
            (grad,) = torch.autograd.grad(err, z)
        a = append_dims(denoiser.alphas_cumprod.to(x_t.device)[t].float(), x_t.ndim)
        x0 = (x0 - weight * a.sqrt() / 2 * grad).detach()
        return _keep_known(x0, None, x_t, t, known, mask, denoiser.alphas_cumprod)

    return _like(denoise, denoiser)


def decoded_reconstruction_guidance(denoiser, decode, known: torch.Tensor, mask: torch.Tensor, weight: float = 2.0):
    """Reconstruction guidance for a latent model, measured in pixels: the decoded estimate D(x^0(z_t)) is pulled
    towards the known pixels (as Ho et al. 2022, eq. 7, with the decoder inside the error):
        x~0 = x^0 - (w_r * alpha_t / 2) * grad_{z_t} || m * (x_known - D(x^0(z_t))) ||^2,   alpha_t = sqrt(a_t).
    No replacement: a latent may hold known and unknown pixels together (a region of a frame, or frames that a
    temporal autoencoder encodes into one latent), so only the gradient ties the sample to them.
    `decode`: latents (B, L, F', h, w) -> pixels (B, C, F, H, W); known, mask: in pixels, as in the other methods."""

    def denoise(x_t, t, x_self=None):
        z = x_t.detach().requires_grad_(True)
        with torch.enable_grad():
            x0, _ = _call(denoiser, z, t, x_self)
            pixels = decode(x0)  # (B, C, F, H, W)
            m = mask.to(pixels.device).expand_as(pixels)
            err = ((known.to(pixels.device) - pixels) ** 2 * m).sum()
            (grad,) = torch.autograd.grad(err, z)
        a = append_dims(denoiser.alphas_cumprod.to(x_t.device)[t].float(), x_t.ndim)
        x0 = (x0 - weight * a.sqrt() / 2 * grad).detach()
        return x0, _eps_from_x0(x0, x_t, t, denoiser.alphas_cumprod)

    return _like(denoise, denoiser)


def _like(denoise, denoiser):
    """Give a wrapping denoise function what the samplers and further wrappers read of the denoiser it wraps: its
    schedule, the noise it was trained with and whether it is self-conditioned."""
    denoise.alphas_cumprod = denoiser.alphas_cumprod
    denoise.noise = getattr(denoiser, "noise", Noise())
    denoise.self_conditioning = getattr(denoiser, "self_conditioning", False)
    return denoise


def _call(denoiser, x_t, t, x_self):
    """denoiser(x_t, t), passing the previous x0 estimate on to a self-conditioned one."""
    return denoiser(x_t, t, x_self=x_self) if getattr(denoiser, "self_conditioning", False) else denoiser(x_t, t)


def _replace(x_t, t, known, mask, denoiser, generator):
    noise = getattr(denoiser, "noise", Noise()).like(x_t, generator)
    noisy_known = q_sample(known.to(x_t.device), denoiser.alphas_cumprod.to(x_t.device)[t].float(), noise)
    m = mask.to(x_t.device).expand_as(x_t)
    return torch.where(m > 0.5, noisy_known, x_t)


def guidance_weights(labels: torch.Tensor, scale: float, per_label: float = 0.0) -> torch.Tensor:
    """Each sample's guidance weight: `scale` + `per_label` for each asked label past the first; labels (B, L) long,
    -1 for an empty slot -> (B,)."""
    return scale + per_label * ((labels >= 0).sum(-1).clamp(min=1) - 1)


def classifier_free_guidance(denoiser, labels: torch.Tensor, scale: float = 1.0, max_t: Optional[int] = None,
                             per_label: float = 0.0, parallel: float = 1.0, rescale: float = 0.0,
                             per_object: float = 0.0):
    """Classifier-free guidance (Ho & Salimans 2022) for a label-conditioned model trained with label dropout:
        x^0 = x^0(no labels) + w * (x^0(labels) - x^0(no labels)),   w = `scale`,
    and eps likewise (both are affine in the network output, so they stay consistent). w = 1 is the conditional
    model alone, w = 0 the unconditional one, w > 1 trades diversity for agreement with the labels.
    labels: (B, L) long indices, -1 for an empty slot. The two predictions share one batched network call.
    `max_t`: guide only at timesteps t <= max_t and use the conditional model alone above (a guidance interval,
    Kynkaanniemi et al. 2024: guidance at high noise is what makes objects too large, docs/benchmarks.md, tenth
    round). `per_label`: each sample's w is `scale` + per_label * (its number of labels - 1), so that a clip asked
    for two objects is guided harder than a clip asked for one. `parallel` (eta of adaptive projected guidance,
    Sadat et al. 2025): the guidance term d = x^0(labels) - x^0(no labels) is split, per sample, into its part
    along x^0(labels) and the rest, and the first is kept only `parallel` times:
        x^0 = x^0(labels) + (w - 1) * (d - (1 - eta) * d_par),   d_par = (<d, x^0(labels)> / |x^0(labels)|^2) x^0(labels)
    (eta = 1 is the formula above; eps is then recomputed from x^0; on the demo eta = 0 changed nothing measurable,
    docs/benchmarks.md, twenty-fifth round). `rescale` (phi of guidance rescaling, Lin et al. 2023, sec. 3.4): the
    guided estimate's per-sample mean and standard deviation over (C, F, H, W) are brought back to the conditional
    estimate's, and phi of that mixed with the guided estimate:
        x^0 <- phi * (mu_c + (x^0 - mu) * sd_c / sd) + (1 - phi) * x^0
    (Lin et al. match the std of a v-prediction, whose mean is near 0; an x^0 estimate of a black clip is not, so
    the mean is matched too), then eps recomputed from x^0. `per_object` (lambda): for a sample asked for two or
    more objects, each object's own contrast is added, the estimate with every label against the estimate with that
    one label left out (the part of x^0 that only that object's label draws):
        x^0 <- x^0 + lambda * sum_i (x^0(labels) - x^0(labels without label i))
    one more network evaluation per asked object (rows of the same batched call), and nothing for a sample asked for
    one (its contrast would be the guidance term itself). On a demo-preset run lambda = 1 kept both of two asked
    colours in every frame in 16 of 20 clips instead of 10, but drew the two objects larger and joined: asked shape
    right 0.74 instead of 0.94 (docs/benchmarks.md, twenty-eighth round); not a default. `denoiser`: a Denoiser, or
    a wrapper that takes labels= (masked_model_denoise without known frames)."""
    counts = (labels >= 0).sum(-1).clamp(min=1)  # (B,) labels asked per sample
    weights = guidance_weights(labels, scale, per_label)  # (B,)
    # the (sample, slot) pairs whose label is left out once for the per-object contrasts
    loo_b, loo_j = ((labels >= 0) & (counts >= 2).unsqueeze(1)).nonzero(as_tuple=True) if per_object else (None, None)
    with_loo = per_object != 0.0 and loo_b.numel() > 0

    def denoise(x_t, t, x_self=None):
        lab = labels.to(x_t.device)
        if max_t is not None and bool((t > max_t).all()):
            return denoiser(x_t, t, x_self=x_self, labels=lab)
        if not with_loo and bool((weights == 1.0).all()):
            return denoiser(x_t, t, x_self=x_self, labels=lab)
        if not with_loo and bool((weights == 0.0).all()):
            return denoiser(x_t, t, x_self=x_self, labels=torch.full_like(lab, -1))
        B, xs, t_all = x_t.shape[0], None, torch.cat([t, t])
        x_all, lab_all = torch.cat([x_t, x_t]), torch.cat([lab, torch.full_like(lab, -1)])
        if x_self is not None:
            xs = torch.cat([x_self, x_self])
        if with_loo:
            b, j = loo_b.to(x_t.device), loo_j.to(x_t.device)  # (R,) each
            lab_loo = lab[b].clone()  # (R, L)
            lab_loo[torch.arange(b.shape[0], device=b.device), j] = -1
            x_all, t_all, lab_all = torch.cat([x_all, x_t[b]]), torch.cat([t_all, t[b]]), torch.cat([lab_all, lab_loo])
            if xs is not None:
                xs = torch.cat([xs, x_self[b]])
        x0, eps = denoiser(x_all, t_all, x_self=xs, labels=lab_all)  # (2B [+ R], C, F, H, W) each
        x0_c, x0_u, x0_loo, eps_c, eps_u = x0[:B], x0[B:2 * B], x0[2 * B:], eps[:B], eps[B:2 * B]
        w = weights.to(device=x0.device, dtype=x0.dtype).expand(t.shape[0])  # (B,)
        if max_t is not None:  # (a batch with timesteps on both sides of max_t)
            w = torch.where(t > max_t, torch.ones_like(w), w)
        w = append_dims(w, x0.ndim)
        if not with_loo and parallel == 1.0 and rescale == 0.0:
            return x0_u + w * (x0_c - x0_u), eps_u + w * (eps_c - eps_u)
        d = x0_c - x0_u  # (B, C, F, H, W)
        dims = tuple(range(1, d.ndim))
        if parallel == 1.0:
            x0 = x0_u + w * d
        else:
            along = (d * x0_c).sum(dims, keepdim=True) / (x0_c * x0_c).sum(dims, keepdim=True).clamp(min=1e-12)
            x0 = x0_c + (w - 1) * (d - (1 - parallel) * along * x0_c)
        if rescale:
            mu_c, sd_c = x0_c.mean(dims, keepdim=True), x0_c.std(dims, keepdim=True)  # (B, 1, 1, 1, 1) each
            mu, sd = x0.mean(dims, keepdim=True), x0.std(dims, keepdim=True)
            x0 = rescale * (mu_c + (x0 - mu) * sd_c / sd.clamp(min=1e-12)) + (1 - rescale) * x0
        if with_loo:
            lam = torch.full((B,), per_object, device=x0.device, dtype=x0.dtype)  # (B,)
            if max_t is not None:
                lam = torch.where(t > max_t, torch.zeros_like(lam), lam)
            contrast = torch.zeros_like(x0).index_add_(0, b, x0_c[b] - x0_loo)  # (B, C, F, H, W)
            x0 = x0 + append_dims(lam, x0.ndim) * contrast
        return x0, _eps_from_x0(x0, x_t, t, denoiser.alphas_cumprod)

    return _like(denoise, denoiser)


def image_guidance(denoiser, image_denoiser, labels: torch.Tensor, scale: float,
                   t_range: Optional[tuple[int, int]] = None):
    """Guidance of a video model by a label-conditioned image model, frame by frame: each frame of the clip estimate
    is pushed along the image model's classifier-free direction for the same labels,
        x^0[:, :, f] <- x^0[:, :, f] + s * (x^0_img(x_t[:, :, f], labels) - x^0_img(x_t[:, :, f], no labels)),
    and eps recomputed from x^0. It samples (approximately) from p_video(clip | labels) * prod_f p_img(labels |
    frame_f)^s: a product of experts of two models, as composable diffusion (Liu et al. 2022) composes concepts, where
    the image model says of every frame alone whether it shows every asked object. A video model that loses or merges
    one of two objects along a clip is held to them in each frame (docs/benchmarks.md, "Thirty-third round").
    `denoiser`: the video model's (guided) denoise function, `image_denoiser`: a Denoiser of the same labels and
    colour noise trained on single frames (F = 1); labels (B, L) long, -1 for an empty slot; `t_range` (lo, hi):
    guide only at lo <= t <= hi. Two image-model passes (with and without labels, batched) over every frame per step.
    The two models may have different noise schedules (e.g. another `diffusion.shift`): the image model is then asked
    at its timestep of the nearest noise level (`matching_timesteps`)."""
    t_img = matching_timesteps(denoiser.alphas_cumprod, image_denoiser.alphas_cumprod)  # (T_video,) long
    if getattr(image_denoiser, "noise", Noise()).chroma != getattr(denoiser, "noise", Noise()).chroma:
        raise VidiffError("the image model was trained with other colour noise (diffusion.chroma_noise) than the "
                          "video model: it cannot guide it")
    if image_denoiser.num_labels == 0:
        raise VidiffError("the image model was trained without labels: it cannot guide by labels")
    lo, hi = t_range if t_range is not None else (0, len(denoiser.alphas_cumprod) - 1)

    def denoise(x_t, t, x_self=None):
        x0, eps = _call(denoiser, x_t, t, x_self)
        if scale == 0.0 or not bool(((t >= lo) & (t <= hi)).any()):
            return x0, eps
        B, C, F, H, W = x_t.shape
        frames = lambda v: v.permute(0, 2, 1, 3, 4).reshape(B * F, C, 1, H, W)  # noqa: E731  (B * F, C, 1, H, W)
        lab = labels.to(x_t.device).repeat_interleave(F, 0)  # (B * F, L)
        kw = {}
        if getattr(image_denoiser, "self_conditioning", False):
            kw["x_self"] = None if x_self is None else frames(x_self).repeat(2, 1, 1, 1, 1)
        x_f = frames(x_t)
        t_f = t_img.to(t.device)[t].repeat_interleave(F)  # (B * F,) the image model's timestep of the same noise
        x0_img, _ = image_denoiser(torch.cat([x_f, x_f]), t_f.repeat(2),
                                   labels=torch.cat([lab, torch.full_like(lab, -1)]), **kw)  # (2 B F, C, 1, H, W)
        d = (x0_img[:B * F] - x0_img[B * F:]).reshape(B, F, C, H, W).permute(0, 2, 1, 3, 4)  # (B, C, F, H, W)
        s = append_dims(((t >= lo) & (t <= hi)).to(x0.dtype) * scale, x0.ndim)  # (B, 1, 1, 1, 1)
        x0 = x0 + s * d.to(x0.dtype)
        return x0, _eps_from_x0(x0, x_t, t, denoiser.alphas_cumprod)

    return _like(denoise, denoiser)


def matching_timesteps(alphas_cumprod: torch.Tensor, other_alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """For each timestep t of a schedule, the timestep of `other_alphas_cumprod` whose noise level is nearest (in
    log-SNR): (T,) long. The identity for the same schedule; beyond the other's range, its end."""
    lam, other = (half_log_snr(a.detach().double().cpu()) for a in (alphas_cumprod, other_alphas_cumprod))
    return (lam[:, None] - other[None, :]).abs().argmin(1)


def motion_boost(denoiser, scale: float, min_t: int):
    """Push every estimate of the clean clip away from its own mean over frames, a clip without motion:
        x^0 <- x^0 + s * (x^0 - mean_f x^0)   at timesteps t >= `min_t`,   s = `scale`,
    and eps recomputed from it. At high noise the posterior mean of a clip is nearly static (every frame's
    object could be anywhere), and samplers that commit to it early draw objects that move at about half their
    real speed (docs/benchmarks.md, ninth and tenth rounds); this amplifies whatever the estimate already has
    that differs between frames. It is a sampling heuristic in the spirit of classifier-free guidance with a
    static clip as the negative, not a result of the model: it also amplifies flicker and splits, at some cost
    in persistence (measured in docs/benchmarks.md, "Tenth round")."""

    def denoise(x_t, t, x_self=None):
        x0, eps = _call(denoiser, x_t, t, x_self)
        if scale == 0.0:
            return x0, eps
        boost = append_dims((t >= min_t).to(x0.dtype) * scale, x0.ndim)  # (B, 1, 1, 1, 1)
        x0 = x0 + boost * (x0 - x0.mean(dim=2, keepdim=True))
        return x0, _eps_from_x0(x0, x_t, t, denoiser.alphas_cumprod)

    return _like(denoise, denoiser)


def dynamic_threshold(denoiser, percentile: float = 0.995):
    """Imagen's dynamic thresholding (Saharia et al. 2022) of every estimate of the clean clip: per sample,
        s = max(1, the `percentile` quantile of |x^0|),   x^0 <- clamp(x^0, -s, s) / s,
    and eps recomputed from it. Strong classifier-free guidance pushes x^0 outside [-1, 1], where the samplers' static
    clipping saturates it; dividing by s keeps the estimate's proportions instead. Wraps a guided (or plain) denoiser;
    the samplers' static clipping then changes nothing. On the shapes models it does not shrink the too-large objects
    of guided samples (docs/benchmarks.md, "Thirty-first round"): they are not a clipping artefact."""
    if not 0.0 < percentile <= 1.0:
        raise ValueError(f"the percentile must be in (0, 1], got {percentile}")

    def denoise(x_t, t, x_self=None):
        x0, eps = _call(denoiser, x_t, t, x_self)
        s = torch.quantile(x0.abs().flatten(1).float(), percentile, dim=1).clamp(min=1.0)  # (B,)
        s = append_dims(s.to(x0.dtype), x0.ndim)
        x0 = x0.clamp(-s, s) / s
        return x0, _eps_from_x0(x0, x_t, t, denoiser.alphas_cumprod)

    return _like(denoise, denoiser)
