"""The training loop, EMA and checkpoints."""

from vidiff.training.loop import train

__all__ = ["train"]
