"""Datasets yielding dicts with a `video` tensor (C, F, H, W) in [-1, 1] plus metadata."""

from vidiff.data.shapes import BouncingShapes

__all__ = ["BouncingShapes", "build_dataset"]


def build_dataset(cfg, split: str = "train"):
    """Dataset for a `DataConfig`. The held-out split of `shapes` uses a different seed."""
    from vidiff.errors import ConfigError

    if cfg.dataset == "shapes":
        seed = cfg.seed if split == "train" else cfg.seed + 1_000_003
        return BouncingShapes(num_frames=cfg.num_frames, size=cfg.size, max_objects=cfg.max_objects,
                              seed=seed, length=cfg.length)
    raise ConfigError(f"unknown dataset {cfg.dataset!r} (only 'shapes' is built in)")
