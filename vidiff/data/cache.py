"""A preprocessed clip cache: decode every video once, in parallel, then train from uint8 shards.

`vidiff data prepare SRC --out CACHE --size 64 --frames 16 [--stride K]` cuts every video under
SRC into consecutive, non-overlapping clips of `frames` frames (every `stride`-th source frame, or
resampled to `fps`), centre-crops each frame to a square and resizes it to size x size, and writes:

  CACHE/index.json               what was done: parameters, clip shape, and for each source file its
                                 status ("ok", "short" or "error"), shard, clip starts, caption, class,
                                 and the reason it failed
  CACHE/shards/NNNNNNNN.u8       one file per source video: raw uint8 (clips, F, size, size, 3), C order:
                                 np.memmap(path, np.uint8, "r", shape=(clips, F, size, size, 3)) opens it

Each shard is written under a temporary name and renamed when complete, and index.json is
rewritten atomically (temp file + rename), so an interrupted prepare loses at most the files in
flight. Running prepare again resumes: files whose size and modification time are unchanged since
they were recorded are skipped, whatever their status; changed files are prepared again; entries of
source files that have since disappeared are kept (their clips stay valid).

`CachedClips` reads such a cache as a dataset with the item layout and indexing of `VideoFolder`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sys
import time
from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Optional

import numpy as np

from vidiff.data.folder import (SHORT_POLICIES, ClipDataset, SkipLog, VideoRecord, _label_records, class_name,
                                clip_indices, clip_offsets, evenly_spaced, find_videos, sidecar_caption)
from vidiff.data.transforms import center_box, crop_resize
from vidiff.errors import VidiffError
from vidiff.io import DEFAULT_IMAGE_FPS, IMAGE_SUFFIXES, VideoReadError, probe_video, select_frames

FORMAT = "vidiff-clip-cache"
VERSION = 1
INDEX = "index.json"
SHARDS = "shards"
_SHARD_NAME = re.compile(r"^\d{8}\.u8(\.tmp)?$")


def is_cache(path: str | Path) -> bool:
    """True when `path` is a folder written by `prepare` (its index.json says so)."""
    index = Path(path) / INDEX
    if not index.is_file():
        return False
    try:
        return json.loads(index.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_index(path: str | Path) -> dict:
    """The parsed index.json of a cache; a one-line VidiffError if `path` is not a readable cache."""
    path = Path(path)
    try:
        index = json.loads((path / INDEX).read_text())
    except (OSError, ValueError) as e:
        raise VidiffError(f"{path} is not a readable vidiff cache ({INDEX}: {e})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise VidiffError(f"{path / INDEX} is not a vidiff cache index")
    if index.get("version") != VERSION:
        raise VidiffError(f"{path} is a version {index.get('version')} cache; this vidiff reads version {VERSION}")
    return index


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # readers see the old index or the new one, never half of one


def _signature(path: Path) -> list[int]:
    """[bytes, latest mtime in ns] of a file, or of the images of a numbered-image folder (changes with the video)."""
    if path.is_dir():
        stats = [p.stat() for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        return [sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)]
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _clip_starts(num_available: int, offsets: np.ndarray, step: float, max_clips: Optional[int]) -> list[int]:
    """Starts of consecutive, non-overlapping clips: each begins where the previous one's time span ends."""
    needed = int(offsets[-1]) + 1
    hop = max(len(offsets) * step, 1.0)  # source frames spanned by one clip
    count = int(np.floor((num_available - needed) / hop + 1e-6)) + 1
    starts = [int(np.floor(c * hop + 1e-6)) for c in range(count)]
    if max_clips and count > max_clips:  # spread the kept clips over the whole video
        keep = np.unique(np.round(np.linspace(0, count - 1, max_clips)).astype(int))
        starts = [starts[k] for k in keep]
    return starts


def prepare_file(path: str, shard: str, params: dict) -> dict:
    """Decode one video into a shard of uint8 clips (clips, F, size, size, 3); return its index entry.

    Runs in a worker process. Never raises for a bad file: the entry says "error" and why.
    """
    size, frames, short = params["size"], params["frames"], params["short"]
    try:
        info = probe_video(path, params["image_fps"])
        step = info.fps / params["fps"] if params["fps"] else float(params["stride"])
        offsets = clip_offsets(frames, step)
        entry = {"frames": info.num_frames, "fps": info.fps, "width": info.width, "height": info.height,
                 "codec": info.codec, "step": step}
        needed = int(offsets[-1]) + 1
        if info.num_frames >= needed:
            starts = _clip_starts(info.num_frames, offsets, step, params["max_clips_per_video"])
            clips = [s + offsets for s in starts]
        elif short == "skip":
            return {**entry, "status": "short",
                    "reason": f"{info.num_frames} frames, shorter than a clip ({needed} frames)"}
        else:
            indices, start = clip_indices(info.num_frames, offsets, short, None)
            starts, clips = [start], [indices]
        wanted: dict[int, list[tuple[int, int]]] = {}  # source frame -> the (clip, frame) slots it fills
        for c, indices in enumerate(clips):
            for f, k in enumerate(indices):
                wanted.setdefault(int(k), []).append((c, f))
        tmp = shard + ".tmp"
        Path(tmp).parent.mkdir(parents=True, exist_ok=True)
        out = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(len(clips), frames, size, size, 3))
        box = None
        # Frames stream through one at a time: a long video never has to fit in memory.
        for k, frame in select_frames(path, sorted(wanted)):
            if box is None:
                box = center_box(*frame.shape[:2])
            small = crop_resize(frame[None], box, size)[0]
            for c, f in wanted[k]:
                out[c, f] = small
        out.flush()
        del out
        os.replace(tmp, shard)
        return {**entry, "status": "ok", "clips": len(clips), "starts": starts}
    except VideoReadError as e:
        return {"status": "error", "reason": e.reason}
    except Exception as e:  # noqa: BLE001 -- one bad file must not stop a long prepare
        return {"status": "error", "reason": f"{type(e).__name__}: {e}"}
    finally:
        try:
            os.remove(shard + ".tmp")
        except OSError:
            pass


def prepare(src: str | Path, out: str | Path, size: int = 64, frames: int = 16, stride: int = 1,
            fps: Optional[float] = None, short: str = "skip", max_clips_per_video: Optional[int] = None,
            image_fps: float = DEFAULT_IMAGE_FPS, workers: Optional[int] = None, progress: bool = True,
            save_every: float = 2.0) -> dict:
    """Decode every video under `src` into the clip cache `out` (see the module docstring); resumable.

    workers: decoding processes (default: all CPU cores; 1 decodes in this process). Returns a
    summary dict: files found, already done, newly prepared, short, errors, total clips, seconds.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if short not in SHORT_POLICIES:
        raise VidiffError(f"--short must be one of {', '.join(SHORT_POLICIES)}, got {short!r}")
    if size < 1 or frames < 1 or stride < 1 or (fps is not None and fps <= 0):
        raise VidiffError("size, frames and stride must be >= 1 and fps > 0")
    if not src.exists():
        raise VidiffError(f"source not found: {src}")
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise VidiffError(f"put the cache outside the source folder (got --out {out} inside {src})")
    params = {"size": size, "frames": frames, "stride": stride, "fps": fps, "short": short,
              "max_clips_per_video": max_clips_per_video, "image_fps": image_fps}
    paths = find_videos(src)
    if not paths:
        raise VidiffError(f"no videos found in {src}")
    base = src if src.is_dir() else src.parent

    out.mkdir(parents=True, exist_ok=True)
    if (out / INDEX).exists():
        index = read_index(out)
        if index["params"] != params:
            diff = ", ".join(f"{k} {index['params'].get(k)} (now {v})" for k, v in params.items()
                             if index["params"].get(k) != v)
            raise VidiffError(f"{out} was prepared with other settings: {diff}; choose another --out")
    else:
        index = {"format": FORMAT, "version": VERSION, "source": str(src.resolve()), "params": params,
                 "clip_shape": [frames, size, size, 3], "files": {}}
    files = index["files"]
    # Remove shard files the index does not reference: leftovers of an interrupted run.
    referenced = {e.get("shard") for e in files.values()}
    (out / SHARDS).mkdir(exist_ok=True)
    for p in (out / SHARDS).iterdir():
        if _SHARD_NAME.match(p.name) and f"{SHARDS}/{p.name}" not in referenced:
            p.unlink()
    next_id = 1 + max((int(Path(e["shard"]).stem) for e in files.values() if e.get("shard")), default=-1)

    todo = []
    for path in paths:
        rel = path.relative_to(base).as_posix() if path != base else path.name
        try:
            sig = _signature(path)
        except OSError:
            sig = None
        entry = files.get(rel)
        if entry is not None and sig is not None and entry.get("signature") == sig:
            continue
        todo.append((path, rel, sig))
    done_before = len(paths) - len(todo)

    counts = {"ok": 0, "short": 0, "error": 0}
    last_save = time.perf_counter()

    def record(path: Path, rel: str, sig, shard: str, result: dict) -> None:
        nonlocal last_save
        old = files.get(rel, {}).get("shard")
        if old and old != shard and (out / old).exists():
            (out / old).unlink()  # the source changed: its old clips are replaced
        result.update(signature=sig, caption=sidecar_caption(path), **{"class": class_name(path, base)})
        if result["status"] == "ok":
            result["shard"] = shard
        files[rel] = result
        counts[result["status"]] += 1
        if result["status"] != "ok":
            bar.write(f"skipping {rel}: {result['reason']}", file=sys.stderr)
        if time.perf_counter() - last_save > save_every:
            _write_json_atomic(out / INDEX, index)
            last_save = time.perf_counter()

    jobs = []
    for path, rel, sig in todo:
        jobs.append((path, rel, sig, f"{SHARDS}/{next_id:08d}.u8"))
        next_id += 1
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(jobs), desc="preparing clips", unit="video", disable=not progress or not jobs,
               dynamic_ncols=True)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for path, rel, sig, shard in jobs:
                record(path, rel, sig, shard, prepare_file(str(path), str(out / shard), params))
                bar.update(1)
        else:
            # fork on Linux: spawn would re-run the caller's script in every worker (no __main__ guard
            # needed this way); the workers use only PyAV and PIL, none of the parent's threads.
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
                queue, pending = iter(jobs), {}

                def submit() -> None:
                    job = next(queue, None)
                    if job is not None:
                        pending[pool.submit(prepare_file, str(job[0]), str(out / job[3]), params)] = job

                for _ in range(2 * workers):  # a bounded window: results never pile up in memory
                    submit()
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        path, rel, sig, shard = pending.pop(future)
                        record(path, rel, sig, shard, future.result())
                        bar.update(1)
                        submit()
    except BrokenProcessPool:
        raise VidiffError("a decoding process died (out of memory, or ffmpeg crashed on a file); what finished is "
                          "saved: run prepare again to resume, with --workers 1 to find the file") from None
    finally:
        bar.close()
        _write_json_atomic(out / INDEX, index)
    usable = [e for e in files.values() if e["status"] == "ok"]
    return {"files": len(paths), "done_before": done_before, "prepared": counts["ok"], "short": counts["short"],
            "errors": counts["error"], "videos": len(usable), "clips": sum(e["clips"] for e in usable),
            "seconds": round(time.perf_counter() - t0, 2), "out": str(out)}


class CachedClips(ClipDataset):
    """Clips from a cache written by `prepare`, with VideoFolder's item layout, indexing and fallback.

    Each usable source video is one `video`; training draws one of its cached clips, a window of
    num_frames frames inside it, and the augmentation from default_rng([seed, i, video]).
    num_frames and size may be smaller than the cache's (a window of frames; a square crop resized
    down), never larger.

    Clips are read with pread from file descriptors opened lazily in each process (DataLoader
    workers too), not through a memory map: a shard that is truncated or rewritten while mapped
    kills the process with SIGBUS, whereas a short read is an error that is caught, warned about
    and skipped like any other bad file. The page cache makes both equally fast.
    """

    def __init__(self, path: str | Path, num_frames: Optional[int] = None, size: Optional[int] = None,
                 split: str = "train", seed: int = 0, clips_per_video: int = 100, eval_clips_per_video: int = 1,
                 crop: str = "center", crop_scale: float = 0.8, hflip: bool = False, color_jitter: float = 0.0):
        path = Path(path).expanduser()
        index = read_index(path)
        cf, cs = index["clip_shape"][0], index["clip_shape"][1]
        num_frames, size = num_frames or cf, size or cs
        if num_frames > cf or size > cs:
            raise VidiffError(f"cache {path} holds clips of {cf} frames at {cs}x{cs}; {num_frames} frames at "
                              f"{size}x{size} need another cache (vidiff data prepare --frames {num_frames} "
                              f"--size {size})")
        super().__init__(num_frames, size, split, seed, clips_per_video, eval_clips_per_video, crop, crop_scale,
                         hflip, color_jitter)
        self.root, self.index_params, self.clip_shape = str(path), index["params"], tuple(index["clip_shape"])
        self.skips = SkipLog()
        clip_bytes = int(np.prod(self.clip_shape))
        records = []
        for rel in sorted(index["files"]):
            e = index["files"][rel]
            if e["status"] != "ok":
                kind = "short" if e["status"] == "short" else "unreadable"
                self.skips.scanned.append((rel, kind, e.get("reason", "")))  # warned about by prepare already
                continue
            shard = path / e["shard"]
            try:
                ok = shard.stat().st_size == e["clips"] * clip_bytes
            except OSError:
                ok = False
            if not ok:
                self.skips.skip_scanned(rel, "unreadable", f"cache shard {e['shard']} is missing or has the wrong size")
                continue
            records.append(VideoRecord(str(shard), rel, e["frames"], e["fps"], e["step"], e.get("caption", ""),
                                       e.get("class", ""), extra={"clips": e["clips"], "starts": e["starts"]}))
        if not records:
            raise VidiffError(f"cache {path} holds no usable clips ({len(index['files'])} source files, none ok)")
        _label_records(records)
        self.videos = records
        self._fds: OrderedDict[str, int] = OrderedDict()

    @classmethod
    def from_config(cls, cfg, split: str = "train") -> "CachedClips":
        """A CachedClips for a `DataConfig` whose `dataset` is a cache; stride/fps must agree with the cache's."""
        self = cls(cfg.dataset, num_frames=cfg.num_frames, size=cfg.size, split=split, seed=cfg.seed,
                   clips_per_video=cfg.clips_per_video, eval_clips_per_video=cfg.eval_clips_per_video,
                   crop=cfg.crop, crop_scale=cfg.crop_scale, hflip=cfg.hflip, color_jitter=cfg.color_jitter)
        p = self.index_params
        if cfg.fps is not None and cfg.fps != p["fps"]:
            raise VidiffError(f"data.fps={cfg.fps} but the cache {cfg.dataset} was prepared at fps {p['fps']}")
        if cfg.fps is None and cfg.frame_stride != 1 and cfg.frame_stride != p["stride"]:
            raise VidiffError(f"data.frame_stride={cfg.frame_stride} but the cache {cfg.dataset} was prepared with "
                              f"stride {p['stride']}")
        return self

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fds"] = OrderedDict()  # file descriptors are reopened in each worker process, never pickled
        return state

    def __del__(self):
        for fd in getattr(self, "_fds", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass

    def _read(self, rec: VideoRecord, clip: int, first: int, count: int) -> np.ndarray:
        """Frames first..first+count-1 of cached clip `clip` of `rec`: uint8 (count, S, S, 3)."""
        fd = self._fds.get(rec.path)
        if fd is None:
            fd = os.open(rec.path, os.O_RDONLY)
            self._fds[rec.path] = fd
            if len(self._fds) > 64:  # bound the open descriptors
                os.close(self._fds.popitem(last=False)[1])
        else:
            self._fds.move_to_end(rec.path)
        F, S = self.clip_shape[0], self.clip_shape[1]
        frame_bytes = S * S * 3
        buf = bytearray(count * frame_bytes)
        got = os.preadv(fd, [buf], (clip * F + first) * frame_bytes)
        if got != len(buf):
            raise VideoReadError(rec.name, f"cache shard {Path(rec.path).name} ends early (truncated?)")
        return np.frombuffer(buf, np.uint8).reshape(count, S, S, 3)

    def clip(self, v: int, c: int) -> np.ndarray:
        """The c-th cached clip of video v, uint8 (F, size, size, 3), exactly as prepare wrote it."""
        return self._read(self.videos[v], c, 0, self.clip_shape[0])

    def _load(self, v: int, rng, j: int) -> tuple[np.ndarray, int, float]:
        rec = self.videos[v]
        count, cf = rec.extra["clips"], self.clip_shape[0]
        if rng is not None:
            c, o = int(rng.integers(0, count)), int(rng.integers(0, cf - self.num_frames + 1))
        else:
            c, o = evenly_spaced(j, self.eval_clips_per_video, count - 1), (cf - self.num_frames) // 2
        frames = self._read(rec, c, o, self.num_frames)  # (F, S, S, 3)
        start = rec.extra["starts"][c] + int(clip_offsets(o + 1, rec.step)[-1])
        return frames, start, rec.fps / rec.step
