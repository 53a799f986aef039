"""`vidiff predict | interpolate | animate | inpaint | vary | extend`: read inputs from files, run the task
on a trained run, write outputs the way `vidiff sample` does (mp4 + gif per video, grid.png, samples.npy)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from vidiff.config import DEFAULT_GUIDANCE
from vidiff.errors import VidiffError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def read_input(path: str) -> torch.Tensor:
    """A video file, a numbered-image folder or a single image -> (C, F, H, W) float in [-1, 1]."""
    p = Path(path)
    if not p.exists():
        raise VidiffError(f"input not found: {p}")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        from PIL import Image, UnidentifiedImageError

        try:
            image = np.array(Image.open(p).convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise VidiffError(f"cannot read image {p}: {e}") from None
        return torch.from_numpy(image).permute(2, 0, 1)[:, None].float() / 127.5 - 1
    from vidiff.io import read_video_tensor

    return read_video_tensor(p)[0]


def _box_region(spec: str, frames: int, size: int) -> torch.Tensor:
    try:
        values = [int(v) for v in spec.split(",")]
    except ValueError:
        values = []
    if len(values) not in (4, 6):
        raise VidiffError(f"--box must be x0,y0,x1,y1 or x0,y0,x1,y1,f0,f1 (pixels, frames; end exclusive), got {spec!r}")
    x0, y0, x1, y1 = values[:4]
    f0, f1 = values[4:] if len(values) == 6 else (0, frames)
    if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size and 0 <= f0 < f1 <= frames):
        raise VidiffError(f"--box {spec} lies outside the {frames}-frame {size}x{size} clip")
    region = torch.zeros(frames, size, size)
    region[f0:f1, y0:y1, x0:x1] = 1
    return region


def run_task(args) -> int:
    from vidiff import tasks
    from vidiff.io import to_frames, write_samples
    from vidiff.pipeline import VideoPipeline

    pipe = VideoPipeline.from_pretrained(args.run, device=args.device)
    g = torch.Generator().manual_seed(args.seed)
    common = dict(num_steps=args.steps, generator=g, progress=not args.quiet)
    if args.prompt:  # a label-conditioned model: every video is asked for the same objects
        common.update(labels=pipe.labels_for([args.prompt]), label_guidance=args.label_guidance)
    cond = dict(common, method=getattr(args, "method", "auto"), guidance_weight=getattr(args, "guidance", 2.0))
    Fm, size = pipe.config.data.num_frames, pipe.config.data.size
    t0 = time.perf_counter()
    if args.command == "predict":
        video = read_input(args.input)
        context = video[:, : args.context] if args.context else video
        future = args.future or Fm - context.shape[1]
        out = tasks.predict(pipe, context, future, num_samples=args.num, **cond)
    elif args.command == "interpolate":
        if args.factor:
            if len(args.input) != 1:
                raise VidiffError("--factor takes one input video")
            out = tasks.upsample_time(pipe, read_input(args.input[0]), args.factor, **cond)
        else:
            if len(args.input) < 2:
                raise VidiffError("give at least two keyframes (images or single-frame videos), or one video with --factor")
            keys = torch.cat([read_input(p)[:, :1] for p in args.input], dim=1)  # (C, K, H, W)
            out = tasks.interpolate(pipe, keys, num_samples=args.num, **cond)
    elif args.command == "animate":
        out = tasks.animate(pipe, read_input(args.image)[:, 0], num_samples=args.num, **cond)
    elif args.command == "inpaint":
        video = read_input(args.input)
        if args.mask:
            region = (read_input(args.mask).mean(0) > 0).float()  # white (> mid-grey) = regenerate
        elif args.box:
            region = _box_region(args.box, video.shape[1], size)
        else:
            raise VidiffError("say what to regenerate: --box x0,y0,x1,y1[,f0,f1] or --mask MASK_VIDEO")
        out = tasks.inpaint(pipe, video, region, num_samples=args.num, **dict(cond, method=args.method if
                            args.method != "auto" else "reconstruction"))
    elif args.command == "vary":
        out = tasks.vary(pipe, read_input(args.input), args.strength, num_samples=args.num, **common)
    else:  # extend
        video = read_input(args.input) if args.input else None
        out = tasks.extend(pipe, args.frames, video, num_samples=args.num, overlap=args.overlap, **cond)
    seconds = time.perf_counter() - t0
    frames = np.stack([to_frames(v) for v in out])
    write_samples(args.out, frames, fps=args.fps, prefix=args.command)
    asked = f", asked for {pipe.captions_for(common['labels'])[0]!r}" if args.prompt else ""
    print(f"{args.command}: {len(frames)} videos of {frames.shape[1]} frames{asked} in {seconds:.1f} s -> {args.out}")
    return 0


def add_task_commands(sub) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("run", help="run folder or shipped model name: shapes32 (known frames by reconstruction "
                                    "guidance; label-conditioned: see --prompt), or shapes32-masked (trained with "
                                    "MCVD frame masks)")
    common.add_argument("--out", required=True, help="output folder (mp4 + gif per video, grid.png, samples.npy)")
    common.add_argument("--num", type=int, default=1, help="samples per input (default: 1)")
    common.add_argument("--steps", type=int, default=50, help="DDIM steps (default: 50)")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--fps", type=float, default=8.0)
    common.add_argument("--device", default="auto")
    common.add_argument("--quiet", action="store_true")
    common.add_argument("--prompt", metavar="TEXT",
                        help="label-conditioned models (shapes32): what every video should show, in the dataset's "
                             "words ('a red circle and a blue square') or a class name; default: no labels (the "
                             "model's unconditional output)")
    common.add_argument("--label-guidance", type=float, default=None, metavar="W",
                        help="classifier-free guidance weight for --prompt (1: none; default: the model's "
                             f"sample.guidance, {DEFAULT_GUIDANCE:g} unless its config says otherwise), plus "
                             "the model's sample.guidance_per_label for each object past the first")
    guided = argparse.ArgumentParser(add_help=False)
    guided.add_argument("--method", choices=["auto", "masked", "clean", "reconstruction", "replacement"], default="auto",
                        help="how known frames condition the model: 'masked' for models trained with masks "
                             "(MCVD), 'clean' for models trained with clean context frames (diffusion.clean_context: "
                             "the known first frames go in at noise level 0), else reconstruction guidance or "
                             "replacement (Ho et al. 2022); auto picks")
    guided.add_argument("--guidance", type=float, default=2.0, help="reconstruction-guidance weight w_r (default: 2)")

    def add(name, help_text, description, parents=(common, guided)):
        p = sub.add_parser(name, help=help_text, description=description, parents=list(parents))
        p.set_defaults(func=run_task)
        return p

    p = add("predict", "generate the frames that follow a video's first frames",
            "Future-frame prediction: the first --context frames of INPUT, then --future generated frames "
            "(longer outputs continue window by window).")
    p.add_argument("--input", required=True, help="video file or numbered-image folder")
    p.add_argument("--context", type=int, help="context frames taken from the input (default: all of it)")
    p.add_argument("--future", type=int, help="frames to generate (default: fill the model's clip length)")
    p = add("interpolate", "fill the frames between keyframes, or upsample a video in time",
            "Either keyframes (two or more images) spread over one clip, or --factor K: every frame of one input "
            "video kept and K-1 new frames generated between each pair.")
    p.add_argument("--input", nargs="+", required=True, help="keyframe images, or one video with --factor")
    p.add_argument("--factor", type=int, help="temporal upsampling factor for a whole video")
    p = add("animate", "image-to-video from one still image", "The image becomes the first frame of a generated clip.")
    p.add_argument("--image", required=True, help="png/jpg image (resized to the model's size if needed)")
    p = add("inpaint", "regenerate a space-time region of a clip, keep the rest exactly",
            "Regenerate a box (--box) or the white part of a mask video (--mask); other pixels are kept exactly.")
    p.add_argument("--input", required=True, help="a clip of the model's frames and size")
    p.add_argument("--box", help="x0,y0,x1,y1[,f0,f1]: pixel box (and frame range), end exclusive")
    p.add_argument("--mask", help="mask video: white = regenerate")
    p = add("vary", "video-to-video variation (SDEdit)", "Noise the input to --strength and denoise it again: "
            "a new video similar to the input.", parents=(common,))
    p.add_argument("--input", required=True)
    p.add_argument("--strength", type=float, default=0.5, help="in (0, 1]: how far from the input (default: 0.5)")
    p = add("extend", "videos longer than the trained length", "Autoregressive generation window by window, each "
            "conditioned on the last --overlap frames of the previous one; continues --input if given.")
    p.add_argument("--input", help="a video to continue (default: start from nothing)")
    p.add_argument("--frames", type=int, default=64, help="total frames (default: 64)")
    p.add_argument("--overlap", type=int, default=4, help="frames shared by consecutive windows (default: 4)")
