"""Clip-consistent augmentation: one set of random parameters per clip, applied identically to every frame.

Drawing crop, flip and colour factors per frame would make a still scene shimmer and teach the
model motion that is not in the data, so parameters are drawn once per clip (`sample_augment`)
and then applied as a pure function of (frames, parameters) (`apply_augment`). The steps are
square crop -> resize to size x size (PIL, antialiased) -> horizontal flip -> colour jitter.
No torchvision: it cannot be imported next to the CPU build of torch used here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class ClipAugment:
    """Parameters of one clip's augmentation (the same for all of its frames)."""

    box: tuple[int, int, int, int]  # square crop (left, top, right, bottom) in source pixels
    flip: bool = False  # mirror left-right
    brightness: float = 1.0  # multiply intensities
    contrast: float = 1.0  # blend with the clip's mean grey level (1 = unchanged)
    saturation: float = 1.0  # blend with each pixel's grey level (1 = unchanged, 0 = greyscale)

    @property
    def is_identity_colour(self) -> bool:
        return self.brightness == 1.0 and self.contrast == 1.0 and self.saturation == 1.0


def center_box(height: int, width: int) -> tuple[int, int, int, int]:
    """The largest centred square of a height x width frame (the resize then maps its side to `size`)."""
    side = min(height, width)
    left, top = (width - side) // 2, (height - side) // 2
    return (left, top, left + side, top + side)


def center_augment(height: int, width: int) -> ClipAugment:
    """No augmentation: centre square crop only (evaluation, and training with crop='center')."""
    return ClipAugment(center_box(height, width))


def sample_augment(rng: np.random.Generator, height: int, width: int, random_crop: bool = False,
                   crop_scale: float = 1.0, hflip: bool = False, color_jitter: float = 0.0) -> ClipAugment:
    """Draw one clip's augmentation from `rng` (always the same number of draws, so later draws stay aligned).

    random_crop: a square of side uniform in [crop_scale, 1] x the shorter side, at a uniform
    position (crop_scale = 1 only slides along the longer side); otherwise the centre square.
    color_jitter = j: brightness, contrast and saturation factors uniform in [1 - j, 1 + j].
    """
    u = rng.random(6)
    short = min(height, width)
    if random_crop:
        side = max(1, int(round(short * (crop_scale + (1.0 - crop_scale) * u[0]))))
        left = int(np.floor(u[1] * (width - side + 1)))
        top = int(np.floor(u[2] * (height - side + 1)))
        box = (left, top, left + side, top + side)
    else:
        box = center_box(height, width)
    b, c, s = (1.0 + color_jitter * (2 * x - 1) for x in rng.random(3))
    flip = bool(hflip and u[3] < 0.5)
    if color_jitter <= 0:
        b = c = s = 1.0
    return ClipAugment(box, flip, float(b), float(c), float(s))


def crop_resize(frames: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """uint8 (F, H, W, 3) -> uint8 (F, size, size, 3): the `box` of every frame, resized (PIL antialiased bilinear).

    The cache (`vidiff data prepare`) and the on-the-fly folder loader share this function, so a
    cached clip equals the clip decoded on the fly bit for bit.
    """
    from PIL import Image

    F, H, W, _ = frames.shape
    if box == (0, 0, W, H) and H == W == size:
        return np.ascontiguousarray(frames)
    out = np.empty((F, size, size, 3), np.uint8)
    for f in range(F):
        out[f] = np.asarray(Image.fromarray(frames[f]).resize((size, size), Image.Resampling.BILINEAR, box=box))
    return out


def _grey(x: torch.Tensor) -> torch.Tensor:
    # ITU-R BT.601 luma weights, as in PIL's convert("L") and torchvision's rgb_to_grayscale.
    return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]).unsqueeze(-1)


def apply_augment(frames: np.ndarray, aug: ClipAugment, size: int) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> float32 (C, F, size, size) in [-1, 1], the same crop/flip/colour on every frame."""
    small = crop_resize(frames, aug.box, size)  # (F, size, size, 3) uint8
    x = torch.from_numpy(small).float() / 255.0  # (F, H, W, C) in [0, 1]
    if aug.flip:
        x = x.flip(2)
    if not aug.is_identity_colour:
        # The torchvision ColorJitter recipe, except that contrast blends with the mean grey of the
        # whole clip (not of each frame), so one affine map is applied to every frame.
        x = (x * aug.brightness).clamp(0, 1)
        x = (aug.contrast * x + (1 - aug.contrast) * _grey(x).mean()).clamp(0, 1)
        x = (aug.saturation * x + (1 - aug.saturation) * _grey(x)).clamp(0, 1)
    return (x * 2 - 1).permute(3, 0, 1, 2).contiguous()  # (C, F, H, W) in [-1, 1]
