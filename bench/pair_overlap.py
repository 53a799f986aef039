"""How often the two objects of a real `shapes` clip overlap or touch: the bar for the samples' two-object clips.

    python bench/pair_overlap.py [--clips 4000] [--size 32] [--frames 16] [--seed 0]

From the dataset's own object parameters (centres and radii, nothing rendered), over the clips with two objects:
- overlap: the centres closer than 0.85 x the sum of the two radii (the square's half side is 0.85 r, so such
  shapes share pixels in most orientations; circles at that distance always do), in the first frame and in any frame;
- touch: the centres closer than the sum of the radii plus 1.5 pixels (no black pixel between them, or one).
A model that draws two objects of a real clip must draw one partly covering the other this often.
"""

from __future__ import annotations

import argparse

import numpy as np

from vidiff.data.shapes import BouncingShapes


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=4000, help="dataset items to look at (default: 4000)")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--max-objects", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    ds = BouncingShapes(args.frames, args.size, args.max_objects, seed=args.seed)
    first, ever, touch, pairs = 0, 0, 0, 0
    for i in range(args.clips):
        obj = ds.objects(i)
        if len(obj["shapes"]) != 2:
            continue
        pairs += 1
        c, r = obj["centers"], obj["radius"]  # (F, 2, 2), (2,)
        dist = np.linalg.norm(c[:, 0] - c[:, 1], axis=-1)  # (F,)
        close = dist < 0.85 * (r[0] + r[1])
        first += bool(close[0])
        ever += bool(close.any())
        touch += bool(dist[0] < r[0] + r[1] + 1.5)
    if not pairs:
        raise SystemExit("error: no clip with two objects among those looked at (--max-objects 2 or more)")
    print(f"{pairs} clips with two objects (of {args.clips}): overlapping in the first frame {first / pairs:.3f}, "
          f"in some frame {ever / pairs:.3f}; touching or overlapping in the first frame {touch / pairs:.3f}")


if __name__ == "__main__":
    main()
