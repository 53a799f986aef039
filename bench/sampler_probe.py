"""Score one sampler setting on a run or one of its EMA checkpoints: every setting starts from the same x_T.

    python bench/sampler_probe.py RUN [--checkpoint STEP] [--num 64] [--sampler ddpm] [--steps 100] [--eps-scale 1.0]

Draws x_T for all `--num` videos at once from `--seed` (frames correlated as the model was trained), runs the
sampler over the whole batch and prints the scores of bench/sample_checks.py (empty clips, persistence, colour
drift, centroid speed) and which clips came out empty. Because x_T is shared, rows for one model differ only by the
sampler. `--eps-scale L` divides the predicted noise by L and makes x0 consistent with it (the exposure-bias
correction of Ning et al. 2024, "Elucidating the exposure bias in diffusion models"). Used for the "Fifth round"
tables of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--checkpoint", type=int, help="use the EMA weights of RUN/checkpoints/step_N")
    p.add_argument("--num", type=int, default=64)
    p.add_argument("--sampler", default="ddpm", choices=["ddim", "ddpm"])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--eps-scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from sample_checks import colour_drift, motion, persistence

    from vidiff.build import build_denoiser
    from vidiff.config import load_config
    from vidiff.diffusion.samplers import sample
    from vidiff.diffusion.schedules import video_noise
    from vidiff.errors import VidiffError
    from vidiff.evaluation.metrics import object_motion
    from vidiff.pipeline import resolve_run
    from vidiff.training.checkpoint import checkpoint_ema_weights, load_into, load_tensors

    try:
        run = resolve_run(args.run)
        cfg = load_config(run / "config.json")
        dn = build_denoiser(cfg).eval()
        weights = run / "model.safetensors" if args.checkpoint is None else checkpoint_ema_weights(run, args.checkpoint)
        load_into(dn.net, load_tensors(weights), str(weights))
    except VidiffError as e:
        sys.exit(f"error: {e}")

    g = torch.Generator().manual_seed(args.seed)
    shape = (args.num, cfg.model.in_channels, cfg.data.num_frames, cfg.data.size, cfg.data.size)
    x_T = video_noise(shape, dn.noise_correlation, g, "cpu")
    lam = args.eps_scale

    def denoise(x, t, **kw):
        x0, eps = dn(x, t, **kw)
        if lam != 1.0:
            a = dn.alphas_cumprod[t].float().view(-1, 1, 1, 1, 1)
            eps = eps / lam
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        return x0, eps

    denoise.self_conditioning = dn.self_conditioning
    with torch.no_grad():
        v = sample(denoise, shape, dn.alphas_cumprod, sampler=args.sampler, num_steps=args.steps, generator=g,
                   x_T=x_T, noise_correlation=dn.noise_correlation)
    empty, speed = motion(v)
    which = object_motion(v.clamp(-1, 1))[0]
    print(f"{weights} {args.sampler} {args.steps} steps, eps / {lam:g}, {args.num} samples, seed {args.seed}: "
          f"empty {empty:.3f} persistence {persistence(v)[0]:.3f} colour drift {colour_drift(v):.3f} "
          f"speed {speed:.2f}; empty clips {[i for i in range(args.num) if which[i]]}")


if __name__ == "__main__":
    main()
