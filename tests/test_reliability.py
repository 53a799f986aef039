"""Nothing lost: kill-and-resume, signals, NaN/Inf, disk full, corrupted checkpoints, unsafe files."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vidiff.errors import CheckpointError
from vidiff.training import loop as loop_module
from vidiff.training import train
from vidiff.training.checkpoint import checkpoint_dirs, latest_good_checkpoint, load_tensors, verify_checkpoint

STEPS = 12
TINY = ["data.num_frames=4", "data.size=16", "data.max_objects=1", "data.length=64", "model.channels=8",
        "model.channel_mults=[1,2]", "model.spatial_attention_levels=[1]", "model.temporal_attention_levels=[1]",
        "model.spacetime_attention_levels=[]",  # the factorized pair of the older presets
        "model.head_dim=8", "model.patch_size=1", "model.dropout=0.1", "diffusion.timesteps=100",
        f"train.steps={STEPS}", "train.batch_size=2", "train.warmup_steps=2", "train.checkpoint_every=1",
        "train.keep_checkpoints=2", "train.log_every=1", "train.preview_steps=2", "train.time_budget_minutes=null",
        "train.init_from=null"]


def _cmd(out, *extra):
    return [sys.executable, "-m", "vidiff", "train", "demo", *TINY, *extra, "--out", str(out), "--quiet"]


def _weights(run):
    ckpt = checkpoint_dirs(run)[-1]
    return {name: load_tensors(ckpt / name) for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors")}


def _assert_bitwise_equal(a, b):
    for name in a:
        assert a[name].keys() == b[name].keys()
        for k in a[name]:
            assert torch.equal(a[name][k], b[name][k]), (name, k)


def _rows(run):
    path = Path(run) / "loss.csv"
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    subprocess.run(_cmd(run), check=True, capture_output=True, timeout=300)
    return _weights(run)


def _start_and_wait_for_step(out, k, *extra):
    proc = subprocess.Popen(_cmd(out, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while _rows(out) < k:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"training ended before step {k}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    return proc


def test_sigkill_at_random_steps_then_resume_is_bitwise_identical(reference, tmp_path):
    rng = random.Random(os.environ.get("PYTEST_SEED", "7"))
    for k in rng.sample(range(2, STEPS - 1), 3):
        out = tmp_path / f"killed_at_{k}"
        proc = _start_and_wait_for_step(out, k)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        done = subprocess.run(_cmd(out, "--resume"), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        _assert_bitwise_equal(reference, _weights(out))
        assert json.loads((out / "train_summary.json").read_text())["step"] == STEPS
        assert [int(line.split(",")[0]) for line in (out / "loss.csv").read_text().splitlines()[1:]] == \
            list(range(1, STEPS + 1))  # the log has each step once


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_save_and_explain(reference, tmp_path, sig, code):
    out = tmp_path / "run"
    proc = _start_and_wait_for_step(out, 3)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "saved a checkpoint" in stdout and "--resume" in stdout and "Traceback" not in stderr
    stopped = json.loads((checkpoint_dirs(out)[-1] / "state.json").read_text())["step"]
    assert 3 <= stopped < STEPS
    subprocess.run(_cmd(out, "--resume"), check=True, capture_output=True, timeout=300)
    _assert_bitwise_equal(reference, _weights(out))


def _poison(monkeypatch, bad_steps):
    """Make the loss NaN on the given (1-based) calls, through the real loop."""
    real_build = loop_module.build_denoiser
    calls = {"n": 0}

    def build(cfg):
        den = real_build(cfg)
        real_loss = den.loss

        def loss(*args, **kwargs):
            calls["n"] += 1
            value = real_loss(*args, **kwargs)
            return value * float("nan") if calls["n"] in bad_steps else value

        den.loss = loss
        return den

    monkeypatch.setattr(loop_module, "build_denoiser", build)


def test_nonfinite_steps_are_skipped_and_counted(tiny_config, tmp_path, monkeypatch):
    _poison(monkeypatch, {2, 4})
    summary = train(tiny_config, tmp_path / "run", progress=False)
    assert summary["nonfinite_steps_skipped"] == 2 and summary["step"] == tiny_config.train.steps
    for v in load_tensors(tmp_path / "run" / "model.safetensors").values():
        assert torch.isfinite(v).all()


def test_too_many_nonfinite_steps_stop_with_the_last_good_checkpoint(tiny_config, tmp_path, monkeypatch):
    from vidiff.training.loop import TrainingDiverged

    tiny_config.train.max_nonfinite_steps = 3
    tiny_config.train.steps = 10
    _poison(monkeypatch, set(range(5, 100)))
    # steps 5, 6, 7 are NaN: stop after step 7; the step-6 checkpoint holds the (finite) weights of step 4
    with pytest.raises(TrainingDiverged, match="NaN/Inf for 3 steps in a row.*last good checkpoint is step_00000006"):
        train(tiny_config, tmp_path / "run", progress=False)
    good = checkpoint_dirs(tmp_path / "run")[-1]
    assert good.name == "step_00000006" and verify_checkpoint(good) is None
    for v in load_tensors(good / "model.safetensors").values():
        assert torch.isfinite(v).all()


def test_corrupted_checkpoint_falls_back_to_the_previous_one(tiny_config, tmp_path):
    run = tmp_path / "run"
    train(tiny_config, run, progress=False)  # checkpoints at 3 and 6
    newest = checkpoint_dirs(run)[-1]
    data = bytearray((newest / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF  # flip bits in a weight: the file still parses, only the checksum can tell
    (newest / "model.safetensors").write_bytes(bytes(data))
    assert "model.safetensors fails its checksum" in verify_checkpoint(newest)
    with pytest.warns(UserWarning, match="step_00000006 is damaged"):
        assert latest_good_checkpoint(run).name == "step_00000003"
    tiny_config.train.steps = 6
    with pytest.warns(UserWarning):
        summary = train(tiny_config, run, resume=True, progress=False)
    assert summary["step"] == 6  # retrained steps 4..6 from the good checkpoint


def _mount_tmpfs(path: Path, size_kb: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def test_disk_full_keeps_the_previous_checkpoint(tiny_config, tmp_path):
    probe = tmp_path / "probe"
    tiny_config.train.steps = 3
    train(tiny_config, probe, progress=False)
    used_kb = sum(f.stat().st_size for f in probe.rglob("*") if f.is_file()) // 1024
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, used_kb + 220):  # room for one checkpoint and the logs, not for two
        pytest.skip("cannot mount a tmpfs here (needs root): no small filesystem to fill")
    try:
        tiny_config.train.steps = 12
        with pytest.raises(CheckpointError, match="No space left on device; the previous checkpoint step_0000000"):
            train(tiny_config, disk / "run", progress=False)
        good = checkpoint_dirs(disk / "run")[-1]
        assert verify_checkpoint(good) is None
        assert not list((disk / "run" / "checkpoints").glob(".tmp*"))  # the half-written one was removed
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_pickles_are_refused_everywhere(tiny_config, tmp_path):
    from vidiff.cli import main

    bad = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(1)}, bad)
    r = subprocess.run([sys.executable, "-m", "vidiff", "sample", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "refusing to load model.pt" in r.stderr and "Traceback" not in r.stderr
    assert main(["sample", str(bad)]) == 2


def test_two_trainings_never_share_a_run_folder(tmp_path):
    out = tmp_path / "run"
    long = "train.steps=100000"  # still training when the second one starts, however fast this machine is
    first = _start_and_wait_for_step(out, 1, long)
    try:
        second = subprocess.run(_cmd(out, long, "--resume"), capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "is being trained by process" in second.stderr, second.stderr
    finally:
        first.kill()
        first.wait()
    # the kernel released the lock with the killed process: resuming now works
    done = subprocess.run(_cmd(out, "--resume"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_resuming_a_finished_run_says_so(tmp_path, capsys):
    from vidiff.cli import main

    out = tmp_path / "run"
    args = ["train", "demo", *TINY, "train.steps=2", "--out", str(out), "--quiet"]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0  # a run that already reached train.steps is not an error
    assert "already finished its 2 steps" in capsys.readouterr().out
