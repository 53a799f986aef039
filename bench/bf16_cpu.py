"""Does bf16 autocast pay on this CPU? fp32 against bf16 for a 2048² matmul, a Conv3d and a whole demo training step.

    python bench/bf16_cpu.py [--threads 2] [--steps 15]

CPUs with native bf16 (AVX-512 BF16, AMX) run large bf16 matmuls several times faster than fp32; CPUs without it
run them slower. The demo step is timed in alternating rounds (fp32, bf16, fp32, bf16) so that a drift in the
machine's speed shows. Used for the "Eighth round" of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def gflops(fn, flop: float, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return flop * repeats / (time.perf_counter() - t0) / 1e9


def autocast(on: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if on else contextlib.nullcontext()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=15, help="timed demo training steps per round")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from vidiff.build import build_denoiser
    from vidiff.config import load_config

    print(f"native bf16 (AVX-512 BF16): {torch.cpu._is_avx512_bf16_supported()}, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}")
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        print(f"matmul 2048² {str(dtype)[6:]}: {gflops(lambda: a @ b, 2 * 2048**3, 10):.0f} GFLOP/s")
    x, conv = torch.randn(4, 64, 16, 32, 32), torch.nn.Conv3d(64, 64, 3, padding=1)
    flop = 2 * 64 * 64 * 27 * 4 * 16 * 32 * 32
    with torch.no_grad():
        for on in (False, True):
            with autocast(on):
                print(f"Conv3d 64->64, 4x16x32x32, {'bf16 autocast' if on else 'fp32'}: "
                      f"{gflops(lambda: conv(x), flop, 3):.0f} GFLOP/s")

    cfg = load_config(ROOT / "vidiff" / "presets" / "demo.yaml")
    dn = build_denoiser(cfg)
    opt = torch.optim.AdamW(dn.parameters(), cfg.train.lr)
    x0 = torch.rand(cfg.train.batch_size, 3, cfg.data.num_frames, cfg.data.size, cfg.data.size) * 2 - 1
    labels = torch.randint(0, max(1, cfg.model.num_labels), (x0.shape[0], cfg.data.max_objects))

    def step(on: bool) -> None:
        t = torch.randint(0, dn.num_timesteps, (x0.shape[0],))
        with autocast(on):
            loss = dn.loss(x0, t, torch.randn_like(x0), labels=labels).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for on in (False, True, False, True):
        for _ in range(3):
            step(on)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step(on)
        print(f"demo training step, batch {x0.shape[0]}, {'bf16 autocast' if on else 'fp32'}: "
              f"{args.steps / (time.perf_counter() - t0):.2f} steps/s")


if __name__ == "__main__":
    main()
