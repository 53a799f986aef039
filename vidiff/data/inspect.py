"""`vidiff data inspect SRC`: what a folder of videos (or a prepared cache) holds, and what cannot be read.

For a folder: file count, total duration, frame rates, resolutions and codecs, then every file that
cannot be read with the reason. `deep=True` decodes every frame of every file (slow) and so also
finds files that are damaged or truncated after their first frame.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from vidiff.data.folder import find_videos
from vidiff.errors import VidiffError
from vidiff.io import DEFAULT_IMAGE_FPS, VideoInfo, VideoReadError, probe_video, select_frames


@dataclasses.dataclass
class InspectReport:
    """Per-file results of inspecting a source folder."""

    source: str
    infos: list[tuple[str, VideoInfo]]  # (name relative to the source, info) of readable files
    errors: list[tuple[str, str]]  # (name, reason) of unreadable files

    @property
    def total_seconds(self) -> float:
        return sum(info.duration for _, info in self.infos)

    @property
    def total_frames(self) -> int:
        return sum(info.num_frames for _, info in self.infos)


def _deep_check(path: str, info: VideoInfo) -> None:
    """Decode every frame; raise VideoReadError if fewer than the header promised decode."""
    count = sum(1 for _ in select_frames(path, range(info.num_frames)))
    if count < info.num_frames:  # pragma: no cover - select_frames raises first
        raise VideoReadError(path, f"only {count} of {info.num_frames} frames decode")


def inspect_source(src: str | Path, deep: bool = False, image_fps: float = DEFAULT_IMAGE_FPS,
                   progress: bool = True) -> InspectReport:
    """Probe every video under `src` (and with `deep`, decode it fully); never raises for a bad file."""
    from tqdm.auto import tqdm

    src = Path(src).expanduser()
    if not src.exists():
        raise VidiffError(f"source not found: {src}")
    paths = find_videos(src)
    if not paths:
        raise VidiffError(f"no videos found in {src}")
    base = src if src.is_dir() else src.parent

    def check(path: Path):
        try:
            info = probe_video(path, image_fps)
            if deep:
                _deep_check(str(path), info)
            return info
        except VideoReadError as e:
            return e

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(tqdm(pool.map(check, paths), total=len(paths), desc="inspecting", unit="file",
                            disable=not progress, delay=2))
    infos, errors = [], []
    for path, result in zip(paths, results):
        name = path.relative_to(base).as_posix() if path != base else path.name
        if isinstance(result, VideoReadError):
            errors.append((name, result.reason))
        else:
            infos.append((name, result))
    return InspectReport(str(src), infos, errors)


def _counted(counter: Counter, limit: int = 8) -> str:
    items = counter.most_common()
    text = ", ".join(f"{key} ({n})" for key, n in items[:limit])
    return text + (f", ... {len(items) - limit} more" if len(items) > limit else "") if items else "-"


def _duration(seconds: float) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return (f"{int(h)} h " if h else "") + (f"{int(m)} min " if h or m else "") + f"{s:.1f} s"


def format_report(report: InspectReport, files: bool = False) -> str:
    """The report as a two-column table, then (optionally) one row per file, then the unreadable files."""
    fps = Counter(f"{info.fps:.3g}" for _, info in report.infos)
    sizes = Counter(f"{info.width}x{info.height}" for _, info in report.infos)
    codecs = Counter(info.codec for _, info in report.infos)
    kinds = Counter(info.kind for _, info in report.infos)
    n = len(report.infos) + len(report.errors)
    rows = [
        ("source", report.source),
        ("files", f"{n} ({len(report.infos)} readable, {len(report.errors)} unreadable)"),
        ("kinds", _counted(Counter({"video files": kinds["video"], "image folders": kinds["images"]}) - Counter())),
        ("total duration", f"{_duration(report.total_seconds)} ({report.total_frames} frames)"),
        ("fps", _counted(fps)),
        ("resolutions", _counted(sizes)),
        ("codecs", _counted(codecs)),
    ]
    lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    if files and report.infos:
        lines += ["", "| file | frames | fps | duration | size | codec |", "|---|---:|---:|---:|---|---|"]
        lines += [f"| {name} | {i.num_frames} | {i.fps:.3g} | {i.duration:.2f} s | {i.width}x{i.height} | {i.codec} |"
                  for name, i in report.infos]
    if report.errors:
        lines += ["", f"unreadable ({len(report.errors)}):"]
        lines += [f"  {name}: {reason}" for name, reason in report.errors]
    return "\n".join(lines)


def format_cache(path: str | Path, index: Optional[dict] = None) -> str:
    """A summary table of a prepared cache: parameters, clips, and the source files it could not use."""
    from vidiff.data.cache import read_index

    index = index or read_index(path)
    entries = index["files"]
    status = Counter(e["status"] for e in entries.values())
    ok = [e for e in entries.values() if e["status"] == "ok"]
    p = index["params"]
    F, S = index["clip_shape"][0], index["clip_shape"][1]
    rows = [
        ("cache", str(path)),
        ("source", index.get("source", "?")),
        ("clip", f"{F} frames x {S}x{S}, " + (f"resampled to {p['fps']:g} fps" if p["fps"] else f"stride {p['stride']}")
         + f", short videos: {p['short']}"),
        ("files", f"{len(entries)} ({status['ok']} ok, {status['short']} too short, {status['error']} unreadable)"),
        ("clips", f"{sum(e['clips'] for e in ok)} ({sum(e['clips'] for e in ok) * F * S * S * 3 / 2**20:.1f} MiB)"),
        ("fps", _counted(Counter(f"{e['fps']:.3g}" for e in ok))),
        ("resolutions", _counted(Counter(f"{e['width']}x{e['height']}" for e in ok))),
        ("codecs", _counted(Counter(e["codec"] for e in ok))),
    ]
    lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    bad = [(name, e) for name, e in sorted(entries.items()) if e["status"] != "ok"]
    if bad:
        lines += ["", f"not used ({len(bad)}):"] + [f"  {name}: {e.get('reason', e['status'])}" for name, e in bad]
    return "\n".join(lines)
