"""Small videos made with PyAV for the data tests: every container the reader accepts, and broken files.

Frame k carries its own index in two flat grey blocks (8 * (k % 32) and 8 * (k // 32)), so tests can tell
which source frames a clip holds even after lossy coding. Content uses few colours, so that gifs
(256-colour palettes) round-trip exactly too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vidiff.io import encode_video, write_image_sequence

# Encoder settings that reproduce RGB frames exactly (see MACHINE-NOTES: yuv420p never does).
LOSSLESS = {
    ".mp4": dict(codec="libx264rgb", pix_fmt="rgb24", options={"qp": "0", "g": "4", "bf": "2"}),
    ".mov": dict(codec="libx264rgb", pix_fmt="rgb24", options={"qp": "0", "g": "4"}),
    ".mkv": dict(codec="ffv1", pix_fmt="bgr0", options={"g": "4"}),
    ".avi": dict(codec="png"),
    ".webm": dict(codec="libvpx-vp9", pix_fmt="gbrp", options={"lossless": "1", "g": "4"}),
    ".gif": {},  # PIL palette gif: exact for content of <= 256 colours
}
SUFFIXES = tuple(LOSSLESS)


def frames_with_ids(n: int, h: int = 24, w: int = 32, offset: int = 0) -> np.ndarray:
    """uint8 (n, h, w, 3): a static checkerboard, a block holding the id k + offset, and a moving square."""
    yy, xx = np.mgrid[:h, :w]
    board = ((yy // 4 + xx // 4) % 2).astype(np.uint8)
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames[..., 1] = 40 + 120 * board
    frames[..., 2] = 200 - 120 * board
    for k in range(n):
        # grey, not colour: luma survives yuv420p coding far better than chroma
        frames[k, : h // 2, : w // 2] = 8 * ((k + offset) % 32)
        frames[k, : h // 2, w // 2: 3 * w // 4] = 8 * ((k + offset) // 32)
        x = (3 * k) % (w - 6)
        frames[k, h - 8: h - 2, x: x + 6] = 255
    return frames


def frame_ids(frames: np.ndarray, offset: int = 0) -> list[int]:
    """Recover the ids written by `frames_with_ids` from (F, H, W, 3) frames (robust to mild lossy coding)."""
    h, w = frames.shape[1:3]
    rows = slice(h // 8, 3 * h // 8)  # the middle of each block: away from edges blurred by coding or resizing
    low = frames[:, rows, w // 8: 3 * w // 8].astype(float).mean(axis=(1, 2, 3)) / 8
    high = frames[:, rows, w // 2 + w // 16: 3 * w // 4 - w // 16].astype(float).mean(axis=(1, 2, 3)) / 8
    return [int(round(a)) + 32 * int(round(b)) - offset for a, b in zip(low, high)]


def write_lossless(path: Path, frames: np.ndarray, fps: float = 12.0) -> Path:
    """Encode `frames` exactly (by the file's suffix), or a numbered png folder when `path` has no suffix."""
    path = Path(path)
    if path.suffix == "":
        write_image_sequence(path, frames)
        return path
    return encode_video(path, frames, fps=fps, **LOSSLESS[path.suffix])


def make_bad_files(folder: Path) -> dict[str, str]:
    """Write every kind of broken input into `folder`; returns name -> a word the skip reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    good = frames_with_ids(12)
    (folder / "text.mp4").write_text("this is a text file renamed to .mp4\n" * 20)
    (folder / "empty.webm").write_bytes(b"")
    full = encode_video(folder / "full.tmp.mp4", good, fps=12).read_bytes()
    (folder / "full.tmp.mp4").unlink()
    (folder / "truncated.mp4").write_bytes(full[: len(full) // 2])  # the index (moov) is at the end: cut off
    corrupt = bytearray(full)
    corrupt[:64] = np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes()
    (folder / "corrupt.mp4").write_bytes(bytes(corrupt))
    encode_video(folder / "zero.avi", good[:0], fps=12)  # a video stream with no frames
    encode_video(folder / "codec.mp4", good, fps=12, **LOSSLESS[".mp4"])
    data = (folder / "codec.mp4").read_bytes()
    (folder / "codec.mp4").write_bytes(data.replace(b"avc1", b"zzzz"))  # a fourcc no decoder knows
    return {"text.mp4": "invalid data", "empty.webm": "invalid data", "truncated.mp4": "invalid data",
            "corrupt.mp4": "invalid data", "zero.avi": "0 frames", "codec.mp4": "unsupported codec"}


def make_truncated_avi(path: Path, n: int = 24) -> Path:
    """An avi whose header promises n frames but whose data stops halfway (readable start, broken end)."""
    full = encode_video(path.with_suffix(".full.avi"), frames_with_ids(n), fps=12, codec="ffv1", pix_fmt="bgr0")
    data = full.read_bytes()
    os.remove(full)
    path.write_bytes(data[: len(data) // 2])
    return path
