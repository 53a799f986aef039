"""One model, many tasks: every task is "generate the unknown part of a clip given a known part".

    conditional_sample   one clip of the model's length with known pixels (a frame or space-time mask)
    fill_timeline        any number of frames, window by window, each window conditioned on every frame
                         already known or generated inside it (extend, temporal upsampling)
    predict / interpolate / upsample_time / animate / inpaint / vary / extend   the user-facing tasks

Videos are float tensors (B, C, F, H, W) in [-1, 1] (a single (C, F, H, W) video is accepted too).
Known frames and unmasked pixels come back exactly as given.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
import torch.nn.functional as F

from vidiff.build import sample_shape
from vidiff.diffusion import sample
from vidiff.diffusion.guidance import (classifier_free_guidance, clean_context, decoded_reconstruction_guidance,
                                       masked_model_denoise, reconstruction_guidance, replacement)
from vidiff.diffusion.masks import frames_mask
from vidiff.diffusion.samplers import sample_ddim
from vidiff.diffusion.schedules import q_sample
from vidiff.errors import VidiffError

METHODS = ("auto", "masked", "clean", "reconstruction", "replacement")


def _batched(video: torch.Tensor, what: str) -> torch.Tensor:
    if video.ndim == 4:
        video = video[None]
    if video.ndim != 5:
        raise VidiffError(f"{what} must be a video (C, F, H, W) or a batch (B, C, F, H, W), got shape {tuple(video.shape)}")
    return video.float()


def fit_resolution(pipe, video: torch.Tensor) -> torch.Tensor:
    """Resize (shorter side) and centre-crop a (B, C, F, H, W) video to the model's size, with a warning."""
    size = pipe.config.data.size
    H, W = video.shape[-2:]
    if (H, W) == (size, size):
        return video
    warnings.warn(f"input is {H}x{W} but the model was trained on {size}x{size}: resizing and centre-cropping")
    B, C, Fr = video.shape[:3]
    scale = size / min(H, W)
    h, w = max(size, round(H * scale)), max(size, round(W * scale))
    frames = video.permute(0, 2, 1, 3, 4).reshape(B * Fr, C, H, W)
    frames = F.interpolate(frames, size=(h, w), mode="area" if scale < 1 else "bilinear",
                           **({} if scale < 1 else {"align_corners": False}))
    top, left = (h - size) // 2, (w - size) // 2
    frames = frames[:, :, top:top + size, left:left + size]
    return frames.reshape(B, Fr, C, size, size).permute(0, 2, 1, 3, 4).clamp(-1, 1)


def _model_fn(pipe, known=None, mask=None, labels=None, label_guidance=None, clean=False):
    """The network as a denoise function: a masked model gets its conditioning channels (none: unconditional), with
    `clean` the known frames go in clean at noise level 0 (a model trained with `diffusion.clean_context`), and with
    `labels` (B, L) a label-conditioned one is guided towards them (classifier-free guidance of weight
    `label_guidance`, None: the model's `sample.guidance`, plus the model's `sample.guidance_per_label` for each
    label past the first, as `vidiff sample`)."""
    den = pipe.denoiser
    if clean:
        fn = clean_context(den, known, mask)
    else:
        fn = masked_model_denoise(den, known, mask) if pipe.config.masks.enabled else den
    if labels is None:
        return fn
    if not den.num_labels:
        raise VidiffError("this model was trained without labels (model.num_labels = 0): it cannot take a prompt")
    if label_guidance is None:
        label_guidance = pipe.config.sample.guidance
    return classifier_free_guidance(fn, labels.to(pipe.device), label_guidance,
                                    per_label=pipe.config.sample.guidance_per_label)


def _batch_labels(labels: Optional[torch.Tensor], batch: int) -> Optional[torch.Tensor]:
    """Labels (L,) or (1, L) for every video, or (batch, L) one row per video -> (batch, L)."""
    if labels is None:
        return None
    labels = torch.as_tensor(labels, dtype=torch.long)
    labels = labels[None] if labels.ndim == 1 else labels
    if labels.ndim != 2 or labels.shape[0] not in (1, batch):
        raise VidiffError(f"labels must be (slots,) or (1 or {batch}, slots), got shape {tuple(labels.shape)}")
    return labels.expand(batch, -1)


def _clean_prefix(pipe, mask: torch.Tensor) -> bool:
    """Whether a model trained with clean context frames saw masks like this one: in every clip the first k frames
    known and no other, 1 <= k <= diffusion.clean_context_frames."""
    d = pipe.config.diffusion
    if not d.clean_context:
        return False
    known = mask[:, 0, :, 0, 0] > 0.5  # (B, F)
    k = known.sum(1)
    prefix = torch.arange(known.shape[1], device=known.device)[None] < k[:, None]
    return bool(torch.equal(known, prefix) and (k >= 1).all() and (k <= d.clean_context_frames).all())


def _denoise_fn(pipe, known, mask, method, guidance_weight, generator, labels=None, label_guidance=None):
    frame_mask = mask.shape[-1] == 1 and mask.shape[-2] == 1
    if method == "auto":
        method = ("masked" if pipe.config.masks.enabled and frame_mask else
                  "clean" if frame_mask and _clean_prefix(pipe, mask) else "reconstruction")
    if method not in METHODS:
        raise VidiffError(f"unknown conditioning method {method!r}; choose from {', '.join(METHODS)}")
    if method == "clean":
        if not pipe.config.diffusion.clean_context:
            raise VidiffError("this model was trained without clean context frames (diffusion.clean_context = 0): "
                              "use --method reconstruction or replacement")
        if not frame_mask:
            raise VidiffError("clean context conditions on whole frames: use reconstruction for space-time masks")
        return _model_fn(pipe, known, mask, labels, label_guidance, clean=True)
    if method == "masked":
        if not pipe.config.masks.enabled:
            raise VidiffError("this model was trained without masks: use --method reconstruction or replacement")
        if not frame_mask:
            raise VidiffError("a masked model is conditioned on whole frames: use reconstruction for space-time masks")
        return _model_fn(pipe, known, mask, labels, label_guidance)
    # a masked model used without its conditioning channels is asked for unconditional output
    base = _model_fn(pipe, labels=labels, label_guidance=label_guidance)
    if method == "replacement":
        return replacement(base, known, mask, generator)
    return reconstruction_guidance(base, known, mask, guidance_weight, generator)


def conditional_sample(pipe, known: torch.Tensor, mask: torch.Tensor, method: str = "auto", num_steps: int = 50,
                       guidance_weight: float = 2.0, generator: Optional[torch.Generator] = None,
                       progress: bool = False, batch_size: int = 16, labels: Optional[torch.Tensor] = None,
                       label_guidance: Optional[float] = None) -> torch.Tensor:
    """Sample clips (B, C, F, H, W) of the model's length in which `known` holds wherever mask == 1.

    mask: (B or 1, 1, F, 1, 1) for whole frames or (B or 1, 1, F, H, W) for space-time regions.
    labels: (L,) or (1 or B, L), for a label-conditioned model: what the clips should show, with classifier-free
    guidance `label_guidance` (`VideoPipeline.labels_for` makes them from a caption).
    Clips are sampled `batch_size` at a time (reconstruction guidance keeps activations for a backward pass).
    """
    labels = _batch_labels(labels, known.shape[0])
    if known.shape[0] > batch_size:
        chunks = []
        for i in range(0, known.shape[0], batch_size):
            m = mask[i:i + batch_size] if mask.shape[0] > 1 else mask
            lab = None if labels is None else labels[i:i + batch_size]
            chunks.append(conditional_sample(pipe, known[i:i + batch_size], m, method, num_steps, guidance_weight,
                                             generator, progress, batch_size, lab, label_guidance).cpu())
        return torch.cat(chunks)
    d = pipe.config.data
    known = known.to(pipe.device)
    if known.shape[1:] != (pipe.video_channels, d.num_frames, d.size, d.size):
        raise VidiffError(f"known video has shape {tuple(known.shape[1:])}, the model makes "
                          f"{(pipe.video_channels, d.num_frames, d.size, d.size)}")
    try:
        torch.broadcast_shapes(mask.shape, (known.shape[0], 1) + tuple(known.shape[2:]))
    except RuntimeError:
        raise VidiffError(f"mask of shape {tuple(mask.shape)} does not match the video {tuple(known.shape)}") from None
    mask = mask.to(pipe.device).float()
    ae, pixels, pixel_mask = pipe.autoencoder, known, mask
    in_pixels = False  # a latent model guided by the decoded estimate (regions, or a temporal autoencoder)
    if ae is not None:
        frame_mask = mask.shape[-2:] == (1, 1)
        in_pixels = not frame_mask or ae.config.time_factor > 1
        if in_pixels and method not in ("auto", "reconstruction"):
            raise VidiffError(f"this model works on autoencoder latents that mix known and unknown pixels: only "
                              f"reconstruction guidance can condition it, not {method!r}")
        if not in_pixels:  # whole frames of a per-frame autoencoder: condition on their latents
            with torch.no_grad():
                known = ae.encode(known)  # (B, L, F, H/f, W/f)
    if not mask.any():  # nothing known: plain sampling (guided towards `labels` if given)
        denoise = _model_fn(pipe, labels=labels, label_guidance=label_guidance)
    elif in_pixels:
        denoise = decoded_reconstruction_guidance(_model_fn(pipe, labels=labels, label_guidance=label_guidance),
                                                  ae.decode, pixels, pixel_mask, guidance_weight)
    else:
        denoise = _denoise_fn(pipe, known, mask, method, guidance_weight, generator, labels, label_guidance)
    shape = sample_shape(pipe.config, known.shape[0], ae)  # pixels or latents
    out = sample(denoise, shape, pipe.denoiser.alphas_cumprod, "ddim", num_steps, generator=generator,
                 device=pipe.device, progress=progress, noise=pipe.denoiser.noise)
    if ae is not None:  # back to pixels; the known frames are the given ones, not their reconstructions
        with torch.no_grad():
            out = ae.decode(out).clamp(-1, 1)
        out = pixel_mask * pixels + (1 - pixel_mask) * out
    return out


def fill_timeline(pipe, video: torch.Tensor, known: torch.Tensor, overlap: int = 4, **kwargs) -> torch.Tensor:
    """Generate the unknown frames of a long (B, C, M, H, W) timeline, window by window (left to right).

    known: (M,) bool. Each window of the model's F frames is conditioned on every frame inside it that was
    given or already generated, so consecutive windows share `overlap` frames and join without seams.
    """
    Fm = pipe.config.data.num_frames
    M = video.shape[2]
    if not 0 <= overlap < Fm:
        raise VidiffError(f"overlap must be in 0..{Fm - 1}, got {overlap}")
    out = video.clone()
    done = known.clone().bool()
    starts = list(range(0, max(M - Fm, 0) + 1, Fm - overlap))
    if M > Fm and starts[-1] != M - Fm:
        starts.append(M - Fm)
    for s in starts:
        window = slice(s, s + Fm)
        if done[window].all():
            continue
        mask = done[window].float().reshape(1, 1, -1, 1, 1)
        if not mask.any():  # nothing known here yet: an unconditional window
            mask = torch.zeros(1, 1, Fm, 1, 1)
        out[:, :, window] = conditional_sample(pipe, out[:, :, window], mask, **kwargs).to(out.device)
        done[window] = True
    return out


def predict(pipe, context: torch.Tensor, num_future: int, num_samples: int = 1, overlap: int = 4,
            **kwargs) -> torch.Tensor:
    """Future-frame prediction: the context frames followed by `num_future` generated frames.
    Longer than the model's clip length, it continues window by window (see `extend`).
    Returns (B * num_samples, C, Fc + num_future, H, W)."""
    context = fit_resolution(pipe, _batched(context, "context"))
    Fm, Fc = pipe.config.data.num_frames, context.shape[2]
    if Fc >= Fm:
        raise VidiffError(f"context of {Fc} frames is as long as the model's {Fm}-frame clips or longer: "
                          f"give at most {Fm - 1} context frames")
    if num_future < 1:
        raise VidiffError(f"number of future frames must be >= 1, got {num_future}")
    context = context.repeat_interleave(num_samples, dim=0)
    total = Fc + num_future
    timeline = torch.zeros(context.shape[0], context.shape[1], max(total, Fm), *context.shape[3:])
    timeline[:, :, :Fc] = context
    known = torch.zeros(timeline.shape[2], dtype=torch.bool)
    known[:Fc] = True
    return fill_timeline(pipe, timeline, known, overlap=min(overlap, Fm - 1) if total > Fm else 0, **kwargs)[:, :, :total]


def interpolate(pipe, keyframes: torch.Tensor, positions: Optional[list[int]] = None, num_samples: int = 1,
                **kwargs) -> torch.Tensor:
    """Fill the frames between keyframes. keyframes: (B, C, K, H, W); positions: their frame indices in the
    model's clip (default: spread evenly from the first to the last frame). Returns (B*num_samples, C, F, H, W)."""
    keyframes = fit_resolution(pipe, _batched(keyframes, "keyframes"))
    Fm, K = pipe.config.data.num_frames, keyframes.shape[2]
    if positions is None:
        positions = [round(i * (Fm - 1) / max(K - 1, 1)) for i in range(K)]
    if len(positions) != K or len(set(positions)) != K:
        raise VidiffError(f"need {K} distinct keyframe positions, got {positions}")
    if any(not 0 <= p < Fm for p in positions):
        raise VidiffError(f"keyframe positions must lie in 0..{Fm - 1}, got {positions}")
    keyframes = keyframes.repeat_interleave(num_samples, dim=0)
    known = torch.zeros(keyframes.shape[0], keyframes.shape[1], Fm, *keyframes.shape[3:])
    known[:, :, positions] = keyframes
    return conditional_sample(pipe, known, frames_mask(positions, Fm), **kwargs).cpu()


def upsample_time(pipe, video: torch.Tensor, factor: int, overlap: int = 4, **kwargs) -> torch.Tensor:
    """Temporal upsampling by an integer factor: N frames -> (N - 1) * factor + 1, the originals kept exactly."""
    video = fit_resolution(pipe, _batched(video, "video"))
    if factor < 2:
        raise VidiffError(f"the upsampling factor must be >= 2, got {factor}")
    N = video.shape[2]
    M = (N - 1) * factor + 1
    timeline = torch.zeros(video.shape[0], video.shape[1], max(M, pipe.config.data.num_frames), *video.shape[3:])
    timeline[:, :, 0:M:factor] = video
    known = torch.zeros(timeline.shape[2], dtype=torch.bool)
    known[0:M:factor] = True
    return fill_timeline(pipe, timeline, known, overlap=overlap, **kwargs)[:, :, :M]


def animate(pipe, image: torch.Tensor, num_samples: int = 1, **kwargs) -> torch.Tensor:
    """Image-to-video: image (C, H, W) or (B, C, H, W) becomes the first frame of a generated clip."""
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4:
        raise VidiffError(f"image must be (C, H, W) or (B, C, H, W), got shape {tuple(image.shape)}")
    return predict(pipe, image[:, :, None], pipe.config.data.num_frames - 1, num_samples, **kwargs)


def inpaint(pipe, video: torch.Tensor, region: torch.Tensor, num_samples: int = 1, method: str = "reconstruction",
            **kwargs) -> torch.Tensor:
    """Regenerate a space-time region. region: bool/float, 1 = regenerate, of shape (F, H, W), (1, F, H, W) or
    (B, 1, F, H, W) matching the video; everything outside it is kept exactly."""
    video = _batched(video, "video")
    if video.shape[-2:] != (pipe.config.data.size,) * 2 or video.shape[2] != pipe.config.data.num_frames:
        raise VidiffError(f"inpainting needs a clip of the model's shape ({pipe.config.data.num_frames} frames of "
                          f"{pipe.config.data.size}x{pipe.config.data.size}), got {tuple(video.shape[2:])}")
    region = region.float()
    while region.ndim < 5:
        region = region[None]
    try:
        torch.broadcast_shapes(region.shape, (video.shape[0], 1) + tuple(video.shape[2:]))
    except RuntimeError:
        raise VidiffError(f"mask of shape {tuple(region.shape)} does not match the video {tuple(video.shape)}") from None
    video = video.repeat_interleave(num_samples, dim=0)
    if region.shape[0] > 1:
        region = region.repeat_interleave(num_samples, dim=0)
    return conditional_sample(pipe, video, 1 - region, method=method, **kwargs).cpu()


def vary(pipe, video: torch.Tensor, strength: float = 0.5, num_samples: int = 1, num_steps: int = 50,
         generator: Optional[torch.Generator] = None, progress: bool = False, labels: Optional[torch.Tensor] = None,
         label_guidance: Optional[float] = None) -> torch.Tensor:
    """Video-to-video variation, SDEdit (Meng et al. 2022): noise the input to timestep strength * T and
    denoise with DDIM. Small strength stays close to the input, 1 ignores it. `labels` as in `conditional_sample`."""
    if not 0 < strength <= 1:
        raise VidiffError(f"strength must be in (0, 1], got {strength}")
    video = fit_resolution(pipe, _batched(video, "video"))
    if video.shape[2] != pipe.config.data.num_frames:
        raise VidiffError(f"vary needs clips of the model's {pipe.config.data.num_frames} frames, got {video.shape[2]}")
    from vidiff.denoise import denoise_timesteps

    den, ae = pipe.denoiser, pipe.autoencoder
    video = video.repeat_interleave(num_samples, dim=0).to(pipe.device)
    if ae is not None:  # a latent model varies the latents
        video = ae.encode(video)
    T = den.num_timesteps
    t_start = min(T - 1, max(0, round(strength * (T - 1))))
    noise = den.noise.draw(video.shape, generator, pipe.device)
    x_t = q_sample(video, den.alphas_cumprod[t_start].float().expand(video.shape[0]).to(pipe.device), noise)
    denoise = _model_fn(pipe, labels=_batch_labels(labels, video.shape[0]), label_guidance=label_guidance)
    steps = denoise_timesteps(t_start, max(1, math.ceil(num_steps * strength)))
    out = sample_ddim(denoise, x_t, den.alphas_cumprod, steps, generator=generator, progress=progress)
    if ae is not None:
        with torch.no_grad():
            out = ae.decode(out).clamp(-1, 1)
    return out.cpu()


def extend(pipe, num_frames: int, video: Optional[torch.Tensor] = None, num_samples: int = 1, overlap: int = 4,
           **kwargs) -> torch.Tensor:
    """Videos longer than the trained length, autoregressively: each new window of the model's length is
    conditioned on the last `overlap` frames of the previous one. With `video`, it is continued."""
    Fm = pipe.config.data.num_frames
    if video is None:
        d = pipe.config.data
        start = torch.zeros(num_samples, pipe.video_channels, 0, d.size, d.size)
    else:
        start = fit_resolution(pipe, _batched(video, "video")).repeat_interleave(num_samples, dim=0)
    if num_frames <= start.shape[2]:
        raise VidiffError(f"asked for {num_frames} frames but the input already has {start.shape[2]}")
    timeline = torch.zeros(start.shape[0], start.shape[1], max(num_frames, Fm), *start.shape[3:])
    timeline[:, :, :start.shape[2]] = start
    known = torch.zeros(timeline.shape[2], dtype=torch.bool)
    known[:start.shape[2]] = True
    return fill_timeline(pipe, timeline, known, overlap=overlap, **kwargs)[:, :, :num_frames]
