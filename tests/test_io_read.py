"""Reading videos (vidiff.io): every container, exact frames where the codec allows, clip seeking, bad files."""

from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from video_factory import (SUFFIXES, frame_ids, frames_with_ids, make_bad_files, make_truncated_avi,
                           write_lossless)
from vidiff.io import (VideoReadError, encode_video, image_sequence_files, probe_video, read_video, select_frames,
                       write_image_sequence, write_video)


def _decode_all(path):
    """An independent reference: PyAV (or PIL, for image folders) decoding every frame in order, no seeking."""
    if path.is_dir():
        return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in image_sequence_files(path)])
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.mark.parametrize("suffix", SUFFIXES + ("",))
def test_lossless_files_decode_to_exactly_what_was_written(tmp_path, suffix):
    frames = frames_with_ids(20)
    path = write_lossless(tmp_path / f"v{suffix}", frames, fps=12)
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height) == (20, 32, 24)
    assert info.kind == ("images" if suffix == "" else "video")
    decoded, fps = read_video(path)
    assert decoded.dtype == np.uint8 and decoded.shape == frames.shape
    assert np.array_equal(decoded, frames)
    # gif delays are whole 1/100 s (12 fps -> 8 cs -> 12.5 fps); image folders use the assumed 8 fps
    expected_fps = {".gif": 12.5, "": 8.0}.get(suffix, 12.0)
    assert fps == pytest.approx(expected_fps, rel=1e-3) and info.fps == pytest.approx(expected_fps, rel=1e-3)


@pytest.mark.parametrize("suffix,codec", [(".mp4", "h264"), (".mov", "h264"), (".mkv", "h264"), (".webm", "vp9"),
                                          (".avi", "mpeg4")])
def test_default_lossy_encoders_round_trip_within_tolerance(tmp_path, suffix, codec):
    frames = frames_with_ids(16)
    path = encode_video(tmp_path / f"v{suffix}", frames, fps=15)
    info = probe_video(path)
    assert info.codec == codec and info.fps == pytest.approx(15) and info.num_frames == 16
    decoded, _ = read_video(path)
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 10  # yuv420p: chroma is subsampled
    assert frame_ids(decoded) == list(range(16))


@pytest.mark.parametrize("suffix", SUFFIXES + ("",))
def test_clips_read_by_seeking_equal_the_full_decode(tmp_path, suffix):
    """Every (start, stride) clip equals the same frames of a plain front-to-back decode (keyframes every 4)."""
    n = 40
    path = write_lossless(tmp_path / f"v{suffix}", frames_with_ids(n))
    full = _decode_all(path)
    assert frame_ids(full) == list(range(n))
    for stride in (1, 2, 3):
        for start in range(0, n - 2 * stride):
            clip, _ = read_video(path, start=start, num_frames=3, stride=stride)
            assert np.array_equal(clip, full[start: start + 3 * stride: stride]), (start, stride)
    clip, _ = read_video(path, indices=[5, 5, 2, 39, 0])  # any order, repeats allowed
    assert frame_ids(clip) == [5, 5, 2, 39, 0]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_a_late_clip_decodes_only_from_the_keyframe_before_it(tmp_path, suffix):
    path = write_lossless(tmp_path / f"v{suffix}", frames_with_ids(40))
    stats = {}
    clip, _ = read_video(path, start=30, num_frames=4, stats=stats)
    assert frame_ids(clip) == [30, 31, 32, 33]
    assert 4 <= stats["decoded"] <= 12  # keyframes every 4 frames: far fewer than the 34 a front-to-back read needs
    stats = {}
    read_video(path, start=0, num_frames=4, stats=stats)
    assert stats["decoded"] == 4  # stops right after the last wanted frame


def test_variable_frame_rate_holds_the_previous_frame(tmp_path):
    """Frame k is the one shown at time k / fps: a timestamp gap repeats the frame before it."""
    frames = frames_with_ids(10)
    path = tmp_path / "vfr.mkv"
    shown = [0, 1, 2, 5, 6, 7, 8, 9]  # frames 3 and 4 are never shown; 2 stays on screen for three ticks
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = 32, 24, "bgr0"
        s.codec_context.time_base = Fraction(1, 10)
        for k in shown:
            frame = av.VideoFrame.from_ndarray(frames[k], format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, 10)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    clip, fps = read_video(path, indices=range(10))
    assert fps == pytest.approx(10)
    assert frame_ids(clip) == [0, 1, 2, 2, 2, 5, 6, 7, 8, 9]


def test_image_folders_sort_numerically_and_jpg_is_close(tmp_path):
    frames = frames_with_ids(12)
    folder = tmp_path / "seq"
    folder.mkdir()
    for k in range(12):  # unpadded numbers: 10 must come after 9, not after 1
        Image.fromarray(frames[k]).save(folder / f"img{k}.png")
    (folder / "notes.png").write_bytes(b"")  # no number in its name: not a frame
    assert frame_ids(read_video(folder)[0]) == list(range(12))
    write_image_sequence(tmp_path / "jpg", frames, suffix=".jpg")
    decoded, _ = read_video(tmp_path / "jpg")
    assert probe_video(tmp_path / "jpg").codec == "jpeg"
    assert np.abs(decoded.astype(int) - frames).mean() < 6 and frame_ids(decoded) == list(range(12))
    Image.fromarray(frames[0][:10]).save(folder / "img12.png")  # a frame of another size
    with pytest.raises(VideoReadError, match="img12.png.*differs"):
        read_video(folder, start=11, num_frames=2)


def test_writers_choose_codec_and_fps(tmp_path):
    frames = frames_with_ids(6)
    for suffix, codec in [(".mp4", "h264"), (".webm", "vp9"), (".gif", "gif")]:
        path = write_video(tmp_path / f"w{suffix}", frames, fps=10)
        info = probe_video(path)
        assert info.codec == codec and info.num_frames == 6 and info.fps == pytest.approx(10, rel=0.01)
    odd = encode_video(tmp_path / "odd.mp4", frames[:, :23, :31], fps=5)  # yuv420p needs even sizes: padded
    assert probe_video(odd).width == 32 and probe_video(odd).height == 24
    with pytest.raises(Exception, match="use one of"):
        encode_video(tmp_path / "x.flv", frames)


def test_every_kind_of_bad_file_raises_a_one_line_error_naming_it(tmp_path):
    expected = make_bad_files(tmp_path)
    for name, word in expected.items():
        with pytest.raises(VideoReadError) as info:
            probe_video(tmp_path / name)
        message = str(info.value)
        assert name in message and word in message and "\n" not in message, message
        assert info.value.path.endswith(name)
    with pytest.raises(VideoReadError, match="file not found"):
        probe_video(tmp_path / "missing.mp4")
    with pytest.raises(VideoReadError, match="no numbered"):
        probe_video(tmp_path)  # a folder without numbered images


def test_a_file_truncated_after_its_header_fails_only_past_the_cut(tmp_path):
    path = make_truncated_avi(tmp_path / "cut.avi", n=24)
    assert probe_video(path).num_frames == 24  # the header still promises every frame
    clip, _ = read_video(path, start=0, num_frames=3)
    assert frame_ids(clip) == [0, 1, 2]
    with pytest.raises(VideoReadError, match="cut.avi.*truncated"):
        read_video(path, start=20, num_frames=4)


def test_select_frames_streams_in_order_and_rejects_negative_indices(tmp_path):
    path = write_lossless(tmp_path / "v.mkv", frames_with_ids(10))
    got = [(k, frame_ids(f[None])[0]) for k, f in select_frames(path, [7, 3, 3, 9])]
    assert got == [(3, 3), (7, 7), (9, 9)]
    with pytest.raises(ValueError):
        select_frames(path, [-1])
