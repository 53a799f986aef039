"""Reproduce the shapes classifier shipped in vidiff/weights/shapes_classifier (the network behind FVD-shapes).

    python bench/train_classifier.py                      # 1 CPU thread, writes vidiff/weights/shapes_classifier
    python bench/train_classifier.py --out /tmp/cls --threads 2

Renders the training and held-out clips, trains (recipe: `ShapesClassifierConfig` in
vidiff/evaluation/classifier.py), then records in config.json the held-out accuracy and the FVD-shapes of real
clips against real clips (the floor) for the demo preset's data. Bitwise-identical weights need the same torch
build and thread count; the recorded accuracy should match to within a fraction of a percent otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "vidiff" / "weights" / "shapes_classifier"),
                   help="folder for model.safetensors and config.json (default: the shipped location)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1, as the shipped weights)")
    p.add_argument("--floor-num", type=int, default=256, help="N per set for the real-vs-real floor (default: 256)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from vidiff.config import load_config
    from vidiff.evaluation.classifier import (ShapesClassifierConfig, classifier_info, save_shapes_classifier,
                                              shapes_features, train_shapes_classifier)
    from vidiff.evaluation.evaluate import real_clips
    from vidiff.evaluation.metrics import frechet_distance

    t0 = time.perf_counter()
    model, results = train_shapes_classifier(ShapesClassifierConfig(), args.out, progress=not args.quiet)
    print(f"trained in {results['seconds_rendering'] + results['seconds_training']:.0f} s "
          f"({results['seconds_rendering']:.0f} s rendering, {results['seconds_training']:.0f} s training, "
          f"{args.threads} thread(s)); held-out accuracy: "
          + ", ".join(f"{k} {v:.3f}" for k, v in results["held_out_accuracy"].items()))

    # The floor: FVD-shapes between disjoint sets of real held-out clips of the demo preset's data.
    cfg = load_config(ROOT / "vidiff" / "presets" / "demo.yaml")
    n = args.floor_num
    sets = [shapes_features(model, real_clips(cfg, k * n, n, not args.quiet, f"real set {k}")) for k in range(4)]
    floors = [frechet_distance(sets[2 * k], sets[2 * k + 1]) for k in range(2)]
    results["fvd_shapes_real_vs_real"] = {"num": n, "values": floors, "data": "demo preset, eval split, clips "
                                          f"0..{4 * n - 1} in disjoint pairs of sets"}
    save_shapes_classifier(model, args.out, results)
    info = classifier_info(args.out)
    print(f"FVD-shapes real vs real (N = {n}): {', '.join(f'{v:.3f}' for v in floors)}")
    print(f"weights sha256 {info['weights_sha256']} -> {args.out} ({time.perf_counter() - t0:.0f} s in all)")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
