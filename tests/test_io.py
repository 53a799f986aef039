import av
import numpy as np
import pytest
import torch

from vidiff.errors import VidiffError
from vidiff.io import frame_grid, to_frames, video_grid, write_video


def _decode(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif"])
def test_written_videos_decode_to_what_was_written(tmp_path, suffix):
    rng = np.random.default_rng(0)
    frames = np.zeros((6, 32, 32, 3), np.uint8)
    for i in range(6):  # a moving flat square: codec-friendly content
        frames[i, 8:20, 4 + 2 * i:16 + 2 * i] = rng.integers(60, 255, 3)
    path = write_video(tmp_path / f"v{suffix}", frames, fps=8)
    decoded = _decode(path)
    assert decoded.shape == frames.shape
    tolerance = 12 if suffix != ".gif" else 4  # yuv420p chroma subsampling blurs colour edges
    assert np.abs(decoded.astype(int) - frames).mean() < tolerance


def test_float_video_conversion_and_upscale(tmp_path):
    video = torch.linspace(-1, 1, 3 * 2 * 4 * 4).reshape(3, 2, 4, 4)
    frames = to_frames(video)
    assert frames.shape == (2, 4, 4, 3) and frames.dtype == np.uint8 and frames.min() == 0 and frames.max() == 255
    path = write_video(tmp_path / "up.gif", video, upscale=3)
    assert _decode(path).shape == (2, 12, 12, 3)
    with pytest.raises(VidiffError, match="use .mp4, .webm or .gif"):
        write_video(tmp_path / "x.avi", video)


def test_grids():
    v = np.zeros((3, 5, 4, 4, 3), np.uint8)
    assert frame_grid(v).shape == (3 * 5 + 1, 5 * 5 + 1, 3)
    assert video_grid(v, columns=2).shape == (5, 2 * 5 + 1, 2 * 5 + 1, 3)
