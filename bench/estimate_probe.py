"""Where a model loses two objects: its one-shot estimate of real two-object clips at each noise level.

    python bench/estimate_probe.py RUN [RUN ...] [--num 64] [--t 200,400,600,800,900] [--threads 1]
                                   [--resample [--guidance W] [--per-label W] [--image-guidance S]
                                    [--sampler NAME] [--no-self-cond]]

Held-out clips of the eval split that show two objects are noised to each t (the same noise for every RUN), and
each RUN's network estimates the clean clip once, with the clip's own labels, no guidance and no self-conditioning
input (as half of its training steps). Printed per t: the estimate's MSE to the clip, and the fraction of clips in
which both objects are kept in every frame, and each in one piece in every frame (bench/sample_checks.asked_kept,
the scores the sampler probes print for samples), next to the clean clips' own. A one-frame model (an image model)
estimates every frame alone. If the estimates of real clips already merge or break the objects at some t, the
sampler cannot be what loses them there: the network does (docs/benchmarks.md, "Thirty-fourth round").

`--resample`: instead of one estimate, sample each noised clip back to t = 0 (SDEdit, Meng et al. 2022) with
DPM-Solver++(2M) SDE (`--sampler`), 50 steps per 1,000 timesteps, self-conditioned (`--no-self-cond`: not) and
guided towards the clip's labels as `vidiff sample` guides (classifier-free guidance `--guidance` plus `--per-label`,
default the model's `sample.guidance_per_label`, and image guidance `--image-guidance` by the model's
`sample.image_model`). Where along t0 the kept and whole scores
fall below the real clips' tells at which noise levels sampling loses what the clips had.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from vidiff.config import DEFAULT_GUIDANCE, SAMPLER_NAMES  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders or shipped names")
    p.add_argument("--num", type=int, default=64, help="two-object clips (the first N of the eval split)")
    p.add_argument("--t", default="200,400,600,800,900", help="timesteps, comma-separated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resample", action="store_true", help="sample back from each t instead of one estimate")
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    p.add_argument("--image-guidance", type=float, default=0.0, metavar="S")
    p.add_argument("--sampler", default="dpmpp-2m-sde", choices=sorted(SAMPLER_NAMES), help="the sampler of --resample")
    p.add_argument("--no-self-cond", action="store_true",
                   help="--resample without the previous estimate as self-conditioning input (zeros at every step)")
    p.add_argument("--per-label", type=float, default=None, metavar="W",
                   help="guidance per label past the first (default: the model's sample.guidance_per_label)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from sample_checks import asked_kept

    from vidiff.data import build_dataset
    from vidiff.diffusion.schedules import q_sample, scale_colour
    from vidiff.errors import VidiffError
    from vidiff.pipeline import VideoPipeline

    try:
        pipes = [VideoPipeline.from_pretrained(r, device="cpu") for r in args.runs]
    except VidiffError as e:
        sys.exit(f"error: {e}")
    videos = [pp.config for pp in pipes if pp.config.data.num_frames > 1]
    if not videos:
        sys.exit("error: give at least one video model (the clips are drawn from its data)")
    if args.resample and len(videos) < len(pipes):
        sys.exit("error: --resample samples whole clips: give video models only (no one-frame image model)")
    cfg = videos[0]
    ev = build_dataset(cfg.data, "eval")
    clips, labels = [], []
    for i in range(len(ev)):
        lab = ev.labels(i)
        if int((lab >= 0).sum()) == 2:
            clips.append(ev[i]["video"])
            labels.append(lab)
        if len(clips) == args.num:
            break
    x0 = torch.stack(clips)  # (N, C, F, H, W)
    labels = torch.stack(labels)  # (N, L)
    N, C, F, H, W = x0.shape
    kept, _, _ = asked_kept(x0, labels)
    whole, _, _ = asked_kept(x0, labels, whole=True)
    print(f"{N} real two-object clips: kept {kept:.3f}, whole {whole:.3f}")
    g = torch.Generator().manual_seed(args.seed)
    ts = [int(t) for t in args.t.split(",") if t]
    noises = {t: torch.randn(x0.shape, generator=g) for t in ts}
    for run, pp in zip(args.runs, pipes):
        dn = pp.denoiser
        one_frame = pp.config.data.num_frames == 1
        for t in ts:
            a = dn.alphas_cumprod[t].float().expand(N)
            # the same draw for every model, its colour part scaled as the model was trained
            x_t = q_sample(x0, a, scale_colour(noises[t], dn.noise.chroma))  # (N, C, F, H, W)
            if args.resample:
                est = resample(pp, x_t, t, labels, args, g)
                kept, _, _ = asked_kept(est, labels)
                whole, frames, _ = asked_kept(est, labels, whole=True)
                print(f"{run} from t={t}: kept {kept:.3f}, whole {whole:.3f} (frames {frames:.3f})", flush=True)
                continue
            with torch.no_grad():
                if one_frame:  # every frame alone: (N F, C, 1, H, W)
                    flat = x_t.permute(0, 2, 1, 3, 4).reshape(N * F, C, 1, H, W)
                    est, _ = dn(flat, torch.full((N * F,), t), labels=labels.repeat_interleave(F, 0))
                    est = est.reshape(N, F, C, H, W).permute(0, 2, 1, 3, 4)
                else:
                    est, _ = dn(x_t, torch.full((N,), t), labels=labels)
            est = est.clamp(-1, 1)
            kept, _, _ = asked_kept(est, labels)
            whole, frames, _ = asked_kept(est, labels, whole=True)
            mse = float(((est - x0) ** 2).mean())
            print(f"{run} t={t}: MSE {mse:.4f}, kept {kept:.3f}, whole {whole:.3f} (frames {frames:.3f})", flush=True)


def resample(pipe, x_t: torch.Tensor, t: int, labels: torch.Tensor, args, g: torch.Generator) -> torch.Tensor:
    """x_t (N, C, F, H, W) at timestep t, sampled back to a clip as `vidiff sample` samples (see --resample)."""
    import math

    from vidiff.denoise import denoise_timesteps
    from vidiff.diffusion.guidance import _like, classifier_free_guidance, image_guidance
    from vidiff.diffusion.samplers import SAMPLERS

    dn = pipe.denoiser
    if args.no_self_cond:
        base = dn

        def dn(x, t, x_self=None, **kw):  # noqa: F811  (the network never sees its previous estimate)
            return base(x, t, x_self=None, **kw)

        _like(dn, base)  # its schedule and noise
        dn.self_conditioning, dn.num_timesteps = False, base.num_timesteps
    per_label = pipe.config.sample.guidance_per_label if args.per_label is None else args.per_label
    fn = classifier_free_guidance(dn, labels, args.guidance, per_label=per_label)
    if args.image_guidance:
        fn = image_guidance(fn, pipe.image_denoiser(pipe.config.sample.image_model), labels, args.image_guidance)
    steps = max(1, math.ceil(50 * t / (dn.num_timesteps - 1)))
    with torch.no_grad():
        return SAMPLERS[args.sampler](fn, x_t, dn.alphas_cumprod, denoise_timesteps(t, steps), generator=g,
                                      noise=dn.noise).clamp(-1, 1)


if __name__ == "__main__":
    main()
