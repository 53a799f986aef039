"""Training throughput, peak memory and sampling time: vidiff against lucidrains' video-diffusion-pytorch.

Every model is measured in its own subprocess (so that peak RSS is its own) on the same data shape,
16 frames x 32x32 RGB, in one run of this script. Also measured in the same run: this CPU's fp32 matmul
throughput, and each training step's FLOPs (torch.utils.flop_counter), so that a step's speed can be
read as a fraction of what the machine can do.

    python bench/throughput.py                 # print the table
    python bench/throughput.py --write         # also write it into docs/benchmarks.md

The baseline needs `pip install --no-deps video-diffusion-pytorch einops-exts rotary-embedding-torch`
(see bench/requirements.txt). It imports torchvision at load time, which has no CPU build here, so a
stub module stands in for it (the baseline's model and diffusion code do not use it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402

F, S = 16, 32

# name -> (description, model overrides for vidiff). The demo config is read from the shipped preset.
VIDIFF_MODELS = {
    "vidiff-demo": ("vidiff demo config (patch 4, 32 ch, mults 1-2-4, space-time attention at levels 0-1, "
                    "self-conditioning, 16-channel full-resolution stem and head)", []),
    "vidiff-demo-no-pixel-head": ("the demo config without the full-resolution stem and head (the demo until the "
                                  "twelfth round)", ["model.pixel_channels=0"]),
    "vidiff-demo-no-selfcond": ("the demo config without self-conditioning (the previous demo)",
                                ["model.self_condition=false"]),
    "vidiff-demo-factorized": ("the demo config with factorized temporal attention at every level, no "
                               "self-conditioning (the demo of round two)",
                               ["model.spacetime_attention_levels=[]", "model.temporal_attention_levels=[0,1,2]",
                                "model.self_condition=false"]),
    "vidiff-3.2M": ("vidiff demo family, 36 ch (more parameters than the baseline)",
                    ["model.channels=36", "model.head_dim=18"]),
    "vidiff-small-p1": ("vidiff `small` preset, no patching (32 ch, mults 1-2-4)",
                        ["model.patch_size=1", "model.channels=32", "model.channel_mults=[1,2,4]",
                         "model.spatial_attention_levels=[2]", "model.temporal_attention_levels=[1,2]",
                         "model.spacetime_attention_levels=[]", "model.head_dim=32", "model.self_condition=false"]),
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def time_steps(step, steps: int, mean: bool = False) -> tuple[int, float]:
    """FLOPs of one training step (counted on a warm-up step), then the median (or mean) time of `steps` more.

    The warm-up step runs attention through the math backend of scaled_dot_product_attention: the flop counter
    does not see the fused CPU kernel (it counts 0 for it), but counts the math path's matmuls (same FLOPs)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, sdpa_kernel(SDPBackend.MATH):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if not times:
        return fc.get_total_flops(), float("nan")
    return fc.get_total_flops(), sum(times) / len(times) if mean else median(times)


def demo_training_step(overrides: list[str], batch: int | None = None):
    """The demo config with `overrides`, its denoiser, and one AdamW training step on a fixed batch of `batch`
    built-in shapes clips (None: the config's train.batch_size): returns (denoiser, step, batch as the network sees
    it), step(p_self) running one step with that self-conditioning probability; a latent config (model.autoencoder)
    encodes the batch in every step, as training does. Shared by this script and step_ratio.py."""
    import torch

    from vidiff.build import build_autoencoder, build_denoiser
    from vidiff.cli import _config_path
    from vidiff.config import load_config
    from vidiff.data import BouncingShapes
    from vidiff.training.optim import select_trainable

    cfg = load_config(_config_path("demo"), overrides)
    batch = batch or cfg.train.batch_size
    torch.manual_seed(0)
    den = build_denoiser(cfg)
    select_trainable(den.net, cfg.train.trainable)  # train.trainable: the rest gets no gradient
    opt = torch.optim.AdamW([p for p in den.net.parameters() if p.requires_grad], lr=1e-3)
    ds = BouncingShapes(num_frames=cfg.data.num_frames, size=cfg.data.size)
    x0 = torch.stack([ds[i]["video"] for i in range(batch)])  # (B, C, F, H, W)
    ae = build_autoencoder(cfg)

    def encode(video):  # pixels, or a latent config's (B, L, F/t, H/f, W/f) latents
        if ae is None:
            return video
        with torch.no_grad():
            return ae.encode(video)

    def step(p_self: float = 0.5):
        t = torch.randint(0, den.num_timesteps, (batch,))
        x = encode(x0)
        loss = den.loss(x, t, torch.randn_like(x), self_condition_prob=p_self).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return den, step, encode(x0)


def child_vidiff(name: str, batch: int, steps: int, sample_steps: int) -> dict:
    import torch

    from vidiff.diffusion import sample

    den, step, _ = demo_training_step(VIDIFF_MODELS[name][1], batch)

    if den.self_conditioning:  # half of the steps run an extra forward pass: count both kinds, time their mix
        f0, _ = time_steps(lambda: step(0.0), 0)
        f1, _ = time_steps(lambda: step(1.0), 0)
        flops, step_s = (f0 + f1) / 2, time_steps(step, 2 * steps, mean=True)[1]
    else:
        flops, step_s = time_steps(step, steps)
    train_rss = peak_rss_mb()
    den.eval()
    n_videos = 8
    t0 = time.perf_counter()
    sample(den, (n_videos, 3, F, S, S), den.alphas_cumprod, "ddim", sample_steps,  # DDIM and DDPM cost the same
           generator=torch.Generator().manual_seed(0))
    sample_s = time.perf_counter() - t0
    return {"params": den.net.num_parameters(), "step_s": step_s, "flops": flops,
            "peak_rss_mb": train_rss, "sample_s_per_video": sample_s / n_videos,
            "sampling_steps": sample_steps}


def child_lucidrains(batch: int, steps: int) -> dict:
    import types

    import torch

    tv = types.ModuleType("torchvision")  # stub: see the module docstring
    tv.transforms, tv.utils = types.ModuleType("torchvision.transforms"), types.ModuleType("torchvision.utils")
    tv.transforms.ToTensor = lambda: None  # only used as a default argument of its gif loader
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms, "torchvision.utils": tv.utils})
    from video_diffusion_pytorch import GaussianDiffusion, Unet3D

    torch.manual_seed(0)
    model = Unet3D(dim=32, dim_mults=(1, 2, 4))
    diffusion = GaussianDiffusion(model, image_size=S, num_frames=F, timesteps=1000, loss_type="l2")
    opt = torch.optim.Adam(diffusion.parameters(), lr=1e-4)
    from vidiff.data import BouncingShapes

    ds = BouncingShapes(num_frames=F, size=S)
    x0 = (torch.stack([ds[i]["video"] for i in range(batch)]) + 1) / 2  # its API takes [0, 1]

    def step():
        loss = diffusion(x0)
        opt.zero_grad()
        loss.backward()
        opt.step()

    flops, step_s = time_steps(step, steps)
    train_rss = peak_rss_mb()
    # Its sampler always runs all `timesteps` (1000) steps: time a few and multiply.
    x = torch.randn(8, 3, F, S, S)
    per_step = []
    with torch.no_grad():
        for i in range(3):
            t0 = time.perf_counter()
            x = diffusion.p_sample(x, torch.full((8,), 999 - i, dtype=torch.long))
            per_step.append(time.perf_counter() - t0)
    return {"params": sum(p.numel() for p in model.parameters()), "step_s": step_s,
            "flops": flops, "peak_rss_mb": train_rss,
            "sample_s_per_video": median(per_step) * 1000 / 8, "sampling_steps": 1000}


def matmul_gflops() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * 2048**3 / median(times) / 1e9


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4, help="videos per training step for every model (default: 4)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per model (median reported)")
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps for vidiff sampling (default: 50)")
    p.add_argument("--skip-baseline", action="store_true", help="do not run video-diffusion-pytorch")
    p.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    p.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child is not None:
        import torch

        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
        name, batch, steps, sample_steps = args.child[0], *map(int, args.child[1:4])
        result = child_lucidrains(batch, steps) if name == "lucidrains" else child_vidiff(name, batch, steps, sample_steps)
        print(json.dumps(result))
        return

    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    ceiling = matmul_gflops()
    names = list(VIDIFF_MODELS) + ([] if args.skip_baseline else ["lucidrains"])
    results = {}
    for name in names:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        steps = args.steps if name != "lucidrains" else max(2, args.steps // 2)
        results[name] = run_child([name, str(args.batch), str(steps), str(args.sample_steps)])

    base = results.get("lucidrains")
    rows = ["| model | params | train videos/s | × baseline | peak RSS (MB) | GFLOP/step | % of matmul peak | "
            "sampling s/video (steps) |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        desc = VIDIFF_MODELS[name][0] if name in VIDIFF_MODELS else "lucidrains video-diffusion-pytorch Unet3D(dim=32, dim_mults=(1,2,4))"
        vps = args.batch / r["step_s"]
        speedup = f"{vps / (args.batch / base['step_s']):.1f}×" if base else "–"
        pct = 100 * r["flops"] / r["step_s"] / 1e9 / ceiling
        rows.append(f"| {desc} | {r['params'] / 1e6:.2f}M | {vps:.2f} | {speedup} | {r['peak_rss_mb']:.0f} | "
                    f"{r['flops'] / 1e9:.0f} | {pct:.0f}% | {r['sample_s_per_video']:.2f} ({r['sampling_steps']}) |")
    cmd = "python bench/throughput.py " + " ".join(a for a in sys.argv[1:])
    table = "\n".join(rows)
    text = (f"Command: `{cmd.strip()}` (batch {args.batch}, {F} frames × {S}×{S}, fp32, "
            f"{torch.get_num_threads()} threads). fp32 matmul 2048² on this CPU in the same run: {ceiling:.0f} GFLOP/s.\n\n"
            f"{table}\n\nPeak RSS is the whole process (Python + torch ≈ 0.3–0.4 GB of it). The baseline's sampler "
            f"always runs its 1000 training timesteps; its time per video is 3 timed steps × 1000 / 8 videos.")
    print(text)
    if args.write:
        write_section("throughput", "Training throughput, memory and sampling time", text)


if __name__ == "__main__":
    main()
