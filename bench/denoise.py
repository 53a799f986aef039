"""Denoising held-out bouncing-shapes clips: the heat equation, Perona-Malik and a trained vidiff model.

For each Gaussian noise level sigma (on the [0, 1] pixel scale; 2 sigma on the library's [-1, 1] scale):
- noisy input: the clean clip plus unclipped Gaussian noise; this is what every denoiser gets;
- heat and Perona-Malik (both edge-stopping functions): settings (diffusion time, temporal diffusivity,
  kappa) tuned for the best mean PSNR on a separate tuning split (another dataset seed, other noise);
- the model: its reverse process started at the timestep whose noise level matches sigma (`vidiff.denoise`),
  one step (the x0-prediction) or DDIM with --steps steps, with sigma given or estimated from the clip.
PSNR and SSIM (vidiff.evaluation.metrics, data range 1) are averaged over the reported clips; every
output, and the noisy input in its row, is clipped to the valid range first, as a video file would be.

    python bench/denoise.py                          # the shipped model shapes32
    python bench/denoise.py --model runs/demo --num 32 --write   # also write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.report import write_section  # noqa: E402

TUNE_SEED_OFFSET = 2_000_003  # tuning split: neither the training seed nor the held-out one (+1_000_003)
HEAT_TEMPORAL = (0.0, 0.5, 1.0, 2.0)  # temporal diffusivities tried (spatial = 1)
PM_TEMPORAL = (0.5, 1.0, 2.0)
PM_KAPPA_OVER_SIGMA = (0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # kappa grid, relative to the noise sigma
# Explicit steps used for tuning and evaluation (finer than the stability limit 1/6, so that the best
# stopping time is found to within a step), and the longest diffusion time scored.
HEAT_DT, HEAT_MAX_TIME = 1 / 24, 2.0
PM_DT, PM_MAX_TIME = 1 / 12, 10.0


def metrics_fns():
    from vidiff.evaluation.metrics import psnr, ssim

    return psnr, ssim


def clips(dataset, n: int) -> torch.Tensor:
    return torch.stack([dataset[i]["video"] for i in range(n)])  # (N, C, F, H, W) in [-1, 1]


def add_noise(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """x + 2 sigma n: sigma on the [0, 1] scale, the library's videos span [-1, 1]. Not clipped."""
    g = torch.Generator().manual_seed(seed)
    return x + 2 * sigma * torch.randn(x.shape, generator=g)


def tune(noisy: torch.Tensor, clean: torch.Tensor, sigma: float, device) -> dict:
    """Best settings by mean PSNR on the tuning clips; each trajectory is scored after every step."""
    from vidiff.classical import heat_diffusion, perona_malik

    psnr, _ = metrics_fns()
    y, c = noisy.to(device), clean
    best = {}

    def scorer(key, settings):
        def callback(step, t, u):
            score = float(psnr(u.clamp(-1, 1).cpu(), c).mean())
            if score > best.get(key, (-math.inf,))[0]:
                best[key] = (score, dict(settings, time=round(t, 6), steps=step))
        return callback

    for temporal in HEAT_TEMPORAL:
        heat_diffusion(y, HEAT_MAX_TIME, temporal=temporal, dt=HEAT_DT,
                       callback=scorer("heat", {"temporal": temporal, "dt": HEAT_DT}))
    for edge_stop in ("exponential", "rational"):
        for temporal in PM_TEMPORAL:
            for ratio in PM_KAPPA_OVER_SIGMA:
                kappa = ratio * sigma  # [0, 1] scale
                perona_malik(y, PM_MAX_TIME, 2 * kappa, edge_stop=edge_stop, temporal=temporal, dt=PM_DT,
                             callback=scorer(f"pm-{edge_stop}", {"kappa": kappa, "temporal": temporal, "dt": PM_DT}))
    return {k: v[1] for k, v in best.items()}


def settings_text(s: dict) -> str:
    parts = []
    if "kappa" in s:
        parts.append(f"kappa {s['kappa']:.3g}")
    parts.append(f"time {s['time']:.3g} ({s['steps']} steps of {s['dt']:.3g})")
    parts.append(f"D_time {s['temporal']:g}")
    return ", ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="shapes32", help="run folder or shipped model (default: shapes32)")
    p.add_argument("--num", type=int, default=32, help="held-out clips reported (default: 32)")
    p.add_argument("--tune-num", type=int, default=16, help="clips of the tuning split (default: 16)")
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.05, 0.1, 0.2],
                   help="noise levels on the [0, 1] scale (default: 0.05 0.1 0.2)")
    p.add_argument("--steps", type=int, default=10, help="DDIM steps for the model (default: 10)")
    p.add_argument("--batch", type=int, default=8, help="clips per model batch (default: 8)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    p.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"),
                   help="the markdown file --write updates (default: docs/benchmarks.md)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from vidiff.classical import estimate_noise_sigma, heat_diffusion, perona_malik
    from vidiff.data import BouncingShapes, build_dataset
    from vidiff.denoise import matching_timestep, model_denoise
    from vidiff.pipeline import VideoPipeline, resolve_run

    psnr, ssim = metrics_fns()
    run = resolve_run(args.model)
    pipe = VideoPipeline.from_pretrained(run, device=args.device)
    device = pipe.device
    d = pipe.config.data
    report = clips(build_dataset(d, split="test"), args.num)
    tuning = clips(BouncingShapes(num_frames=d.num_frames, size=d.size, max_objects=d.max_objects,
                                  seed=d.seed + TUNE_SEED_OFFSET, length=args.tune_num), args.tune_num)
    summary = json.loads((run / "train_summary.json").read_text()) if (run / "train_summary.json").is_file() else {}

    rows, tuned_all, estimates = [], {}, {}
    for k, sigma in enumerate(args.sigmas):
        print(f"sigma {sigma}: tuning on {args.tune_num} clips ...", file=sys.stderr, flush=True)
        tuned = tune(add_noise(tuning, sigma, 10_000 + k), tuning, sigma, device)
        tuned_all[sigma] = tuned
        noisy = add_noise(report, sigma, 20_000 + k)
        y = noisy.to(device)
        est = estimate_noise_sigma(noisy) / 2  # (N,), [0, 1] scale
        estimates[sigma] = (float(est.mean()), float(est.std()))

        def score(name, settings, fn):
            print(f"sigma {sigma}: {name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            with torch.no_grad():
                out = fn().clamp(-1, 1).cpu()
            seconds = (time.perf_counter() - t0) / len(report)
            rows.append((sigma, name, settings, float(psnr(out, report).mean()), float(ssim(out, report).mean()),
                         seconds))

        score("noisy input (clipped)", "", lambda: noisy)
        h = tuned["heat"]
        score("heat equation", settings_text(h),
              lambda: heat_diffusion(y, h["time"], temporal=h["temporal"], dt=h["dt"]))
        for edge_stop in ("exponential", "rational"):
            s = tuned[f"pm-{edge_stop}"]
            score(f"Perona-Malik, {edge_stop}", settings_text(s),
                  lambda: perona_malik(y, s["time"], 2 * s["kappa"], edge_stop=edge_stop, temporal=s["temporal"],
                                       dt=s["dt"]))
        t_star = matching_timestep(pipe.denoiser.alphas_cumprod, 2 * sigma)
        score("model, 1 step (x0-prediction)", f"t* = {t_star}",
              lambda: model_denoise(pipe, y, sigma=2 * sigma, steps=1, batch_size=args.batch))
        score(f"model, DDIM {args.steps} steps", f"t* = {t_star}",
              lambda: model_denoise(pipe, y, sigma=2 * sigma, steps=args.steps, batch_size=args.batch))
        score(f"model, DDIM {args.steps} steps, sigma estimated", "sigma per clip",
              lambda: model_denoise(pipe, y, sigma=None, steps=args.steps, batch_size=args.batch))

    lines = ["| noise sigma | method | settings | PSNR (dB) | SSIM | s / clip |", "|---|---|---|---|---|---|"]
    for sigma, name, settings, ps, ss, sec in rows:
        lines.append(f"| {sigma:g} | {name} | {settings} | {ps:.2f} | {ss:.4f} | {sec:.3f} |")
    est_text = "; ".join(f"{s:g}: {m:.4f} +- {sd:.4f}" for s, (m, sd) in estimates.items())
    cfg = pipe.config
    trained = f", {summary['step']} training steps" if "step" in summary else ""
    command = "python bench/denoise.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    text = "\n".join([
        f"`{command}`",
        "",
        f"{args.num} held-out `shapes` clips ({d.num_frames} frames x {d.size}x{d.size}, up to {d.max_objects} "
        f"objects, dataset seed {d.seed} + 1000003) with unclipped Gaussian noise of standard deviation sigma on "
        f"the [0, 1] pixel scale. Heat and Perona-Malik settings were tuned for the best mean PSNR on "
        f"{args.tune_num} clips of a separate split (seed {d.seed} + {TUNE_SEED_OFFSET}, other noise): "
        f"diffusion time (explicit scheme, dt = 1/{round(1 / HEAT_DT)} for heat and 1/{round(1 / PM_DT)} for "
        f"Perona-Malik, D_space = 1), D_time in {list(HEAT_TEMPORAL)} (heat) or "
        f"{list(PM_TEMPORAL)} (Perona-Malik), kappa in {list(PM_KAPPA_OVER_SIGMA)} x sigma ([0, 1] scale). "
        f"The model is `{args.model}` ({cfg.model.channels} channels, mults {list(cfg.model.channel_mults)}, "
        f"{cfg.diffusion.schedule} schedule, T = {cfg.diffusion.timesteps}, {cfg.diffusion.objective}-prediction"
        f"{trained}); it starts at the timestep t* whose sqrt((1 - abar) / abar) is closest to 2 sigma, from "
        f"sqrt(abar_t*) times the noisy clip. Outputs and the noisy input are clipped to [0, 1] before "
        f"scoring (PSNR over the whole clip, SSIM with an 11x11 Gaussian window per frame, both averaged over "
        f"clips). Time per clip on `{device}`.",
        "",
        *lines,
        "",
        f"Noise sigma estimated from each noisy clip (Haar MAD, mean +- std over clips), true: estimate: {est_text}.",
    ])
    print(text)
    if args.write:
        doc = write_section("denoise", "Denoising: classical diffusion against the learned model", text,
                            doc=Path(args.doc))
        print(f"wrote {doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
