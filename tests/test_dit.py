"""VideoDiT: shapes, adaLN-Zero start, space-time mixing, rotary tables, conditioning, and a run end to end."""

import pytest
import torch

from vidiff import VideoPipeline
from vidiff.cli import _config_path, main
from vidiff.config import ModelConfig, load_config
from vidiff.errors import ConfigError
from vidiff.models import VideoDiT
from vidiff.models.layers import apply_rotary, rotary_axes, rotary_axes_tables

TINY = dict(architecture="dit", channels=16, depth=2, head_dim=8, patch_size=2)


def _wake(net: VideoDiT, std: float = 0.1) -> None:
    """Give the zero-initialised adaLN and output layers random weights (a trained model's are not zero)."""
    torch.manual_seed(1)
    for name, p in net.named_parameters():
        if "ada" in name or name.startswith("out."):
            torch.nn.init.normal_(p, std=std)


@pytest.mark.parametrize("cfg", [
    ModelConfig(**TINY),
    ModelConfig(**{**TINY, "patch_size": 1, "in_channels": 4}),
    ModelConfig(**TINY, self_condition=True, cond_channels=4, num_labels=5),
])
def test_dit_output_matches_input_shape_and_starts_at_zero(cfg):
    net = VideoDiT(cfg)
    x = torch.randn(2, cfg.in_channels, 3, 8, 12)  # (B, C, F, H, W), H != W
    cond = torch.randn(2, cfg.cond_channels, 3, 8, 12) if cfg.cond_channels else None
    labels = torch.tensor([[0, 3], [4, -1]]) if cfg.num_labels else None
    out = net(x, torch.tensor([3.0, 700.0]), cond, None, labels)
    assert out.shape == x.shape
    assert out.abs().max() == 0  # adaLN-Zero: every block is the identity and the head is zero at the start
    _wake(net)
    out = net(x, torch.tensor([3.0, 700.0]), cond, None, labels)
    out.pow(2).mean().backward()
    dead = [n for n, p in net.named_parameters() if p.ndim > 1 and not p.grad.abs().sum() > 0]
    assert not dead, dead


def test_dit_mixes_frames_and_rows_and_sees_its_inputs():
    net = VideoDiT(ModelConfig(**TINY, self_condition=True, num_labels=5))
    _wake(net)
    x, t = torch.randn(1, 3, 4, 8, 8), torch.tensor([100.0])
    base = net(x, t)
    y = x.clone()
    y[:, :, 0, :2, :2] += 1  # one patch of frame 0
    moved = net(y, t)
    assert not torch.allclose(moved[:, :, 3, 6:, 6:], base[:, :, 3, 6:, 6:], atol=1e-6)  # far frame, far corner
    assert torch.equal(net(x, t, None, torch.zeros_like(x)), base)  # no estimate = an all-zero one
    assert not torch.allclose(net(x, t, None, torch.randn_like(x)), base, atol=1e-5)
    assert not torch.allclose(net(x, t, labels=torch.tensor([[2]])), base, atol=1e-5)
    assert torch.equal(net(x, t, labels=torch.tensor([[-1]])), base)  # no label = unconditional
    assert not torch.allclose(net(x, torch.tensor([900.0])), base, atol=1e-5)


def test_dit_runs_on_other_clip_lengths_and_rejects_indivisible_sizes():
    net = VideoDiT(ModelConfig(**TINY))
    assert net(torch.randn(1, 3, 9, 16, 16), torch.tensor([1.0])).shape == (1, 3, 9, 16, 16)
    with pytest.raises(ValueError, match="divisible by the patch size 2"):
        net(torch.randn(1, 3, 4, 9, 8), torch.tensor([1.0]))


@pytest.mark.parametrize("dim", [2, 8, 10, 32, 64])
def test_rotary_tables_match_rotary_axes(dim):
    positions = torch.cartesian_prod(torch.arange(3), torch.arange(4), torch.arange(5))  # (60, 3)
    x = torch.randn(2, 4, 60, dim)
    torch.testing.assert_close(apply_rotary(x, *rotary_axes_tables(positions, dim)), rotary_axes(x, positions))
    with pytest.raises(ValueError, match="even head width"):
        rotary_axes_tables(positions, 9)


@pytest.mark.parametrize("override,message", [
    ("model.architecture=vit", "model.architecture must be unet or dit"),
    ("model.depth=0", "needs depth >= 1"),
    ("model.pixel_channels=8", "takes no pixel_channels"),
    ("model.head_dim=12", "must be a multiple of model.head_dim"),
])
def test_dit_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_config_path("demo-dit"), [override])


def test_dit_run_trains_resumes_and_samples(tmp_path):
    run = tmp_path / "run"
    args = ["data.num_frames=4", "data.size=16", "data.max_objects=1", "model.autoencoder=null", "model.in_channels=3",
            "model.channels=16", "model.depth=2", "model.head_dim=8", "diffusion.timesteps=50", "train.steps=2",
            "train.batch_size=2", "train.warmup_steps=1", "train.preview_steps=2", "train.time_budget_minutes=null"]
    assert main(["train", "demo-dit", *args, "--out", str(run), "--quiet"]) == 0
    assert main(["train", "demo-dit", *args, "train.steps=3", "--out", str(run), "--resume", "--quiet"]) == 0
    pipe = VideoPipeline.from_pretrained(run)
    assert type(pipe.denoiser.net).__name__ == "VideoDiT"
    out = pipe(num_videos=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0), progress=False)
    assert out.videos.shape == (2, 3, 4, 16, 16)
    assert main(["sample", str(run), "--num", "1", "--steps", "2", "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "samples.npy").exists()
