"""Where along a clip objects grow or shrink: the object area of each frame over the clip's mean, averaged over
clips, for samples written by `vidiff sample` (samples.npy) against held-out real `shapes` clips.

    python bench/size_profile.py runs/x/samples/samples.npy [more.npy ...] [--real 48]

Object pixels are those whose brightest channel is above half (as in bench/sample_checks.py). Real clips keep their
objects' size, so their profile is flat except where objects overlap; a profile that rises along the clip means
objects grow as it plays.
"""
from __future__ import annotations

import argparse

import numpy as np


def area_profile(videos: np.ndarray) -> tuple[np.ndarray, float, float]:
    """videos: uint8 (N, F, H, W, 3) -> (mean relative area per frame (F,), mean object share of the pixels,
    share of clips whose last frame's area is over 1.5x the first's)."""
    from vidiff.evaluation.metrics import centroid_steps

    _, _, area = centroid_steps(videos)  # object pixels per frame (N, F)
    keep = area.mean(1) > 0
    rel = area[keep] / area[keep].mean(1, keepdims=True)
    grows = float((area[keep, -1] > 1.5 * np.maximum(area[keep, 0], 1)).mean())
    return rel.mean(0), float(area.mean() / (videos.shape[2] * videos.shape[3])), grows


def real_clips(num: int) -> np.ndarray:
    """`num` held-out clips of the demo's data as uint8 (N, F, H, W, 3), quantised like `vidiff sample`'s output."""
    from vidiff.config import DataConfig
    from vidiff.data import build_dataset

    ds = build_dataset(DataConfig(dataset="shapes", num_frames=16, size=32, max_objects=2), "eval")
    vids = [((ds[i]["video"].permute(1, 2, 3, 0).numpy() + 1) * 127.5).round().clip(0, 255) for i in range(num)]
    return np.stack(vids).astype(np.uint8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("samples", nargs="+", help="samples.npy files, uint8 (N, F, H, W, 3)")
    p.add_argument("--real", type=int, default=48, help="held-out real clips to compare with")
    args = p.parse_args()
    rows = [(f"real ({args.real} held-out clips)", real_clips(args.real))]
    rows += [(path, np.load(path)) for path in args.samples]
    for name, videos in rows:
        prof, share, grows = area_profile(videos)
        thirds = np.array_split(prof, 3)
        print(f"{name}: object pixels {share:.3f}; area over the clip's mean, first / middle / last third "
              f"{thirds[0].mean():.2f} / {thirds[1].mean():.2f} / {thirds[2].mean():.2f}; last frame > 1.5x first "
              f"in {grows:.2f} of the clips; per frame: {' '.join(f'{x:.2f}' for x in prof)}")


if __name__ == "__main__":
    main()
