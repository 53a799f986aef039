"""VideoFolder: train on a folder of the user's own videos, decoding clips on the fly.

The folder is scanned recursively for video files (mp4, mov, avi, mkv, webm, gif) and for folders
of numbered images (png/jpg), each of which is one video. A `clip.txt` beside `clip.mp4` is its
caption; the name of the folder a video sits in is its class. Files that cannot be read are
skipped with a warning naming them, both while scanning and later while training (a file that
vanishes or breaks mid-run): the run goes on and `summary()` counts them.

Items have the layout of `BouncingShapes`: a dict whose `video` is (C, F, H, W) float32 in
[-1, 1], plus metadata (`caption`, `label`, `class_name`, `path`, `start`, `fps`), the same keys for
every item. Item i is a pure function of (seed, i) (and of which files have failed), so a resumed
run sees exactly the clips an uninterrupted one would have seen.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import uuid
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from vidiff.data.transforms import apply_augment, center_augment, sample_augment
from vidiff.errors import VidiffError
from vidiff.io import (DEFAULT_IMAGE_FPS, IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoInfo, VideoReadError,
                       image_sequence_files, probe_video, select_frames)

SHORT_POLICIES = ("skip", "loop", "pad")
CROPS = ("center", "random")


class VideoSkippedWarning(UserWarning):
    """A video was skipped (unreadable, too short, or failed while training); the message names it."""


# ----------------------------------------------------------------------------------------------
# Finding videos


def find_videos(root: str | Path) -> list[Path]:
    """Every video under `root`, sorted: files with a video suffix, and folders of numbered images.

    A folder counts as an image sequence when it holds numbered png/jpg files and no video file
    (so thumbnails beside videos are not mistaken for a video). Hidden files and folders are ignored.
    """
    root = Path(root)
    if root.is_file():
        return [root]
    found, visited = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:  # a symlink loop, or a folder linked twice
            dirnames[:] = []
            continue
        visited.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        names = [f for f in filenames if not f.startswith(".")]
        videos = [Path(dirpath) / f for f in names if Path(f).suffix.lower() in VIDEO_SUFFIXES]
        found.extend(videos)
        if not videos and any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in names):
            if image_sequence_files(dirpath):
                found.append(Path(dirpath))
    return sorted(found)


def sidecar_caption(path: Path) -> str:
    """The text of `<name>.txt` beside the video `<name>.<ext>` (or beside the image folder `<name>/`), else ''."""
    txt = path.with_suffix(".txt") if path.is_file() else path.parent / f"{path.name}.txt"
    try:
        return " ".join(txt.read_text(encoding="utf-8", errors="replace").split())
    except OSError:
        return ""


def class_name(path: Path, root: Path) -> str:
    """The name of the folder a video sits in ('' for videos directly inside `root`)."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return ""
    return rel.parent.name if rel.parent != Path(".") else ""


# ----------------------------------------------------------------------------------------------
# Skipped files, shared between DataLoader worker processes


def _remove_if_owner(path: str, owner: int) -> None:
    if os.getpid() == owner:  # a forked worker must not delete its parent's log
        try:
            os.remove(path)
        except OSError:
            pass


class SkipLog:
    """Files skipped while scanning and files that failed while training, with the reason for each.

    Failures inside DataLoader workers (other processes) are appended to a small temporary file
    that every copy of the dataset shares, so `summary()` in the main process counts them too.
    Each process warns once per file.
    """

    def __init__(self):
        self.scanned: list[tuple[str, str, str]] = []  # (path, kind "unreadable" | "short", reason)
        self._seen: dict[str, str] = {}
        self._path = os.path.join(tempfile.gettempdir(), f"vidiff-skipped-{os.getpid()}-{uuid.uuid4().hex}.tsv")
        weakref.finalize(self, _remove_if_owner, self._path, os.getpid())

    def skip_scanned(self, path: str, kind: str, reason: str) -> None:
        """Record (and warn about) a file left out while scanning."""
        self.scanned.append((path, kind, reason))
        warnings.warn(f"skipping {path}: {reason}", VideoSkippedWarning, stacklevel=3)

    def fail(self, path: str, reason: str) -> None:
        """Record (and warn once per process about) a file that failed while reading a clip."""
        if path in self._seen:
            return
        self._seen[path] = reason
        line = f"{path}\t{reason}".replace("\n", " ") + "\n"
        try:
            with open(self._path, "a", encoding="utf-8") as f:  # one short O_APPEND write: atomic between processes
                f.write(line)
        except OSError:
            pass
        warnings.warn(f"skipping {path} (it failed while reading a clip; using another video instead): {reason}",
                      VideoSkippedWarning, stacklevel=3)

    def failed(self) -> dict[str, str]:
        """Files that failed while reading clips, in this process or any DataLoader worker."""
        out = {}
        try:
            with open(self._path, encoding="utf-8") as f:
                for line in f:
                    path, _, reason = line.rstrip("\n").partition("\t")
                    out.setdefault(path, reason)
        except OSError:
            pass
        for path, reason in self._seen.items():
            out.setdefault(path, reason)
        return out

    def summary(self, usable: int) -> str:
        """One line: usable videos, and how many were skipped while scanning and while running, and why."""
        unreadable = sum(1 for _, kind, _ in self.scanned if kind == "unreadable")
        short = len(self.scanned) - unreadable
        failed = self.failed()
        text = f"{usable} usable videos; skipped while scanning: {unreadable} unreadable, {short} shorter than a clip"
        text += f"; failed while reading: {len(failed)}"
        if failed:
            text += " (" + ", ".join(f"{Path(p).name}: {r}" for p, r in list(failed.items())[:3])
            text += ", ..." if len(failed) > 3 else ""
            text += ")"
        return text


# ----------------------------------------------------------------------------------------------
# Clip geometry


def clip_offsets(num_frames: int, step: float) -> np.ndarray:
    """Frame offsets of a clip from its start: floor(k * step) for k < num_frames.

    `step` is the frame stride, or native fps / target fps (then frame k is the one shown at time
    k / target fps; a step below 1 repeats frames). The epsilon keeps float error from flooring an exact
    multiple one frame short: 25 * (5.6 / 5) is 27.999999999999996, not 28.
    """
    return np.floor(np.arange(num_frames) * step + 1e-6).astype(np.int64)


def evenly_spaced(j: int, count: int, max_start: int) -> int:
    """Start of the j-th of `count` evenly spaced clips in [0, max_start] (both ends if count > 1, else the middle)."""
    if count == 1:
        return max_start // 2
    return int(round(j * max_start / (count - 1)))


def clip_indices(num_available: int, offsets: np.ndarray, short: str, rng: Optional[np.random.Generator],
                 j: int = 0, count: int = 1) -> tuple[np.ndarray, int]:
    """Frame indices of one clip in a video of `num_available` frames, and the clip's start.

    rng given (training): a uniformly random start; rng None (evaluation): the j-th of `count`
    evenly spaced starts. Videos shorter than the clip are looped (from a random start when
    training) or padded by repeating their last frame, as `short` says.
    """
    needed = int(offsets[-1]) + 1
    if num_available >= needed:
        max_start = num_available - needed
        start = int(rng.integers(0, max_start + 1)) if rng is not None else evenly_spaced(j, count, max_start)
        return start + offsets, start
    if short == "loop":
        start = int(rng.integers(0, num_available)) if rng is not None else 0
        return (start + offsets) % num_available, start
    if short == "pad":
        return np.minimum(offsets, num_available - 1), 0
    raise ValueError(f"a video of {num_available} frames is shorter than the clip ({needed} frames)")


# ----------------------------------------------------------------------------------------------
# Datasets


@dataclasses.dataclass
class VideoRecord:
    """One usable video: where it is, how many frames a clip may use, and its caption and class."""

    path: str  # as given to the reader (file or image folder)
    name: str  # relative to the dataset root, for messages and the item's `path`
    num_frames: int
    fps: float
    step: float  # source frames per clip frame
    caption: str = ""
    class_name: str = ""
    label: int = -1
    extra: dict = dataclasses.field(default_factory=dict)  # loader-specific (the cache keeps shard offsets here)


class ClipDataset(Dataset):
    """Shared item logic of VideoFolder and CachedClips: index -> video, clip, augmentation, fallback.

    train: len = videos * clips_per_video; item i is video i % videos with a random clip and
    augmentation drawn from default_rng([seed, i, video]). eval: len = videos * eval_clips_per_video;
    item i is the (i % eval_clips_per_video)-th evenly spaced clip of video i // eval_clips_per_video,
    centre-cropped, not augmented. A video that fails to read is skipped with a warning and the
    next usable one (video + 1, + 2, ...) serves the item instead, so __getitem__ never raises for it.
    """

    root: str
    videos: list[VideoRecord]
    skips: SkipLog

    def __init__(self, num_frames: int, size: int, split: str, seed: int, clips_per_video: int,
                 eval_clips_per_video: int, crop: str, crop_scale: float, hflip: bool, color_jitter: float):
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
        if crop not in CROPS:
            raise VidiffError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
        self.num_frames, self.size, self.split, self.seed = num_frames, size, split, seed
        self.clips_per_video, self.eval_clips_per_video = clips_per_video, eval_clips_per_video
        self.crop, self.crop_scale, self.hflip, self.color_jitter = crop, crop_scale, hflip, color_jitter
        self._bad: set[int] = set()
        self._classes: Optional[tuple[str, ...]] = None  # set by use_classes

    # subclasses: (uint8 (F, H, W, 3) frames, start, fps) of one clip, raising on any read failure
    def _load(self, v: int, rng: Optional[np.random.Generator], j: int) -> tuple[np.ndarray, int, float]:
        raise NotImplementedError

    def __len__(self) -> int:
        per_video = self.clips_per_video if self.split == "train" else self.eval_clips_per_video
        return len(self.videos) * per_video

    def _locate(self, index: int) -> tuple[int, int]:
        if self.split == "train":
            return index % len(self.videos), 0
        return index // self.eval_clips_per_video, index % self.eval_clips_per_video

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        first, j = self._locate(int(index))
        n = len(self.videos)
        for attempt in range(n):
            v = (first + attempt) % n
            if v in self._bad:
                continue
            rng = np.random.default_rng([self.seed, int(index), v]) if self.split == "train" else None
            try:
                frames, start, fps = self._load(v, rng, j)  # (F, H, W, 3) uint8
            except Exception as e:  # noqa: BLE001 -- any failure of one file must not end the run
                reason = e.reason if isinstance(e, VideoReadError) else f"{type(e).__name__}: {e}"
                self._bad.add(v)
                self.skips.fail(self.videos[v].name, reason)
                continue
            H, W = frames.shape[1:3]
            if rng is not None:
                aug = sample_augment(rng, H, W, random_crop=self.crop == "random", crop_scale=self.crop_scale,
                                     hflip=self.hflip, color_jitter=self.color_jitter)
            else:
                aug = center_augment(H, W)
            rec = self.videos[v]
            return {
                "video": apply_augment(frames, aug, self.size),  # (C, F, size, size) in [-1, 1]
                "caption": rec.caption,
                "label": rec.label,
                "labels": torch.tensor([rec.label], dtype=torch.long),  # (1,): the class, -1 for none
                "class_name": rec.class_name,
                "path": rec.name,
                "start": start,
                "fps": float(fps),
            }
        raise VidiffError(f"every video in {self.root} failed to read ({self.summary()})")

    @property
    def classes(self) -> list[str]:
        """Class names (parent folder names) in label order."""
        if self._classes is not None:
            return list(self._classes)
        return sorted({r.class_name for r in self.videos if r.class_name})

    def use_classes(self, classes) -> None:
        """Label every video by its folder's place in `classes` (-1 if absent): the order a trained model knows,
        which need not be the sorted folder names found now (a folder may have been added or emptied since)."""
        self._classes = tuple(classes)
        for r in self.videos:
            r.label = self._classes.index(r.class_name) if r.class_name in self._classes else -1

    def summary(self) -> str:
        """One line: usable videos, and the files skipped while scanning and while reading clips."""
        return self.skips.summary(len(self.videos))

    def failed(self) -> dict[str, str]:
        """Files that failed while reading clips (in this process or any DataLoader worker) -> reason."""
        return self.skips.failed()


def _label_records(records: list[VideoRecord]) -> None:
    classes = sorted({r.class_name for r in records if r.class_name})
    for r in records:
        r.label = classes.index(r.class_name) if r.class_name else -1


def no_clip_error(root, num_frames: int, records: list[VideoRecord], fps: Optional[float],
                  step_text: str) -> VidiffError:
    """The one-line error for a clip longer than every video: it names the longest video found."""
    longest = max(records, key=lambda r: (r.num_frames - 1) / r.step)
    need = int(clip_offsets(num_frames, longest.step)[-1]) + 1
    if fps:
        return VidiffError(
            f"a clip of {num_frames} frames at {fps:g} fps spans {(num_frames - 1) / fps:.2f} s, but the longest video "
            f"in {root}, {longest.name}, lasts {(longest.num_frames - 1) / longest.fps:.2f} s ({longest.num_frames} "
            f"frames); lower data.num_frames, raise data.fps, or set data.short_videos=loop or pad")
    return VidiffError(
        f"a clip of {num_frames} frames {step_text} needs {need} frames, but the longest video in {root}, "
        f"{longest.name}, has {longest.num_frames}; lower data.num_frames or data.frame_stride, or set "
        f"data.short_videos=loop or pad")


class VideoFolder(ClipDataset):
    """Clips decoded on the fly from every video under `root` (see the module docstring).

    num_frames: frames per clip; frame_stride: take every k-th source frame, or fps: resample each
    video to this frame rate (then frame_stride is ignored); short_videos: "skip", "loop" or "pad"
    for videos shorter than a clip; size: clips are size x size (the chosen square of each frame is
    resized); crop "center" or "random" (train only, side in [crop_scale, 1] x the shorter side);
    hflip and color_jitter: train-only augmentations drawn once per clip.
    """

    def __init__(self, root: str | Path, num_frames: int = 16, size: int = 64, split: str = "train", seed: int = 0,
                 frame_stride: int = 1, fps: Optional[float] = None, short_videos: str = "skip",
                 clips_per_video: int = 100, eval_clips_per_video: int = 1, crop: str = "center",
                 crop_scale: float = 0.8, hflip: bool = False, color_jitter: float = 0.0,
                 image_fps: float = DEFAULT_IMAGE_FPS, progress: bool = True):
        super().__init__(num_frames, size, split, seed, clips_per_video, eval_clips_per_video, crop, crop_scale,
                         hflip, color_jitter)
        if short_videos not in SHORT_POLICIES:
            raise VidiffError(f"short_videos must be one of {', '.join(SHORT_POLICIES)}, got {short_videos!r}")
        root = Path(root).expanduser()
        if not root.exists():
            raise VidiffError(f"data folder not found: {root}")
        self.root, self.frame_stride, self.target_fps = str(root), frame_stride, fps
        self.short_videos, self.image_fps = short_videos, image_fps
        self.skips = SkipLog()
        self.videos = self._scan(root, progress)

    @classmethod
    def from_config(cls, cfg, split: str = "train", progress: bool = True) -> "VideoFolder":
        """A VideoFolder for a `DataConfig` whose `dataset` is a folder (or one video file)."""
        return cls(cfg.dataset, num_frames=cfg.num_frames, size=cfg.size, split=split, seed=cfg.seed,
                   frame_stride=cfg.frame_stride, fps=cfg.fps, short_videos=cfg.short_videos,
                   clips_per_video=cfg.clips_per_video, eval_clips_per_video=cfg.eval_clips_per_video,
                   crop=cfg.crop, crop_scale=cfg.crop_scale, hflip=cfg.hflip, color_jitter=cfg.color_jitter,
                   image_fps=cfg.image_fps, progress=progress)

    def _step(self, info: VideoInfo) -> float:
        return info.fps / self.target_fps if self.target_fps else float(self.frame_stride)

    def _scan(self, root: Path, progress: bool) -> list[VideoRecord]:
        from tqdm.auto import tqdm

        paths = find_videos(root)
        if not paths:
            raise VidiffError(f"no videos found in {root} (looked for {', '.join(VIDEO_SUFFIXES)} files and folders "
                              f"of numbered png/jpg images)")

        def probe(path: Path):
            try:
                return probe_video(path, self.image_fps)
            except VideoReadError as e:
                return e

        base = root if root.is_dir() else root.parent
        readable, records = [], []
        # Probes overlap in threads (most of a probe runs in ffmpeg): 1.8x faster with 4 threads on 2 cores.
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(tqdm(pool.map(probe, paths), total=len(paths), desc="scanning videos", unit="file",
                                disable=not progress, delay=2))
        for path, result in zip(paths, results):
            name = path.relative_to(base).as_posix() if path != base else path.name
            if isinstance(result, VideoReadError):
                self.skips.skip_scanned(name, "unreadable", result.reason)
                continue
            rec = VideoRecord(str(path), name, result.num_frames, result.fps, self._step(result),
                              sidecar_caption(path), class_name(path, base))
            readable.append(rec)
            needed = int(clip_offsets(self.num_frames, rec.step)[-1]) + 1
            if rec.num_frames < needed and self.short_videos == "skip":
                self.skips.skip_scanned(name, "short",
                                        f"{rec.num_frames} frames, shorter than a clip ({needed} frames)")
                continue
            records.append(rec)
        if not readable:
            first = self.skips.scanned[0]
            raise VidiffError(f"no usable video in {root}: all {len(paths)} found are unreadable "
                              f"(first: {first[0]}: {first[2]})")
        if not records:
            raise no_clip_error(root, self.num_frames, readable, self.target_fps,
                                f"with frame stride {self.frame_stride}")
        _label_records(records)
        return records

    def _load(self, v: int, rng, j: int) -> tuple[np.ndarray, int, float]:
        rec = self.videos[v]
        offsets = clip_offsets(self.num_frames, rec.step)
        indices, start = clip_indices(rec.num_frames, offsets, self.short_videos, rng, j, self.eval_clips_per_video)
        frames = dict(select_frames(rec.path, indices))
        return np.stack([frames[int(k)] for k in indices]), start, rec.fps / rec.step

