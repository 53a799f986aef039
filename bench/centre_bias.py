"""Where the objects of saved samples sit: their distance from the frame's centre, against real `shapes` clips.

    python bench/centre_bias.py NPZ [NPZ ...] [--real 256]

Each NPZ is what `bench/sampler_probe.py --save` writes (videos (N, C, F, H, W) in [-1, 1], labels) or its
`--trajectory` file (x0 estimates (N, K, C, F, H, W); every estimate is scored). Prints, per file, the mean distance
in pixels of each object's centroid from the frame's centre (`sample_checks.centre_distance`) and, for clips asked
for two objects, how many keep both in every frame (`sample_checks.asked_kept`) and how many show each in one piece
(`sample_checks.asked_kept(whole=True)`), also apart for pairs of neighbouring colours (red / yellow, yellow /
green, green / cyan, cyan / blue, blue / magenta, magenta / red: the same in two of the three channels, so that
together they look like one shape in those two) and for the other pairs; then the same for real clips of the demo's
data (16 frames, 32 x 32, up to two objects; `shapes` seed 1234), split by their number of objects.
Used for the "Thirty-second" and "Thirty-fourth round" of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def neighbour_pair(labels: torch.Tensor) -> torch.Tensor:
    """(N, L) label indices -> (N,) bool: the clip's asked colours are exactly two neighbours on the colour wheel of
    `shapes` (one channel apart: red / yellow, yellow / green, green / cyan, cyan / blue, blue / magenta,
    magenta / red)."""
    from vidiff.data.shapes import COLORS, SHAPES

    rgb = torch.tensor(list(COLORS.values()))  # (6, 3)
    out = []
    for lab in labels.tolist():
        cols = sorted({c // len(SHAPES) for c in lab if c >= 0})
        out.append(len(cols) == 2 and int(((rgb[cols[0]] - rgb[cols[1]]).abs() > 0.3).sum()) == 1)
    return torch.tensor(out, dtype=torch.bool)


def scores(v: torch.Tensor, labels: torch.Tensor | None) -> str:
    from sample_checks import asked_kept, centre_distance

    text = f"centre distance {centre_distance(v):.2f} px"
    if labels is not None:
        kept, frames, n = asked_kept(v, labels)
        if n:
            text += f"; two objects kept in {round(kept * n)} of {n} clips ({frames:.3f} of their frames)"
            whole, whole_frames, _ = asked_kept(v, labels, whole=True)
            text += f", each in one piece in {round(whole * n)} ({whole_frames:.3f} of their frames)"
            near = neighbour_pair(labels)
            for name, sel in (("neighbouring colours", near), ("other colours", ~near)):
                kept, _, m = asked_kept(v[sel], labels[sel]) if sel.any() else (0.0, 0.0, 0)
                whole, _, _ = asked_kept(v[sel], labels[sel], whole=True) if sel.any() else (0.0, 0.0, 0)
                text += f"; {name}: kept {round(kept * m)} / whole {round(whole * m)} of {m}"
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("npz", nargs="*")
    p.add_argument("--real", type=int, default=256, help="real clips to score (0: none)")
    args = p.parse_args()
    for path in args.npz:
        d = np.load(path)
        labels = torch.from_numpy(d["labels"]).long() if "labels" in d.files else None
        if "x0" in d.files:  # a trajectory: (N, K, C, F, H, W) estimates at the timesteps t (K,)
            x0 = torch.from_numpy(d["x0"].astype(np.float32))
            for k, t in enumerate(d["t"].tolist()):
                print(f"{path} t = {t}: {scores(x0[:, k], labels)}")
        else:
            print(f"{path}: {scores(torch.from_numpy(d['videos']).float(), labels)}")
    if args.real:
        from vidiff.data import BouncingShapes

        ds = BouncingShapes(num_frames=16, size=32, max_objects=2, seed=1234, length=args.real)
        items = [ds[i] for i in range(args.real)]
        for n in (1, 2):
            group = [it for it in items if it["num_objects"] == n]
            v = torch.stack([it["video"] for it in group])
            print(f"real clips of {n} object{'s' * (n > 1)} ({len(group)}): "
                  f"{scores(v, torch.stack([it['labels'] for it in group]))}")


if __name__ == "__main__":
    main()
