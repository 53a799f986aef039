"""FVD-shapes of trained models and of real data against itself, written into docs/benchmarks.md.

    python bench/fvd_shapes.py demo=runs/demo shapes32=vidiff/weights/shapes32
    python bench/fvd_shapes.py                 # only the real-vs-real rows

Each RUN argument is a run folder, optionally labelled as LABEL=FOLDER. For each run: N videos are sampled
(--sampler, --steps, seed --seed) and compared with N held-out real clips of the run's data by `vidiff eval`'s code
(metrics fvd_shapes, flicker, warp); results and samples go to --work/LABEL (the run folders are not written
to). The real-vs-real rows give the floor: FVD-shapes between disjoint sets of N held-out clips of the demo
preset's data, for --pairs pairs. The table, with this command line, replaces the section between
`<!-- fvd:start -->` and `<!-- fvd:end -->` in --docs (bench/report.py; created if missing).
Pass every run you want in the table in one invocation: rows are not merged with an earlier table.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vidiff.config import DEFAULT_SAMPLER, SAMPLER_NAMES, SAMPLER_STEPS  # noqa: E402

from bench.report import write_section  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", metavar="[LABEL=]RUN", help="run folders to evaluate")
    p.add_argument("--num", type=int, default=256, help="videos per set, N (default: 256)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampling steps (default: the sampler's, as `vidiff sample`)")
    p.add_argument("--sampler", choices=SAMPLER_NAMES, default=DEFAULT_SAMPLER,
                   help=f"default: {DEFAULT_SAMPLER}, as `vidiff sample`")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance", type=float, default=None,
                   help="label-conditioned models: classifier-free guidance weight (default: each model's sample.guidance)")
    p.add_argument("--guidance-per-label", type=float, default=None, metavar="W",
                   help="added to the weight per asked object past the first (default: each model's "
                        "sample.guidance_per_label, as `vidiff sample`)")
    p.add_argument("--image-guidance", type=float, default=None, metavar="S",
                   help="image guidance by each model's sample.image_model, as `vidiff sample --image-guidance` "
                        "(default: each model's sample.image_guidance)")
    p.add_argument("--guidance-rescale", type=float, default=0.0, metavar="PHI",
                   help="guidance rescaling (Lin et al. 2023), as `vidiff sample --guidance-rescale` (default: 0)")
    p.add_argument("--pairs", type=int, default=3, help="disjoint real-vs-real pairs for the floor (default: 3)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--work", default=str(ROOT / "runs" / "fvd_shapes"), help="where results and samples go")
    p.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"), help="markdown file to update")
    p.add_argument("--no-docs", action="store_true", help="print the table only")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.steps is None:
        args.steps = SAMPLER_STEPS[args.sampler]

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from vidiff.config import load_config

    guidance = "each model's sample.guidance" if args.guidance is None else f"{args.guidance:g}"
    per_label = ("each model's sample.guidance_per_label" if args.guidance_per_label is None
                 else f"{args.guidance_per_label:g}")
    image = "each model's sample.image_guidance" if args.image_guidance is None else f"{args.image_guidance:g}"
    from vidiff.evaluation.classifier import classifier_info, load_shapes_classifier, shapes_features
    from vidiff.evaluation.evaluate import evaluate_run, real_clips
    from vidiff.evaluation.metrics import frechet_distance

    t_start = time.perf_counter()
    rows = []
    for spec in args.runs:
        label, _, folder = spec.rpartition("=") if "=" in spec else (Path(spec).name, "", spec)
        t0 = time.perf_counter()
        report = evaluate_run(folder, num=args.num, metrics=["fvd_shapes", "flicker", "warp"], steps=args.steps,
                              sampler=args.sampler, seed=args.seed, device=args.device, out_dir=Path(args.work) / label,
                              progress=not args.quiet, guidance=args.guidance,
                              guidance_per_label=args.guidance_per_label, guidance_rescale=args.guidance_rescale,
                              image_guidance=args.image_guidance)
        m = report["metrics"]
        rows.append(f"| {label} (`{folder}`, step {report['model_step']}) | {m['fvd_shapes']['value']:.3f} | "
                    f"{m['fvd_shapes']['baseline']:.3f} | "
                    f"{m['flicker']['value']:.4f} ({m['flicker']['baseline']:.4f}) | "
                    f"{m['warp']['value']:.4f} ({m['warp']['baseline']:.4f}) |")
        print(f"{label}: FVD-shapes {m['fvd_shapes']['value']:.3f} (real vs real {m['fvd_shapes']['baseline']:.3f}) "
              f"in {time.perf_counter() - t0:.0f} s")

    # The floor on the demo preset's data: disjoint sets of N held-out clips.
    cfg = load_config(ROOT / "vidiff" / "presets" / "demo.yaml")
    model = load_shapes_classifier()
    n = args.num
    feats = [shapes_features(model, real_clips(cfg, k * n, n, not args.quiet, f"real set {k}"))
             for k in range(2 * args.pairs)]
    floors = [frechet_distance(feats[2 * k], feats[2 * k + 1]) for k in range(args.pairs)]
    floor_text = f"{np.mean(floors):.3f} ± {np.std(floors):.3f}"
    rows.append(f"| real vs real (demo data, {args.pairs} disjoint pairs) | {floor_text} | – | – | – |")
    print(f"real vs real: {', '.join(f'{v:.3f}' for v in floors)}")

    info = classifier_info()
    acc = info["results"].get("held_out_accuracy", {})
    given = argv if argv is not None else sys.argv[1:]
    command = "python bench/fvd_shapes.py " + " ".join(shlex.quote(a) for a in given)
    block = "\n".join([
        f"Command: `{command.strip()}` ({time.perf_counter() - t_start:.0f} s, torch {torch.__version__}, "
        f"torch threads: {torch.get_num_threads()}; load average at the end "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores)",
        "",
        f"N = {n} videos per set; generated videos: {args.sampler.upper()}, {args.steps} steps, seed {args.seed} "
        f"(label-conditioned models: guidance {guidance} at every step, "
        f"+{per_label} for each asked object past the first"
        f"{f', rescaled {args.guidance_rescale:g}' if args.guidance_rescale else ''}"
        f", image guidance {image}); "
        f"real clips: held-out (eval split) clips 0..N-1 of each run's data. FVD-shapes = Frechet distance of the "
        f"{model.cfg.feature_dim}-d per-colour embeddings of the shipped shapes classifier (weights sha256 "
        f"`{info['weights_sha256'][:16]}…`, held-out accuracy: colours {acc.get('colors', float('nan')):.3f}, "
        f"shape {acc.get('shape', float('nan')):.3f}, direction {acc.get('direction', float('nan')):.3f}). Lower is "
        f"better; compare only at equal N. Baseline columns: the same score for N other real clips.",
        "",
        "| model | FVD-shapes | real vs real (this data) | flicker (real) | warping error (real) |",
        "|---|---|---|---|---|",
        *rows,
    ] + ([] if args.runs else ["", "No model rows yet: pass run folders, e.g. `python bench/fvd_shapes.py "
                                   "demo=runs/demo shapes32=vidiff/weights/shapes32 --threads 1`."]))
    print(block)
    if not args.no_docs:
        write_section("fvd", "FVD-shapes: trained models and real data against itself", block, doc=Path(args.docs))
        print(f"-> {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
