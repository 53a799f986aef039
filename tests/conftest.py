import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("VIDIFF_TEST_THREADS", "2")))


@pytest.fixture
def tiny_config():
    """A RunConfig small enough to train for a few steps in seconds on a CPU."""
    from vidiff.config import load_config

    return load_config(None, [
        "data.num_frames=4", "data.size=16", "data.max_objects=1", "data.length=64",
        "model.channels=8", "model.channel_mults=[1,2]", "model.spatial_attention_levels=[1]",
        "model.temporal_attention_levels=[1]", "model.head_dim=8",
        "diffusion.timesteps=100",
        "train.steps=6", "train.batch_size=2", "train.warmup_steps=2", "train.checkpoint_every=3",
        "train.log_every=1", "train.preview_steps=2", "train.ema_decay=0.9",
    ])
