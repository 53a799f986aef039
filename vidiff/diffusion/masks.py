"""Which frames are known: masks for masked conditional training and for the tasks.

A frame mask is a float tensor (B, 1, F, 1, 1), 1 where a frame is given; a space-time mask
(inpainting) is (B, 1, F, H, W). Both broadcast against videos (B, C, F, H, W).
"""

from __future__ import annotations

import torch


def random_training_masks(batch: int, frames: int, p_none: float, p_prediction: float, p_interpolation: float,
                          max_context: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """MCVD-style random masks (Voleti et al. 2022, sec. 3): per clip, no frame known, the first k frames
    known (future prediction), or the first and last frames plus a random sparse set (interpolation).
    Returns (B, 1, F, 1, 1) float."""
    probs = torch.tensor([p_none, p_prediction, p_interpolation], dtype=torch.float64)
    kinds = torch.multinomial(probs / probs.sum(), batch, replacement=True, generator=generator)
    ks = torch.randint(1, max_context + 1, (batch,), generator=generator)
    sparse = torch.rand(batch, frames, generator=generator) < 0.2
    mask = torch.zeros(batch, frames)
    for i in range(batch):
        if kinds[i] == 1:
            mask[i, : int(ks[i])] = 1
        elif kinds[i] == 2:
            mask[i] = sparse[i].float()
            mask[i, 0] = mask[i, -1] = 1
    return mask[:, None, :, None, None]


def clean_context_mask(batch: int, frames: int, p: float, max_frames: int, device=None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Which frames of each training clip are given clean (`diffusion.clean_context`): with probability p the first
    k frames, k uniform in 1..max_frames, else none. Returns (B, 1, F, 1, 1) float."""
    given = torch.rand(batch, generator=generator) < p
    k = torch.randint(1, max_frames + 1, (batch,), generator=generator) * given
    mask = (torch.arange(frames)[None] < k[:, None]).float()  # (B, F)
    return mask[:, None, :, None, None].to(device)


def frames_mask(known: list[int] | range, frames: int, batch: int = 1) -> torch.Tensor:
    """(B, 1, F, 1, 1) with 1 at the listed frame indices."""
    mask = torch.zeros(batch, 1, frames, 1, 1)
    for f in known:
        if not 0 <= f < frames:
            raise ValueError(f"known frame {f} outside 0..{frames - 1}")
        mask[:, :, f] = 1
    return mask


def conditioning_channels(known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The extra network input of a masked model: known frames (zero elsewhere) and the mask.
    known: (B, C, F, H, W), mask: (B, 1, F, 1 or H, 1 or W) -> (B, C + 1, F, H, W)."""
    full = mask.expand(known.shape[0], 1, *known.shape[2:])
    return torch.cat([known * full, full], dim=1)
