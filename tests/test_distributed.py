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
