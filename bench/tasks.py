"""The task evaluation protocol of vidiff on held-out `shapes` clips, with its baselines.

- prediction: 8 context frames -> 8 future frames. PSNR and SSIM per future frame; the mean over all
  samples and the best of N=5 samples per clip (the sample with the highest mean PSNR). Baselines:
  copy-last-frame, and linear extrapolation F^_{t+k} = F_t + k (F_t - F_{t-1}), clipped.
- interpolation: frames 1 and 16 given, the 14 in between generated. Baseline: linear blending.
- extend: 64 frames from a 16-frame model (windows overlapping by 4 frames); per 16-frame chunk, the
  FVD-shapes against real clips and the flicker score, first chunk against last (a model that drifts
  or degrades shows it in the last chunk).

    python bench/tasks.py --model shapes32 [--model runs/masked ...] [--clips 16] [--write]

Each model is run with every method in --methods (replacement, reconstruction guidance); a model trained
with MCVD masks also runs its masked conditioning, and one trained with clean context frames
(`diffusion.clean_context`, 8 or more of them) its clean conditioning for prediction, so one set of weights is
compared both ways. All rows share the clips and the baselines.
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


def run_tasks(pipe, truth: torch.Tensor, method: str, args) -> dict:
    """Prediction (8 -> 8) and interpolation (1, 16 -> 14) with one model and one conditioning method."""
    from vidiff import tasks

    if method == "clean" and pipe.config.diffusion.clean_context_frames < 8:
        raise SystemExit(f"error: {pipe.run_dir} was trained with at most {pipe.config.diffusion.clean_context_frames} "
                         f"clean context frames; prediction here gives 8")
    g = torch.Generator().manual_seed(0)
    kw = dict(num_steps=args.steps, generator=g, method=method, guidance_weight=args.guidance)
    n = args.samples
    t0 = time.perf_counter()
    pred = tasks.predict(pipe, truth[:, :, :8], 8, num_samples=n, **kw)[:, :, 8:]
    t_pred = time.perf_counter() - t0
    if method == "clean":  # trained on given first frames only: keyframes at both ends are not what it learnt
        return {"prediction": scores(pred, truth[:, :, 8:], n), "seconds": {"prediction": round(t_pred)}}
    t0 = time.perf_counter()
    interp = tasks.interpolate(pipe, truth[:, :, [0, 15]], num_samples=n, **kw)[:, :, 1:15]
    t_interp = time.perf_counter() - t0
    return {"prediction": scores(pred, truth[:, :, 8:], n), "interpolation": scores(interp, truth[:, :, 1:15], n),
            "seconds": {"prediction": round(t_pred), "interpolation": round(t_interp)}}


def run_extend(pipe, truth: torch.Tensor, eval_set, method: str, args) -> dict:
    """64 frames from a 16-frame model; FVD-shapes and flicker of the first and the last 16-frame chunk."""
    from vidiff import tasks
    from vidiff.evaluation.metrics import flicker

    g = torch.Generator().manual_seed(0)
    long = tasks.extend(pipe, 64, num_samples=args.clips, overlap=4, num_steps=args.steps, generator=g,
                        method=method, guidance_weight=args.guidance)  # (N, C, 64, H, W)
    chunks = [long[:, :, i:i + 16] for i in range(0, 64, 16)]
    ext = {}
    try:
        from vidiff.evaluation.classifier import load_shapes_classifier, shapes_features
        from vidiff.evaluation.evaluate import real_clips
        from vidiff.evaluation.metrics import frechet_distance

        clf = load_shapes_classifier()
        real_feats = shapes_features(clf, real_clips(pipe.config, 0, 256))
        ext["fvd_shapes_first_chunk"] = frechet_distance(shapes_features(clf, chunks[0]), real_feats)
        ext["fvd_shapes_last_chunk"] = frechet_distance(shapes_features(clf, chunks[-1]), real_feats)
        # The Frechet distance is biased at small N: the floor is N other real clips against the same 256.
        other_real = torch.stack([eval_set[i]["video"] for i in range(1000, 1000 + args.clips)])
        ext["fvd_shapes_real_same_n"] = frechet_distance(shapes_features(clf, other_real), real_feats)
    except Exception as e:  # the classifier is optional for this table
        ext["fvd_shapes_error"] = f"{type(e).__name__}: {e}"
    ext["flicker_first_chunk"] = float(flicker(chunks[0]).mean())
    ext["flicker_last_chunk"] = float(flicker(chunks[-1]).mean())
    ext["flicker_real"] = float(flicker(truth).mean())
    return ext


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", help="run folder or shipped model; repeat to compare several "
                                                    "(default: shapes32)")
    p.add_argument("--methods", default="replacement,reconstruction",
                   help="training-free conditioning methods to run (default: both; '' for none); a model "
                        "trained with masks also runs its own masked conditioning")
    p.add_argument("--clips", type=int, default=16, help="held-out clips per task (default: 16)")
    p.add_argument("--samples", type=int, default=5, help="samples per clip, best-of-N (default: 5)")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps (default: 25)")
    p.add_argument("--guidance", type=float, default=2.0, help="reconstruction-guidance weight (default: 2)")
    p.add_argument("--extend", choices=["all", "masked", "none"], default="all",
                   help="which models also make 64-frame videos: all, only those trained with masks, or none "
                        "(default: all)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from vidiff import VideoPipeline
    from vidiff.data import build_dataset

    models = args.model or ["shapes32"]
    rows, extend_rows, notes, truth, results = [], [], [], None, {}
    for name in models:
        pipe = VideoPipeline.from_pretrained(name)
        cfg = pipe.config
        if truth is None:
            eval_set = build_dataset(cfg.data, "eval")
            truth = torch.stack([eval_set[i]["video"] for i in range(args.clips)])  # (N, C, 16, H, W)
        # a model trained with masks also runs the training-free methods on its unconditional mode (all-zero
        # mask): the same weights conditioned both ways
        methods = (["masked"] if cfg.masks.enabled else []) + (["clean"] if cfg.diffusion.clean_context else []) + \
            [m for m in args.methods.split(",") if m]
        for method in methods:
            r = run_tasks(pipe, truth, method, args)
            results[f"{name} / {method}"] = r
            label = method + (f" (w_r = {args.guidance:g})" if method == "reconstruction" else "")
            for task in ("prediction", "interpolation"):
                s = r.get(task)
                if s is None:
                    continue
                rows.append(f"| {task} | `{name}` | {label} | {s['psnr_mean']:.2f} | {s['psnr_best']:.2f} | "
                            f"{s['ssim_mean']:.3f} | {s['ssim_best']:.3f} |")
            notes.append(f"`{name}` / {method}: prediction {r['seconds']['prediction']} s, interpolation "
                         f"{r['seconds'].get('interpolation', '–')} s; best-of-N PSNR per future frame 9..16: "
                         + ", ".join(f"{v:.1f}" for v in r["prediction"]["psnr_per_frame_best"]))
        if args.extend == "all" or (args.extend == "masked" and cfg.masks.enabled):
            t0 = time.perf_counter()
            ext_method = "masked" if cfg.masks.enabled else methods[-1]
            ext = run_extend(pipe, truth, eval_set, ext_method, args)
            results[f"{name} / extend"] = ext
            extend_rows.append(f"`{name}` ({ext_method}, {time.perf_counter() - t0:.0f} s): "
                               + ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k}: {v}"
                                           for k, v in ext.items()))

    future, middle = truth[:, :, 8:], truth[:, :, 1:15]
    last = truth[:, :, 7:8].expand_as(future)
    k = torch.arange(1, 9).reshape(1, 1, 8, 1, 1)
    linear = (truth[:, :, 7:8] + k * (truth[:, :, 7:8] - truth[:, :, 6:7])).clamp(-1, 1)
    w = torch.linspace(0, 1, 16)[1:15].reshape(1, 1, 14, 1, 1)
    blend = (1 - w) * truth[:, :, :1] + w * truth[:, :, 15:16]
    for task, name, base, target in (("prediction", "copy-last-frame", last, future),
                                     ("prediction", "linear extrapolation", linear, future),
                                     ("interpolation", "linear blending", blend, middle)):
        s = scores(base, target, 1)
        results[f"baseline / {task} / {name}"] = s
        rows.append(f"| {task} | baseline | {name} | {s['psnr_mean']:.2f} | – | {s['ssim_mean']:.3f} | – |")
    rows.sort(key=lambda r: r.split("|")[1].strip() != "prediction")  # prediction rows first (stable sort)

    cmd = "python bench/tasks.py " + " ".join(sys.argv[1:])
    lines = [f"Command: `{cmd.strip()}`. {args.clips} held-out `shapes` clips (eval split), {args.samples} samples "
             f"per clip, DDIM {args.steps} steps. Best-of-N: per clip, the sample with the highest mean PSNR.", "",
             "| task | model | conditioning | PSNR mean | PSNR best-of-N | SSIM mean | SSIM best-of-N |",
             "|---|---|---|---|---|---|---|", *rows, "", *[f"- {n}" for n in notes]]
    if extend_rows:
        lines += ["", "Extend (64 frames, windows overlapping by 4):", "", *[f"- {e}" for e in extend_rows]]
    text = "\n".join(lines)
    print(text)
    print(json.dumps(results, indent=1), file=sys.stderr)
    if args.write:
        write_section("tasks", "Tasks: prediction, interpolation, extension (held-out shapes)", text)


if __name__ == "__main__":
    main()
