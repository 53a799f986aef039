"""A small video classifier of the bouncing-shapes labels: the feature network of "FVD-shapes".

FVD needs I3D weights that vidiff does not ship. For the built-in shapes data vidiff ships its own feature
network instead, trained by `train_shapes_classifier` (reproduce the shipped weights with
`python bench/train_classifier.py`). Its per-colour embeddings give a Frechet distance ("FVD-shapes", the same
statistics as FVD with a different network) and its predictions give per-attribute accuracy.

Labels. Colours are distinct within a clip (BouncingShapes draws them without replacement), so a colour names
one object. For each of the 6 colours the network predicts:
- present: is an object of that colour in the clip (a binary logit);
- shape: circle, square or triangle of that object (3 logits);
- direction: its direction of motion at the first frame, in 8 compass bins of 45 degrees centred on
  E, SE, S, SW, W, NW, N, NE (image y points down, so "S" is moving down the frame), 8 logits.
Shape and direction are scored only for colours that are present.

Measured (shipped weights, 1000 held-out clips with 1-3 objects, recorded in its config.json): colours
99.6% (the set of colours of a clip exactly right), shape 98.6% and direction 89.8% per object. Most
direction errors are objects moving within a few degrees of a bin boundary, or bouncing off a wall between
the first two frames (about 3% of objects), whose first-frame direction is not visible in the clip.

The network takes 16 x 32 x 32 clips (C, F, H, W) in [-1, 1], the default shapes data; other clip sizes are
refused, because the features would not mean the same thing.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidiff.data.shapes import COLOR_NAMES, COLORS, SHAPES, BouncingShapes
from vidiff.errors import CheckpointError, VidiffError

DIRECTIONS = ("E", "SE", "S", "SW", "W", "NW", "N", "NE")
NUM_COLORS, NUM_SHAPES, NUM_DIRECTIONS = len(COLOR_NAMES), len(SHAPES), len(DIRECTIONS)
SHIPPED_DIR = "shapes_classifier"  # under vidiff/weights/


@dataclass
class ShapesClassifierConfig:
    num_frames: int = 16  # clips it accepts: num_frames x size x size
    size: int = 32
    channels: tuple[int, ...] = (8, 16, 32, 32)  # width of the four 3x3x3 conv stages (run once per colour)
    groups: int = 4  # GroupNorm groups
    traj_hidden: int = 64  # width of the MLP that reads each channel's per-frame moments
    slot_dim: int = 16  # embedding per colour channel; the features are the 7 embeddings side by side
    color_sigma: float = 0.15  # width of the chromaticity match to a palette colour (palette colours are >= 0.66 apart)
    # training recipe (what bench/train_classifier.py runs)
    max_objects: int = 3  # train on clips with 1..max_objects objects (covers every shapes config up to 3)
    train_clips: int = 6000  # distinct rendered training clips
    test_clips: int = 1000  # held-out clips of another seed, for the recorded accuracy
    train_seed: int = 7_000_001  # dataset seeds: distinct from the seeds of training runs (0) and their eval split
    test_seed: int = 7_000_002
    steps: int = 1200
    batch_size: int = 32
    lr: float = 3e-3  # AdamW peak, cosine decay to 5%
    weight_decay: float = 1e-4
    seed: int = 0  # initialisation and batch order

    @property
    def feature_dim(self) -> int:
        return (NUM_COLORS + 1) * self.slot_dim


TRAJ_FEATURES = 7  # per-frame moments of a colour channel (see ShapesClassifier.moments)
EMPTY = 0.02  # colour-channel values below this (2% of full brightness) are set to 0


def palette_chroma() -> torch.Tensor:
    """(6, 3) chromaticities of the BouncingShapes palette: each colour divided by its largest channel."""
    pal = torch.tensor([COLORS[c] for c in COLOR_NAMES], dtype=torch.float32)
    return pal / pal.amax(dim=1, keepdim=True)


class ShapesClassifier(nn.Module):
    """Colour channels, then one small 3D CNN shared by all of them.

    A fixed front end splits the clip into 7 one-channel videos: how much of each palette colour every pixel
    holds (its brightness times a Gaussian match of its chromaticity, so anti-aliased edges count fully), and
    a 7th channel for brightness that matches no palette colour (noise, blur, wrong colours). Because
    BouncingShapes gives every object of a clip a different colour, each channel then shows one object, and
    the shared CNN only has to tell the shape and motion of one blob; pooling over the whole clip would mix
    the objects' attributes otherwise (a network trained end to end on RGB with global pooling reached 60% shape
    and 31% direction accuracy in 900 steps). Beside the CNN, a small MLP reads each channel's trajectory: per frame its
    mass, centroid, centroid step and spread (image moments), from which the direction at the first frame
    (before any bounce), jumps, vanishing and size changes are direct to read (the CNN alone reached 69%
    direction accuracy in 900 steps, with the moments 79-90%). Heads score the 6 palette channels; the features
    (FVD-shapes) are all 7 embeddings.
    """

    def __init__(self, cfg: ShapesClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("palette", palette_chroma(), persistent=False)
        c = cfg.channels
        self.stem = nn.Conv3d(1, c[0], 3, stride=(1, 2, 2), padding=1)  # 16x32x32 -> 16x16x16
        self.frame_bias = nn.Parameter(torch.zeros(c[0], cfg.num_frames, 1, 1))  # tells later layers the frame index
        layers = [nn.GroupNorm(cfg.groups, c[0]), nn.SiLU()]
        for cin, cout, stride in zip(c[:-1], c[1:], [(2, 2, 2), (2, 2, 2), (1, 1, 1)]):  # -> 8x8x8 -> 4x4x4 -> 4x4x4
            layers += [nn.Conv3d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(cfg.groups, cout), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.trajectory = nn.Sequential(nn.Linear(TRAJ_FEATURES * cfg.num_frames, cfg.traj_hidden), nn.SiLU(),
                                        nn.Linear(cfg.traj_hidden, cfg.traj_hidden), nn.SiLU())
        self.embed = nn.Linear(c[-1] + cfg.traj_hidden, cfg.slot_dim)
        self.head = nn.Linear(cfg.slot_dim, 1 + NUM_SHAPES + NUM_DIRECTIONS)

    def color_channels(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 3, F, H, W) in [-1, 1] -> (B, 7, F, H, W) in [0, 1]: 6 palette colours + "other"
        rgb = ((x + 1) / 2).clamp(0, 1)
        value = rgb.amax(dim=1, keepdim=True)  # (B, 1, F, H, W)
        chroma = rgb / value.clamp(min=1e-3)
        dist2 = ((chroma.unsqueeze(1) - self.palette[None, :, :, None, None, None]) ** 2).sum(2)  # (B, 6, F, H, W)
        match = torch.exp(-dist2 / (2 * self.cfg.color_sigma ** 2))
        other = (1 - match.sum(1, keepdim=True)).clamp(min=0)
        ch = value * torch.cat([match, other], dim=1)
        return ch * (ch > EMPTY)  # traces below 2% are zero, so that a missing colour gives an all-zero channel

    @staticmethod
    def moments(v: torch.Tensor) -> torch.Tensor:
        """v: (N, 1, F, H, W) colour channels -> (N, F, 7) per frame: mass (fraction of the frame x 20), centroid
        x, y (in [-1, 1]), centroid step to the next frame x, y (pixels x 4; 0 at the last frame), spread x, y
        (standard deviation in pixels / 4). Frames where the channel is empty give zeros."""
        N, _, Fr, H, W = v.shape
        v = v[:, 0]
        mass = v.sum(dim=(2, 3))  # (N, F)
        safe = mass.clamp(min=1e-6)
        ys = torch.arange(H, device=v.device, dtype=v.dtype) - (H - 1) / 2
        xs = torch.arange(W, device=v.device, dtype=v.dtype) - (W - 1) / 2
        cx = (v.sum(2) * xs).sum(-1) / safe  # (N, F) in pixels from the centre
        cy = (v.sum(3) * ys).sum(-1) / safe
        sx = ((v.sum(2) * (xs - cx[..., None]) ** 2).sum(-1) / safe).clamp(min=0).sqrt()
        sy = ((v.sum(3) * (ys - cy[..., None]) ** 2).sum(-1) / safe).clamp(min=0).sqrt()
        present = (mass > 0).to(v.dtype)
        step = lambda c: torch.cat([(c[:, 1:] - c[:, :-1]) * present[:, 1:] * present[:, :-1],
                                    torch.zeros_like(c[:, :1])], 1)
        feats = [mass / (H * W) * 20, cx / (W / 2), cy / (H / 2), 4 * step(cx), 4 * step(cy), sx / 4, sy / 4]
        return torch.stack(feats, -1) * present[..., None]

    def _encode(self, v: torch.Tensor) -> torch.Tensor:
        # v: (N, 1, F, H, W) one colour channel per item -> (N, C)
        cnn = self.body(self.stem(v) + self.frame_bias).mean(dim=(2, 3, 4))
        return torch.cat([cnn, self.trajectory(self.moments(v).flatten(1))], dim=1)

    def slots(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 3, F, H, W) -> (B, 7, slot_dim)
        B, _, Fr, H, W = x.shape
        ch = self.color_channels(x).reshape(B * (NUM_COLORS + 1), 1, Fr, H, W)  # one colour per batch item
        # An all-zero channel always encodes to the same vector: compute it once and the CNN only for the rest
        # (a shapes clip fills 2-3 of its 7 channels), which is exact and ~2.5x faster.
        filled = ch.flatten(1).amax(1) > 0
        h = self._encode(ch[:1] * 0).expand(len(ch), -1)  # (B*7, C)
        if filled.any():
            h = h.masked_scatter(filled[:, None], self._encode(ch[filled]))
        return F.silu(self.embed(h)).reshape(B, NUM_COLORS + 1, -1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 3, F, H, W) -> (B, 7 * slot_dim): the features of FVD-shapes
        return self.slots(x).flatten(1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # x: (B, 3, F, H, W) -> present (B, 6), shape (B, 6, 3), direction (B, 6, 8) logits
        logits = self.head(self.slots(x)[:, :NUM_COLORS])  # (B, 6, 12)
        return {"present": logits[..., 0], "shape": logits[..., 1:1 + NUM_SHAPES],
                "direction": logits[..., 1 + NUM_SHAPES:]}


# ----------------------------------------------------------------------------------------------
# Labels and data


def direction_bin(velocity: np.ndarray) -> np.ndarray:
    """Compass bin (0 = E, 2 = S with y down, ...) of velocities (..., 2) given as (vx, vy)."""
    angle = np.arctan2(velocity[..., 1], velocity[..., 0])
    return np.mod(np.round(angle / (np.pi / 4)).astype(int), NUM_DIRECTIONS)


def clip_labels(dataset: BouncingShapes, index: int) -> dict[str, np.ndarray]:
    """Per-colour labels of clip `index`: present (6,) bool, shape (6,) and direction (6,) int, -1 where absent,
    and angle (6,) float, the direction of motion at the first frame in radians (0 where absent)."""
    obj = dataset.objects(index)
    present = np.zeros(NUM_COLORS, bool)
    shape = np.full(NUM_COLORS, -1)
    direction = np.full(NUM_COLORS, -1)
    angle = np.zeros(NUM_COLORS)
    dirs = direction_bin(obj["velocity"])
    for k, (s, c) in enumerate(zip(obj["shapes"], obj["colors"])):
        j = COLOR_NAMES.index(c)
        present[j], shape[j], direction[j] = True, SHAPES.index(s), dirs[k]
        angle[j] = np.arctan2(obj["velocity"][k, 1], obj["velocity"][k, 0])
    return {"present": present, "shape": shape, "direction": direction, "angle": angle}


def render_clips(dataset: BouncingShapes, count: int, progress: bool = False,
                 desc: str = "rendering") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The first `count` clips as uint8 (N, F, H, W, 3) and their stacked per-colour labels."""
    from tqdm.auto import tqdm

    videos = np.empty((count, dataset.num_frames, dataset.size, dataset.size, 3), np.uint8)
    labels: dict[str, list] = {}
    for i in tqdm(range(count), desc=desc, disable=not progress, leave=False):
        videos[i] = np.round(dataset.render(dataset.objects(i)) * 255).astype(np.uint8)
        for k, v in clip_labels(dataset, i).items():
            labels.setdefault(k, []).append(v)
    return videos, {k: np.stack(v) for k, v in labels.items()}


def mirror_labels(labels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Labels of the horizontally mirrored clip: a direction at angle a becomes 180 - a (bin k -> 4 - k)."""
    d = labels["direction"]
    out = {**labels, "direction": torch.where(d >= 0, (4 - d) % NUM_DIRECTIONS, d)}
    if "angle" in labels:
        out["angle"] = torch.pi - labels["angle"]
    return out


def _to_input(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, F, H, W, 3) -> float (N, 3, F, H, W) in [-1, 1]; float (N, C, F, H, W) passes through."""
    if isinstance(frames, np.ndarray):  # (a read-only array, e.g. memory-mapped samples.npy, is copied)
        frames = torch.from_numpy(frames if frames.flags.writeable else frames.copy())
    if frames.dtype == torch.uint8:
        return frames.permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    return frames.float()


# ----------------------------------------------------------------------------------------------
# Loss, accuracy, training


def classifier_loss(out: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-clip loss (B,): BCE on presence, cross-entropy on shape and direction of the present colours.

    (Soft direction targets, spread over neighbouring bins by angle, were tried and gave no better accuracy.)"""
    present = labels["present"].float()  # (B, 6)
    loss = F.binary_cross_entropy_with_logits(out["present"], present, reduction="none").sum(1)
    for key in ("shape", "direction"):
        target = labels[key].clamp(min=0)  # absent colours: any class, masked out below
        ce = F.cross_entropy(out[key].transpose(1, 2), target, reduction="none")  # (B, 6)
        loss = loss + (ce * present).sum(1)
    return loss


def asked_attributes(labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-colour labels, as `clip_labels` gives them, of what label-conditioned samples were asked to show:
    labels (N, L) indices into `shapes.LABELS` (-1: empty slot) -> present (N, 6) bool, shape (N, 6) long
    (-1 where absent). Score samples with `attribute_accuracy` on these (direction is not asked for)."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    present = torch.zeros(labels.shape[0], NUM_COLORS, dtype=torch.bool)
    shape = torch.full((labels.shape[0], NUM_COLORS), -1, dtype=torch.long)
    for i, j in (labels >= 0).nonzero().tolist():
        colour, kind = divmod(int(labels[i, j]), NUM_SHAPES)
        present[i, colour], shape[i, colour] = True, kind
    return {"present": present, "shape": shape, "direction": torch.full_like(shape, -1)}


@torch.no_grad()
def attribute_accuracy(out: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> dict[str, float]:
    """Accuracy per attribute: `colors` (the set of colours present is exactly right, per clip), `shape` and
    `direction` (per object present), and `all` (every object of the clip right in colour, shape and direction)."""
    present = labels["present"].bool()
    colors_ok = ((out["present"] > 0) == present).all(1)
    shape_ok = out["shape"].argmax(-1) == labels["shape"]
    dir_ok = out["direction"].argmax(-1) == labels["direction"]
    n_obj = present.sum().clamp(min=1)
    all_ok = colors_ok & ((shape_ok & dir_ok) | ~present).all(1)
    return {"colors": colors_ok.float().mean().item(), "shape": (shape_ok & present).sum().item() / n_obj.item(),
            "direction": (dir_ok & present).sum().item() / n_obj.item(), "all": all_ok.float().mean().item()}


def _labels_tensors(labels: dict[str, np.ndarray], idx=slice(None)) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v[idx]) for k, v in labels.items()}


@torch.no_grad()
def evaluate(model: ShapesClassifier, videos: np.ndarray, labels: dict[str, np.ndarray],
             batch_size: int = 64) -> dict[str, float]:
    """Attribute accuracy of `model` on uint8 clips (N, F, H, W, 3) with their per-colour labels."""
    model.eval()
    outs = [model(_to_input(videos[i:i + batch_size])) for i in range(0, len(videos), batch_size)]
    out = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    return attribute_accuracy(out, _labels_tensors(labels))


def train_shapes_classifier(cfg: Optional[ShapesClassifierConfig] = None, out_dir: Optional[str | Path] = None,
                            progress: bool = True) -> tuple[ShapesClassifier, dict]:
    """Render the training and held-out clips, train the classifier, measure held-out accuracy.

    Writes `model.safetensors` and `config.json` (the config plus the measured results) into `out_dir`
    when given. Deterministic in `cfg` for a fixed torch build and thread count.
    """
    from tqdm.auto import tqdm

    cfg = cfg or ShapesClassifierConfig()
    t0 = time.perf_counter()
    train_ds = BouncingShapes(cfg.num_frames, cfg.size, cfg.max_objects, seed=cfg.train_seed, length=cfg.train_clips)
    test_ds = BouncingShapes(cfg.num_frames, cfg.size, cfg.max_objects, seed=cfg.test_seed, length=cfg.test_clips)
    train_videos, train_labels = render_clips(train_ds, cfg.train_clips, progress, "rendering train clips")
    test_videos, test_labels = render_clips(test_ds, cfg.test_clips, progress, "rendering test clips")
    t_data = time.perf_counter() - t0

    torch.manual_seed(cfg.seed)
    model = ShapesClassifier(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    order = np.concatenate([rng.permutation(cfg.train_clips) for _ in range(
        math.ceil(cfg.steps * cfg.batch_size / cfg.train_clips))])
    model.train()
    bar = tqdm(range(cfg.steps), desc="training classifier", disable=not progress)
    for step in bar:
        lr = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = np.sort(order[step * cfg.batch_size:(step + 1) * cfg.batch_size])
        x = _to_input(train_videos[idx])  # (B, 3, F, H, W)
        labels = _labels_tensors(train_labels, idx)
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5)  # mirror half the batch: a free, label-exact augmentation
        x = torch.where(flip[:, None, None, None, None], x.flip(-1), x)
        mirrored = mirror_labels(labels)
        for key in ("direction", "angle"):
            labels[key] = torch.where(flip[:, None], mirrored[key], labels[key])
        loss = classifier_loss(model(x), labels).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    t_train = time.perf_counter() - t0 - t_data
    accuracy = evaluate(model, test_videos, test_labels)
    results = {"held_out_accuracy": accuracy, "held_out_clips": cfg.test_clips, "train_clips": cfg.train_clips,
               "seconds_rendering": round(t_data, 1), "seconds_training": round(t_train, 1),
               "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if out_dir is not None:
        save_shapes_classifier(model, out_dir, results)
    return model.eval(), results


# ----------------------------------------------------------------------------------------------
# Saving, loading, features


def save_shapes_classifier(model: ShapesClassifier, out_dir: str | Path, results: Optional[dict] = None) -> Path:
    """Write model.safetensors and config.json ({"config": ..., "results": ...}) into out_dir."""
    from vidiff.training.checkpoint import save_tensors

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_tensors(out_dir / "model.safetensors", model.state_dict())
    payload = {"config": asdict(model.cfg), "results": results or {}}
    (out_dir / "config.json").write_text(json.dumps(payload, indent=2) + "\n")
    return out_dir


def shipped_classifier_dir() -> Path:
    return Path(str(resources.files("vidiff") / "weights" / SHIPPED_DIR))


def load_shapes_classifier(path: Optional[str | Path] = None, device: str | torch.device = "cpu") -> ShapesClassifier:
    """Load the classifier from a folder (model.safetensors + config.json); default: the one shipped with vidiff."""
    from vidiff.training.checkpoint import load_into, load_tensors

    folder = Path(path) if path is not None else shipped_classifier_dir()
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"no shapes classifier in {folder}: it has no config.json "
                              f"(train one with `python bench/train_classifier.py`)")
    payload = json.loads(cfg_file.read_text())
    fields = payload.get("config", {})
    cfg = ShapesClassifierConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    model = ShapesClassifier(cfg)
    load_into(model, load_tensors(folder / "model.safetensors"), f"{folder / 'model.safetensors'}")
    model.results = payload.get("results", {})  # what was measured when it was trained
    return model.to(device).eval()


def classifier_info(path: Optional[str | Path] = None) -> dict:
    """Where the classifier weights are, their sha256 and the results recorded with them."""
    from vidiff.evaluation.fvd import sha256_file

    folder = Path(path) if path is not None else shipped_classifier_dir()
    payload = json.loads((folder / "config.json").read_text())
    return {"weights_sha256": sha256_file(folder / "model.safetensors"), "results": payload.get("results", {}),
            "config": payload.get("config", {})}


def _check_clips(model: ShapesClassifier, x: torch.Tensor) -> None:
    want = (3, model.cfg.num_frames, model.cfg.size, model.cfg.size)
    if tuple(x.shape[1:]) != want:
        raise VidiffError(f"the shapes classifier takes clips of {want[1]} frames x {want[2]}x{want[3]} pixels, "
                          f"got {x.shape[2]} frames x {x.shape[3]}x{x.shape[4]}")


@torch.no_grad()
def shapes_features(model: ShapesClassifier, videos, batch_size: int = 64, progress: bool = False,
                    desc: str = "features") -> np.ndarray:
    """Features (N, 112) float64 (the per-colour embeddings) of uint8 clips (N, F, H, W, 3) or float clips
    (N, C, F, H, W) in [-1, 1]."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    out = []
    for start in tqdm(range(0, len(videos), batch_size), desc=desc, disable=not progress, leave=False):
        x = _to_input(videos[start:start + batch_size])
        _check_clips(model, x)
        out.append(model.features(x.to(device)).cpu().double().numpy())
    return np.concatenate(out)


@torch.no_grad()
def predict_attributes(model: ShapesClassifier, videos, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Logits per colour for clips: present (N, 6), shape (N, 6, 3), direction (N, 6, 8). Score them with
    `attribute_accuracy` against labels from `clip_labels`."""
    device = next(model.parameters()).device
    outs = []
    for start in range(0, len(videos), batch_size):
        x = _to_input(videos[start:start + batch_size])
        _check_clips(model, x)
        outs.append({k: v.cpu() for k, v in model(x.to(device)).items()})
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
