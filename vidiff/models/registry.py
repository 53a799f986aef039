"""Named model presets (DiT-style registry of factory functions)."""

from __future__ import annotations

import dataclasses
from typing import Callable

from vidiff.config import ModelConfig

PRESETS: dict[str, Callable[[], ModelConfig]] = {}


def register(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
    PRESETS[fn.__name__] = fn
    return fn


@register
def tiny() -> ModelConfig:
    """For tests: a few thousand parameters, two levels."""
    return ModelConfig(channels=8, channel_mults=(1, 2), blocks_per_level=1, spatial_attention_levels=(1,),
                       temporal_attention_levels=(1,), head_dim=8)


@register
def small() -> ModelConfig:
    """The CPU demo model for 16 x 32 x 32 clips."""
    return ModelConfig()


@register
def base() -> ModelConfig:
    """A GPU-sized model for 16 x 64 x 64 clips."""
    return ModelConfig(channels=64, channel_mults=(1, 2, 3, 4), blocks_per_level=2,
                       spatial_attention_levels=(2, 3), temporal_attention_levels=(1, 2, 3), head_dim=64)


def preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; choose from {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name](), **overrides)
