"""Class-conditioned training on a folder of videos: does a model trained on class folders show the class it is asked for?

    python bench/class_folders.py make DIR [--per-class 150]      # DIR/red/*.mp4 and DIR/blue/*.mp4
    vidiff train demo --data DIR --out RUN train.steps=800 train.time_budget_minutes=null
    python bench/class_folders.py score RUN [--num 24] [--guidance 2]

`make` writes bouncing-shapes clips with one object each (16 frames, 32x32, H.264 through vidiff.io) into two
class folders by the object's colour: red/ and blue/. `vidiff train --data` turns the two folders into two labels.
`score` samples `--num` videos asking for each class (classifier-free guidance `--guidance`) and `--num` without
any (the unconditional model, guidance 0), all from the same seeds, and prints which share of the object pixels
is red and which blue (vidiff.evaluation.metrics.colour_frequencies; real clips of one class: ~1 for their colour).

Used for "Class folders" in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = ("red", "blue")


def make(out: Path, per_class: int) -> None:
    from tqdm.auto import tqdm

    from vidiff.data import BouncingShapes
    from vidiff.io import write_video

    data = BouncingShapes(num_frames=16, size=32, max_objects=1, seed=5)
    count = dict.fromkeys(CLASSES, 0)
    i = 0
    with tqdm(total=per_class * len(CLASSES), desc="writing clips", unit="clip") as bar:
        while min(count.values()) < per_class:
            item = data[i]
            i += 1
            colour = item["caption"].split()[1]  # "a red circle"
            if colour in count and count[colour] < per_class:
                write_video(out / colour / f"clip{count[colour]:03d}.mp4", item["video"], fps=8)
                count[colour] += 1
                bar.update()
    print(f"wrote {per_class} clips into each of {', '.join(str(out / c) for c in CLASSES)}")


def score(run: str, num: int, guidance: float, steps: int | None, seed: int) -> None:
    from vidiff.data.shapes import COLOR_NAMES
    from vidiff.evaluation.metrics import colour_frequencies
    from vidiff.pipeline import VideoPipeline

    pipe = VideoPipeline.from_pretrained(run)
    kw = {} if steps is None else {"num_inference_steps": steps}
    rows = [(c, pipe.labels_for([c] * num), guidance) for c in pipe.config.data.classes]
    rows.append(("(no class: guidance 0)", pipe.labels_for([pipe.config.data.classes[0]] * num), 0.0))
    for name, labels, w in rows:
        out = pipe(num_videos=num, labels=labels, guidance_scale=w, generator=torch.Generator().manual_seed(seed),
                   progress=False, **kw)
        share = colour_frequencies(out.videos.clamp(-1, 1))
        text = ", ".join(f"{c} {share[COLOR_NAMES.index(c)]:.2f}" for c in CLASSES)
        print(f"asked for {name}: share of object pixels {text}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("out", type=Path)
    m.add_argument("--per-class", type=int, default=150)
    s = sub.add_parser("score")
    s.add_argument("run")
    s.add_argument("--num", type=int, default=24)
    s.add_argument("--guidance", type=float, default=2.0)
    s.add_argument("--steps", type=int, default=None)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.cmd == "make":
        make(args.out, args.per_class)
    else:
        torch.set_num_threads(args.threads)
        score(args.run, args.num, args.guidance, args.steps, args.seed)


if __name__ == "__main__":
    main()
