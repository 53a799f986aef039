"""The models shipped inside the package load, stay under the size limit and sample."""

import pytest
import torch

from vidiff.pipeline import SHIPPED, VideoPipeline, resolve_run


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_and_samples(name):
    run = resolve_run(name)
    assert (run / "model.safetensors").stat().st_size <= 20 * 2**20
    pipe = VideoPipeline.from_pretrained(name)
    d = pipe.config.data
    out = pipe(num_videos=1, num_inference_steps=2, generator=torch.Generator().manual_seed(0), progress=False)
    assert out.videos.shape == (1, 3, d.num_frames, d.size, d.size)
    assert torch.isfinite(out.videos).all() and out.videos.abs().max() <= 1


def test_shapes32_is_the_demo_preset_trained_longer():
    """The README promises that `shapes32` is the demo's config trained for longer: only `train` may differ."""
    from vidiff.cli import _config_path
    from vidiff.config import load_config

    shipped = load_config(resolve_run("shapes32") / "config.json")
    demo = load_config(_config_path("demo"))
    for section in ("data", "model", "diffusion", "masks"):
        assert getattr(shipped, section) == getattr(demo, section), section


def test_demo_starts_from_the_shipped_still_clip_model():
    """The demo preset fine-tunes `shapes32-still` (the image model `shapes32-image` trained further on clips in which
    nothing moves): every tensor of the demo network is in it, with its shape, and the data differ only in motion."""
    from dataclasses import replace

    from vidiff.build import build_denoiser
    from vidiff.cli import _config_path
    from vidiff.config import load_config
    from vidiff.training.checkpoint import init_from_weights, load_tensors

    demo = load_config(_config_path("demo"))
    assert demo.train.init_from == "shapes32-still"
    still = load_config(resolve_run("shapes32-still") / "config.json")
    assert still.data.shape_speed == 0 and replace(still.data, shape_speed=demo.data.shape_speed) == demo.data
    assert still.model == demo.model and still.diffusion == demo.diffusion
    image = load_config(resolve_run("shapes32-image") / "config.json")
    assert image.data.num_frames == 1 and image.data.size == demo.data.size
    net = build_denoiser(demo).net
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert init_from_weights(net, load_tensors(resolve_run("shapes32-still") / "model.safetensors"), "test") == []
    assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items())
