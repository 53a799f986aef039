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
