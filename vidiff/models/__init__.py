"""Denoising networks over (B, C, F, H, W) video tensors."""

from vidiff.models.registry import PRESETS, preset
from vidiff.models.unet import VideoUNet

__all__ = ["VideoUNet", "PRESETS", "preset"]
