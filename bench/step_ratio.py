"""Relative cost of a training step for variants of the demo config, timed interleaved in one process.

    python bench/step_ratio.py "" "model.pixel_channels=0" [--rounds 12] [--batch 4]
    python bench/step_ratio.py "" "data.num_frames=4 train.batch_size=16" --rounds 8   # a short-clip step

Each argument is a space-separated list of key=value overrides of the demo preset ("" = the preset itself). The
variants' steps (`--batch` built-in shapes clips, else each variant's train.batch_size; self-conditioning coin as
in training) alternate round by
round, so that a slower or faster minute of a shared CPU hits every variant alike; the median step time and its
ratio to the first variant are printed, and likewise for one no-gradient network call on `--infer-batch` clips (a
guided sampling step of 8 videos is one call on 16). For whole-pipeline numbers (videos/s, memory, sampling) see
throughput.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.throughput import demo_training_step  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="+", help='override lists, e.g. "" "model.pixel_channels=0"')
    p.add_argument("--rounds", type=int, default=12, help="timed steps per variant (default: 12)")
    p.add_argument("--batch", type=int, help="clips per training step for every variant (default: its train.batch_size)")
    p.add_argument("--infer-batch", type=int, default=16, help="clips per timed sampling call (default: 16)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    steps = {}
    for variant in args.variants:
        den, step, x0 = demo_training_step(variant.split(), args.batch)
        xs = torch.randn(args.infer_batch, *x0.shape[1:])  # (N, C, F, H, W)
        ts = torch.full((args.infer_batch,), den.num_timesteps / 2)

        def call(net=den.net, xs=xs, ts=ts):
            with torch.no_grad():
                net(xs, ts)

        step(), step(), call()  # warm-up
        steps[variant] = (step, call, den.net.num_parameters(), [], [])
    for _ in range(args.rounds):
        for step, call, _, step_times, call_times in steps.values():
            for fn, times in ((step, step_times), (call, call_times)):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
    first = None
    for variant, (_, _, params, step_times, call_times) in steps.items():
        medians = [sorted(t)[len(t) // 2] for t in (step_times, call_times)]
        first = first or medians
        print(f"{variant or '(the demo preset)':32s} {params / 1e6:.2f}M params  "
              f"training step {medians[0] * 1000:.0f} ms (x{medians[0] / first[0]:.2f})  sampling call on {args.infer_batch} clips {medians[1] * 1000:.0f} ms "
              f"(x{medians[1] / first[1]:.2f})")


if __name__ == "__main__":
    main()
