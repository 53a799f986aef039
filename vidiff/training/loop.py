"""The training loop, readable top to bottom (nanoGPT style).

Determinism: the data order and every random draw of step n (timesteps, noise, dropout) are pure
functions of (train.seed, n, rank), so a resumed run replays exactly what an uninterrupted run does.
Multi-process training uses torch.distributed as launched by `torchrun` (NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from vidiff.build import build_autoencoder, build_denoiser, sample_shape
from vidiff.config import RunConfig, load_config
from vidiff.data import build_dataset
from vidiff.diffusion import sample
from vidiff.diffusion.guidance import masked_model_denoise
from vidiff.diffusion.masks import clean_context_mask, conditioning_channels, random_training_masks
from vidiff.errors import CheckpointError, ConfigError, VidiffError


class TrainingDiverged(VidiffError):
    """The loss or the gradients stayed NaN/Inf for train.max_nonfinite_steps steps in a row."""


class StopRequested:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, checkpoints and returns."""

    def __init__(self):
        self.signal: Optional[str] = None
        self._previous = {}

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        import signal

        if self.signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
from vidiff.io import to_frames, video_grid, write_video
from vidiff.training.checkpoint import (CONFIG, WEIGHTS, checkpoint_dirs, init_from_weights, latest_good_checkpoint,
                                       load_checkpoint, load_tensors, resolve_run, save_checkpoint)
from vidiff.training.ema import EMA
from vidiff.training.optim import build_optimizer, select_trainable


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but CUDA is not available; use auto or cpu")
    return device


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    return (seed * 1_000_003 + step) * 64 + rank


class StepBatchSampler(Sampler):
    """Yields the index batches for steps start, start+1, ... of an endless sequence of shuffled epochs.

    Batch n is a pure function of (seed, n, rank, world): resuming at step n needs no saved state. With `short`,
    a share of the steps instead draws (1, i) indices of short clips from a JointClips dataset.
    """

    def __init__(self, length: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0, world: int = 1,
                 short: Optional[tuple[int, int, float]] = None):
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.start_step, self.rank, self.world = start_step, rank, world
        self.short = short  # (length, batch size, probability) of the short-clip steps (JointClips), or None
        self._perm: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.length))
        return self._perm[1]

    def batch(self, step: int) -> list:
        if self.short is not None:
            length, batch_size, prob = self.short
            if np.random.default_rng([self.seed, step, 1]).random() < prob:  # the same choice on every rank
                rng = np.random.default_rng([self.seed, step, self.rank, 2])
                return [(1, int(i)) for i in rng.integers(0, length, batch_size)]
        first = (step * self.world + self.rank) * self.batch_size
        out = []
        for k in range(first, first + self.batch_size):
            out.append(int(self._permutation(k // self.length)[k % self.length]))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


class JointClips(torch.utils.data.Dataset):
    """Full clips at index i and shorter clips of the same data at index (1, i) (train.short_clip_frames)."""

    def __init__(self, full, short):
        self.full, self.short = full, short

    def __len__(self) -> int:
        return len(self.full)

    def __getitem__(self, index):
        return self.short[index[1]] if isinstance(index, tuple) else self.full[index]

    def summary(self):
        return self.full.summary() if hasattr(self.full, "summary") else None


def lr_at(step: int, cfg, budget_progress: float = 0.0) -> float:
    """Linear warm-up, then constant or cosine decay to lr_min_ratio * lr.

    The decay runs over the steps after warm-up, or over `budget_progress` (the share of a time budget spent since
    warm-up, 0..1) where that is further along: a run that stops on its time budget ends its decay there instead
    of stopping at a high learning rate part way through a schedule planned for `cfg.steps`.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_decay == "constant":
        return cfg.lr
    progress = min(1.0, max((step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps), budget_progress))
    return cfg.lr * (cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _collate(items: list[dict]) -> dict:
    batch = {"video": torch.stack([it["video"] for it in items])}  # (B, C, F, H, W)
    if "labels" in items[0]:
        batch["labels"] = torch.stack([it["labels"] for it in items])  # (B, L) long, -1: no label
    return batch


def check_run_dir(cfg: RunConfig, run_dir: Path, resume: bool) -> None:
    """Before anything is built: a resumed run's saved config must agree, a new run must not overwrite one."""
    cfg_path = run_dir / CONFIG
    if resume:
        if not cfg_path.is_file():
            raise CheckpointError(f"cannot resume: {run_dir} has no {CONFIG}")
        saved = load_config(cfg_path)
        # The loss weighting is a training choice: a run may continue under another one (fine-tuning).
        saved.diffusion.min_snr_gamma = cfg.diffusion.min_snr_gamma
        saved.diffusion.frame_difference_weight = cfg.diffusion.frame_difference_weight
        saved.diffusion.per_frame_noise = cfg.diffusion.per_frame_noise
        saved.diffusion.clean_context = cfg.diffusion.clean_context
        saved.diffusion.clean_context_frames = cfg.diffusion.clean_context_frames
        saved.diffusion.input_perturbation = cfg.diffusion.input_perturbation
        for section in ("data", "model", "diffusion", "masks"):
            if getattr(saved, section) != getattr(cfg, section):
                raise CheckpointError(f"cannot resume {run_dir}: its '{section}' config differs from the one given")
        if not checkpoint_dirs(run_dir):
            raise CheckpointError(f"cannot resume: {run_dir} has no complete checkpoint")
    elif checkpoint_dirs(run_dir):
        raise CheckpointError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")


def lock_run_dir(run_dir: Path):
    """An exclusive flock on RUN/train.lock, so that two trainings never write the same run folder."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    fh = open(run_dir / "train.lock", "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        owner = fh.read().strip() or "another process"
        fh.close()
        raise CheckpointError(f"{run_dir} is being trained by {owner}; wait for it to finish or stop it first") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"process {os.getpid()}")
    fh.flush()
    return fh


@torch.no_grad()
def write_preview(denoiser, ema: EMA, cfg: RunConfig, path: Path, device: torch.device, num: int = 4,
                  autoencoder=None) -> None:
    """Sample `num` videos from the EMA weights with a fixed seed and write them side by side as a gif."""
    net = denoiser.net
    backup = {k: v.detach().clone() for k, v in net.state_dict().items()}
    ema.copy_to(net)
    net.eval()
    g = torch.Generator().manual_seed(1234)
    denoise = masked_model_denoise(denoiser) if cfg.masks.enabled else denoiser
    x = sample(denoise, sample_shape(cfg, num, autoencoder), denoiser.alphas_cumprod,
               sampler="ddim", num_steps=cfg.train.preview_steps, generator=g, device=device, noise=denoiser.noise)
    if autoencoder is not None:
        x = autoencoder.decode(x).clamp(-1, 1)
    net.load_state_dict(backup)
    net.train()
    frames = np.stack([to_frames(v) for v in x])
    write_video(path, video_grid(frames, columns=num), fps=8, upscale=2)


def train(cfg: RunConfig, run_dir: str | Path, resume: bool = False, progress: bool = True,
          max_steps: Optional[int] = None) -> dict:
    """Train the denoiser described by `cfg`, writing everything into `run_dir`.

    `max_steps` stops after that many steps of this call (the run's schedule still spans train.steps):
    used to interrupt runs in tests. Returns a summary dict. Rank 0 holds an exclusive lock on the
    run folder for the whole run (released by the kernel even if the process is killed).
    """
    lock = lock_run_dir(Path(run_dir)) if int(os.environ.get("RANK", "0")) == 0 else None
    own_group = _join_process_group(cfg)
    finished = False
    try:
        summary = _train(cfg, Path(run_dir), resume, progress, max_steps)
        finished = True
        return summary
    finally:
        if own_group:
            _leave_process_group(wait_for_others=finished)
        if lock is not None:
            lock.close()


def _join_process_group(cfg: RunConfig) -> bool:
    """Under torchrun (WORLD_SIZE > 1): set this rank's GPU and join the process group (NCCL on GPUs, gloo on CPUs).

    Returns True when this call created the group (and so must destroy it); a group the caller made is left alone.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch.distributed as dist

    cuda = resolve_device(cfg.train.device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if dist.is_initialized():
        return False
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def _leave_process_group(wait_for_others: bool) -> None:
    """Destroy the process group before the interpreter exits.

    Left to the interpreter's shutdown, gloo's threads can be torn down while a peer still talks to them: the rank
    dies with SIGABRT ("terminate called without an active exception"). After a finished run every rank first
    waits at a barrier for rank 0, which writes the last checkpoint and preview after the others are done; after
    an error there is no barrier (the other ranks may never reach it).
    """
    import torch.distributed as dist

    try:
        if wait_for_others:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def _train(cfg: RunConfig, run_dir: Path, resume: bool, progress: bool, max_steps: Optional[int]) -> dict:
    from tqdm.auto import tqdm

    tc = cfg.train
    run_dir = Path(run_dir)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = resolve_device(tc.device)
    if world > 1:  # (the process group is joined by train())
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    is_main = rank == 0
    init_source = resolve_run(tc.init_from) if tc.init_from and not resume else None  # (before anything is written)
    if cfg.sample.image_guidance and cfg.model.num_labels:  # e.g. the demo preset made smaller: its image model
        # cannot guide this network; the run is sampled without image guidance (said once, before training)
        from vidiff.build import check_image_model
        from vidiff.errors import ConfigError

        try:
            check_image_model(cfg, cfg.sample.image_model)
        except ConfigError as e:
            cfg.sample.image_guidance = 0.0
            if is_main:
                print(f"note: this run will be sampled without image guidance (sample.image_guidance=0): {e}")
    if is_main:
        check_run_dir(cfg, run_dir, resume)

    dataset = build_dataset(cfg.data, "train")
    torch.manual_seed(tc.seed)  # the initial weights are a function of the seed (same on every rank)
    denoiser = build_denoiser(cfg).to(device)
    net = denoiser.net
    autoencoder = build_autoencoder(cfg)  # latent diffusion: frozen, clips are encoded as they arrive
    if autoencoder is not None:
        autoencoder.to(device)
    if init_source is not None:
        fresh = init_from_weights(net, load_tensors(init_source / WEIGHTS), f"train.init_from {tc.init_from}")
        if is_main:
            print(f"initialised from {init_source}" + (f"; {len(fresh)} tensors start fresh ({', '.join(fresh[:4])}"
                                                  f"{', ...' if len(fresh) > 4 else ''})" if fresh else ""))
    if tc.trainable:
        count, size = select_trainable(net, tc.trainable, tc.rest_lr_scale)
        if is_main:
            rest = f"the rest at {tc.rest_lr_scale:g} x lr" if tc.rest_lr_scale else "the rest frozen"
            print(f"training {count} of {len(list(net.parameters()))} tensors ({size:,} of {net.num_parameters():,} "
                  f"parameters; train.trainable {list(tc.trainable)}) at the full lr, {rest}")
    if is_main:  # written once the data, the network and its start have been checked
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / CONFIG)
    ema = EMA(net, tc.ema_decay)
    optimizer = build_optimizer(net, tc)

    start_step, seconds_before = 0, 0.0
    if resume:
        ckpt = latest_good_checkpoint(run_dir)
        state = load_checkpoint(ckpt, net, ema, optimizer)
        start_step, seconds_before = state["step"], state.get("seconds", 0.0)
        if is_main:
            print(f"resumed {run_dir} from {ckpt.name} (step {start_step})")
    if start_step >= tc.steps:
        return {"step": start_step, "seconds": round(seconds_before, 1), "run_dir": str(run_dir),
                "message": "already finished"}

    model = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if tc.compile:
        model = torch.compile(model)
    autocast = contextlib.nullcontext()
    if tc.precision == "bf16":
        if device.type == "cuda":
            autocast = torch.autocast("cuda", dtype=torch.bfloat16)
        else:
            warnings.warn("train.precision=bf16 is ignored on CPU (no native bf16: ~2x slower); training in fp32")

    short = None
    if tc.short_clip_frames:  # joint training with shorter clips: about the same frames per step, more clips
        dataset = JointClips(dataset, build_dataset(replace(cfg.data, num_frames=tc.short_clip_frames), "train"))
        short = (len(dataset.short), max(1, round(tc.batch_size * cfg.data.num_frames / tc.short_clip_frames)),
                 tc.short_clip_prob)
    sampler = StepBatchSampler(len(dataset), tc.batch_size, tc.seed, start_step, rank, world, short)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=_collate, num_workers=tc.num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=tc.num_workers > 0)
    batches = iter(loader)

    log_path = run_dir / "loss.csv"
    new_log = not (resume and log_path.exists())
    if is_main and not new_log:  # drop rows logged after the checkpoint we resume from (a killed run)
        rows = list(csv.reader(open(log_path, newline="")))
        with open(log_path, "w", newline="") as fh:
            csv.writer(fh).writerows([rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= start_step])
    log_file = open(log_path, "w" if new_log else "a", newline="") if is_main else None
    log = csv.writer(log_file) if log_file else None
    if log and new_log:
        log.writerow(["step", "loss", "lr", "grad_norm", "videos_per_s", "seconds"])

    end_step = tc.steps if max_steps is None else min(tc.steps, start_step + max_steps)
    bar = tqdm(total=tc.steps, initial=start_step, desc="training", disable=not (progress and is_main),
               dynamic_ncols=True)
    t_start = time.perf_counter()
    t_window, window_steps, window_loss = t_start, 0, 0.0
    step = start_step
    stopped_early = False
    nonfinite_in_a_row, nonfinite_total = 0, 0
    budget = None if tc.time_budget_minutes is None else 60 * tc.time_budget_minutes  # seconds, this call's
    warm_end = 0.0 if start_step >= tc.warmup_steps else None  # this call's seconds when warm-up ended
    budget_progress = 0.0  # the share of the budget spent since warm-up (under torchrun: the largest clock)
    net.train()
    with StopRequested() as stop:
        while step < end_step:
            torch.manual_seed(step_seed(tc.seed, step, rank))  # timesteps, noise and dropout of this step
            batch = next(batches)
            x0 = batch["video"].to(device, non_blocking=True)  # (B, C, F, H, W)
            if autoencoder is not None:
                with torch.no_grad():
                    x0 = autoencoder.encode(x0)  # (B, L, F, H/f, W/f) in [-1, 1]
            t = torch.randint(0, denoiser.num_timesteps, (x0.shape[0],), device=device)  # (B,)
            if cfg.diffusion.per_frame_noise:  # Diffusion Forcing: some clips get a noise level per frame, (B, F)
                own = torch.rand(x0.shape[0], device=device) < cfg.diffusion.per_frame_noise
                t_frames = torch.randint(0, denoiser.num_timesteps, x0.shape[:1] + x0.shape[2:3], device=device)
                t = torch.where(own[:, None], t_frames, t[:, None])  # (B, F)
            context = None
            if cfg.diffusion.clean_context:  # the first k frames given clean (level 0) and not in the loss
                context = clean_context_mask(x0.shape[0], x0.shape[2], cfg.diffusion.clean_context,
                                             cfg.diffusion.clean_context_frames, device)  # (B, 1, F, 1, 1)
                t = torch.where(context[:, 0, :, 0, 0] > 0, 0, t if t.ndim == 2 else t[:, None])  # (B, F)
            noise = denoiser.noise.draw(x0.shape, device=device)  # (B, C, F, H, W)
            labels = None
            if denoiser.num_labels:  # drop some clips' labels: the unconditional model for classifier-free guidance
                labels = batch["labels"].to(device)  # (B, L)
                dropped = torch.rand(labels.shape[0], device=device) < tc.label_dropout
                labels = labels.masked_fill(dropped[:, None], -1)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, tc, budget_progress) * group.get("lr_scale", 1.0)
            cond = loss_mask = None
            if cfg.masks.enabled:  # MCVD: known frames + mask as input channels, loss on the unknown frames
                mk = cfg.masks
                mask = random_training_masks(x0.shape[0], x0.shape[2], mk.p_none, mk.p_prediction,
                                             mk.p_interpolation, mk.max_context).to(device)  # (B, 1, F, 1, 1)
                cond, loss_mask = conditioning_channels(x0, mask), 1 - mask
            if context is not None:
                loss_mask = (1 - context) if loss_mask is None else loss_mask * (1 - context)
            with autocast:
                loss = denoiser.loss(x0, t, noise, cond=cond, loss_mask=loss_mask, net=model, labels=labels).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            max_norm = tc.grad_clip if tc.grad_clip > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm)
            step += 1
            if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
                # Skip the update: the weights, the EMA and the optimizer state stay as they were.
                nonfinite_in_a_row += 1
                nonfinite_total += 1
                if nonfinite_in_a_row >= tc.max_nonfinite_steps:
                    good = checkpoint_dirs(run_dir)
                    last = f"the last good checkpoint is {good[-1].name}" if good else "no checkpoint was written"
                    raise TrainingDiverged(f"the loss or gradients were NaN/Inf for {nonfinite_in_a_row} steps in a "
                                           f"row (up to step {step}); stopped, {last}. Try a lower train.lr or "
                                           f"train.grad_clip")
            else:
                nonfinite_in_a_row = 0
                optimizer.step()
                ema.update(net)
                window_steps += 1
                window_loss += loss.item()
            bar.update(1)

            if is_main and (step % tc.log_every == 0 or step == end_step) and window_steps:
                now = time.perf_counter()
                # (a short-clip step counts as batch_size videos: it holds as many frames)
                vps = window_steps * tc.batch_size * world / max(now - t_window, 1e-9)
                log.writerow([step, f"{window_loss / window_steps:.6f}", f"{optimizer.param_groups[0]['lr']:.3e}",
                              f"{float(grad_norm):.4f}", f"{vps:.2f}", f"{seconds_before + now - t_start:.1f}"])
                log_file.flush()
                bar.set_postfix(loss=f"{window_loss / window_steps:.4f}", vid_s=f"{vps:.1f}")
                t_window, window_steps, window_loss = now, 0, 0.0

            elapsed = time.perf_counter() - t_start
            want_stop = stop.signal is not None or (budget is not None and elapsed > budget)
            if world > 1:  # every rank stops at the same step (or the next gradient all-reduce waits forever) and
                # sets the same learning rate: the flags and clocks of all ranks, their largest
                flag = torch.tensor([float(want_stop), elapsed], dtype=torch.float64, device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                want_stop, elapsed = bool(flag[0].item()), float(flag[1].item())
            if budget is not None:  # the lr decay ends with the budget if that comes before train.steps
                if warm_end is None and step >= tc.warmup_steps:
                    warm_end = elapsed
                if warm_end is not None:
                    budget_progress = (elapsed - warm_end) / max(budget - warm_end, 1e-9)
            if want_stop and step < end_step:
                stopped_early = True
                end_step = step
                bar.total = step  # a run ended by its time budget ends its bar full
                bar.refresh()
            elif budget is not None:
                # The bar's total is the step the budget will end at at the current pace (not train.steps, which a
                # budgeted run may never reach), so that the time left it shows is the budget's
                per_step = elapsed / (step - start_step)
                bar.total = min(end_step, step + max(1, round((budget - elapsed) / per_step)))
            if is_main and (step % tc.checkpoint_every == 0 or step == end_step):
                save_checkpoint(run_dir, step, net, ema, optimizer, keep=tc.keep_checkpoints,
                                extra={"seconds": seconds_before + time.perf_counter() - t_start})
            if is_main and tc.preview_every and step % tc.preview_every == 0 and step != end_step:
                write_preview(denoiser, ema, cfg, run_dir / "previews" / f"step_{step:08d}.gif", device,
                              autoencoder=autoencoder)
    bar.close()
    seconds = time.perf_counter() - t_start
    if is_main:
        log_file.close()
        if stop.signal:
            print(f"{stop.signal}: stopped at step {step} and saved a checkpoint; continue with "
                  f"`vidiff train --out {run_dir} --resume`")
        else:
            write_preview(denoiser, ema, cfg, run_dir / "previews" / f"step_{step:08d}.gif", device,
                              autoencoder=autoencoder)
        data_summary = dataset.summary() if hasattr(dataset, "summary") else None  # folders: skipped files
        if data_summary:
            print(f"data: {data_summary}")
        summary = {"step": step, "seconds": round(seconds, 1), "stopped_early": stopped_early, "data": data_summary,
                   "interrupted_by": stop.signal, "nonfinite_steps_skipped": nonfinite_total,
                   "run_dir": str(run_dir), "parameters": net.num_parameters()}
        (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
        return summary
    return {"step": step}
