"""`vidiff eval`: measure a run the same documented way every time and write RUN_DIR/metrics.json.

Generated videos: N samples of the run's model (or a samples.npy the user points to), compared with real
clips of the run's dataset from its held-out "eval" split: clips 0..N-1 are the reference set, and clips
N..2N-1 a second real set that gives each metric's baseline (real data scored the same way: for Frechet
distances, real against real is the floor a perfect model would reach at this N).

Metrics (names for `--metrics`):
- fvd_shapes: Frechet distance of the features of vidiff's shipped shapes classifier
  (`vidiff.evaluation.classifier`); built-in shapes data at 16 x 32 x 32 only. Lower is better.
- fvd: Frechet Video Distance with an I3D TorchScript file (`i3d=PATH`), protocol in `vidiff.evaluation.fvd`.
- flicker: global frame-to-frame colour change (`metrics.flicker`), mean over videos. Lower is better.
- warp: optical-flow warping error (`metrics.warping_error`), mean over videos. Lower is better.
- colour_drift: how much object colours change along a clip (`metrics.colour_drift`), for `shapes` data (its
  palette). Lower is better.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from vidiff.config import DEFAULT_SAMPLER, default_steps
from vidiff.errors import VidiffError

METRICS = ("fvd_shapes", "fvd", "flicker", "warp", "colour_drift")
EVAL_DIR = "eval"  # RUN_DIR/eval/samples.npy + samples.json: the samples metrics.json was computed on


def _version() -> str:
    import vidiff

    return vidiff.__version__


def default_metrics(cfg) -> list[str]:
    """fvd_shapes where the shipped classifier applies (shapes, 16 x 32 x 32), then flicker and warp, and
    colour drift for shapes data."""
    shapes = cfg.data.dataset == "shapes" and cfg.data.num_frames == 16 and cfg.data.size == 32
    return (["fvd_shapes"] if shapes else []) + ["flicker", "warp"] + \
        (["colour_drift"] if cfg.data.dataset == "shapes" else [])


def parse_metrics(text: Optional[str | Sequence[str]]) -> Optional[list[str]]:
    """'fvd_shapes,warp' or ['fvd_shapes', 'warp'] -> a checked list; None -> None (the default set)."""
    if text is None:
        return None
    parts = [text] if isinstance(text, str) else list(text)
    names = [name.strip() for part in parts for name in part.split(",") if name.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        what = f"unknown metric {unknown[0]!r}" if unknown else "no metrics given"
        raise VidiffError(f"{what}; choose from {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def real_clips(cfg, start: int, count: int, progress: bool = False, desc: str = "real clips") -> np.ndarray:
    """uint8 (count, F, H, W, 3): clips start..start+count-1 of the eval split of the run's dataset."""
    from tqdm.auto import tqdm

    from vidiff.data import build_dataset
    from vidiff.io import to_frames

    dataset = build_dataset(cfg.data, "eval")
    if start + count > len(dataset):
        raise VidiffError(f"the eval split has {len(dataset)} clips, fewer than the {start + count} needed "
                          f"(two real sets of N = {count}); lower --num")
    return np.stack([to_frames(dataset[i]["video"])
                     for i in tqdm(range(start, start + count), desc=desc, disable=not progress, leave=False)])


def model_step(weights: Path) -> Optional[int]:
    """The training step stored in a model.safetensors' metadata, if any."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), "pt") as f:
            step = (f.metadata() or {}).get("step")
        return int(step) if step is not None else None
    except Exception:  # an unreadable file fails later, with the loader's message
        return None


def load_samples(path: str | Path, num: int, shape: tuple) -> np.ndarray:
    """The first `num` videos of a samples.npy (or of DIR/samples.npy), checked against the real clips' shape."""
    path = Path(path)
    if path.is_dir():
        path = path / "samples.npy"
    if not path.is_file():
        raise VidiffError(f"samples file not found: {path}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise VidiffError(f"cannot read {path} as a numpy array ({str(e).splitlines()[0][:100]})") from None
    if arr.dtype != np.uint8 or arr.ndim != 5 or tuple(arr.shape[1:]) != tuple(shape):
        raise VidiffError(f"{path} holds {arr.dtype} {tuple(arr.shape)}, but uint8 (N, {', '.join(map(str, shape))}) "
                          f"videos like the run's data are needed")
    if len(arr) < num:
        raise VidiffError(f"{path} holds {len(arr)} videos, fewer than --num {num}")
    return np.ascontiguousarray(arr[:num])


def generated_samples(run: Path, cfg, num: int, steps: int, sampler: str, eta: float, seed: int, device: str,
                      batch_size: int, out_dir: Path, progress: bool, guidance: Optional[float] = None,
                      guidance_per_label: Optional[float] = None,
                      guidance_rescale: float = 0.0, image_guidance: Optional[float] = None) -> tuple[np.ndarray, dict]:
    """Sample `num` videos, or reuse out_dir/eval/samples.npy when it was sampled from the same weights and settings.
    A label-conditioned model is asked for the labels of `num` random held-out clips, with classifier-free guidance
    `guidance` plus `guidance_per_label` per asked object past the first (None: the model's `sample.guidance` and
    `sample.guidance_per_label`), and image guidance `image_guidance` by the model's
    `sample.image_model` (None: the model's `sample.image_guidance`)."""
    import torch

    from vidiff.evaluation.fvd import sha256_file
    from vidiff.pipeline import VideoPipeline
    from vidiff.training.checkpoint import WEIGHTS

    guidance = cfg.sample.guidance if guidance is None else guidance
    guidance_per_label = cfg.sample.guidance_per_label if guidance_per_label is None else guidance_per_label
    image_guidance = cfg.sample.image_guidance if image_guidance is None else image_guidance
    settings = {"sampler": sampler, "steps": steps, "eta": eta, "seed": seed,
                "model_sha256": sha256_file(run / WEIGHTS)}
    if cfg.model.num_labels:  # (the guidance settings matter only with labels)
        settings.update(labels="held-out clips", guidance=guidance, guidance_per_label=guidance_per_label)
        if guidance_rescale:
            settings.update(guidance_rescale=guidance_rescale)
        if image_guidance:
            settings.update(image_guidance=image_guidance, image_model=cfg.sample.image_model)
    cache, meta_file = out_dir / EVAL_DIR / "samples.npy", out_dir / EVAL_DIR / "samples.json"
    if cache.is_file() and meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if all(meta.get(k) == v for k, v in settings.items()) and meta.get("num", 0) >= num:
            frames = load_samples(cache, num, (cfg.data.num_frames, cfg.data.size, cfg.data.size, 3))
            return frames, {**settings, "source": str(cache), "reused": True}
    pipe = VideoPipeline.from_pretrained(run, device=device)
    t0 = time.perf_counter()
    labels = pipe.dataset_labels(num, seed) if cfg.model.num_labels else None
    out = pipe(num_videos=num, num_inference_steps=steps, sampler=sampler, eta=eta,
               generator=torch.Generator().manual_seed(seed), batch_size=batch_size, progress=progress,
               labels=labels, guidance_scale=guidance, guidance_per_label=guidance_per_label,
               guidance_rescale=guidance_rescale, image_guidance=image_guidance)
    seconds = time.perf_counter() - t0
    frames = out.frames()
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, frames)
    meta_file.write_text(json.dumps({**settings, "num": num, "seconds": round(seconds, 1)}, indent=1) + "\n")
    return frames, {**settings, "source": str(cache), "reused": False, "seconds": round(seconds, 1)}


def _mean_std(values: np.ndarray) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def _per_video_metrics() -> dict:
    """name -> (function of videos returning one score per video, protocol written to metrics.json)."""
    from vidiff.evaluation import metrics as M

    return {
        "flicker": (M.flicker, {"definition": "mean over frame pairs and channels of |change of the frame's mean "
                                              "colour|, [0, 1] units"}),
        "warp": (M.warping_error, {"definition": "Lai et al. 2018 warping error: squared RGB error of frame t warped "
                                                 "onto t+1, non-occluded pixels, [0, 1] units",
                                   "flow": {"method": "OpenCV Farneback", **M.FARNEBACK, "upscale": M.FLOW_UPSCALE}}),
        "colour_drift": (M.colour_drift, {"definition": "object pixels (brightest channel > 0.5) labelled with the "
                                                        "nearest shapes palette colour; mean over frames of the "
                                                        "total-variation distance between the frame's label "
                                                        "histogram and the clip's mean histogram"}),
    }


def evaluate_run(run: str | Path, num: int = 256, metrics: Optional[Sequence[str]] = None, i3d: Optional[str] = None,
                 steps: Optional[int] = None, sampler: str = DEFAULT_SAMPLER, eta: float = 0.0, seed: int = 0,
                 device: str = "auto", batch_size: int = 16, samples: Optional[str | Path] = None,
                 out_dir: Optional[str | Path] = None, progress: bool = True, guidance: Optional[float] = None,
                 guidance_per_label: Optional[float] = None, guidance_rescale: float = 0.0,
                 image_guidance: Optional[float] = None) -> dict:
    """Compute `metrics` for a run and write out_dir/metrics.json (out_dir defaults to the run folder).
    `guidance`, `guidance_per_label`, `guidance_rescale`: classifier-free guidance of a label-conditioned model,
    `image_guidance`: guidance by its `sample.image_model` (None: the defaults).

    Returns the dict written. See the module docstring for what each metric is and what its baseline is.
    """
    from tqdm.auto import tqdm

    from vidiff.config import load_config
    from vidiff.evaluation import metrics as M
    from vidiff.pipeline import resolve_run
    from vidiff.training.checkpoint import CONFIG, WEIGHTS

    if num < 2:
        raise VidiffError(f"--num must be at least 2 (Frechet distances need a covariance), got {num}")
    run = resolve_run(run)
    out_dir = Path(out_dir) if out_dir is not None else run
    cfg = load_config(run / CONFIG)
    steps = default_steps(cfg.diffusion.timesteps, sampler) if steps is None else steps
    names = list(metrics) if metrics is not None else default_metrics(cfg)
    if "fvd" in names and not i3d:
        raise VidiffError("metric 'fvd' needs the I3D network: pass --i3d PATH to a local TorchScript file")
    classifier = None
    if "fvd_shapes" in names:
        from vidiff.evaluation.classifier import load_shapes_classifier

        classifier = load_shapes_classifier()
        if cfg.data.dataset != "shapes" or (cfg.data.num_frames, cfg.data.size) != (classifier.cfg.num_frames,
                                                                                     classifier.cfg.size):
            raise VidiffError(f"fvd_shapes needs shapes clips of {classifier.cfg.num_frames} frames x "
                              f"{classifier.cfg.size}x{classifier.cfg.size}; this run has {cfg.data.dataset} "
                              f"{cfg.data.num_frames} x {cfg.data.size}x{cfg.data.size}")
    net = None
    if "fvd" in names:  # load before the slow work, so that a bad path fails at once
        from vidiff.evaluation.fvd import load_i3d

        net = load_i3d(i3d, device="cpu" if device == "auto" else device)

    t0 = time.perf_counter()
    clip_shape = (cfg.data.num_frames, cfg.data.size, cfg.data.size, 3)
    if samples is not None:
        fake = load_samples(samples, num, clip_shape)
        sample_info = {"source": str(samples), "reused": True}
    else:
        fake, sample_info = generated_samples(run, cfg, num, steps, sampler, eta, seed, device, batch_size,
                                              out_dir, progress, guidance, guidance_per_label, guidance_rescale,
                                              image_guidance)
    real = real_clips(cfg, 0, num, progress, "real clips (reference)")
    real2 = real_clips(cfg, num, num, progress, "real clips (baseline)")

    results: dict[str, dict] = {}
    for name in tqdm(names, desc="metrics", disable=not progress):
        if name == "fvd_shapes":
            from vidiff.evaluation.classifier import classifier_info, shapes_features

            fr, f2, ff = (shapes_features(classifier, v) for v in (real, real2, fake))
            info = classifier_info()
            results[name] = {
                "value": M.frechet_distance(fr, ff), "baseline": M.frechet_distance(fr, f2),
                "baseline_is": "real vs real: a second set of N held-out clips against the reference set",
                "lower_is_better": True,
                "protocol": {"network": "vidiff shapes classifier (vidiff/weights/shapes_classifier)",
                             "weights_sha256": info["weights_sha256"],
                             "features": f"the 7 per-colour embeddings side by side ({fr.shape[1]}-d)",
                             "input": "all frames, no resizing, float32 in [-1, 1], (N, 3, F, H, W)",
                             "statistics": "mean and unbiased covariance, float64",
                             "num_real": num, "num_generated": num,
                             "classifier_held_out_accuracy": info["results"].get("held_out_accuracy")},
            }
        elif name == "fvd":
            from vidiff.evaluation.fvd import FVDProtocol, compute_fvd, i3d_features

            protocol = FVDProtocol()
            dev = "cpu" if device == "auto" else device
            fr = i3d_features(net, real, protocol, 8, dev, progress, "I3D real")
            entry = compute_fvd(real, fake, net, protocol, 8, dev, progress, real_features=fr)
            floor = compute_fvd(real, real2, net, protocol, 8, dev, progress, real_features=fr)
            results[name] = {"value": entry.pop("value"), "baseline": floor["value"],
                             "baseline_is": "real vs real: a second set of N held-out clips against the reference set",
                             "lower_is_better": True, "protocol": entry}
        elif name in (per_video := _per_video_metrics()):
            fn, protocol = per_video[name]
            gen, ref = fn(fake), fn(real)
            results[name] = {"value": float(gen.mean()), "baseline": float(ref.mean()),
                             "baseline_is": "the same score on N held-out real clips",
                             "lower_is_better": True,
                             "per_video": {"generated": _mean_std(gen), "real": _mean_std(ref)},
                             "protocol": protocol}
        else:  # pragma: no cover - parse_metrics rejects these
            raise VidiffError(f"unknown metric {name!r}")

    report = {
        "run": str(run),
        "model_sha256": sample_info.get("model_sha256"),
        "model_step": model_step(run / WEIGHTS),
        "num_videos": num,
        "samples": sample_info,
        "real": {"dataset": cfg.data.dataset, "split": "eval", "reference_clips": [0, num],
                 "baseline_clips": [num, 2 * num], "data_config": vars(cfg.data)},
        "metrics": results,
        "seconds": round(time.perf_counter() - t0, 1),
        "vidiff_version": _version(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    if out_dir != run and not (out_dir / CONFIG).exists():  # a shipped model: keep its config beside the metrics
        (out_dir / CONFIG).write_text((run / CONFIG).read_text())
    tmp = out_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(report, indent=1, default=str) + "\n")
    os.replace(tmp, out_dir / "metrics.json")
    return report
