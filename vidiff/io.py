"""The one place that encodes (and, later, decodes) video and image files.

File-side frames are uint8 numpy arrays (F, H, W, 3). Library-side videos are float tensors
(C, F, H, W) in [-1, 1]; `to_frames` converts one to the other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidiff.errors import VidiffError


def to_frames(video: torch.Tensor) -> np.ndarray:
    """(C, F, H, W) float in [-1, 1] -> (F, H, W, 3) uint8. Single-channel video is repeated to RGB."""
    if video.ndim != 4:
        raise ValueError(f"expected a (C, F, H, W) video, got shape {tuple(video.shape)}")
    frames = ((video.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    frames = frames.permute(1, 2, 3, 0).numpy()  # (F, H, W, C)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return np.ascontiguousarray(frames)


def _as_frames(video) -> np.ndarray:
    if isinstance(video, torch.Tensor) and video.is_floating_point():
        return to_frames(video)
    frames = np.asarray(video)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError("expected uint8 frames (F, H, W, 3) or a float tensor (C, F, H, W) in [-1, 1]")
    return frames


def write_video(path: str | Path, video, fps: float = 8.0, upscale: int = 1) -> Path:
    """Write a video as .mp4 (H.264), .webm (VP9) or .gif, chosen by the file suffix.

    `video`: uint8 (F, H, W, 3) or float (C, F, H, W) in [-1, 1]. `upscale` repeats pixels so that
    tiny clips are visible in players (H.264 needs even sizes; 32x32 clips are fine either way).
    """
    path = Path(path)
    frames = _as_frames(video)
    if upscale > 1:
        frames = frames.repeat(upscale, axis=1).repeat(upscale, axis=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)
        return path
    codecs = {".mp4": ("libx264", "yuv420p"), ".webm": ("libvpx-vp9", "yuv420p")}
    if suffix not in codecs:
        raise VidiffError(f"cannot write {path.name}: use .mp4, .webm or .gif")
    import av
    from fractions import Fraction

    codec, pix_fmt = codecs[suffix]
    H, W = frames.shape[1:3]
    if H % 2 or W % 2:  # yuv420p needs even sizes
        frames = np.pad(frames, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "medium"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_grid(videos: np.ndarray, pad: int = 1) -> np.ndarray:
    """uint8 (N, F, H, W, 3) -> one image with a row per video and a column per frame."""
    N, F, H, W, _ = videos.shape
    grid = np.full((N * (H + pad) + pad, F * (W + pad) + pad, 3), 40, dtype=np.uint8)
    for i in range(N):
        for j in range(F):
            y, x = pad + i * (H + pad), pad + j * (W + pad)
            grid[y:y + H, x:x + W] = videos[i, j]
    return grid


def video_grid(videos: np.ndarray, columns: int, pad: int = 1) -> np.ndarray:
    """uint8 (N, F, H, W, 3) -> (F, H', W', 3): the N videos tiled side by side, playing together."""
    N, F, H, W, _ = videos.shape
    rows = (N + columns - 1) // columns
    out = np.full((F, rows * (H + pad) + pad, columns * (W + pad) + pad, 3), 40, dtype=np.uint8)
    for i in range(N):
        y, x = pad + (i // columns) * (H + pad), pad + (i % columns) * (W + pad)
        out[:, y:y + H, x:x + W] = videos[i]
    return out


def write_image(path: str | Path, image: np.ndarray, upscale: int = 1) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if upscale > 1:
        image = image.repeat(upscale, axis=0).repeat(upscale, axis=1)
    Image.fromarray(image).save(path)
    return path


def write_samples(out_dir: str | Path, frames: np.ndarray, fps: float = 8.0, prefix: str = "sample",
                  upscale: int = 4) -> list[Path]:
    """Write what `vidiff sample` promises for uint8 videos (N, F, H, W, 3):
    one mp4 and one gif per video, `grid.png` (a row of frames per video), `grid.gif` (all videos
    playing side by side) and `samples.npy` holding the exact uint8 array."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, video in enumerate(frames):
        written.append(write_video(out_dir / f"{prefix}_{i:03d}.mp4", video, fps=fps, upscale=upscale))
        written.append(write_video(out_dir / f"{prefix}_{i:03d}.gif", video, fps=fps, upscale=upscale))
    written.append(write_image(out_dir / "grid.png", frame_grid(frames), upscale=upscale))
    written.append(write_video(out_dir / "grid.gif", video_grid(frames, columns=min(len(frames), 8)), fps=fps,
                               upscale=upscale))
    np.save(out_dir / "samples.npy", frames)
    written.append(out_dir / "samples.npy")
    return written
