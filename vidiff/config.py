"""Typed run configuration: dataclasses, YAML/JSON loading, `key=value` overrides and validation.

A run is described by one `RunConfig` (data, model, diffusion, train, masks, and sample: how the trained model is
sampled by default). It is loaded from YAML,
overridden from the command line with dotted keys (`train.steps=200 model.channels=32`), validated
against the field types below, and saved as `config.json` beside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from vidiff.errors import ConfigError

# What `vidiff sample`, `VideoPipeline.__call__` and `vidiff eval` use unless told otherwise: the stochastic form of
# DPM-Solver++(2M) with 50 steps. Until the twenty-ninth round of docs/benchmarks.md it was DDPM with 100 steps (for
# the unconditional shapes models DDPM 250 beat 100, "Fifth round"; for the label-conditioned ones 100 did as well,
# "Eighth round"); the SDE solver's 50 steps score as DDPM's 100 on a demo-preset run and on `shapes32` in half the
# time, its deterministic form and DDIM hold objects worse ("Twenty-ninth round").
DEFAULT_SAMPLER = "dpmpp-2m-sde"
SAMPLER_NAMES = ("ddim", "ddpm", "dpmpp-2m", "dpmpp-2m-sde")  # vidiff.diffusion.samplers.SAMPLERS (tested equal)
# Steps when none are asked for, per sampler: the second-order DPM-Solver++ forms need about half of DDPM's.
SAMPLER_STEPS = {"ddim": 100, "ddpm": 100, "dpmpp-2m": 50, "dpmpp-2m-sde": 50}
DEFAULT_STEPS = SAMPLER_STEPS[DEFAULT_SAMPLER]
DEFAULT_GUIDANCE = 2.0  # classifier-free guidance weight for label-conditioned models (1: no guidance)
# (the weight added per asked label past the first is the model's own: `SampleConfig.guidance_per_label`)


def default_steps(timesteps: int, sampler: str = DEFAULT_SAMPLER) -> int:
    """Sampling steps when none are asked for: the sampler's SAMPLER_STEPS, or every timestep of a model trained
    with fewer."""
    return min(SAMPLER_STEPS.get(sampler, DEFAULT_STEPS), timesteps)


@dataclass
class DataConfig:
    dataset: str = "shapes"  # "shapes" (built in), a folder of videos, or a cache made by `vidiff data prepare`
    num_frames: int = 16  # frames per clip
    size: int = 32  # clips are size x size pixels
    max_objects: int = 3  # shapes: min_objects..max_objects objects per clip
    min_objects: int = 1  # shapes: the fewest objects in a clip
    length: int = 100_000  # shapes: number of distinct clips (item i is fixed by seed and i)
    shape_speed: float = 1.0  # shapes: every object's speed times this (0: still clips; the layouts stay the same)
    still_fraction: float = 0.0  # shapes: this share of the clips does not move at all (the others stay the same)
    seed: int = 0  # dataset seed: shapes content; folder/cache clip choice and augmentation (item i fixed by seed, i)
    frame_stride: int = 1  # folder: take every k-th source frame (ignored when fps is set); cache: fixed at prepare
    fps: Optional[float] = None  # folder: resample every video to this frame rate (null = use frame_stride)
    short_videos: str = "skip"  # folder: videos shorter than a clip are "skip"ped, "loop"ed or "pad"ded (last frame)
    clips_per_video: int = 100  # folder/cache, train: items per video per epoch, each a random clip + augmentation
    eval_clips_per_video: int = 1  # folder/cache, eval: evenly spaced clips per video (centre crop, no augmentation)
    crop: str = "center"  # folder/cache, train: "center" or "random" square crop, then resized to size x size
    crop_scale: float = 0.8  # random crop: smallest crop side, as a fraction of the frame's shorter side
    hflip: bool = False  # folder/cache, train: mirror whole clips left-right with probability 1/2
    color_jitter: float = 0.0  # folder/cache, train: brightness/contrast/saturation factors in [1-j, 1+j] per clip
    image_fps: float = 8.0  # folder: frame rate assumed for folders of numbered images
    # folder/cache: class names (the folders the videos sit in) in label order, for a class-conditioned model
    # (model.num_labels = their number). `vidiff train --data` fills them in when the data has two or more.
    classes: tuple[str, ...] = ()


@dataclass
class ModelConfig:
    # "unet": VideoUNet, a (2+1)D U-Net (vidiff/models/unet.py); "dit": VideoDiT, a transformer over space-time
    # patches with full space-time attention and adaLN-Zero (vidiff/models/dit.py). A DiT reads channels (its
    # token width), depth, mlp_ratio, head_dim, patch_size and the conditioning fields; the level fields are U-Net's.
    architecture: str = "unet"
    channels: int = 32  # channels at the highest resolution (DiT: the width of every token)
    channel_mults: tuple[int, ...] = (1, 2, 4)  # channel multiplier per resolution level
    blocks_per_level: int = 1  # residual blocks per level on the way down (one more on the way up)
    spatial_attention_levels: tuple[int, ...] = (2,)  # levels (0 = full resolution) with spatial self-attention
    temporal_attention_levels: tuple[int, ...] = (1, 2)  # levels with temporal self-attention
    spacetime_attention_levels: tuple[int, ...] = ()  # levels with full space-time attention instead of both above
    temporal_downsample_levels: tuple[int, ...] = ()  # levels after which the frames are halved too (F -> F/2)
    head_dim: int = 32  # channels per attention head
    depth: int = 8  # DiT: transformer blocks
    mlp_ratio: float = 4.0  # DiT: hidden width of each block's MLP, as a multiple of channels
    temporal_conv: str = "factorized"  # "factorized" (2+1)D, "full" 3x3x3, or "none" (attention only)
    temporal_init: str = "random"  # "identity": factorized temporal convs start as the identity (Make-A-Video)
    temporal_padding: str = "zeros"  # what temporal convs see beyond a clip's ends: "zeros" or "replicate" (edge frame)
    # Full space-time attention (U-Net and DiT): frame positions are multiplied by this before the axial rotary
    # embedding, whose frame part takes half of each head. 1: frames one apart turn that half by up to 1 radian, so
    # a token's best match in distant frames is hard to find; 0: no frame positions there (a token finds the same
    # object in every frame at once; frame order comes from the temporal convolutions and attention). A one-frame
    # image model is the same network under any value.
    rope_frame_scale: float = 1.0
    patch_size: int = 1  # fold p x p pixels into channels at the input (space-to-depth) and unfold at the output
    # Channels of a full-resolution stem and head around a patched U-Net (0: none). The stem's per-pixel features
    # skip the token levels and meet their unfolded output in one residual block at full resolution: the head sees
    # every input pixel, which the patch_size**2 * 3 values folded into `channels` cannot all carry.
    pixel_channels: int = 0
    # Residual blocks of that full-resolution head (>= 1 with pixel_channels): the first merges the unfolded tokens
    # with the stem, each further one (pixel_channels -> pixel_channels, starting as the identity, so a model
    # trained with fewer starts a run with more unchanged) widens what a pixel sees by 2 pixels each way.
    pixel_blocks: int = 1
    in_channels: int = 3  # video channels (RGB)
    cond_channels: int = 0  # extra input channels concatenated to x_t (e.g. known frames + mask)
    # Self-conditioning (Chen et al. 2022, "Analog Bits"): the network also sees its previous estimate of x0
    # (in_channels more inputs; zeros on the first sampling step and in half of the training steps).
    self_condition: bool = False
    dropout: float = 0.0
    emb_mult: int = 4  # timestep-embedding width = channels * emb_mult
    # Label conditioning: the size of the label vocabulary (0: unconditional). Each clip carries a set of labels
    # (`shapes`: one per object, "red circle", "blue square", ...; vidiff.data.shapes.LABELS); their embeddings are
    # summed into the timestep embedding (Dhariwal & Nichol 2021). A clip with no labels is the unconditional case
    # that classifier-free guidance needs (train.label_dropout).
    num_labels: int = 0
    # Label cross-attention (U-Net): every level with attention, and the middle, also cross-attends from each
    # position to the clip's label tokens (a null token and one embedding per label), so that each object can take
    # its own label where the summed label vector gives every position the same mixture. Needs num_labels > 0.
    label_attention: bool = False
    # Latent diffusion (Rombach et al. 2022; per frame as in Blattmann et al. 2023): a folder made by
    # `vidiff train-autoencoder` (or a shipped name, "shapes-ae"). The denoiser then works on its latents,
    # (in_channels = its latent_channels, F, size / f, size / f), and samples are decoded to pixels. null: pixels.
    autoencoder: Optional[str] = None


@dataclass
class DiffusionConfig:
    schedule: str = "cosine"  # "linear" (Ho et al. 2020) or "cosine" (Nichol & Dhariwal 2021)
    timesteps: int = 1000  # number of discrete training timesteps T
    objective: str = "v"  # what the network predicts: "eps", "v" or "x0"
    min_snr_gamma: Optional[float] = 5.0  # min-SNR-gamma loss weighting (Hang et al. 2023); null = plain MSE
    # Weight of a second loss term on the frame-to-frame differences of the error: the error of frame f+1 minus that
    # of frame f, squared. An error shared by all frames (an object a little too large) is not counted again; one
    # that changes from frame to frame (an outline that wobbles, a size that pulses) is. 0 = off
    frame_difference_weight: float = 0.0
    # Share of training clips whose frames each get their own noise level, drawn independently (Diffusion Forcing,
    # Chen et al. 2024): a frame must then be rebuilt from cleaner neighbours, which is what keeps an object's shape,
    # size and colour from frame to frame. The rest share one level, as sampling does. 0 = off (U-Net only)
    per_frame_noise: float = 0.0
    # Share of training clips whose first k frames (k drawn from 1..clean_context_frames) are given clean, at noise
    # level 0, and left out of the loss (the U-Net takes one noise level per frame). The network learns to continue
    # given frames from the noise levels alone, with no extra input channels and the same weights (so a run can start
    # from a model trained without it): image-to-video and prediction, `--method clean` of the task commands
    # (`vidiff.diffusion.guidance.clean_context`), one network call per step where reconstruction guidance needs a
    # backward pass too. 0 = off (U-Net only)
    clean_context: float = 0.0
    clean_context_frames: int = 1
    # Schedule shift s (Hoogeboom et al. 2023, "simple diffusion"): SNR_t -> SNR_t / s^2. s > 1 spends more
    # training and sampling steps at high noise, where redundant data (many similar frames) decide their layout.
    # On the demo, 4 or 8 through the still-clip stage moved the objects out of the middle of the frame (6.4-7.0 px
    # from the centre against 5.3-6.1 at 2; real 8.0) and kept two objects more often on two demo seeds of three
    # (both whole in 47 of 144 clips against 29; docs/benchmarks.md, "Thirty-sixth round"); the demo preset uses 4
    # since the thirty-seventh round, with its still-clip model and shapes32 trained at it
    shift: float = 1.0
    # Correlation rho of the noise between frames ("mixed noise", Ge et al. 2023): eps_f = sqrt(rho) eps_shared +
    # sqrt(1 - rho) eps_f. The frames start from a shared layout, so the model need not learn to agree on one.
    noise_correlation: float = 0.0
    # Colour noise c (RGB pixels only): the noise's colour part, what is left after each pixel's mean over R, G, B,
    # times c; its brightness part stays. c > 1 drowns colour at lower noise than brightness, so a clip's shapes and
    # places are settled before their colours (`vidiff.diffusion.schedules.video_noise`). 1 = plain i.i.d. noise.
    # On the demo (from a still-clip model adapted 20 minutes), c = 0.5 lost far more two-object clips, c = 2 kept
    # both objects in 22 / 25 of 48 against 19 / 20 (docs/benchmarks.md, "Thirty-fifth round"); not adopted yet
    chroma_noise: float = 1.0
    # Input perturbation (Ning et al. 2023, "Input perturbation reduces exposure bias in diffusion models"): the
    # network is trained on x_t built from noise + gamma * xi (xi another draw) while the target keeps the first
    # noise, so it learns to denoise inputs a little off the forward process, as its own samples are. 0 = off
    input_perturbation: float = 0.0


@dataclass
class TrainConfig:
    steps: int = 1000  # optimizer steps
    batch_size: int = 8
    lr: float = 1e-3  # peak learning rate
    # "adamw", or "muon": Muon (Jordan et al. 2024) for the hidden weight matrices, AdamW for the rest, one lr for
    # both (Muon's update is scaled to AdamW's RMS, Liu et al. 2025; vidiff/training/optim.py)
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    warmup_steps: int = 100  # linear learning-rate warm-up
    lr_decay: str = "cosine"  # "constant" or "cosine" decay to lr_min_ratio * lr after warm-up
    lr_min_ratio: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    ema_decay: float = 0.999  # EMA of weights; the effective decay warms up as min(decay, (1+n)/(10+n))
    seed: int = 0
    log_every: int = 10  # write loss.csv every N steps
    checkpoint_every: int = 500  # save a resumable checkpoint every N steps (and at the end)
    keep_checkpoints: int = 3  # resumable checkpoints kept (oldest deleted first)
    max_nonfinite_steps: int = 10  # stop after this many steps in a row with a NaN/Inf loss or gradient
    preview_every: int = 0  # write a preview gif every N steps (0 = only at the end)
    preview_steps: int = 20  # DDIM steps for previews
    # Stop early (and checkpoint) when this call's training time exceeds this; the lr decay then ends with the
    # budget rather than at train.steps, whichever comes first (a resumed run gets a new budget and decays again)
    time_budget_minutes: Optional[float] = None
    device: str = "auto"  # "auto" (CUDA if present, else CPU), "cpu", "cuda", "cuda:1", ...
    precision: str = "fp32"  # "fp32" or "bf16" (autocast; CUDA only: bf16 is ~2x slower on CPUs without it)
    compile: bool = False  # torch.compile the network (GPU; on CPU the first step takes minutes for no gain)
    num_workers: int = 0  # DataLoader worker processes
    threads: int = 0  # torch CPU threads (0 = torch's default)
    # Fine-tuning: a run folder or shipped model ("shapes32") whose weights start this run. Tensors of the same name
    # and shape are copied, the rest (e.g. layers a changed config adds) start fresh. Ignored when resuming.
    init_from: Optional[str] = None
    # Train only the parameters whose names match one of these regular expressions (re.search; the rest stay as
    # init_from left them), e.g. [temporal] for the temporal layers of a network that starts as an image model (as
    # AnimateDiff trains motion modules beside a frozen image model). Empty: train everything
    trainable: tuple[str, ...] = ()
    # With train.trainable: the other parameters train too, at this share of the learning rate (0: frozen)
    rest_lr_scale: float = 0.0
    # Label-conditioned models: the probability that a clip's labels are dropped, so that the same network also
    # learns the unconditional model (classifier-free guidance, Ho & Salimans 2022)
    label_dropout: float = 0.1
    # Joint training with shorter clips (as Ho et al. 2022 train video models jointly on images): a share
    # `short_clip_prob` of the steps trains on clips of `short_clip_frames` frames (0: off), with
    # batch_size * num_frames / short_clip_frames of them, so such a step holds as many frames (and cost 1.14-1.18x a
    # full one on the demo) but shows more distinct clips and noise levels. The network has no fixed clip length, so
    # the full clips still set motion.
    # On the demo at 774 steps, single frames (1) in half the steps moved objects faster (0.60-0.67 against 0.37-0.47
    # px/frame) but held them worse (persistence -0.10 to -0.13); 4-frame clips changed nothing beyond the noise
    # (docs/benchmarks.md, "Thirteenth round")
    short_clip_frames: int = 0
    short_clip_prob: float = 0.5


@dataclass
class MaskConfig:
    """Masked conditional training (Voleti et al. 2022, MCVD): each clip gets a random set of known frames,
    given to the network as extra input channels (known frames x mask, mask); the loss counts only the
    unknown frames. One model then does generation, prediction and interpolation."""

    enabled: bool = False  # off: an unconditional model (tasks then use replacement / reconstruction guidance)
    p_none: float = 0.3  # probability of no known frame (unconditional generation)
    p_prediction: float = 0.4  # probability that the first k frames are known, k uniform in 1..max_context
    p_interpolation: float = 0.3  # probability that the first and last frames (plus random others) are known
    max_context: int = 8  # the most known frames in a prediction mask


@dataclass
class SampleConfig:
    """How this model is sampled unless told otherwise (`vidiff sample`, `VideoPipeline`, `vidiff eval`): a property of
    the trained model, saved with it, since what suits a model depends on how far it was trained."""

    # label-conditioned models: the classifier-free guidance weight (1: none). The demo preset says 1.5 (with image
    # guidance 1 and nothing per label): against 2 (+0.5 per label) a third less warping error at two seeds, objects
    # nearer the real size and speed, fewer two-object clips that keep both colours (docs/benchmarks.md,
    # thirty-fourth round)
    guidance: float = DEFAULT_GUIDANCE
    # label-conditioned models: added to the guidance weight for each asked label past the first (labels' embeddings
    # are summed, so a clip asked for two objects is pulled less towards each). 0: one weight for every clip (the demo
    # preset's since the thirty-fourth round, with sample.guidance 1.5). The 8-minute demo keeps both of two asked
    # objects far more often with 0.5 (24 against 16 of 38 clips) at a worse FVD-shapes (1,066 against 930); the
    # 185-minute `shapes32` keeps them as often without it (32 of 38) and scores 977 against 1,518 with 0.5
    # (docs/benchmarks.md, twenty-sixth round)
    guidance_per_label: float = 0.0
    # label-conditioned models: guidance by an image model of the same labels, frame by frame, asked at its own
    # timestep of the same noise level (vidiff.diffusion.guidance.image_guidance): every frame is pushed to show
    # every asked object. 0: none (an unconditional model, or one sampled without labels, ignores it)
    image_guidance: float = 0.0
    image_model: Optional[str] = None  # that image model: a run folder or a shipped name (e.g. shapes32-image)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        return load_config(path)


# ----------------------------------------------------------------------------------------------
# Loading, overrides, validation


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting only where no information is lost."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"config key {key!r}: bad value {value!r}")
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} must be a list, got {value!r}")
        return tuple(_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key {key!r} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key {key!r} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key {key!r} must be a string, got {value!r}")
    raise ConfigError(f"config key {key!r}: unsupported type {tp}")  # pragma: no cover


def _unknown_key(key: str, known: list[str]) -> ConfigError:
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"
    return ConfigError(f"unknown config key {key!r}{hint}")


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a nested dict, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        where = f"section '{prefix.rstrip('.')}'" if prefix else "the config"
        raise ConfigError(f"{where} must be a mapping of keys to values, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in fields:
            raise _unknown_key(f"{prefix}{key}", list(fields))
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, tp, f"{prefix}{key}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate:
        validate()
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.steps=200` -> (["train", "steps"], 200); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
        node[path[-1]] = value
    return data


def read_mapping(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot parse config {path}: {str(e).splitlines()[0]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of sections, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a RunConfig from YAML/JSON (or defaults when `path` is None) and apply overrides."""
    data = read_mapping(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    cfg = from_dict(RunConfig, data)
    validate_run(cfg)
    return cfg


def validate_run(cfg: RunConfig) -> None:
    """Value checks that types alone cannot express; each raises a one-line ConfigError."""
    d, m, f, t, k = cfg.data, cfg.model, cfg.diffusion, cfg.train, cfg.masks
    checks = [
        (min(k.p_none, k.p_prediction, k.p_interpolation) >= 0 and k.p_none + k.p_prediction + k.p_interpolation > 0,
         "masks.p_none, p_prediction and p_interpolation must be >= 0 and not all 0"),
        (1 <= k.max_context < d.num_frames or not k.enabled, "masks.max_context must be in 1..data.num_frames-1"),
        (m.cond_channels == 0 or not k.enabled,
         "model.cond_channels is set from masks.enabled (in_channels + 1); leave it at 0"),
        (d.num_frames >= 1, "data.num_frames must be >= 1"),
        (d.size >= 8, "data.size must be >= 8"),
        (1 <= d.max_objects <= 6, "data.max_objects must be between 1 and 6"),
        (1 <= d.min_objects <= d.max_objects, "data.min_objects must be between 1 and data.max_objects"),
        (d.length >= 1, "data.length must be >= 1"),
        (d.shape_speed >= 0, "data.shape_speed must be >= 0"),
        (0 <= d.still_fraction <= 1, "data.still_fraction must be between 0 and 1"),
        (d.frame_stride >= 1, "data.frame_stride must be >= 1"),
        (d.fps is None or d.fps > 0, "data.fps must be > 0 or null"),
        (d.short_videos in ("skip", "loop", "pad"), "data.short_videos must be skip, loop or pad"),
        (d.clips_per_video >= 1 and d.eval_clips_per_video >= 1,
         "data.clips_per_video and data.eval_clips_per_video must be >= 1"),
        (d.crop in ("center", "random"), "data.crop must be center or random"),
        (0 < d.crop_scale <= 1, "data.crop_scale must be in (0, 1]"),
        (0 <= d.color_jitter < 1, "data.color_jitter must be in [0, 1)"),
        (d.image_fps > 0, "data.image_fps must be > 0"),
        (not d.classes or (d.dataset != "shapes" and m.num_labels == len(d.classes)),
         f"data.classes names {len(d.classes)} classes: they need a video folder or cache as data.dataset and "
         f"model.num_labels={len(d.classes)} (got {m.num_labels} for {d.dataset!r})"),
        (len(set(d.classes)) == len(d.classes) and all(d.classes), "data.classes must be distinct, non-empty names"),
        (m.channels >= 4, "model.channels must be >= 4"),
        (m.architecture in ("unet", "dit"), "model.architecture must be unet or dit"),
        (m.architecture != "dit" or (m.depth >= 1 and m.mlp_ratio > 0 and m.pixel_channels == 0
                                     and not m.temporal_downsample_levels),
         "a DiT (model.architecture=dit) needs depth >= 1 and mlp_ratio > 0, and takes no pixel_channels or "
         "temporal_downsample_levels"),
        (m.architecture != "dit" or (m.channels % m.head_dim == 0 and m.head_dim % 2 == 0),
         f"a DiT's model.channels ({m.channels}) must be a multiple of model.head_dim ({m.head_dim}), itself even"),
        (len(m.channel_mults) >= 1 and all(x >= 1 for x in m.channel_mults), "model.channel_mults must be positive"),
        (m.blocks_per_level >= 1, "model.blocks_per_level must be >= 1"),
        (m.temporal_conv in ("factorized", "full", "none"), "model.temporal_conv must be factorized, full or none"),
        (m.temporal_init in ("random", "identity"), "model.temporal_init must be random or identity"),
        (m.temporal_padding in ("zeros", "replicate"), "model.temporal_padding must be zeros or replicate"),
        (m.rope_frame_scale >= 0, "model.rope_frame_scale must be >= 0"),
        (all(0 <= lv < len(m.channel_mults)
             for lv in m.spatial_attention_levels + m.temporal_attention_levels + m.spacetime_attention_levels),
         f"model.spatial_attention_levels {list(m.spatial_attention_levels)}, temporal_attention_levels "
         f"{list(m.temporal_attention_levels)} and spacetime_attention_levels {list(m.spacetime_attention_levels)} "
         f"must lie in 0..{len(m.channel_mults) - 1} "
         f"(one level per entry of channel_mults)"),
        (m.head_dim >= 1, "model.head_dim must be >= 1"),
        (all(0 <= lv < len(m.channel_mults) - 1 for lv in m.temporal_downsample_levels),
         f"model.temporal_downsample_levels {list(m.temporal_downsample_levels)} must lie in "
         f"0..{len(m.channel_mults) - 2} (a level followed by a downsampling)"),
        (f.schedule in ("linear", "cosine"), "diffusion.schedule must be linear or cosine"),
        (f.objective in ("eps", "v", "x0"), "diffusion.objective must be eps, v or x0"),
        (f.timesteps >= 2, "diffusion.timesteps must be >= 2"),
        (f.shift > 0, "diffusion.shift must be > 0"),
        (0 <= f.noise_correlation < 1, "diffusion.noise_correlation must be in [0, 1)"),
        (f.chroma_noise > 0, "diffusion.chroma_noise must be > 0"),
        (f.chroma_noise == 1 or (m.in_channels == 3 and not m.autoencoder),
         "diffusion.chroma_noise needs RGB pixels (model.in_channels=3, no model.autoencoder)"),
        (f.input_perturbation >= 0, "diffusion.input_perturbation must be >= 0"),
        (f.min_snr_gamma is None or f.min_snr_gamma > 0, "diffusion.min_snr_gamma must be > 0 or null"),
        (f.frame_difference_weight >= 0, "diffusion.frame_difference_weight must be >= 0"),
        (0 <= f.per_frame_noise <= 1, "diffusion.per_frame_noise must be in [0, 1]"),
        (f.per_frame_noise == 0 or m.architecture == "unet",
         "diffusion.per_frame_noise needs model.architecture=unet (the DiT takes one noise level per clip)"),
        (0 <= f.clean_context <= 1, "diffusion.clean_context must be in [0, 1]"),
        (f.clean_context == 0 or m.architecture == "unet",
         "diffusion.clean_context needs model.architecture=unet (the DiT takes one noise level per clip)"),
        (f.clean_context == 0 or not m.autoencoder,
         "diffusion.clean_context needs a pixel model (no model.autoencoder)"),
        (1 <= f.clean_context_frames < d.num_frames or not f.clean_context,
         "diffusion.clean_context_frames must be in 1..data.num_frames-1"),
        (not (f.clean_context and k.enabled),
         "diffusion.clean_context and masks.enabled are two ways to condition on given frames: choose one"),
        (not (f.clean_context and t.short_clip_frames) or t.short_clip_frames > f.clean_context_frames,
         "train.short_clip_frames must exceed diffusion.clean_context_frames (else a short clip can be all given)"),
        (t.steps >= 1, "train.steps must be >= 1"),
        (t.batch_size >= 1, "train.batch_size must be >= 1"),
        (t.lr > 0, "train.lr must be > 0"),
        (0.0 <= t.ema_decay < 1.0, "train.ema_decay must be in [0, 1)"),
        (t.lr_decay in ("constant", "cosine"), "train.lr_decay must be constant or cosine"),
        (t.optimizer in ("adamw", "muon"), "train.optimizer must be adamw or muon"),
        (t.precision in ("fp32", "bf16"), "train.precision must be fp32 or bf16"),
        (t.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1"),
        (t.max_nonfinite_steps >= 1, "train.max_nonfinite_steps must be >= 1"),
        (t.checkpoint_every >= 1 and t.log_every >= 1, "train.checkpoint_every and train.log_every must be >= 1"),
        (0 <= t.label_dropout < 1, "train.label_dropout must be in [0, 1)"),
        (0 <= t.short_clip_frames < d.num_frames,
         "train.short_clip_frames must be 0 (off) or fewer than data.num_frames"),
        (0 <= t.short_clip_prob <= 1, "train.short_clip_prob must be in [0, 1]"),
        (0 <= t.rest_lr_scale <= 1, "train.rest_lr_scale must be in [0, 1]"),
        (t.rest_lr_scale == 0 or t.trainable, "train.rest_lr_scale needs train.trainable (the parameters at full lr)"),
        (not (t.short_clip_frames and k.enabled) or t.short_clip_frames > max(k.max_context, 2),
         "train.short_clip_frames must exceed masks.max_context and 2 when masks are enabled (else a short clip's "
         "mask can mark every frame known and the clip teaches nothing)"),
        (m.num_labels >= 0, "model.num_labels must be >= 0 (0: unconditional)"),
        (not m.label_attention or m.num_labels > 0, "model.label_attention needs model.num_labels > 0"),
        (not m.label_attention or m.architecture == "unet",
         "model.label_attention needs model.architecture=unet (the DiT sums its labels into adaLN)"),
        (cfg.sample.image_guidance >= 0, "sample.image_guidance must be >= 0"),
        (cfg.sample.image_guidance == 0 or cfg.sample.image_model,
         "sample.image_guidance needs sample.image_model (a run folder or a shipped name, e.g. shapes32-image)"),
    ]
    if m.num_labels:
        from vidiff.data.shapes import LABELS

        if d.dataset != "shapes":
            if not d.classes:
                checks.append((False, "model.num_labels needs a dataset with labels: shapes, or videos in two or "
                                      "more class folders (data.classes) (set model.num_labels=0)"))
        elif m.num_labels != len(LABELS):
            checks.append((False, f"model.num_labels must be {len(LABELS)} for shapes (one per colour and shape), "
                                  f"got {m.num_labels}"))
    levels = len(m.channel_mults) if m.architecture == "unet" else 1
    factor = m.patch_size * 2 ** (levels - 1)
    if m.pixel_channels < 0:
        checks.append((False, f"model.pixel_channels must be >= 0, got {m.pixel_channels}"))
    if m.pixel_blocks < 1:
        checks.append((False, f"model.pixel_blocks must be >= 1, got {m.pixel_blocks}"))
    elif m.pixel_blocks > 1 and not m.pixel_channels:
        checks.append((False, f"model.pixel_blocks {m.pixel_blocks} needs a full-resolution head: set model.pixel_channels"))
    if m.patch_size < 1 or d.size % factor != 0:
        checks.append((False, f"data.size {d.size} must be divisible by patch_size * 2^(levels-1) = {factor}"))
    frame_factor = 2 ** len(m.temporal_downsample_levels) if m.architecture == "unet" else 1
    if t.short_clip_frames and t.short_clip_frames % frame_factor:
        checks.append((False, f"train.short_clip_frames {t.short_clip_frames} must be divisible by "
                              f"2^len(model.temporal_downsample_levels) = {frame_factor}"))
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
