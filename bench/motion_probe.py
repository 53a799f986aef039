"""Where a model loses what real clips show: its reconstruction error and the objects' speed at each noise level.

    python bench/motion_probe.py RUN [--num 32] [--t 10,100,300,600,850] [--denoise-from 300,600,900,999]
                                 [--guidance W] [--threads 2]

1. Reconstruction: `--num` held-out clips noised to each timestep of `--t`, and the network's one-shot estimate of
   the clean clip (no self-conditioning input; a label-conditioned model gets the clip's own labels). Printed: the
   MSE of that estimate to the clip, and the MSE of the rescaled input x_t / sqrt(alpha_bar) (plain copying). A
   network that cannot give back a nearly clean input (t = 10) blurs every sample's last step. Also the estimate's
   centroid speed per pair of frames: a network whose estimate slows the first and last pairs drags its samples'
   objects back at the clip's ends, step after step.
2. Denoising from t0 (SDEdit, Meng et al. 2022): the same clips noised to each t0 of `--denoise-from` and sampled
   back with DDPM (100 steps per 1,000 timesteps), a label-conditioned model guided towards the clip's own labels
   with weight `--guidance`. Printed: the centroid speed of the objects in the one-shot estimate at t0 and in the
   result, persistence and colour drift (bench/sample_checks.py), next to the real clips' own. t0 = the last
   timestep is generation from scratch. Where along t0 the speed falls tells whether a model loses motion where
   it decides the layout (high t0) or at every denoising step.

Used for the "Ninth round" and "Eleventh round" of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from vidiff.config import DEFAULT_GUIDANCE  # noqa: E402


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--num", type=int, default=32, help="held-out clips (the first N of the eval split)")
    p.add_argument("--t", type=ints, default=[10, 100, 300, 600, 850], help="timesteps for the reconstruction error")
    p.add_argument("--denoise-from", type=ints, default=[300, 600, 900, 999], help="timesteps t0 to denoise from")
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from sample_checks import colour_drift, motion, persistence, profile_text

    from vidiff.data import build_dataset
    from vidiff.diffusion.guidance import classifier_free_guidance
    from vidiff.diffusion.samplers import sample_ddpm
    from vidiff.diffusion.schedules import q_sample
    from vidiff.errors import VidiffError
    from vidiff.pipeline import VideoPipeline

    try:
        pipe = VideoPipeline.from_pretrained(args.run, device="cpu")
    except VidiffError as e:
        sys.exit(f"error: {e}")
    run, cfg, dn = pipe.run_dir, pipe.config, pipe.denoiser.eval()
    T = dn.num_timesteps
    if any(not 0 <= t < T for t in args.t + args.denoise_from):
        sys.exit(f"error: timesteps must be in 0..{T - 1}")
    ev = build_dataset(cfg.data, "eval")
    n = min(args.num, len(ev))
    x0 = torch.stack([ev[i]["video"] for i in range(n)])  # (N, C, F, H, W)
    labels = torch.stack([ev.labels(i) for i in range(n)]) if dn.num_labels else None
    kw = {"labels": labels} if labels is not None else {}
    fn = classifier_free_guidance(dn, labels, args.guidance) if labels is not None else dn

    def noised(t: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(args.seed)
        a = dn.alphas_cumprod[t].float()
        noise = dn.noise.draw(x0.shape, g, "cpu")
        return q_sample(x0, a.expand(n), noise), g

    print(f"{run}: {n} held-out clips, seed {args.seed}")
    print("reconstruction   " + "  ".join(f"t={t:<6d}" for t in args.t))
    est, copy, profiles = [], [], []
    for t in args.t:
        x_t, _ = noised(t)
        with torch.no_grad():
            xh = dn(x_t, torch.full((n,), t), **kw)[0].clamp(-1, 1)
        est.append(((xh - x0) ** 2).mean().item())
        profiles.append(f"  t={t}: {profile_text(xh)}")
        copy.append(((x_t / dn.alphas_cumprod[t].float().sqrt()).clamp(-1, 1) - x0).pow(2).mean().item())
    print("  estimate MSE   " + "  ".join(f"{m:<8.4f}" for m in est))
    print("  copy MSE       " + "  ".join(f"{m:<8.4f}" for m in copy))
    print(f"speed of the one-shot estimate; real clips: {profile_text(x0)}")
    print("\n".join(profiles))

    _, speed = motion(x0)
    guided = f", guidance {args.guidance:g} towards each clip's labels" if labels is not None else ""
    print(f"denoising from t0 (DDPM{guided}); real clips: speed {speed:.2f} px/frame, "
          f"persistence {persistence(x0)[0]:.3f}, colour drift {colour_drift(x0):.3f}")
    for t0 in args.denoise_from:
        x_t, g = noised(t0)
        steps = max(1, round(100 * (t0 + 1) / T))
        timesteps = sorted(set(torch.linspace(t0, 0, steps).round().long().tolist()), reverse=True)
        with torch.no_grad():
            one_shot = dn(x_t, torch.full((n,), t0), **kw)[0].clamp(-1, 1)
            v = sample_ddpm(fn, x_t, dn.alphas_cumprod, timesteps, generator=g, noise=dn.noise)
        print(f"  t0 {t0:4d} ({len(timesteps):3d} steps): one-shot estimate speed {motion(one_shot)[1]:.2f} | "
              f"result speed {motion(v)[1]:.2f}, persistence {persistence(v)[0]:.3f}, "
              f"colour drift {colour_drift(v):.3f}", flush=True)


if __name__ == "__main__":
    main()
