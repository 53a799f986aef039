"""Multi-process training through torchrun (the gloo backend on CPU; NCCL on GPUs uses the same code)."""

import json
import subprocess
import sys

import torch

from test_cli import TINY
from vidiff.training.checkpoint import checkpoint_dirs, load_tensors


def test_torchrun_two_processes(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "vidiff", "train",
                        "demo", *TINY, "train.checkpoint_every=2", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=300, env={"OMP_WAIT_POLICY": "PASSIVE",
                                                                         **__import__("os").environ})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("trained 4 steps") == 1  # only rank 0 reports and writes
    assert json.loads((out / "train_summary.json").read_text())["step"] == 4
    weights = load_tensors(checkpoint_dirs(out)[-1] / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_time_budget_stops_every_rank_at_the_same_step(tmp_path):
    # Rank 1's clock runs 10,000x fast: it is out of time after a fraction of a second while rank 0 is not. Every
    # rank must still stop at the same step (one that stopped alone would leave the others waiting in the all-reduce).
    script = tmp_path / "fast_clock.py"
    script.write_text(
        "import os, runpy, sys, time\n"
        "if os.environ['RANK'] == '1':\n"
        "    real = time.perf_counter\n"
        "    t0 = real()\n"
        "    time.perf_counter = lambda: t0 + 10_000 * (real() - t0)\n"
        "sys.argv = ['vidiff'] + sys.argv[1:]\n"
        "runpy.run_module('vidiff', run_name='__main__')\n")
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), "train",
                        "demo", *TINY, "train.steps=400", "train.time_budget_minutes=30", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=240, env={"OMP_WAIT_POLICY": "PASSIVE",
                                                                         **__import__("os").environ})
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["stopped_early"] and summary["step"] < 400
