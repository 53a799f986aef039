"""Latent diffusion: the per-frame autoencoder, training on its latents, sampling and tasks back in pixels."""

import json

import pytest
import torch

from vidiff import VideoPipeline
from vidiff.cli import main
from vidiff.config import load_config
from vidiff.errors import CheckpointError, ConfigError, VidiffError
from vidiff.models.autoencoder import AutoencoderConfig, FrameAutoencoder
from vidiff.tasks.generate import conditional_sample
from vidiff.training.autoencoder import load_autoencoder

AE = ["data.num_frames=4", "data.size=16", "data.max_objects=1", "model.channels=8", "model.channel_mults=[1,2]",
      "model.latent_channels=3", "steps=3", "clips_per_step=2", "frames_per_clip=2"]
TINY = ["data.num_frames=4", "data.size=16", "data.max_objects=1", "model.channels=8", "model.channel_mults=[1,2]",
        "model.spatial_attention_levels=[1]", "model.temporal_attention_levels=[1]", "model.head_dim=8",
        "model.spacetime_attention_levels=[]", "model.patch_size=1", "model.pixel_channels=0",
        "model.in_channels=3", "diffusion.timesteps=50", "train.steps=3", "train.batch_size=2",
        "train.warmup_steps=1", "train.preview_steps=2", "train.time_budget_minutes=null", "train.init_from=null"]


def test_autoencoder_shapes_and_latent_range():
    ae = FrameAutoencoder(AutoencoderConfig(channels=8, channel_mults=(1, 2, 2), latent_channels=5))
    x = torch.rand(2, 3, 3, 16, 16) * 2 - 1  # (B, C, F, H, W)
    z = ae.encode(x)
    assert z.shape == (2, 5, 3, 4, 4) and z.abs().max() <= 1
    assert ae.decode(z).shape == x.shape and ae(x, torch.tensor([0.0, 0.5])).shape == x.shape
    # per frame: frame 1 of the latents depends on frame 1 of the input only
    x2 = x.clone()
    x2[:, :, 0] = 0
    torch.testing.assert_close(ae.encode(x2)[:, :, 1:], z[:, :, 1:])


def test_temporal_autoencoder_compresses_time_in_windows():
    cfg = AutoencoderConfig(channels=8, channel_mults=(1, 2, 2), latent_channels=5, temporal_levels=(0, 1))
    assert cfg.time_factor == 4 and cfg.factor == 4
    ae = FrameAutoencoder(cfg)
    x = torch.rand(2, 3, 8, 16, 16) * 2 - 1  # (B, C, F, H, W)
    z = ae.encode(x)
    assert z.shape == (2, 5, 2, 4, 4) and z.abs().max() <= 1  # (B, L, F/4, H/4, W/4)
    assert ae.decode(z).shape == x.shape
    # the temporal convs mix frames: changing frame 1 changes the first latent frame
    x2 = x.clone()
    x2[:, :, 1] = 0
    assert not torch.allclose(ae.encode(x2)[:, :, 0], z[:, :, 0])
    # a per-frame autoencoder's state dict has no temporal layers (the shipped shapes-ae keeps loading)
    assert not any(".time." in k for k in FrameAutoencoder(AutoencoderConfig(channels=8)).state_dict())


def test_temporal_latent_run_trains_samples_and_does_frame_tasks(tmp_path):
    ae = tmp_path / "ae"
    assert main(["train-autoencoder", *AE, "model.temporal_levels=[0]", "--out", str(ae), "--quiet"]) == 0
    run = tmp_path / "run"
    assert main(["train", "demo", *TINY, f"model.autoencoder={ae}", "--out", str(run), "--quiet"]) == 0
    pipe = VideoPipeline.from_pretrained(run)
    out = pipe(num_videos=1, num_inference_steps=2, generator=torch.Generator().manual_seed(0), progress=False)
    assert out.videos.shape == (1, 3, 4, 16, 16)
    mask = torch.zeros(1, 1, 4, 1, 1)
    mask[:, :, :2] = 1
    known = torch.rand(1, 3, 4, 16, 16) * 2 - 1
    cond = conditional_sample(pipe, known, mask, num_steps=2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(cond[:, :, :2], known[:, :, :2])
    with pytest.raises(VidiffError, match="only reconstruction guidance"):
        conditional_sample(pipe, known, mask, method="masked", num_steps=2)
    varied = pipe.vary(out.videos, strength=0.5, num_steps=2, progress=False)
    assert varied.shape == (1, 3, 4, 16, 16)


@pytest.fixture(scope="module")
def ae_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ae") / "ae"
    assert main(["train-autoencoder", *AE, "--out", str(out), "--quiet"]) == 0
    return out


def test_train_autoencoder_writes_a_loadable_folder(ae_dir):
    assert {p.name for p in ae_dir.iterdir()} >= {"autoencoder.json", "autoencoder.safetensors", "loss.csv"}
    assert json.loads((ae_dir / "autoencoder.json").read_text())["latent_channels"] == 3
    ae = load_autoencoder(ae_dir)
    assert not any(p.requires_grad for p in ae.parameters())
    with pytest.raises(CheckpointError, match="no autoencoder.json"):
        load_autoencoder(ae_dir.parent / "missing")


def test_train_autoencoder_errors_are_one_line(tmp_path, capsys):
    assert main(["train-autoencoder", "model.latent_chanels=3", "--out", str(tmp_path / "x")]) == 2
    assert "unknown config key 'model.latent_chanels'" in capsys.readouterr().err
    assert main(["train-autoencoder", "data.size=18", "--out", str(tmp_path / "x")]) == 2
    assert "must be divisible by the factor 4" in capsys.readouterr().err
    assert main(["train-autoencoder", "model.temporal_levels=[2]", "--out", str(tmp_path / "x")]) == 2
    assert "model.temporal_levels must be distinct levels in 0..1" in capsys.readouterr().err
    assert main(["train-autoencoder", "model.temporal_levels=[0,1]", "frames_per_clip=6", "--out",
                 str(tmp_path / "x")]) == 2
    assert "divisible by the time factor 4" in capsys.readouterr().err


@pytest.fixture(scope="module")
def latent_run(ae_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("latent") / "run"
    assert main(["train", "demo", *TINY, f"model.autoencoder={ae_dir}", "--out", str(run), "--quiet"]) == 0
    return run


def test_latent_run_samples_pixel_videos(latent_run, tmp_path):
    pipe = VideoPipeline.from_pretrained(latent_run)
    assert pipe.autoencoder is not None and pipe.video_channels == 3
    out = pipe(num_videos=2, num_inference_steps=3, generator=torch.Generator().manual_seed(0), progress=False)
    assert out.videos.shape == (2, 3, 4, 16, 16) and out.videos.abs().max() <= 1
    assert list((latent_run / "previews").glob("*.gif"))
    assert main(["sample", str(latent_run), "--num", "1", "--steps", "2", "--out", str(tmp_path / "s"),
                 "--quiet"]) == 0
    assert (tmp_path / "s" / "samples.npy").is_file()


def test_latent_model_keeps_known_frames_and_refuses_regions(latent_run):
    pipe = VideoPipeline.from_pretrained(latent_run)
    known = torch.rand(1, 3, 4, 16, 16) * 2 - 1
    mask = torch.zeros(1, 1, 4, 1, 1)
    mask[:, :, :2] = 1
    out = conditional_sample(pipe, known, mask, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == known.shape
    torch.testing.assert_close(out[:, :, :2], known[:, :, :2])
    region = torch.zeros(1, 1, 4, 16, 16)
    region[..., :8] = 1  # the left half of every frame: guided through the decoder
    out = conditional_sample(pipe, known, region, num_steps=2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[..., :8], known[..., :8])
    with pytest.raises(VidiffError, match="only reconstruction guidance"):
        conditional_sample(pipe, known, region, method="replacement", num_steps=2)
    from vidiff.denoise import model_denoise

    with pytest.raises(VidiffError, match="autoencoder latents"):
        model_denoise(pipe, known[0])


def test_latent_config_errors(ae_dir):
    from vidiff.build import build_autoencoder

    with pytest.raises(ConfigError, match="model.in_channels must be the autoencoder's latent_channels"):
        build_autoencoder(load_config(None, [f"model.autoencoder={ae_dir}", "model.in_channels=4"]))
    with pytest.raises(CheckpointError, match="shipped: shapes-ae"):
        build_autoencoder(load_config(None, ["model.autoencoder=nowhere"]))


def test_shipped_autoencoder_reconstructs_held_out_shapes():
    from vidiff.data import BouncingShapes

    ae = load_autoencoder("shapes-ae")
    assert ae.config.factor == 4 and ae.config.latent_channels == 4
    ds = BouncingShapes(num_frames=8, size=32, max_objects=3, seed=321)  # seeds the autoencoder never saw
    x = torch.stack([ds[i]["video"] for i in range(8)])
    with torch.no_grad():
        z = ae.encode(x)
        mse = (ae.decode(z).clamp(-1, 1) - x).pow(2).mean().item()
        noisy = (ae.decode(z + 0.1 * torch.randn_like(z)).clamp(-1, 1) - x).pow(2).mean().item()
    assert mse < 0.006 and noisy < 0.008, (mse, noisy)  # measured 0.0026 / 0.0032


def test_demo_latent_preset_trains_and_samples(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "demo-latent", "train.steps=2", "train.time_budget_minutes=null", "train.warmup_steps=1",
                 "train.preview_steps=2", "--out", str(run), "--quiet"]) == 0
    out = VideoPipeline.from_pretrained(run)(num_videos=1, num_inference_steps=2, progress=False)
    assert out.videos.shape == (1, 3, 16, 32, 32)
