"""Train a FrameAutoencoder on frames (or windows of frames) of a dataset: the latent space of latent diffusion.

    vidiff train-autoencoder --out runs/ae key=value ...

The run folder holds `autoencoder.json` (its AutoencoderConfig) and `autoencoder.safetensors` (weights); point a
diffusion run at it with `model.autoencoder=runs/ae`. The loss is the MSE of the reconstruction through latents with
noise added (so that the decoder also cleans a diffusion model's slightly-off latents) plus an L1 term for edges.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vidiff.config import DataConfig, from_dict
from vidiff.data import build_dataset
from vidiff.models.autoencoder import AutoencoderConfig, FrameAutoencoder
from vidiff.training.checkpoint import save_tensors
from vidiff.training.loop import lr_at

AE_CONFIG = "autoencoder.json"
AE_WEIGHTS = "autoencoder.safetensors"


@dataclass
class AutoencoderRunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    steps: int = 2000
    clips_per_step: int = 8
    frames_per_clip: int = 4  # random frames of each clip per step (a temporal autoencoder: a random window of them)
    lr: float = 2e-3
    warmup_steps: int = 100  # linear warm-up, then cosine decay to lr_min_ratio * lr (as train.* of a diffusion run)
    lr_decay: str = "cosine"
    lr_min_ratio: float = 0.1
    l1_weight: float = 0.5
    seed: int = 0
    threads: int = 0


def check_autoencoder_run(cfg: AutoencoderRunConfig) -> None:
    """Value checks, each a one-line ConfigError."""
    from vidiff.errors import ConfigError

    m = cfg.model
    checks = [
        (len(m.channel_mults) >= 1 and m.channels >= 8 and m.latent_channels >= 1,
         "model.channel_mults must not be empty, model.channels >= 8 and model.latent_channels >= 1"),
        (cfg.data.size % m.factor == 0, f"data.size {cfg.data.size} must be divisible by the factor {m.factor}"),
        (cfg.steps >= 1 and cfg.clips_per_step >= 1, "steps and clips_per_step must be >= 1"),
        (1 <= cfg.frames_per_clip <= cfg.data.num_frames, "frames_per_clip must be in 1..data.num_frames"),
        (all(0 <= i < len(m.channel_mults) - 1 for i in m.temporal_levels)
         and len(set(m.temporal_levels)) == len(m.temporal_levels),
         f"model.temporal_levels must be distinct levels in 0..{len(m.channel_mults) - 2} (each halves the frames)"),
        (cfg.frames_per_clip % m.time_factor == 0 and cfg.data.num_frames % m.time_factor == 0,
         f"frames_per_clip and data.num_frames must be divisible by the time factor {m.time_factor}"),
        (cfg.lr > 0 and m.latent_noise >= 0, "lr must be > 0 and model.latent_noise >= 0"),
        (cfg.warmup_steps >= 0 and cfg.lr_decay in ("constant", "cosine"),
         "warmup_steps must be >= 0 and lr_decay constant or cosine"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _frames(num_frames: int, cfg: AutoencoderRunConfig, rng: np.random.Generator) -> np.ndarray:
    """The frames of a clip that one step trains on: any, or a contiguous window for a temporal autoencoder."""
    if cfg.model.time_factor == 1:
        return rng.choice(num_frames, cfg.frames_per_clip, replace=False)
    return int(rng.integers(0, num_frames - cfg.frames_per_clip + 1)) + np.arange(cfg.frames_per_clip)


def train_autoencoder(cfg: AutoencoderRunConfig, out: str | Path, progress: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    ae = FrameAutoencoder(cfg.model)
    dataset = build_dataset(cfg.data, "train")
    opt = torch.optim.AdamW(ae.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    rng = np.random.default_rng(cfg.seed)
    log_file = open(out / "loss.csv", "w", newline="")
    log = csv.writer(log_file)
    log.writerow(["step", "mse", "seconds"])
    t0, window, last = time.perf_counter(), [], float("nan")
    bar = tqdm(range(cfg.steps), desc="autoencoder", disable=not progress, dynamic_ncols=True)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        clips = [dataset[int(i)]["video"] for i in rng.integers(0, len(dataset), cfg.clips_per_step)]
        frames = torch.stack([c[:, _frames(c.shape[1], cfg, rng)] for c in clips])  # (B, C, f, H, W)
        std = torch.rand(frames.shape[0]) * cfg.model.latent_noise  # (B,)
        recon = ae(frames, std)  # (B, C, f, H, W)
        mse = (recon - frames).pow(2).mean()
        loss = mse + cfg.l1_weight * (recon - frames).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.append(mse.item())
        if (step + 1) % 50 == 0 or step + 1 == cfg.steps:
            last = float(np.mean(window))
            log.writerow([step + 1, f"{last:.6f}", f"{time.perf_counter() - t0:.1f}"])
            log_file.flush()
            bar.set_postfix(mse=f"{np.mean(window):.5f}")
            window = []
    log_file.close()
    save_tensors(out / AE_WEIGHTS, {k: v.detach().contiguous() for k, v in ae.state_dict().items()})
    (out / AE_CONFIG).write_text(json.dumps(asdict(cfg.model), indent=1))
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    return {"steps": cfg.steps, "seconds": round(time.perf_counter() - t0, 1), "mse": last, "out": str(out)}


SHIPPED_AUTOENCODERS = ("shapes-ae",)  # shipped inside the package, under vidiff/weights/NAME/


def load_autoencoder(path_or_name: str | Path) -> FrameAutoencoder:
    """A frozen FrameAutoencoder from a `vidiff train-autoencoder` folder or a shipped name."""
    from importlib import resources

    from vidiff.errors import CheckpointError
    from vidiff.training.checkpoint import load_into, load_tensors

    path = Path(path_or_name)
    if str(path_or_name) in SHIPPED_AUTOENCODERS and not path.exists():
        path = Path(str(resources.files("vidiff") / "weights" / str(path_or_name)))
    if not (path / AE_CONFIG).is_file():
        raise CheckpointError(f"model.autoencoder {path_or_name}: no {AE_CONFIG} there (make one with `vidiff "
                              f"train-autoencoder`; shipped: {', '.join(SHIPPED_AUTOENCODERS)})")
    try:
        cfg = from_dict(AutoencoderConfig, json.loads((path / AE_CONFIG).read_text()))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"cannot parse {path / AE_CONFIG}: {e}") from None
    ae = FrameAutoencoder(cfg)
    load_into(ae, load_tensors(path / AE_WEIGHTS), str(path / AE_WEIGHTS))
    return ae.eval().requires_grad_(False)
