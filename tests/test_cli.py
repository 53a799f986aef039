"""The command line end to end on a tiny config, and the one-line errors it promises."""

import json
import subprocess
import sys

import av
import numpy as np
import pytest

from vidiff.cli import main

TINY = ["data.num_frames=4", "data.size=16", "data.max_objects=1", "model.channels=8", "model.channel_mults=[1,2]",
        "model.spatial_attention_levels=[1]", "model.temporal_attention_levels=[1]", "model.head_dim=8",
        "model.spacetime_attention_levels=[]",  # the factorized pair of the older presets
        "model.patch_size=1", "diffusion.timesteps=50", "train.steps=4", "train.batch_size=2",
        "train.warmup_steps=1", "train.preview_steps=2", "train.time_budget_minutes=null",
        "train.init_from=null",  # the demo preset starts from shapes32-still, which a tiny network does not fit
        "sample.image_guidance=0"]  # and is sampled with the image model shapes32-image, of another network


def run_cli(*args):
    """Run `python -m vidiff` in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "vidiff", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "demo", *TINY, "--out", str(run), "--quiet"]) == 0
    return run


def test_train_then_sample_writes_every_output(trained_run, tmp_path):
    out = tmp_path / "samples"
    assert main(["sample", str(trained_run), "--num", "3", "--steps", "3", "--out", str(out), "--quiet"]) == 0
    arr = np.load(out / "samples.npy")
    assert arr.shape == (3, 4, 16, 16, 3) and arr.dtype == np.uint8
    for i in range(3):
        assert (out / f"sample_{i:03d}.gif").stat().st_size > 0
        with av.open(str(out / f"sample_{i:03d}.mp4")) as c:
            stream = c.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert sum(1 for _ in c.decode(stream)) == 4
    assert (out / "grid.png").is_file() and (out / "grid.gif").is_file()
    # same seed, same videos; ddpm works too
    out2 = tmp_path / "again"
    assert main(["sample", str(trained_run), "--num", "3", "--steps", "3", "--out", str(out2), "--quiet"]) == 0
    assert np.array_equal(arr, np.load(out2 / "samples.npy"))
    assert main(["sample", str(trained_run), "--num", "1", "--steps", "5", "--sampler", "ddpm", "--out",
                 str(tmp_path / "ddpm"), "--quiet"]) == 0


def test_pipeline_api(trained_run):
    import torch

    from vidiff import VideoPipeline

    pipe = VideoPipeline.from_pretrained(trained_run)
    out = pipe(num_videos=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0), progress=False)
    assert out.videos.shape == (2, 3, 4, 16, 16) and out.videos.abs().max() <= 1
    assert out.frames().shape == (2, 4, 16, 16, 3)


def test_resume_from_the_cli(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    assert main(["train", "--out", str(run), "--resume", "train.steps=6", "--quiet"]) == 0
    assert json.loads((run / "train_summary.json").read_text())["step"] == 6


def _one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidiff: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_errors_are_one_line(trained_run, tmp_path):
    _one_line_error(run_cli("train", "demo", "train.stepz=3", "--out", tmp_path / "x"), "unknown config key 'train.stepz'")
    _one_line_error(run_cli("train", "demo", "train.steps=many", "--out", tmp_path / "x"), "must be an integer")
    _one_line_error(run_cli("train", "nosuchpreset", "--out", tmp_path / "x"), "no config file or preset")
    _one_line_error(run_cli("sample", tmp_path / "missing"), "run folder not found")
    _one_line_error(run_cli("train", "--out", tmp_path / "missing", "--resume"), "cannot resume")

    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((trained_run / "config.json").read_text())
    _one_line_error(run_cli("sample", no_weights), "has no model.safetensors")

    mismatched = tmp_path / "mismatched"
    mismatched.mkdir()
    cfg = json.loads((trained_run / "config.json").read_text())
    cfg["model"]["channels"] = 16
    (mismatched / "config.json").write_text(json.dumps(cfg))
    (mismatched / "model.safetensors").write_bytes((trained_run / "model.safetensors").read_bytes())
    _one_line_error(run_cli("sample", mismatched), "does not match the model config", "has shape")

    _one_line_error(run_cli("sample", trained_run, "--steps", "0"), "number of steps must be between 1 and 50")


def test_help_explains():
    r = run_cli("--help")
    assert r.returncode == 0 and "demo" in r.stdout and "sample" in r.stdout
    r = run_cli("sample", "--help")
    assert "samples.npy" in r.stdout
