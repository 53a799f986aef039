import json

import pytest

from vidiff.config import RunConfig, load_config
from vidiff.errors import ConfigError


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(None, ["train.steps=7", "model.channel_mults=[1,2]", "model.spatial_attention_levels=[1]",
                             "model.temporal_attention_levels=[1]", "diffusion.min_snr_gamma=null",
                             "train.lr=2e-4"])
    assert cfg.train.steps == 7 and cfg.model.channel_mults == (1, 2)
    assert cfg.diffusion.min_snr_gamma is None and cfg.train.lr == 2e-4
    path = tmp_path / "c.json"
    cfg.save(path)
    assert load_config(path) == cfg  # JSON round trip
    assert json.loads(path.read_text())["train"]["steps"] == 7


def test_yaml_file_and_override_precedence(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  steps: 3\n  batch_size: 2\nmodel:\n  channels: 16\n")
    cfg = load_config(path, ["train.steps=5"])
    assert (cfg.train.steps, cfg.train.batch_size, cfg.model.channels) == (5, 2, 16)


@pytest.mark.parametrize("overrides,message", [
    (["train.stepz=3"], "unknown config key 'train.stepz' (did you mean 'steps'?)"),
    (["trian.steps=3"], "unknown config key 'trian'"),
    (["train.steps=abc"], "config key 'train.steps' must be an integer, got 'abc'"),
    (["train.steps=1.5"], "must be an integer"),
    (["train.lr=fast"], "config key 'train.lr' must be a number"),
    (["model.channel_mults=x"], "must be a list"),
    (["diffusion.objective=score"], "diffusion.objective must be eps, v or x0"),
    (["data.size=30"], "data.size 30 must be divisible"),
    (["model.channel_mults=[1,2]"], "must lie in 0..1 (one level per entry of channel_mults)"),
    (["diffusion.noise_correlation=1"], "diffusion.noise_correlation must be in [0, 1)"),
    (["diffusion.shift=0"], "diffusion.shift must be > 0"),
    (["diffusion.chroma_noise=0"], "diffusion.chroma_noise must be > 0"),
    (["diffusion.chroma_noise=2", "model.in_channels=4"], "diffusion.chroma_noise needs RGB pixels"),
    (["data.shape_speed=-1"], "data.shape_speed must be >= 0"),
    (["data.still_fraction=1.5"], "data.still_fraction must be between 0 and 1"),
    (["data.min_objects=3", "data.max_objects=2"], "data.min_objects must be between 1 and data.max_objects"),
    (["model.rope_frame_scale=-1"], "model.rope_frame_scale must be >= 0"),
    (["model.pixel_blocks=0"], "model.pixel_blocks must be >= 1"),
    (["model.pixel_blocks=2", "model.pixel_channels=0"], "needs a full-resolution head"),
    (["model.temporal_downsample_levels=[2]"], "must lie in 0..1 (a level followed by a downsampling)"),
    (["train.optimizer=sgd"], "train.optimizer must be adamw or muon"),
    (["train.short_clip_frames=16"], "train.short_clip_frames must be 0 (off) or fewer than data.num_frames"),
    (["train.short_clip_frames=3", "model.temporal_downsample_levels=[0]"],
     "train.short_clip_frames 3 must be divisible by 2^len(model.temporal_downsample_levels) = 2"),
    (["train.short_clip_frames=4", "masks.enabled=true", "masks.max_context=4"],
     "train.short_clip_frames must exceed masks.max_context and 2 when masks are enabled"),
    (["train"], "must look like section.key=value"),
    (["\n"], "override '\\n' must look like section.key=value"),  # found by test_fuzz: keep errors on one line
    (["train.st\neps=3"], "unknown config key 'train.st\\neps'"),
    (["train=3"], "section 'train' must be a mapping"),
])
def test_bad_configs_give_one_line_errors(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot parse config"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(listy)


def test_shipped_demo_preset_is_valid():
    from vidiff.cli import _config_path

    cfg = load_config(_config_path("demo"))
    assert isinstance(cfg, RunConfig) and cfg.data.num_frames == 16 and cfg.data.size == 32
