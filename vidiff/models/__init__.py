"""Denoising networks over (B, C, F, H, W) video tensors."""

from vidiff.models.registry import PRESETS, preset
from vidiff.models.dit import VideoDiT
from vidiff.models.unet import VideoUNet

__all__ = ["VideoDiT", "VideoUNet", "PRESETS", "preset"]
