"""The one place that encodes and decodes video and image files (PyAV underneath, PIL for gif/png/jpg writing).

File-side frames are uint8 numpy arrays (F, H, W, 3). Library-side videos are float tensors
(C, F, H, W) in [-1, 1]; `to_frames` converts one to the other.
"""

from __future__ import annotations

import dataclasses
import re
from fractions import Fraction
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
    if suffix not in (".mp4", ".webm"):
        raise VidiffError(f"cannot write {path.name}: use .mp4, .webm or .gif")
    return encode_video(path, frames, fps=fps)  # H.264 (crf 18) or VP9, yuv420p


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


# ----------------------------------------------------------------------------------------------
# Reading (PyAV underneath): probe a file, decode only the frames a clip needs, numbered image
# folders and gifs; plus a general encoder for every container the reader accepts.

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_IMAGE_FPS = 8.0  # a folder of numbered images carries no frame rate of its own
TAIL_HOLD = 2  # frames past a variable-rate file's last timestamp that still read as its last frame


class VideoReadError(VidiffError):
    """A file that cannot be read as a video. `path` and `reason` are kept for summaries."""

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"cannot read {path}: {reason}")


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What `probe_video` learns without decoding more than one frame."""

    path: str
    num_frames: int  # from the container header, else by counting packets (no decoding)
    fps: float
    width: int
    height: int
    codec: str  # decoder name ("h264", "vp9", "gif", ...) or "png"/"jpeg" for an image folder
    kind: str = "video"  # "video" (one file) or "images" (a folder of numbered images)

    @property
    def duration(self) -> float:
        """Seconds, as num_frames / fps."""
        return self.num_frames / self.fps if self.fps > 0 else 0.0


def _why(error: BaseException) -> str:
    """A short human reason for an exception raised while opening or decoding a file."""
    import av

    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, IsADirectoryError):
        return "is a folder, not a video file"
    if isinstance(error, av.error.InvalidDataError):
        return "not a video, or damaged/truncated (ffmpeg: invalid data)"
    if isinstance(error, EOFError):
        return "ends before any video data (empty or truncated)"
    if isinstance(error, av.error.FFmpegError):
        return f"ffmpeg: {getattr(error, 'strerror', None) or error}"
    name = type(error).__name__
    if name == "UnidentifiedImageError":
        return "not a readable image"
    return f"{name}: {error}"


def _open_input(path: Path):
    """av.open for reading. Container metadata is decoded leniently: a damaged or non-UTF-8 tag must not make a
    readable video unreadable (found by tests/test_fuzz.py: strict decoding raised UnicodeDecodeError)."""
    import av

    return av.open(str(path), metadata_errors="replace")


def _numbered_key(path: Path) -> tuple[int, str]:
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.name)


def image_sequence_files(folder: str | Path) -> list[Path]:
    """The numbered images (png/jpg) directly inside `folder`, in frame order (by the last number in the name)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
             and re.search(r"\d", p.stem) and p.is_file()]
    return sorted(files, key=_numbered_key)


def _open_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _video_stream(container, path):
    """The first video stream, or a VideoReadError saying why there is none we can decode."""
    if not container.streams.video:
        raise VideoReadError(path, "no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # the demuxer found a stream but ffmpeg has no decoder for it
        raise VideoReadError(path, "unsupported codec (no decoder for its video stream)")
    stream.thread_type = "AUTO"  # frame + slice threads inside the decoder
    return stream


def _is_gif(stream) -> bool:
    return stream.codec_context.name == "gif"


def _stream_fps(container, stream):
    """The stream's frame rate, or a function of the frame count giving it (gifs)."""
    # GIF frame delays are in 1/100 s and may vary, so its rate is frames / duration.
    if not _is_gif(stream):
        for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
            if rate:
                return float(rate)
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    else:
        seconds = (container.duration or 0) / 1e6
    return lambda num_frames: num_frames / seconds if seconds > 0 else 10.0  # 10 fps: the usual gif delay


def probe_video(path: str | Path, image_fps: float = DEFAULT_IMAGE_FPS) -> VideoInfo:
    """Frame count, fps, size and codec of a video file or numbered-image folder.

    Decodes the first frame (so an unsupported codec or damaged start is found here) but no more.
    Raises VideoReadError naming the file and the reason.
    """
    path = Path(path)
    if path.is_dir():
        files = image_sequence_files(path)
        if not files:
            raise VideoReadError(path, "folder holds no numbered png/jpg images")
        try:
            first = _open_image(files[0])
        except Exception as e:  # PIL raises several unrelated types for bad images
            raise VideoReadError(files[0], _why(e)) from None
        codecs = sorted({"jpeg" if p.suffix.lower() in (".jpg", ".jpeg") else "png" for p in files})
        return VideoInfo(str(path), len(files), float(image_fps), first.shape[1], first.shape[0], "+".join(codecs),
                         "images")
    import av

    try:
        with _open_input(path) as container:
            stream = _video_stream(container, path)
            num_frames, fps = stream.frames, _stream_fps(container, stream)
            try:
                frame = next(container.decode(stream))
            except StopIteration:
                raise VideoReadError(path, "0 frames") from None
            width, height, codec = frame.width, frame.height, stream.codec_context.name
        if num_frames <= 0:  # mkv, webm and gif headers carry no frame count: count packets, decode nothing
            with _open_input(path) as container:
                stream = container.streams.video[0]
                num_frames = sum(1 for packet in container.demux(stream) if packet.size)
    except VideoReadError:
        raise
    except (av.error.FFmpegError, OSError, EOFError, UnicodeError) as e:
        raise VideoReadError(path, _why(e)) from None
    if num_frames <= 0:
        raise VideoReadError(path, "0 frames")
    fps = fps(num_frames) if callable(fps) else fps
    return VideoInfo(str(path), int(num_frames), fps, width, height, codec)


def _select_images(path: Path, wanted: list[int]):
    files = image_sequence_files(path)
    shape = None
    for k in wanted:
        if k >= len(files):
            raise VideoReadError(path, f"has {len(files)} images; frame {k} was requested")
        try:
            image = _open_image(files[k])
        except Exception as e:
            raise VideoReadError(files[k], _why(e)) from None
        if shape is not None and image.shape != shape:
            raise VideoReadError(files[k], f"image size {image.shape[1]}x{image.shape[0]} differs from the "
                                           f"first frame's {shape[1]}x{shape[0]}")
        shape = image.shape
        yield k, image


def _select_av(path: Path, wanted: list[int], stats: dict | None):
    """Yield (index, rgb24 frame) for the sorted unique frame indices `wanted`.

    Frame k is the frame shown at time k / fps (its pts, counted from the stream start): exact for
    constant-rate files; for variable-rate ones a missing index holds the previous frame. Decoding
    starts at the keyframe before wanted[0] (a seek) and stops after wanted[-1]. GIFs, whose
    frame delays vary, are counted in decode order from the start instead.
    """
    import av

    first = wanted[0]
    decoded = 0
    try:
        with _open_input(path) as container:
            stream = _video_stream(container, path)
            rate = stream.average_rate or stream.guessed_rate
            tb = stream.time_base
            by_time = bool(rate) and bool(tb) and not _is_gif(stream)
            origin = stream.start_time or 0
            seek = by_time and first > 0
            for attempt in (0, 1):
                if seek:
                    # Aim one frame early: a keyframe exactly at the target must not be missed by rounding.
                    target = origin + int((Fraction(first) - 1) / rate / tb)
                    container.seek(max(target, origin), stream=stream, backward=True, any_frame=False)
                elif attempt:
                    container.seek(origin, stream=stream, backward=True, any_frame=False)
                position, prev, count, k = 0, None, -1, -1
                restart = False
                for frame in container.decode(stream):
                    decoded += 1
                    count += 1
                    if by_time and frame.pts is not None:
                        k = round((frame.pts - origin) * tb * rate)
                    else:
                        k = count  # no timestamps: count frames (only valid when decoding from the start)
                    if prev is None and seek and k > first:
                        restart = True  # the seek landed after the first wanted frame: decode from the start
                        break
                    while position < len(wanted) and wanted[position] < k:
                        # A gap (variable frame rate): hold the previous frame.
                        yield wanted[position], (prev if prev is not None else frame).to_ndarray(format="rgb24")
                        position += 1
                    if position < len(wanted) and wanted[position] == k:
                        yield k, frame.to_ndarray(format="rgb24")
                        position += 1
                    prev = frame
                    if position == len(wanted):
                        return
                if not restart:
                    break
                seek = False
            if prev is not None and by_time and wanted[-1] - k <= TAIL_HOLD:
                # Variable frame rate: the last frame's timestamp may round a frame or two short of the count.
                for j in wanted[position:]:
                    yield j, prev.to_ndarray(format="rgb24")
                return
            last_seen = "no decodable frame" if k < 0 else f"its last decodable frame is {k}"
            raise VideoReadError(path, f"frame {wanted[position]} was requested but {last_seen} (truncated?)")
    except VideoReadError:
        raise
    except (av.error.FFmpegError, OSError, EOFError, UnicodeError) as e:
        raise VideoReadError(path, _why(e)) from None
    finally:
        if stats is not None:
            stats["decoded"] = decoded


def select_frames(path: str | Path, indices, stats: dict | None = None):
    """Yield (index, uint8 (H, W, 3) frame) for each distinct frame index in `indices`, in increasing order.

    Works on video files, gifs and numbered-image folders; decodes only from the keyframe before
    the first index to the last index. `stats`, if given, receives {"decoded": frames decoded}.
    Raises VideoReadError (naming the file and why) if the file is unreadable or too short.
    """
    path = Path(path)
    wanted = sorted({int(k) for k in indices})
    if not wanted:
        return iter(())
    if wanted[0] < 0:
        raise ValueError(f"frame indices must be >= 0, got {wanted[0]}")
    if path.is_dir():
        return _select_images(path, wanted)
    return _select_av(path, wanted, stats)


def read_video(path: str | Path, start: int = 0, num_frames: int | None = None, stride: int = 1,
               indices=None, image_fps: float = DEFAULT_IMAGE_FPS,
               stats: dict | None = None) -> tuple[np.ndarray, float]:
    """Read frames of a video file, gif or numbered-image folder as uint8 (F, H, W, 3), with the file's fps.

    Either `indices` (any frame indices, repeats allowed, e.g. a looped clip) or the clip
    `start, start + stride, ...` of `num_frames` frames (None: to the end). Only the frames the clip
    needs are decoded (seek to the keyframe before it, stop after it).
    """
    path = Path(path)
    info = probe_video(path, image_fps)
    if indices is None:
        stop = info.num_frames if num_frames is None else start + (num_frames - 1) * stride + 1
        indices = range(start, stop, stride)
    indices = [int(k) for k in indices]
    if not indices:
        return np.zeros((0, info.height, info.width, 3), np.uint8), info.fps
    frames = dict(select_frames(path, indices, stats))
    return np.stack([frames[k] for k in indices]), info.fps


def encode_video(path: str | Path, frames, fps: float = 8.0, codec: str | None = None, pix_fmt: str | None = None,
                 options: dict | None = None) -> Path:
    """Write uint8 (F, H, W, 3) frames with any PyAV encoder into .mp4, .mov, .mkv, .avi, .webm or .gif.

    Defaults by suffix: H.264 (mp4/mov/mkv), VP9 (webm), MPEG-4 part 2 (avi), a PIL palette gif.
    Lossless choices for exact round trips: codec="libx264rgb", pix_fmt="rgb24", options={"qp": "0"};
    codec="ffv1", pix_fmt="bgr0"; codec="png"; or VP9 with pix_fmt="gbrp", options={"lossless": "1"}.
    """
    path = Path(path)
    frames = _as_frames(frames)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise VidiffError(f"cannot write {path.name}: use one of {', '.join(VIDEO_SUFFIXES)}")
    if suffix == ".gif" and codec is None:
        return write_video(path, frames, fps=fps)
    import av

    defaults = {".webm": ("libvpx-vp9", "yuv420p"), ".avi": ("mpeg4", "yuv420p"), ".gif": ("gif", "rgb8")}
    default_codec, default_pix = defaults.get(suffix, ("libx264", "yuv420p"))
    codec = codec or default_codec
    if pix_fmt is None and codec == default_codec:
        pix_fmt = default_pix
    elif pix_fmt is None:  # another encoder: keep RGB when it can, else its first pixel format
        formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
        pix_fmt = "rgb24" if "rgb24" in formats else ("yuv420p" if "yuv420p" in formats or not formats else formats[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    H, W = frames.shape[1:3]
    if pix_fmt and ("420" in pix_fmt or "422" in pix_fmt or pix_fmt.startswith("nv")) and (H % 2 or W % 2):
        frames = np.pad(frames, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")  # chroma needs even sizes
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        if pix_fmt:
            stream.pix_fmt = pix_fmt
        # Defaults for visible quality: x264's own default (crf 23) and mpeg4's (rate control at
        # 200 kb/s) blur small frames badly.
        default_options = {"libx264": {"crf": "18"}, "mpeg4": {"qmin": "1", "qmax": "4"}}.get(codec, {})
        stream.options = dict(options if options is not None else default_options)
        container.start_encoding()  # writes the header even for zero frames
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_image_sequence(folder: str | Path, frames, suffix: str = ".png", quality: int = 95) -> list[Path]:
    """Write uint8 (F, H, W, 3) frames as frame_00000.png, frame_00001.png, ... (or .jpg) into `folder`."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = _as_frames(frames)
    paths = []
    for k, frame in enumerate(frames):
        p = folder / f"frame_{k:05d}{suffix}"
        jpeg = {"quality": quality, "subsampling": 0}  # 4:4:4: keep full colour resolution
        Image.fromarray(frame).save(p, **(jpeg if suffix.lower() in (".jpg", ".jpeg") else {}))
        paths.append(p)
    return paths


def read_video_tensor(path: str | Path) -> tuple[torch.Tensor, float]:
    """Decode a video file (or numbered-image folder) with `vidiff.io.read_video` -> ((3, F, H, W) in [-1, 1], fps)."""
    frames, fps = read_video(path)  # uint8 (F, H, W, 3)
    if len(frames) == 0:
        raise VidiffError(f"{path} has no frames")
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1, fps
