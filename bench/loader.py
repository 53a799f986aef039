"""Loader throughput: clips/s from a prepared cache against decoding a folder of videos on the fly.

Makes a folder of synthetic H.264 videos (moving rectangles over a scrolling gradient; or use
--src for real ones), prepares a cache from it with `vidiff.data.cache.prepare`, and then pulls
batches through a DataLoader exactly as the training loop does (its StepBatchSampler and
collate), for each source and number of worker processes. Prints a markdown table.

    python bench/loader.py                      # print the table
    python bench/loader.py --write              # also write it into docs/benchmarks.md (its own section)

Numbers on a shared CPU are noisy: run it when nothing else is running, or read them as rough.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402


def make_videos(folder: Path, count: int, frames: int, width: int, height: int, fps: float, gop: int) -> None:
    """Synthetic H.264 videos with motion everywhere (so the codec has real work), keyframes every `gop` frames."""
    from vidiff.io import encode_video

    yy, xx = np.mgrid[:height, :width]
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) % 256], -1).astype(np.uint8)
    for v in range(count):
        rng = np.random.default_rng(v)
        rects = rng.integers(0, [width - 80, height - 80, 256, 256, 256], (6, 5))
        vel = rng.integers(-6, 7, (6, 2))
        video = np.empty((frames, height, width, 3), np.uint8)
        for k in range(frames):
            f = np.roll(base, 3 * k + 7 * v, axis=1)
            for (x, y, r, g, b), (vx, vy) in zip(rects, vel):
                x2, y2 = (x + vx * k) % (width - 80), (y + vy * k) % (height - 80)
                f[y2:y2 + 60, x2:x2 + 80] = (r, g, b)
            video[k] = f
        encode_video(folder / f"video_{v:03d}.mp4", video, fps=fps,
                     options={"crf": "23", "preset": "veryfast", "g": str(gop)})


def measure(dataset, batch_size: int, batches: int, workers: int) -> float:
    """Clips per second through a DataLoader fed like the training loop's (after one warm-up batch)."""
    import torch
    from torch.utils.data import DataLoader

    from vidiff.training.loop import StepBatchSampler, _collate

    sampler = StepBatchSampler(len(dataset), batch_size, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=_collate, num_workers=workers,
                        persistent_workers=workers > 0)
    it = iter(loader)
    next(it)  # worker start-up and first decode
    t0 = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
        assert batch["video"].dtype == torch.float32
    seconds = time.perf_counter() - t0
    del it, loader
    return batches * batch_size / seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", help="folder of videos to use instead of generated ones")
    p.add_argument("--videos", type=int, default=8, help="generated videos (default: 8)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each generated video (default: 10)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--gop", type=int, default=48, help="keyframe interval of generated videos (default: 48 = 2 s)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (default: 16)")
    p.add_argument("--size", type=int, default=64, help="clip side (default: 64)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batches", type=int, default=12, help="timed batches per setting (default: 12)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers to try (default: 0 2)")
    p.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    args = p.parse_args(argv)

    import torch

    from vidiff.data.cache import CachedClips, prepare
    from vidiff.data.folder import VideoFolder

    torch.set_num_threads(1)  # data loading is what is measured, not torch's thread pool
    with tempfile.TemporaryDirectory(prefix="vidiff-bench-loader-") as tmp:
        tmp = Path(tmp)
        if args.src:
            src = Path(args.src)
            what = f"`{src}`"
        else:
            src = tmp / "videos"
            src.mkdir()
            n = int(round(args.seconds * args.fps))
            t0 = time.perf_counter()
            make_videos(src, args.videos, n, args.width, args.height, args.fps, args.gop)
            print(f"made {args.videos} videos in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            what = (f"{args.videos} synthetic H.264 videos, {args.width}x{args.height}, {n} frames at "
                    f"{args.fps:g} fps, keyframe every {args.gop} frames")
        cache = tmp / "cache"
        prep = prepare(src, cache, size=args.size, frames=args.frames, workers=min(2, os.cpu_count() or 1),
                       progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            folder = VideoFolder(src, num_frames=args.frames, size=args.size, progress=False)
            cached = CachedClips(cache, num_frames=args.frames, size=args.size)
        rows = []
        for name, ds in (("folder, decoded on the fly", folder), ("cache (`vidiff data prepare`)", cached)):
            for workers in args.workers:
                rate = measure(ds, args.batch_size, args.batches, workers)
                rows.append((name, workers, rate))
                print(f"{name:32s} workers={workers}: {rate:8.1f} clips/s", file=sys.stderr)

    on_the_fly = {w: r for name, w, r in rows if name.startswith("folder")}
    lines = [
        f"Clips of {args.frames} frames x {args.size}x{args.size} (centre crop + resize), batch {args.batch_size}, "
        f"{args.batches} timed batches after one warm-up, fed by the training loop's sampler. Source: {what}. "
        f"`prepare` (2 processes) took {prep['seconds']:.1f} s for {prep['files']} files -> {prep['clips']} clips.",
        "",
        "| source | DataLoader workers | clips/s | vs. on the fly |",
        "|---|---:|---:|---:|",
    ]
    for name, workers, rate in rows:
        lines.append(f"| {name} | {workers} | {rate:.1f} | {rate / on_the_fly[workers]:.1f}x |")
    command = "python bench/loader.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    lines += ["", f"Command: `{command.strip()}`", "",
              f"Load average when it finished: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on "
              f"{os.cpu_count()} cores: another process was training on the same CPU while this ran, so the "
              f"absolute numbers are noisy; the ratio between cache and folder is the point."]
    table = "\n".join(lines)
    print(table)
    if args.write:
        path = write_section("loader", "Data loader: cache vs. decoding on the fly", table)
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
