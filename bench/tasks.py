"""The task evaluation protocol of vidiff on held-out `shapes` clips, with its baselines.

- prediction: 8 context frames -> 8 future frames. PSNR and SSIM per future frame; the mean over all
  samples and the best of N=5 samples per clip (the sample with the highest mean PSNR). Baselines:
  copy-last-frame, and linear extrapolation F^_{t+k} = F_t + k (F_t - F_{t-1}), clipped.
- interpolation: frames 1 and 16 given, the 14 in between generated. Baseline: linear blending.
- extend: 64 frames from a 16-frame model (windows overlapping by 4 frames); per 16-frame chunk, the
  FVD-shapes against real clips and the flicker score, first chunk against last (a model that drifts
  or degrades shows it in the last chunk).

    python bench/tasks.py [--model shapes32] [--clips 16] [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402


def per_frame(metric, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """metric over (N, C, F, H, W) pairs, frame by frame -> (N, F)."""
    return np.stack([metric(a[:, :, f:f + 1], b[:, :, f:f + 1]) for f in range(a.shape[2])], axis=1)


def scores(pred: torch.Tensor, truth: torch.Tensor, n: int) -> dict:
    """pred: (clips * n, C, F, H, W) with n samples per clip, truth: (clips, C, F, H, W)."""
    from vidiff.evaluation.metrics import psnr, ssim

    truth_rep = truth.repeat_interleave(n, dim=0)
    p = per_frame(psnr, pred.clamp(-1, 1), truth_rep).reshape(len(truth), n, -1)  # (clips, n, F)
    s = per_frame(ssim, pred.clamp(-1, 1), truth_rep).reshape(len(truth), n, -1)
    best = p.mean(axis=2).argmax(axis=1)  # the best sample of each clip, by mean PSNR
    idx = np.arange(len(truth))
    return {"psnr_mean": float(p.mean()), "ssim_mean": float(s.mean()),
            "psnr_best": float(p[idx, best].mean()), "ssim_best": float(s[idx, best].mean()),
            "psnr_per_frame_best": p[idx, best].mean(axis=0).round(2).tolist()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="shapes32", help="run folder or shipped model (default: shapes32)")
    p.add_argument("--clips", type=int, default=16, help="held-out clips per task (default: 16)")
    p.add_argument("--samples", type=int, default=5, help="samples per clip, best-of-N (default: 5)")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps (default: 25)")
    p.add_argument("--method", default="auto", help="conditioning method (default: auto)")
    p.add_argument("--guidance", type=float, default=2.0, help="reconstruction-guidance weight (default: 2)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from vidiff import VideoPipeline, tasks
    from vidiff.data import build_dataset
    from vidiff.evaluation.metrics import flicker

    pipe = VideoPipeline.from_pretrained(args.model)
    cfg = pipe.config
    eval_set = build_dataset(cfg.data, "eval")
    truth = torch.stack([eval_set[i]["video"] for i in range(args.clips)])  # (N, C, 16, H, W)
    g = torch.Generator().manual_seed(0)
    kw = dict(num_steps=args.steps, generator=g, method=args.method, guidance_weight=args.guidance)
    n = args.samples
    method = args.method if args.method != "auto" else ("masked" if cfg.masks.enabled else "reconstruction")
    results = {}

    t0 = time.perf_counter()
    pred = tasks.predict(pipe, truth[:, :, :8], 8, num_samples=n, **kw)[:, :, 8:]
    future = truth[:, :, 8:]
    last = truth[:, :, 7:8].expand_as(future)
    k = torch.arange(1, 9).reshape(1, 1, 8, 1, 1)
    linear = (truth[:, :, 7:8] + k * (truth[:, :, 7:8] - truth[:, :, 6:7])).clamp(-1, 1)
    results["prediction"] = {"model": scores(pred, future, n), "copy-last-frame": scores(last, future, 1),
                             "linear extrapolation": scores(linear, future, 1)}
    t_pred = time.perf_counter() - t0

    t0 = time.perf_counter()
    interp = tasks.interpolate(pipe, truth[:, :, [0, 15]], num_samples=n, **kw)[:, :, 1:15]
    w = torch.linspace(0, 1, 16)[1:15].reshape(1, 1, 14, 1, 1)
    blend = (1 - w) * truth[:, :, :1] + w * truth[:, :, 15:16]
    middle = truth[:, :, 1:15]
    results["interpolation"] = {"model": scores(interp, middle, n), "linear blending": scores(blend, middle, 1)}
    t_interp = time.perf_counter() - t0

    t0 = time.perf_counter()
    long = tasks.extend(pipe, 64, num_samples=args.clips, overlap=4, **kw)  # (N, C, 64, H, W)
    chunks = [long[:, :, i:i + 16] for i in range(0, 64, 16)]
    ext = {"flicker_real": float(flicker(truth).mean())}
    try:
        from vidiff.evaluation.classifier import load_shapes_classifier, shapes_features
        from vidiff.evaluation.evaluate import real_clips
        from vidiff.evaluation.metrics import frechet_distance

        clf = load_shapes_classifier()
        real = real_clips(cfg, 0, 256)
        real_feats = shapes_features(clf, real)
        ext["fvd_shapes_first_chunk"] = frechet_distance(shapes_features(clf, chunks[0]), real_feats)
        ext["fvd_shapes_last_chunk"] = frechet_distance(shapes_features(clf, chunks[-1]), real_feats)
        # The Frechet distance is biased at small N: the floor is N other real clips against the same 256.
        other_real = torch.stack([eval_set[i]["video"] for i in range(1000, 1000 + args.clips)])
        ext["fvd_shapes_real_same_n"] = frechet_distance(shapes_features(clf, other_real), real_feats)
    except Exception as e:  # the classifier is optional for this table
        ext["fvd_shapes_error"] = f"{type(e).__name__}: {e}"
    ext["flicker_first_chunk"] = float(flicker(chunks[0]).mean())
    ext["flicker_last_chunk"] = float(flicker(chunks[-1]).mean())
    results["extend"] = ext
    t_ext = time.perf_counter() - t0

    cmd = "python bench/tasks.py " + " ".join(sys.argv[1:])
    lines = [f"Command: `{cmd.strip()}`. Model: `{args.model}` (conditioning: {method}"
             f"{f', w_r = {args.guidance}' if method == 'reconstruction' else ''}), {args.clips} held-out `shapes` "
             f"clips (eval split), {n} samples per clip, DDIM {args.steps} steps. Times: prediction {t_pred:.0f} s, "
             f"interpolation {t_interp:.0f} s, extend {t_ext:.0f} s.", "",
             "| task | method | PSNR mean | PSNR best-of-N | SSIM mean | SSIM best-of-N |", "|---|---|---|---|---|---|"]
    for task in ("prediction", "interpolation"):
        for name, r in results[task].items():
            best_psnr, best_ssim = (f"{r['psnr_best']:.2f}", f"{r['ssim_best']:.3f}") if name == "model" else ("–", "–")
            lines.append(f"| {task} | {name} | {r['psnr_mean']:.2f} | {best_psnr} | {r['ssim_mean']:.3f} | {best_ssim} |")
    lines += ["", "Best-of-N PSNR per future frame (prediction, frames 9..16): "
              + ", ".join(f"{v:.1f}" for v in results["prediction"]["model"]["psnr_per_frame_best"]), "",
              "Extend (64 frames): " + ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k}: {v}"
                                                for k, v in results["extend"].items())]
    text = "\n".join(lines)
    print(text)
    print(json.dumps(results, indent=1), file=sys.stderr)
    if args.write:
        write_section("tasks", "Tasks: prediction, interpolation, extension (held-out shapes)", text)


if __name__ == "__main__":
    main()
