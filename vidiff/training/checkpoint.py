"""Run folders and checkpoints: safetensors for tensors, JSON for everything else; nothing is ever unpickled.

A run folder holds:
    config.json                  the RunConfig
    model.safetensors            EMA weights of the latest checkpoint (what inference loads)
    loss.csv                     step, loss, lr, grad_norm, videos/s, seconds
    checkpoints/step_XXXXXXXX/   model, ema and optimizer .safetensors, state.json and manifest.json
                                 (sha256 of each file); written to a temporary folder, fsynced, renamed
    previews/                    preview gifs written during training
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from importlib import resources
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from vidiff.errors import CheckpointError

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: Optional[dict] = None) -> None:
    """Write safetensors atomically: a temporary file, fsync, then rename over the target."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(tensors, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # safetensors creates 0600 files; use the user's usual permissions
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(f"refusing to load {path.name}: pickle-based files can run code; vidiff loads only .safetensors")
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: not a valid safetensors file ({str(e).splitlines()[0][:120]})") from None


SHIPPED = ("shapes32", "shapes32-masked", "shapes32-image", "shapes32-still")  # models shipped inside the package, under vidiff/weights/NAME/
# shapes32: the demo preset trained longer (label-conditioned); shapes32-masked: trained with MCVD frame masks
# (prediction, interpolation), with an earlier demo network (patch 2, v objective); shapes32-image: the demo network
# trained on single frames (an image model); shapes32-still: that image model trained further on still clips
# (data.shape_speed=0: 16 frames, nothing moves), where the demo's training starts (train.init_from)


def resolve_run(path_or_name: str | Path) -> Path:
    """A run folder, or the name of a model shipped with vidiff."""
    if str(path_or_name) in SHIPPED and not Path(path_or_name).exists():
        return Path(str(resources.files("vidiff") / "weights" / str(path_or_name)))
    path = Path(path_or_name)
    if path.is_file():  # a weights file: its folder is the run, and only safetensors are accepted
        load_tensors(path) if path.suffix.lower() != ".safetensors" else None  # refuses pickles with a message
        path = path.parent
    if not path.is_dir():
        hint = f" (shipped models: {', '.join(SHIPPED)})"
        raise CheckpointError(f"run folder not found: {path}{hint}")
    if not (path / CONFIG).is_file():
        raise CheckpointError(f"{path} is not a vidiff run: it has no {CONFIG}")
    if not (path / WEIGHTS).is_file():
        raise CheckpointError(f"{path} has no {WEIGHTS} yet: train it first (a checkpoint writes the EMA weights there)")
    return path


def init_from_weights(module: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> list[str]:
    """Start a new run from another model's weights (fine-tuning): copy every tensor whose name and shape match;
    the others keep their fresh initialisation and are returned. A model of another architecture, of which not
    even half the tensors match, is an error, not a silent fresh start."""
    state = module.state_dict()
    matching = [k for k, v in state.items() if k in tensors and tuple(tensors[k].shape) == tuple(v.shape)]
    if 2 * len(matching) < len(state):
        raise CheckpointError(f"{source} matches only {len(matching)} of this model's {len(state)} tensors by name and "
                              "shape: train.init_from needs a model of the same architecture, or one that differs in a "
                              "few layers (train.init_from=null trains from random weights)")
    with torch.no_grad():
        for k in matching:
            state[k].copy_(tensors[k].to(state[k].dtype))
    return [k for k in state if k not in matching]


def load_into(module: nn.Module, tensors: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Copy tensors into `module`, naming the first missing, unexpected or mis-shaped tensor on mismatch."""
    state = module.state_dict()
    missing = [k for k in state if k not in tensors]
    unexpected = [k for k in tensors if k not in state]
    if missing or unexpected:
        what = f"lacks tensor '{missing[0]}'" if missing else f"has unexpected tensor '{unexpected[0]}'"
        raise CheckpointError(f"{source} does not match the model config: it {what} "
                              f"({len(missing)} missing, {len(unexpected)} unexpected)")
    for k, v in state.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source} does not match the model config: tensor '{k}' has shape "
                                  f"{tuple(tensors[k].shape)} in the file but {tuple(v.shape)} in the model")
    with torch.no_grad():
        for k, v in state.items():
            v.copy_(tensors[k].to(v.dtype))


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    sd = optimizer.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            tensors[f"{idx}.{name}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    return tensors, sd["param_groups"]


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"the checkpoint's optimizer state does not fit {type(optimizer).__name__} "
                              f"(was train.optimizer changed?): {e}") from None


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (a half-written one has no state.json)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if p.is_dir() and (p / "state.json").is_file())


def checkpoint_ema_weights(run_dir: str | Path, step: int) -> Path:
    """The EMA weights kept by the checkpoint of `step`; a CheckpointError if that checkpoint is not there."""
    path = Path(run_dir) / "checkpoints" / f"step_{step:08d}" / "ema.safetensors"
    if not path.is_file():
        kept = ", ".join(p.name for p in checkpoint_dirs(run_dir)) or "none"
        raise CheckpointError(f"no checkpoint of step {step} in {run_dir} (kept: {kept})")
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(run_dir: str | Path, step: int, model: nn.Module, ema, optimizer: torch.optim.Optimizer,
                    extra: Optional[dict] = None, keep: int = 3) -> Path:
    """Write a resumable checkpoint into a temporary folder and rename it into place; keep the last `keep`.

    Any OSError (disk full, unwritable folder) becomes a CheckpointError that names the problem; the
    previous checkpoints are never touched before the new one is complete.
    """
    run_dir = Path(run_dir)
    root = run_dir / "checkpoints"
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_tensors(tmp / "model.safetensors", model.state_dict())
        save_tensors(tmp / "ema.safetensors", ema.state_dict())
        opt_tensors, groups = optimizer_to_tensors(optimizer)
        save_tensors(tmp / "optimizer.safetensors", opt_tensors)
        state = {"step": step, "ema_updates": ema.num_updates, "param_groups": groups, **(extra or {})}
        _write_json(tmp / "state.json", state)
        _write_json(tmp / "manifest.json", {p.name: sha256(p) for p in sorted(tmp.iterdir())})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(root)
        # The inference weights: the EMA, next to config.json.
        save_tensors(run_dir / WEIGHTS, ema.state_dict(), metadata={"step": step})
    except (OSError, SafetensorError) as e:  # safetensors reports ENOSPC as its own error type
        shutil.rmtree(tmp, ignore_errors=True)
        for leftover in (run_dir / (WEIGHTS + ".tmp"),):
            leftover.unlink(missing_ok=True)
        previous = [p.name for p in checkpoint_dirs(run_dir) if p != final]
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
        reason = getattr(e, "strerror", None) or str(e).split("I/O error: ")[-1].split(" (os error")[0]
        raise CheckpointError(f"could not write the checkpoint of step {step} in {root}: {reason}; {kept}") from None
    for old in checkpoint_dirs(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write_json(path: Path, data: dict) -> None:
    with open(path, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())


def verify_checkpoint(ckpt: Path) -> Optional[str]:
    """None if every file matches manifest.json, else a sentence saying what is wrong."""
    try:
        manifest = json.loads((ckpt / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "its manifest.json is missing or unreadable"
    for name, digest in manifest.items():
        path = ckpt / name
        if not path.is_file():
            return f"{name} is missing"
        if sha256(path) != digest:
            return f"{name} fails its checksum"
    return None


def latest_good_checkpoint(run_dir: str | Path) -> Path:
    """The newest checkpoint whose files match their checksums; broken ones are reported and skipped."""
    candidates = checkpoint_dirs(run_dir)
    for ckpt in reversed(candidates):
        problem = verify_checkpoint(ckpt)
        if problem is None:
            return ckpt
        warnings.warn(f"checkpoint {ckpt.name} is damaged ({problem}); trying the previous one")
    if candidates:
        raise CheckpointError(f"no intact checkpoint in {Path(run_dir) / 'checkpoints'}: every one failed its checksum")
    raise CheckpointError(f"{run_dir} has no complete checkpoint to resume from")


def load_checkpoint(ckpt: Path, model: nn.Module, ema, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model, EMA and optimizer from a checkpoint folder; returns its state.json."""
    try:
        state = json.loads((ckpt / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {ckpt} has no readable state.json ({e})") from None
    load_into(model, load_tensors(ckpt / "model.safetensors"), f"checkpoint {ckpt.name}")
    ema.load_state_dict(load_tensors(ckpt / "ema.safetensors"), state["ema_updates"])
    optimizer_from_tensors(optimizer, load_tensors(ckpt / "optimizer.safetensors"), state["param_groups"])
    return state
