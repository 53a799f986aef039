"""`vidiff <command>`: a thin layer that parses arguments and calls the library.

Every VidiffError becomes one line on stderr and exit status 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

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
    summary = train(cfg, out, resume=args.resume, progress=not args.quiet)
    print(f"trained {summary['step']} steps in {summary.get('seconds', 0):.0f} s -> {out}")
    return 0


def _sample_to(run: str, out: Path, num: int, steps: int, sampler: str, eta: float, seed: int, fps: float,
               device: str, quiet: bool) -> None:
    import torch

    from vidiff.io import write_samples
    from vidiff.pipeline import VideoPipeline

    pipe = VideoPipeline.from_pretrained(run, device=device)
    t0 = time.perf_counter()
    result = pipe(num_videos=num, num_inference_steps=steps, sampler=sampler, eta=eta,
                  generator=torch.Generator().manual_seed(seed), progress=not quiet)
    seconds = time.perf_counter() - t0
    write_samples(out, result.frames(), fps=fps)
    print(f"sampled {num} videos ({sampler}, {steps} steps) in {seconds:.1f} s "
          f"({seconds / num:.2f} s per video) -> {out}")


def cmd_sample(args) -> int:
    out = Path(args.out) if args.out else (Path(args.run) / "samples" if Path(args.run).is_dir() else Path("samples"))
    _sample_to(args.run, out, args.num, args.steps, args.sampler, args.eta, args.seed, args.fps, args.device,
               args.quiet)
    return 0


def cmd_demo(args) -> int:
    from vidiff.config import load_config
    from vidiff.training import train

    out = Path(args.out)
    overrides = [f"train.time_budget_minutes={args.minutes}"] + list(args.overrides)
    cfg = load_config(_config_path("demo"), overrides)
    resume = (out / "checkpoints").is_dir() and not args.fresh
    if resume:
        print(f"{out} holds an earlier demo run: continuing it (pass --fresh to start over)")
    print(f"training the demo model on '{cfg.data.dataset}' ({cfg.data.num_frames} frames x "
          f"{cfg.data.size}x{cfg.data.size}) for up to {cfg.train.steps} steps / {args.minutes} minutes ...")
    t0 = time.perf_counter()
    summary = train(cfg, out, resume=resume, progress=not args.quiet)
    print(f"training time: {(time.perf_counter() - t0) / 60:.1f} min ({summary['step']} steps)")
    _sample_to(str(out), out / "samples", args.num, args.steps, "ddim", 0.0, args.seed, 8, "auto", args.quiet)
    print(f"look at {out / 'samples' / 'grid.gif'} (all videos) or the per-video mp4/gif files there")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidiff",
        description="Train video diffusion models and generate videos. Videos are written as mp4, gif, "
                    "a png frame grid and a uint8 numpy array.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="train on the built-in bouncing shapes, then sample 8 videos",
                       description="Train the embedded default model (16 frames x 32x32 bouncing shapes) within a "
                                   "time budget, then sample videos into OUT/samples.")
    d.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    d.add_argument("--minutes", type=float, default=11.0, help="training time budget in minutes (default: 11)")
    d.add_argument("--num", type=int, default=8, help="videos to sample afterwards (default: 8)")
    d.add_argument("--steps", type=int, default=50, help="DDIM steps (default: 50)")
    d.add_argument("--seed", type=int, default=0)
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
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="generate videos from a trained run",
                       description="Generate videos from RUN (a run folder, or 'shapes32', the model shipped with "
                                   "vidiff). Writes one mp4 and gif per video, grid.png, grid.gif and samples.npy "
                                   "(uint8, N x F x H x W x 3).")
    s.add_argument("run", nargs="?", default="shapes32", help="run folder or shipped model (default: shapes32)")
    s.add_argument("--num", type=int, default=8, help="number of videos (default: 8)")
    s.add_argument("--steps", type=int, default=50, help="sampling steps (default: 50)")
    s.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim")
    s.add_argument("--eta", type=float, default=0.0, help="DDIM eta: 0 deterministic, 1 DDPM-like (default: 0)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--fps", type=float, default=8.0)
    s.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    s.add_argument("--out", help="output folder (default: RUN/samples)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_sample)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
