"""`vidiff <command>`: a thin layer that parses arguments and calls the library.

Every VidiffError becomes one line on stderr and exit status 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

from vidiff.config import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, SAMPLER_NAMES, SAMPLER_STEPS, default_steps
from vidiff.errors import ConfigError, VidiffError

PRESETS_DIR = resources.files("vidiff") / "presets"


def _config_path(name: str) -> Path:
    """A YAML/JSON file, or the name of a preset shipped in vidiff/presets (e.g. 'demo')."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        return path
    preset = PRESETS_DIR / f"{name}.yaml"
    if preset.is_file():
        return Path(str(preset))
    known = sorted(p.name[:-5] for p in PRESETS_DIR.iterdir() if p.name.endswith(".yaml"))
    raise ConfigError(f"no config file or preset named '{name}' (presets: {', '.join(known)})")


def cmd_train(args) -> int:
    from vidiff.config import load_config
    from vidiff.training import train

    config = args.config
    overrides = list(args.overrides)
    if config is not None and "=" in config:  # `vidiff train key=value ...` with the default config
        overrides.insert(0, config)
        config = None
    out = Path(args.out)
    if args.resume and config is None and (out / "config.json").is_file():
        cfg = load_config(out / "config.json", overrides)
    else:
        cfg = load_config(_config_path(config or "demo"), overrides)
    if args.data is not None:
        _use_data(cfg, args.data, args.workers, overrides)
    elif args.workers is not None:
        cfg.train.num_workers = args.workers
    summary = train(cfg, out, resume=args.resume, progress=not args.quiet)
    if summary.get("interrupted_by"):
        return 130 if summary["interrupted_by"] == "SIGINT" else 143
    if summary.get("message") == "already finished":
        print(f"{out} already finished its {summary['step']} steps; raise train.steps to train further")
    elif "run_dir" in summary:  # rank 0 (or the only process) reports
        print(f"trained {summary['step']} steps in {summary['seconds']:.0f} s -> {out}")
    return 0


def cmd_train_autoencoder(args) -> int:
    from vidiff.config import apply_overrides, from_dict
    from vidiff.training.autoencoder import AutoencoderRunConfig, check_autoencoder_run, train_autoencoder

    cfg = from_dict(AutoencoderRunConfig, apply_overrides({}, list(args.overrides)))
    check_autoencoder_run(cfg)
    summary = train_autoencoder(cfg, args.out, progress=not args.quiet)
    print(f"trained the autoencoder {summary['steps']} steps in {summary['seconds']:.0f} s (reconstruction MSE "
          f"{summary['mse']:.5f}) -> {args.out}; use it with model.autoencoder={args.out} "
          f"model.in_channels={cfg.model.latent_channels}")
    return 0


def _use_data(cfg, data: str, workers, overrides: list[str]) -> None:
    """`train --data PATH`: train on a folder of videos or a prepared cache, decoding in DataLoader workers."""
    import os

    from vidiff.config import validate_run
    from vidiff.data.cache import is_cache

    path = Path(data).expanduser()
    if not path.exists():
        raise VidiffError(f"--data {data}: no such folder, video file or cache")
    cfg.data.dataset = str(path)
    # The preset's labels describe the shapes data. A folder whose videos sit in two or more class folders
    # trains a class-conditioned model (one label per class, the folder names kept in data.classes for --prompt);
    # model.num_labels=0 turns that off, and other data trains unconditionally.
    given = {o.split("=", 1)[0] for o in overrides}
    if "data.classes" not in given:
        from vidiff.data import folder_classes

        classes = folder_classes(path)
        wanted = len(classes) >= 2 if "model.num_labels" not in given else cfg.model.num_labels > 0
        cfg.data.classes = tuple(classes) if wanted else ()
    if "model.num_labels" not in given:
        cfg.model.num_labels = len(cfg.data.classes)
    if not {"sample.image_guidance", "sample.image_model"} & given:  # the preset's image model knows only the shapes
        cfg.sample.image_guidance, cfg.sample.image_model = 0.0, None
    if workers is not None:
        cfg.train.num_workers = workers
    elif cfg.train.num_workers == 0 and "train.num_workers" not in given:
        cfg.train.num_workers = min(4, max(1, (os.cpu_count() or 1) - 1))  # leave a core for the training step
    validate_run(cfg)
    kind = "prepared cache" if is_cache(path) else "videos decoded on the fly"
    print(f"data: {path} ({kind}), {cfg.train.num_workers} DataLoader workers")
    if cfg.data.classes:
        print(f"class-conditioned on {len(cfg.data.classes)} classes (the folders the videos sit in): "
              f"{', '.join(cfg.data.classes[:10])}{' ...' if len(cfg.data.classes) > 10 else ''}")


def cmd_data_prepare(args) -> int:
    from vidiff.data.cache import prepare

    s = prepare(args.src, args.out, size=args.size, frames=args.frames, stride=args.stride, fps=args.fps,
                short=args.short, max_clips_per_video=args.max_clips, image_fps=args.image_fps, workers=args.workers,
                progress=not args.quiet)
    print(f"{s['files']} files, {s['done_before']} done before; this run: {s['prepared']} prepared, {s['short']} too "
          f"short, {s['errors']} unreadable ({s['seconds']:.1f} s). {s['out']} holds {s['clips']} clips from "
          f"{s['videos']} videos (details: vidiff data inspect {s['out']})")
    return 0


def cmd_data_inspect(args) -> int:
    from vidiff.data.cache import is_cache
    from vidiff.data.inspect import format_cache, format_report, inspect_source

    if is_cache(args.src):
        print(format_cache(args.src))
        return 0
    report = inspect_source(args.src, deep=args.deep, image_fps=args.image_fps, progress=not args.quiet)
    print(format_report(report, files=args.files))
    return 0


def _sample_to(run: str, out: Path, num: int, steps: int, sampler: str, eta: float, seed: int, fps: float,
               device: str, quiet: bool, prompts: list[str] | None = None, guidance: float | None = None,
               motion_boost: float = 0.0, guidance_below: int | None = None,
               guidance_per_label: float | None = None, guidance_rescale: float = 0.0,
               image_guidance: float | None = None, image_model: str | None = None) -> None:
    import torch

    from vidiff.io import write_samples
    from vidiff.pipeline import VideoPipeline

    pipe = VideoPipeline.from_pretrained(run, device=device)
    steps = default_steps(pipe.denoiser.num_timesteps, sampler) if steps is None else steps
    if guidance is None:
        guidance = pipe.config.sample.guidance
    if guidance_per_label is None:
        guidance_per_label = pipe.config.sample.guidance_per_label
    if image_guidance is None:
        image_guidance = pipe.config.sample.image_guidance
    image_model = image_model or pipe.config.sample.image_model
    labels = None  # label-conditioned models: the prompts, or the labels of random held-out clips
    if prompts:  # (an unconditional model refuses them in one line)
        labels = pipe.labels_for([prompts[i % len(prompts)] for i in range(num)])
    elif pipe.denoiser.num_labels:
        labels = pipe.dataset_labels(num, seed)
    t0 = time.perf_counter()
    result = pipe(num_videos=num, num_inference_steps=steps, sampler=sampler, eta=eta,
                  generator=torch.Generator().manual_seed(seed), progress=not quiet, labels=labels,
                  guidance_scale=guidance, motion_boost=motion_boost, guidance_below=guidance_below,
                  guidance_per_label=guidance_per_label, guidance_rescale=guidance_rescale,
                  image_guidance=image_guidance, image_model=image_model)
    seconds = time.perf_counter() - t0
    write_samples(out, result.frames(), fps=fps)
    below = f" at t <= {guidance_below}" if guidance_below is not None else ""
    per_label = f" (+{guidance_per_label:g} per object past the first)" if guidance_per_label else ""
    per_label += f", rescaled {guidance_rescale:g}" if guidance_rescale else ""
    per_label += f", image guidance {image_guidance:g} by {image_model}" if image_guidance else ""
    how = f"{sampler}, {steps} steps" + (f", guidance {guidance:g}{per_label}{below}" if labels is not None else "") + \
        (f", motion boost {motion_boost:g}" if motion_boost else "")
    print(f"sampled {num} videos ({how}) in {seconds:.1f} s ({seconds / num:.2f} s per video) -> {out}")
    if labels is not None:
        captions = pipe.captions_for(labels)
        (out / "captions.txt").write_text("".join(f"sample_{i:03d}: {c}\n" for i, c in enumerate(captions)))
        print("asked for: " + "; ".join(captions[:8]) + (" ..." if num > 8 else "") + f" ({out / 'captions.txt'})")


def cmd_sample(args) -> int:
    out = Path(args.out) if args.out else (Path(args.run) / "samples" if Path(args.run).is_dir() else Path("samples"))
    _sample_to(args.run, out, args.num, args.steps, args.sampler, args.eta, args.seed, args.fps, args.device,
               args.quiet, args.prompt, args.guidance, args.motion_boost, args.guidance_below,
               args.guidance_per_label, args.guidance_rescale, args.image_guidance, args.image_model)
    return 0


def cmd_demo(args) -> int:
    from vidiff.config import load_config
    from vidiff.training import train

    out = Path(args.out)
    budget = [] if args.minutes is None else [f"train.time_budget_minutes={args.minutes}"]
    cfg = load_config(_config_path("demo"), budget + list(args.overrides))
    resume = (out / "checkpoints").is_dir() and not args.fresh
    if resume:
        print(f"{out} holds an earlier demo run: continuing it (pass --fresh to start over)")
    print(f"training the demo model on '{cfg.data.dataset}' ({cfg.data.num_frames} frames x "
          f"{cfg.data.size}x{cfg.data.size}) for up to {cfg.train.steps} steps / "
          f"{cfg.train.time_budget_minutes} minutes ...")
    t0 = time.perf_counter()
    summary = train(cfg, out, resume=resume, progress=not args.quiet)
    if summary.get("interrupted_by"):
        return 130 if summary["interrupted_by"] == "SIGINT" else 143
    print(f"training time: {(time.perf_counter() - t0) / 60:.1f} min ({summary['step']} steps)")
    _sample_to(str(out), out / "samples", args.num, args.steps, args.sampler, 0.0, args.seed, 8, "auto", args.quiet,
               guidance=args.guidance, guidance_per_label=args.guidance_per_label,
               image_guidance=args.image_guidance)
    print(f"look at {out / 'samples' / 'grid.gif'} (all videos) or the per-video mp4/gif files there")
    return 0


def cmd_denoise(args) -> int:
    import torch

    from vidiff.classical import estimate_noise_sigma
    from vidiff.denoise import classical_settings, denoise_video
    from vidiff.io import read_video_tensor
    from vidiff.io import write_video

    out = Path(args.out)
    if out.suffix.lower() not in (".mp4", ".webm", ".gif"):
        raise VidiffError(f"cannot write {out.name}: use .mp4, .webm or .gif")
    if args.sigma is not None and not args.sigma >= 0:
        raise VidiffError(f"--sigma must be >= 0, got {args.sigma}")
    video, fps = read_video_tensor(args.input)  # (3, F, H, W) in [-1, 1]
    estimated = float(estimate_noise_sigma(video)) / 2  # [-1, 1] units -> the [0, 1] pixel scale
    sigma = args.sigma if args.sigma is not None else estimated
    print(f"{args.input}: {video.shape[1]} frames of {video.shape[3]}x{video.shape[2]}, estimated noise sigma "
          f"{estimated:.4f} on the [0, 1] scale" + ("" if args.sigma is None else f" (using --sigma {args.sigma:g})"))
    pipe = None
    if args.method == "model":
        from vidiff.pipeline import VideoPipeline

        pipe = VideoPipeline.from_pretrained(args.model, device=args.device)
    else:  # the PDE filters run wherever the tensor is
        from vidiff.training.loop import resolve_device

        video = video.to(resolve_device(args.device))
    settings = classical_settings(args.method, sigma, time=args.time, kappa=args.kappa, temporal=args.temporal,
                                  edge_stop=args.edge_stop)
    t0 = time.perf_counter()
    with torch.no_grad():
        result = denoise_video(video, args.method, sigma=2 * sigma, time=settings["time"],
                               kappa=2 * (settings["kappa"] or 0), edge_stop=settings["edge_stop"],
                               spatial=args.spatial, temporal=settings["temporal"], scheme=args.scheme, dt=args.dt,
                               pipe=pipe, steps=args.steps, progress=not args.quiet)
    seconds = time.perf_counter() - t0
    write_video(out, result, fps=args.fps or fps)
    if args.method == "model":
        what = f"model {args.model}, sigma {sigma:.4f}, {args.steps} DDIM steps"
    else:
        what = (f"{args.method}, time {settings['time']:.3g}, D_time {settings['temporal']:.3g}"
                + (f", {settings['edge_stop']}, kappa {settings['kappa']:.3g}" if args.method != "heat" else ""))
    print(f"denoised with {what} in {seconds:.1f} s -> {out}")
    return 0


def cmd_eval(args) -> int:
    from vidiff.evaluation.evaluate import evaluate_run, parse_metrics
    from vidiff.pipeline import SHIPPED

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = args.out
    if out is None and args.run in SHIPPED and not Path(args.run).exists():
        out = str(Path("runs") / args.run)  # never write into the installed package
    report = evaluate_run(args.run, num=args.num, metrics=parse_metrics(args.metrics), i3d=args.i3d, steps=args.steps,
                          sampler=args.sampler, eta=args.eta, seed=args.seed, device=args.device,
                          batch_size=args.batch_size, samples=args.samples, out_dir=out, progress=not args.quiet,
                          guidance=args.guidance, guidance_per_label=args.guidance_per_label,
                          guidance_rescale=args.guidance_rescale, image_guidance=args.image_guidance)
    for name, m in report["metrics"].items():
        print(f"{name:>10}: {m['value']:.4g}   (real data: {m['baseline']:.4g})")
    where = Path(out) if out is not None else Path(report["run"])
    print(f"N = {args.num} videos; {report['seconds']:.0f} s -> {where / 'metrics.json'}")
    return 0


def cmd_report(args) -> int:
    from vidiff.evaluation.report import build_report

    path = build_report(args.run, out=args.out, max_videos=args.videos)
    print(f"report ({path.stat().st_size / 1e6:.1f} MB, self-contained) -> {path}")
    return 0


SAMPLER_HELP = ("dpmpp-2m-sde (the default: DPM-Solver++(2M) in its stochastic form, fresh noise each step; 50 steps "
                "do as well as ddpm's 100 on the shapes models), ddpm (ancestral, fresh noise each step), ddim or "
                "dpmpp-2m (deterministic: objects fade and change shape more often on the shapes models; "
                "docs/benchmarks.md, twenty-ninth round)")
GUIDANCE_HELP = ("label-conditioned models: classifier-free guidance weight (1: none; default: the model's "
                 f"sample.guidance, {DEFAULT_GUIDANCE:g} unless its config says otherwise; 1.5 for the demo preset)")
RESCALE_HELP = ("label-conditioned models: guidance rescaling (Lin et al. 2023): bring the guided estimate's mean and "
                "std back to the conditional one's, PHI of it mixed in (0 to 1; default 0: plain guidance)")
IMAGE_GUIDANCE_HELP = ("label-conditioned models: guidance by an image model of the same labels, frame by frame "
                       "(x0 += S * the image model's classifier-free direction in every frame): each frame is pushed "
                       "to show every asked object. Default: the model's sample.image_guidance (1 by shapes32-image "
                       "for the demo preset and shapes32: both of two asked objects in every frame in 40 instead of 35 "
                       "of 48 clips, though no more often each in one piece; 2 keeps 45 but at a worse FVD-shapes; "
                       "docs/benchmarks.md, thirty-third round); 0: none")
PER_LABEL_HELP = ("label-conditioned models: added to the guidance weight for each asked label past the first "
                  "(each object of a shapes prompt), so that a video asked for two objects holds both (default: the "
                  "model's sample.guidance_per_label: 0 for the demo preset and shapes32; 0: the same weight for "
                  "every video)")
STEPS_HELP = ("sampling steps (default: the sampler's: " +
              ", ".join(f"{name} {n}" for name, n in SAMPLER_STEPS.items()) +
              "; or every timestep of a model trained with fewer; with ddpm, fewer steps make objects fade and "
              "change colour more often)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidiff",
        description="Train video diffusion models and generate videos. Videos are written as mp4, gif, "
                    "a png frame grid and a uint8 numpy array.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="train on the built-in bouncing shapes, then sample 8 videos",
                       description="Train the embedded default model (16 frames x 32x32 bouncing shapes, "
                                   "conditioned on each clip's objects: 'a red circle and a blue square') within a "
                                   "time budget, then sample videos into OUT/samples, each asked to show the objects "
                                   "of a random held-out clip (OUT/samples/captions.txt), with the preset's classifier-"
                                   "free guidance (sample.guidance 1.5, nothing more per object: "
                                   "sample.guidance_per_label 0) and image guidance 1 by the shipped image model "
                                   "shapes32-image (sample.image_guidance, sample.image_model).")
    d.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    d.add_argument("--minutes", type=float, default=None,
                   help="training time budget in minutes (default: the demo preset's train.time_budget_minutes, "
                        "chosen so that with installing and sampling a fresh `make demo` stays under 12 minutes on "
                        "2 CPU cores)")
    d.add_argument("--num", type=int, default=8, help="videos to sample afterwards (default: 8)")
    d.add_argument("--steps", type=int, default=None, help=STEPS_HELP)
    d.add_argument("--sampler", choices=SAMPLER_NAMES, default=DEFAULT_SAMPLER, help=SAMPLER_HELP)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--guidance", type=float, default=None, help=GUIDANCE_HELP)
    d.add_argument("--guidance-per-label", type=float, default=None, metavar="W",
                   help=PER_LABEL_HELP)
    d.add_argument("--image-guidance", type=float, default=None, metavar="S", help=IMAGE_GUIDANCE_HELP)
    d.add_argument("--fresh", action="store_true", help="start over even if OUT holds an earlier demo run")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.steps=100")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="train a model from a YAML config",
                       description="Train from CONFIG (a YAML/JSON file or a preset name; default: demo) with "
                                   "KEY=VALUE overrides such as train.steps=2000 model.channels=64.")
    t.add_argument("config", nargs="?", help="YAML/JSON config file or preset name (default: demo)")
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    t.add_argument("--out", required=True, help="run folder for checkpoints, logs and previews")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--data", metavar="PATH",
                   help="train on your own videos: a folder (searched recursively for mp4, mov, avi, mkv, webm, gif "
                        "and folders of numbered png/jpg images) or a cache made by `vidiff data prepare`; sets "
                        "data.dataset. Videos in two or more class folders (PATH/cats/*.mp4, PATH/dogs/*.mp4) train a "
                        "class-conditioned model (model.num_labels = the number of classes, their names in "
                        "data.classes; sample with --prompt cats); otherwise, or with model.num_labels=0, an "
                        "unconditional one. Clip length and size come from data.num_frames and data.size")
    t.add_argument("--workers", type=int, metavar="N",
                   help="DataLoader worker processes (train.num_workers; with --data the default is "
                        "min(4, CPU cores - 1))")
    t.set_defaults(func=cmd_train)

    a = sub.add_parser("train-autoencoder", help="train a video autoencoder: the latent space of latent diffusion",
                       description="Train a FrameAutoencoder on frames of data.dataset (default: the built-in "
                                   "shapes) with KEY=VALUE overrides: data.* as for `vidiff train`, model.channels, "
                                   "model.channel_mults (each level after the first halves the size), "
                                   "model.temporal_levels (levels whose downsampling also halves the frames, e.g. "
                                   "[0,1]: 4 frames per latent; default [] encodes each frame on its own), "
                                   "model.latent_channels, model.latent_noise, steps, clips_per_step, "
                                   "frames_per_clip (a temporal autoencoder trains on windows of that many "
                                   "frames), lr, seed, threads. Then train a diffusion model on its latents with "
                                   "`vidiff train demo model.autoencoder=OUT model.in_channels=LATENT_CHANNELS`.")
    a.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides, e.g. steps=1200")
    a.add_argument("--out", required=True, help="folder for autoencoder.json, autoencoder.safetensors and loss.csv")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=cmd_train_autoencoder)

    dp = sub.add_parser("data", help="prepare or inspect a folder of your own videos",
                        description="Tools for training data: `prepare` decodes a folder once into a fast cache, "
                                    "`inspect` lists what a folder (or cache) holds and which files cannot be read.")
    dsub = dp.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    pp = dsub.add_parser("prepare", help="decode a folder of videos once into a memory-mapped clip cache",
                         description="Cut every video under SRC into consecutive clips of --frames frames, centre-crop "
                                     "and resize them to --size x --size, and store them as uint8 shards plus "
                                     "index.json in --out, decoding in parallel. Unreadable files are listed and "
                                     "skipped. Running it again resumes: finished files are skipped. Train on the "
                                     "result with `vidiff train --data CACHE`.")
    pp.add_argument("src", metavar="SRC", help="folder of videos (or one video file)")
    pp.add_argument("--out", required=True, metavar="CACHE", help="cache folder to create or resume")
    pp.add_argument("--size", type=int, default=64, help="clip side in pixels (default: 64)")
    pp.add_argument("--frames", type=int, default=16, help="frames per clip (default: 16)")
    pp.add_argument("--stride", type=int, default=1, help="take every K-th source frame (default: 1)")
    pp.add_argument("--fps", type=float, help="resample every video to this frame rate instead of --stride")
    pp.add_argument("--short", choices=["skip", "loop", "pad"], default="skip",
                    help="videos shorter than one clip: skip them, loop them, or pad with the last frame "
                         "(default: skip)")
    pp.add_argument("--max-clips", type=int, metavar="N", help="at most N clips per video, spread over its length")
    pp.add_argument("--image-fps", type=float, default=8.0,
                    help="frame rate assumed for folders of numbered images (default: 8)")
    pp.add_argument("--workers", type=int, help="decoding processes (default: all CPU cores)")
    pp.add_argument("--quiet", action="store_true", help="no progress bar")
    pp.set_defaults(func=cmd_data_prepare)
    ip = dsub.add_parser("inspect", help="what a folder of videos holds, and which files cannot be read",
                         description="Print file count, total duration, frame rates, resolutions and codecs of the "
                                     "videos under SRC, then every file that cannot be read and why. On a cache made "
                                     "by `vidiff data prepare`, summarise the cache instead.")
    ip.add_argument("src", metavar="SRC", help="folder of videos, one video file, or a cache")
    ip.add_argument("--files", action="store_true", help="also list every readable file")
    ip.add_argument("--deep", action="store_true",
                    help="decode every frame (slow) to also find files damaged after their first frame")
    ip.add_argument("--image-fps", type=float, default=8.0,
                    help="frame rate assumed for folders of numbered images (default: 8)")
    ip.add_argument("--quiet", action="store_true", help="no progress bar")
    ip.set_defaults(func=cmd_data_inspect)

    s = sub.add_parser("sample", help="generate videos from a trained run",
                       description="Generate videos from RUN (a run folder, or 'shapes32', the model shipped with "
                                   "vidiff). Writes one mp4 and gif per video, grid.png, grid.gif and samples.npy "
                                   "(uint8, N x F x H x W x 3).")
    s.add_argument("run", nargs="?", default="shapes32", help="run folder or shipped model (default: shapes32)")
    s.add_argument("--num", type=int, default=8, help="number of videos (default: 8)")
    s.add_argument("--steps", type=int, default=None, help=STEPS_HELP)
    s.add_argument("--sampler", choices=SAMPLER_NAMES, default=DEFAULT_SAMPLER, help=SAMPLER_HELP)
    s.add_argument("--eta", type=float, default=0.0, help="DDIM eta: 0 deterministic, 1 DDPM-like (default: 0)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--fps", type=float, default=8.0)
    s.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    s.add_argument("--out", help="output folder (default: RUN/samples)")
    s.add_argument("--prompt", action="append", metavar="TEXT",
                   help="label-conditioned models: what to show, in the dataset's words, e.g. 'a red circle and a "
                        "blue square' (repeat for several; videos cycle through them), or a class name for a model "
                        "trained on class folders. Default: the labels of random held-out clips (random classes). "
                        "Written to OUT/captions.txt")
    s.add_argument("--guidance", type=float, default=None, help=GUIDANCE_HELP)
    s.add_argument("--guidance-per-label", type=float, default=None, metavar="W",
                   help=PER_LABEL_HELP)
    s.add_argument("--guidance-rescale", type=float, default=0.0, metavar="PHI", help=RESCALE_HELP)
    s.add_argument("--image-guidance", type=float, default=None, metavar="S", help=IMAGE_GUIDANCE_HELP)
    s.add_argument("--image-model", default=None, metavar="RUN",
                   help="the image model of --image-guidance: a run folder or a shipped name (default: the model's "
                        "sample.image_model)")
    s.add_argument("--guidance-below", type=int, default=None, metavar="T",
                   help="guide only at timesteps <= T, the conditional model alone above (a guidance interval): "
                        "shapes32 with 600 draws objects of the real size (10.3%% of the pixels against 15.4%% with "
                        "guidance at every step; real clips 9.6%%; docs/benchmarks.md, tenth round). Default: every "
                        "step")
    s.add_argument("--motion-boost", type=float, default=0.0, metavar="K",
                   help="push the estimates of the noisier half of the steps away from a clip without motion by K: "
                        "objects move faster, at some cost in how well they persist (shapes32 with 0.3: 0.72 "
                        "instead of 0.48 px/frame, persistence 0.63 instead of 0.68; docs/benchmarks.md, tenth "
                        "round). Default: 0 (off)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_sample)

    n = sub.add_parser("denoise", help="remove noise from a video: heat equation, Perona-Malik or a trained model",
                       description="Denoise the video file IN into OUT (.mp4, .webm or .gif). Methods: 'heat' "
                                   "(linear diffusion over x, y and frames), 'perona-malik' (edge-preserving "
                                   "nonlinear diffusion, Perona & Malik 1990), 'model' (a trained vidiff model "
                                   "runs its reverse process from the timestep whose noise level matches the "
                                   "input's). Noise sigma and kappa are on the [0, 1] pixel scale (0.1 = a tenth "
                                   "of the full range); sigma is estimated from the video unless given. Settings "
                                   "left out (--time, --kappa, --temporal) are those tuned on noisy shapes clips "
                                   "(bench/denoise.py) for the video's noise level.")
    n.add_argument("input", metavar="IN", help="video file (mp4, webm, gif, ...) or folder of numbered images")
    n.add_argument("out", metavar="OUT", help="output video file: .mp4, .webm or .gif")
    n.add_argument("--method", choices=["heat", "perona-malik", "model"], default="perona-malik",
                   help="denoiser (default: perona-malik)")
    n.add_argument("--sigma", type=float, help="noise standard deviation on the [0, 1] pixel scale "
                                               "(default: estimated from the video, Donoho 1995)")
    n.add_argument("--time", type=float, help="heat / perona-malik: diffusion time; heat blurs by a Gaussian of "
                                              "std sqrt(2 D time) pixels (default: tuned for sigma)")
    n.add_argument("--kappa", type=float, help="perona-malik: contrast parameter on the [0, 1] pixel scale; "
                                               "differences well above it are kept as edges (default: tuned for sigma)")
    n.add_argument("--edge-stop", choices=["exponential", "rational"],
                   help="perona-malik edge-stopping function: exp(-(s/kappa)^2) or 1/(1+(s/kappa)^2) "
                        "(default: rational)")
    n.add_argument("--spatial", type=float, default=1.0, help="diffusivity along x and y (default: 1)")
    n.add_argument("--temporal", type=float,
                   help="diffusivity along the frame axis; 0 filters each frame on its own (default: tuned)")
    n.add_argument("--scheme", choices=["explicit", "aos"], default="explicit",
                   help="explicit (dt <= 1 / (2 sum D_i/h_i^2), 1/6 by default) or aos (any dt, Weickert et al. "
                        "1998) (default: explicit)")
    n.add_argument("--dt", type=float, help="longest time step (default: the explicit limit; 8x it for aos)")
    n.add_argument("--model", default="shapes32", help="model: run folder or shipped model (default: shapes32)")
    n.add_argument("--steps", type=int, default=10,
                   help="model: DDIM steps from the matching timestep to 0; 1 returns the model's one-shot "
                        "estimate of the clean video (default: 10)")
    n.add_argument("--device", default="auto", help="where to compute: auto, cpu or cuda (default: auto)")
    n.add_argument("--fps", type=float, help="frame rate of OUT (default: that of IN)")
    n.add_argument("--quiet", action="store_true", help="no progress bars")
    n.set_defaults(func=cmd_denoise)

    e = sub.add_parser("eval", help="measure a run: FVD-shapes, FVD (I3D), flicker, warping error -> metrics.json",
                       description="Sample N videos from RUN (or reuse RUN/eval/samples.npy when it came from the same "
                                   "weights and settings, or read --samples) and compare them with N held-out real "
                                   "clips of the run's dataset. Every metric is reported with its baseline: the same "
                                   "score for a second set of N real clips. Metrics: fvd_shapes (Frechet distance of "
                                   "the shipped shapes classifier's features; shapes data at 16x32x32), fvd (I3D "
                                   "Kinetics-400 from a local TorchScript file, --i3d; nothing is downloaded), "
                                   "flicker, warp (optical-flow warping error). Writes RUN/metrics.json with the "
                                   "protocol of each metric. Compare numbers only at equal N.")
    e.add_argument("run", help="run folder (or 'shapes32', the shipped model: results go to runs/shapes32)")
    e.add_argument("--num", type=int, default=256, help="videos per set, N (default: 256)")
    e.add_argument("--metrics", help="comma-separated subset of fvd_shapes,fvd,flicker,warp "
                                     "(default: fvd_shapes,flicker,warp; fvd_shapes only for 16x32x32 shapes runs)")
    e.add_argument("--i3d", metavar="PATH", help="I3D Kinetics-400 TorchScript file, needed for --metrics fvd")
    e.add_argument("--samples", metavar="PATH", help="use the first N videos of this samples.npy (or DIR/samples.npy) "
                                                     "instead of sampling")
    e.add_argument("--steps", type=int, default=None, help=STEPS_HELP)
    e.add_argument("--sampler", choices=SAMPLER_NAMES, default=DEFAULT_SAMPLER, help=SAMPLER_HELP)
    e.add_argument("--eta", type=float, default=0.0, help="DDIM eta (default: 0)")
    e.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    e.add_argument("--batch-size", type=int, default=16, help="videos sampled at once (default: 16)")
    e.add_argument("--guidance", type=float, default=None, help=GUIDANCE_HELP)
    e.add_argument("--guidance-per-label", type=float, default=None, metavar="W",
                   help=PER_LABEL_HELP)
    e.add_argument("--guidance-rescale", type=float, default=0.0, metavar="PHI", help=RESCALE_HELP)
    e.add_argument("--image-guidance", type=float, default=None, metavar="S", help=IMAGE_GUIDANCE_HELP)
    e.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    e.add_argument("--out", help="folder for metrics.json and eval/samples.npy (default: RUN)")
    e.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default: torch's choice; on a CPU shared with other work, 1 can be "
                        "several times faster)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("report", help="write one self-contained HTML page about a run",
                       description="Write RUN/report.html: generated videos playing next to real clips, the metrics "
                                   "of `vidiff eval` with their baselines and protocol, the loss curve, the last "
                                   "training preview, task results (RUN/tasks.json) and the config. Images and "
                                   "videos are embedded, so the file can be opened anywhere.")
    r.add_argument("run", help="run folder")
    r.add_argument("--out", help="HTML file to write (default: RUN/report.html)")
    r.add_argument("--videos", type=int, default=16, help="generated and real videos to show (default: 16)")
    r.set_defaults(func=cmd_report)
    from vidiff.tasks.commands import add_task_commands

    add_task_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may come after options (`vidiff train demo --out X train.steps=5`).
    stray = [a for a in extra if a.startswith("-") or "=" not in a or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    try:
        return args.func(args)
    except VidiffError as e:
        print(f"vidiff: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vidiff: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
