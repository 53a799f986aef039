"""Datasets yielding dicts with a `video` tensor (C, F, H, W) in [-1, 1] plus metadata."""

from vidiff.data.shapes import BouncingShapes

__all__ = ["BouncingShapes", "build_dataset"]


def build_dataset(cfg, split: str = "train"):
    """Dataset for a `DataConfig`. The held-out split of `shapes` uses a different seed.

    `cfg.dataset` may also be a folder of videos (VideoFolder, decoded on the fly) or a cache
    written by `vidiff data prepare` (CachedClips); their "eval" split gives evenly spaced clips.
    """
    from pathlib import Path

    from vidiff.errors import ConfigError

    if cfg.dataset == "shapes":
        seed = cfg.seed if split == "train" else cfg.seed + 1_000_003
        return BouncingShapes(num_frames=cfg.num_frames, size=cfg.size, max_objects=cfg.max_objects,
                              seed=seed, length=cfg.length)
    path = Path(cfg.dataset).expanduser()
    if path.exists():
        from vidiff.data.cache import CachedClips, is_cache
        from vidiff.data.folder import VideoFolder

        if is_cache(path):
            return CachedClips.from_config(cfg, split)
        return VideoFolder.from_config(cfg, split)
    raise ConfigError(f"data.dataset {cfg.dataset!r} is neither 'shapes' nor an existing folder, video file or cache")
