"""Datasets yielding dicts with a `video` tensor (C, F, H, W) in [-1, 1] plus metadata."""

from vidiff.data.shapes import BouncingShapes

__all__ = ["BouncingShapes", "build_dataset", "folder_classes"]


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
                              min_objects=cfg.min_objects, seed=seed, length=cfg.length, speed_scale=cfg.shape_speed,
                              still_fraction=cfg.still_fraction)
    path = Path(cfg.dataset).expanduser()
    if path.exists():
        from vidiff.data.cache import CachedClips, is_cache
        from vidiff.data.folder import VideoFolder

        data = CachedClips.from_config(cfg, split) if is_cache(path) else VideoFolder.from_config(cfg, split)
        if cfg.classes:  # a class-conditioned model: label videos in the order it was trained with
            data.use_classes(cfg.classes)
        return data
    raise ConfigError(f"data.dataset {cfg.dataset!r} is neither 'shapes' nor an existing folder, video file or cache")


def folder_classes(path) -> list[str]:
    """The class names of a video folder or cache without reading any video: the sorted names of the folders
    the videos sit in (videos directly inside `path` have none)."""
    from pathlib import Path

    from vidiff.data.cache import is_cache, read_index
    from vidiff.data.folder import class_name, find_videos

    path = Path(path).expanduser()
    if is_cache(path):
        names = {e.get("class", "") for e in read_index(path)["files"].values() if e.get("status") == "ok"}
    elif path.is_dir():
        names = {class_name(p, path) for p in find_videos(path)}
    else:  # a single video file: no classes
        names = set()
    return sorted(n for n in names if n)
