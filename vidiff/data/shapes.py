"""BouncingShapes: the built-in procedural dataset (no download).

Each clip shows 1..max_objects shapes (circle, square, triangle) in distinct saturated colours on
black, each moving at constant velocity and bouncing elastically off the frame edges. Item i is a
pure function of (seed, i). Shapes are rendered with 4x4 supersampling so that sub-pixel motion is
smooth rather than jumping a pixel at a time.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

SHAPES = ("circle", "square", "triangle")
COLORS = {  # name -> RGB in [0, 1]
    "red": (1.0, 0.1, 0.1),
    "green": (0.1, 0.9, 0.1),
    "blue": (0.2, 0.35, 1.0),
    "yellow": (1.0, 0.9, 0.1),
    "magenta": (1.0, 0.2, 1.0),
    "cyan": (0.1, 0.9, 1.0),
}
COLOR_NAMES = tuple(COLORS)
SUPERSAMPLE = 4
# The label vocabulary of label-conditioned models: one label per (colour, shape) pair of an object.
LABELS = tuple(f"{c} {s}" for c in COLOR_NAMES for s in SHAPES)  # "red circle", "red square", ...


def object_labels(label_shape: torch.Tensor, label_color: torch.Tensor) -> torch.Tensor:
    """(..., max_objects) shape and colour indices (-1 past the last object) -> label indices into LABELS (-1 kept)."""
    return torch.where(label_shape >= 0, label_color * len(SHAPES) + label_shape, torch.full_like(label_shape, -1))


def labels_caption(labels) -> str:
    """Label indices (-1 ignored) -> a caption such as "a red circle and a blue square" ("" for none)."""
    words = [LABELS[int(k)].split() for k in labels if int(k) >= 0]
    return caption([s for _, s in words], [c for c, _ in words]) if words else ""


def parse_caption(text: str, max_objects: int) -> list[int]:
    """A caption in the dataset's words ("a red circle and a blue square", "green triangle") -> label indices.
    Raises ValueError naming the first word it cannot place."""
    import re

    words = [w for w in re.split(r"[\s,]+", text.lower()) if w and w not in ("a", "an", "and", "one")]
    labels, colour = [], None
    for w in words:
        w = w[:-1] if w.endswith("s") and w[:-1] in SHAPES else w  # "squares" -> "square"
        if w in COLORS and colour is None:
            colour = w
        elif w in SHAPES and colour is not None:
            labels.append(LABELS.index(f"{colour} {w}"))
            colour = None
        else:
            expect = "a shape" if colour else "a colour"
            raise ValueError(f"cannot read {text!r}: expected {expect} at {w!r} (colours: {', '.join(COLOR_NAMES)}; "
                             f"shapes: {', '.join(SHAPES)})")
    if colour is not None or not labels:
        raise ValueError(f"cannot read {text!r}: describe each object as a colour and a shape, e.g. 'a red circle'")
    if len(labels) > max_objects:
        raise ValueError(f"{text!r} has {len(labels)} objects; this model was trained with at most {max_objects}")
    if len({LABELS[k].split()[0] for k in labels}) < len(labels):
        raise ValueError(f"{text!r}: objects of one clip have distinct colours in this dataset")
    return labels


def bounce(start: np.ndarray, velocity: np.ndarray, lo: np.ndarray, hi: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Position of a point moving at constant velocity inside [lo, hi], reflecting elastically at the ends.

    Unfolding the reflections turns the path into a triangle wave of period 2 (hi - lo).
    start, velocity, lo, hi: (..., D); frames: (F,) -> (F, ..., D)
    """
    span = np.maximum(hi - lo, 1e-6)
    u = np.mod(start - lo + velocity * frames.reshape((-1,) + (1,) * start.ndim), 2 * span)
    return lo + np.where(u <= span, u, 2 * span - u)


def shape_mask(kind: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Inside-test of a shape of 'radius' r centred at the origin, for offsets dx, dy (y pointing down)."""
    if kind == "circle":
        return dx**2 + dy**2 <= r**2
    if kind == "square":
        half = r * 0.85
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    # Upward equilateral triangle inscribed in the circle of radius r.
    bottom = dy <= r / 2
    slope = np.sqrt(3.0)
    return bottom & (slope * dx - dy <= r) & (-slope * dx - dy <= r)


def caption(shapes: list[str], colors: list[str]) -> str:
    parts = [f"a {c} {s}" for s, c in zip(shapes, colors)]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


class BouncingShapes(Dataset):
    """Clips of bouncing shapes.

    Each item is a dict: `video` (C, F, H, W) float32 in [-1, 1]; `label_shape`, `label_color`
    (max_objects,) long, -1 past `num_objects`; `labels` (max_objects,) long, indices into LABELS (one per object,
    -1 past `num_objects`); `caption` str; `centers` (F, max_objects, 2) float
    (x, y) in pixels, -1 past `num_objects`; `velocity` (max_objects, 2) pixels per frame.
    """

    def __init__(self, num_frames: int = 16, size: int = 32, max_objects: int = 3, seed: int = 0,
                 length: int = 100_000, min_objects: int = 1, speed_scale: float = 1.0, still_fraction: float = 0.0):
        if not 1 <= min_objects <= max_objects <= len(COLORS):
            raise ValueError(f"need 1 <= min_objects <= max_objects <= {len(COLORS)}")
        self.num_frames, self.size, self.max_objects = num_frames, size, max_objects
        self.min_objects, self.seed, self.length = min_objects, seed, length
        if speed_scale < 0:
            raise ValueError(f"speed_scale must be >= 0, got {speed_scale}")
        self.speed_scale = speed_scale  # multiplies every object's speed (0: still clips, the same layout in every frame)
        if not 0 <= still_fraction <= 1:
            raise ValueError(f"still_fraction must be in [0, 1], got {still_fraction}")
        self.still_fraction = still_fraction  # this share of the clips (chosen by seed and index) does not move at all
        ss = SUPERSAMPLE
        coords = (np.arange(size * ss) + 0.5) / ss  # sub-pixel centres, in pixel units
        self._gx, self._gy = np.meshgrid(coords, coords)  # (S, S)

    def __len__(self) -> int:
        return self.length

    def objects(self, index: int) -> dict:
        """The random parameters of item `index` (deterministic in seed and index)."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        n = int(rng.integers(self.min_objects, self.max_objects + 1))
        s = self.size
        radius = rng.uniform(0.12, 0.22, n) * s
        lo, hi = radius[:, None], s - radius[:, None]
        start = rng.uniform(lo, hi, (n, 2))
        speed = rng.uniform(0.5, 1.5, n) * s / 32 * self.speed_scale
        # A still clip is drawn from its own stream, so that the other clips stay what they are without it
        if self.still_fraction > 0 and np.random.default_rng([self.seed, index, 1]).random() < self.still_fraction:
            speed = speed * 0
        angle = rng.uniform(0, 2 * np.pi, n)
        velocity = np.stack([np.cos(angle), np.sin(angle)], 1) * speed[:, None]
        return {
            "shapes": [SHAPES[k] for k in rng.integers(0, len(SHAPES), n)],
            "colors": [COLOR_NAMES[k] for k in rng.permutation(len(COLOR_NAMES))[:n]],
            "radius": radius,
            "centers": bounce(start, velocity, lo, hi, np.arange(self.num_frames, dtype=np.float64)),  # (F, n, 2)
            "velocity": velocity,
        }

    def labels(self, index: int) -> torch.Tensor:
        """(max_objects,) long: item `index`'s object labels (indices into LABELS, -1 past the last object),
        without rendering it."""
        return object_labels(*self._shape_and_colour(self.objects(index)))

    def _shape_and_colour(self, obj: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(max_objects,) long shape and colour indices of `objects()`' output, -1 past the last object."""
        n, m = len(obj["shapes"]), self.max_objects
        label_shape = torch.full((m,), -1, dtype=torch.long)
        label_color = torch.full((m,), -1, dtype=torch.long)
        label_shape[:n] = torch.tensor([SHAPES.index(x) for x in obj["shapes"]])
        label_color[:n] = torch.tensor([COLOR_NAMES.index(x) for x in obj["colors"]])
        return label_shape, label_color

    def render(self, obj: dict) -> np.ndarray:
        """(F, H, W, 3) float32 in [0, 1]; later objects are drawn over earlier ones."""
        F, s, ss = self.num_frames, self.size, SUPERSAMPLE
        top = np.zeros((F, s * ss, s * ss), dtype=np.uint8)  # which object is on top of each sub-pixel (0: none)
        coords = self._gx[0]  # sub-pixel centres along one axis
        for k, kind in enumerate(obj["shapes"]):
            r = obj["radius"][k]
            for f in range(F):  # test only the sub-pixels inside the shape's bounding box
                cx, cy = obj["centers"][f, k]
                x0, x1 = np.searchsorted(coords, [cx - r, cx + r])
                y0, y1 = np.searchsorted(coords, [cy - r, cy + r])
                mask = shape_mask(kind, coords[None, x0:x1] - cx, coords[y0:y1, None] - cy, r)
                top[f, y0:y1, x0:x1][mask] = k + 1
        # Box-filter each object's sub-pixel coverage down to the output size (anti-aliasing) and colour it.
        frames = np.zeros((F, s, s, 3), dtype=np.float32)
        for k, color in enumerate(obj["colors"]):
            cover = (top == k + 1).reshape(F, s, ss, s, ss).sum(axis=(2, 4), dtype=np.float32) / ss**2
            frames += cover[..., None] * np.asarray(COLORS[color], dtype=np.float32)
        return frames

    def __getitem__(self, index: int) -> dict:
        obj = self.objects(index)
        frames = self.render(obj)  # (F, H, W, 3) in [0, 1]
        n, m = len(obj["shapes"]), self.max_objects
        label_shape, label_color = self._shape_and_colour(obj)
        centers = torch.full((self.num_frames, m, 2), -1.0)
        centers[:, :n] = torch.from_numpy(obj["centers"]).float()
        velocity = torch.zeros(m, 2)
        velocity[:n] = torch.from_numpy(obj["velocity"]).float()
        # (C, F, H, W) in [-1, 1], made in numpy: tiny torch ops pay the thread pool's overhead in a loader loop
        video = torch.from_numpy(np.ascontiguousarray(frames.transpose(3, 0, 1, 2)) * 2 - 1)
        return {
            "video": video,
            "num_objects": n,
            "label_shape": label_shape,
            "label_color": label_color,
            "labels": object_labels(label_shape, label_color),  # (max_objects,) indices into LABELS, -1 past n
            "caption": caption(obj["shapes"], obj["colors"]),
            "centers": centers,
            "velocity": velocity,
        }
