"""Frechet Video Distance (Unterthiner et al. 2018) with the I3D Kinetics-400 network, under a fixed protocol.

FVD numbers from different papers are often not comparable because the protocol is left unstated.
vidiff computes FVD one way, writes every choice into its output, and never downloads anything:

- network: the I3D of Carreira & Zisserman 2017 trained on Kinetics-400, as a local TorchScript file that
  the user passes (`--i3d PATH`), e.g. the `i3d_torchscript.pt` export used by StyleGAN-V, whose outputs match
  the original TF-Hub module used by the reference FVD code. If its `forward` takes `rescale`, `resize` and
  `return_features` arguments (that export does), it is called with `rescale=False, resize=False,
  return_features=True`, i.e. on inputs already prepared as below, returning the 400-d logits before the
  softmax (the "Mean" tensor of the TF-Hub module). Any other TorchScript module is called as `net(x)`.
- frames: the first `num_frames` (default 16) frames of every clip, at the clip's own frame rate; clips with
  fewer frames are an error.
- resize: every frame to `size` x `size` (default 224) with bilinear interpolation
  (`torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=False)`, half-pixel
  centres), no cropping; non-square frames are stretched.
- value range: float32 in [-1, 1] (uint8 v -> v / 127.5 - 1), layout (N, 3, F, size, size).
- statistics: mean and unbiased covariance of the features in float64; the Frechet distance of
  `vidiff.evaluation.metrics.frechet_distance_from_statistics`.
- number of videos: recorded for both sets. FVD is biased upwards for small N (the covariance estimate is
  noisy), so compare numbers only at equal N; the reference setting of StyleGAN-V is 2048 per set.
- weights: the sha256 of the TorchScript file is recorded, so two numbers can be checked to come from the
  same network.

Loading a TorchScript file runs the TorchScript program inside it (not arbitrary Python), so load only files
you trust, as with any network weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from vidiff.errors import VidiffError
from vidiff.evaluation.metrics import frechet_distance

FVD_KWARGS = {"rescale": False, "resize": False, "return_features": True}


@dataclass(frozen=True)
class FVDProtocol:
    num_frames: int = 16  # the first num_frames frames of each clip
    size: int = 224  # frames are resized to size x size
    resize: str = "bilinear, torch.nn.functional.interpolate, align_corners=False, antialias=False"
    value_range: tuple[float, float] = (-1.0, 1.0)  # what the network sees
    layout: str = "(N, 3, F, H, W) float32"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class I3D:
    """A loaded feature network: the TorchScript module, the keyword arguments it is called with, its origin."""

    module: torch.jit.ScriptModule
    call_kwargs: dict
    path: str
    sha256: str

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, F, H, W) in [-1, 1] -> features (B, D)."""
        out = self.module(x, **self.call_kwargs)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.reshape(x.shape[0], -1).float()


def load_i3d(path: str | Path, device: str | torch.device = "cpu") -> I3D:
    """Load a TorchScript feature network from a local file (nothing is downloaded)."""
    path = Path(path)
    if not path.is_file():
        raise VidiffError(f"I3D TorchScript file not found: {path} (vidiff downloads nothing: pass a local file "
                          f"with --i3d, e.g. the i3d_torchscript.pt export of I3D Kinetics-400)")
    try:
        with warnings.catch_warnings():  # torch >= 2.10 marks TorchScript deprecated; the I3D export is TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=torch.device(device)).eval()
    except Exception as e:  # torch raises RuntimeError or ValueError depending on how the file is broken
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise VidiffError(f"cannot load {path} as a TorchScript module ({first})") from None
    try:
        names = {a.name for a in module.forward.schema.arguments}
    except AttributeError:
        names = set()
    kwargs = {k: v for k, v in FVD_KWARGS.items() if k in names}
    return I3D(module=module, call_kwargs=kwargs, path=str(path), sha256=sha256_file(path))


def prepare_videos(videos, protocol: FVDProtocol) -> torch.Tensor:
    """uint8 (N, F, H, W, 3) or float (N, C, F, H, W) in [-1, 1] -> float32 (N, 3, T, S, S) in [-1, 1]:
    the first T = protocol.num_frames frames, each resized to S x S = protocol.size (see the module docstring)."""
    if isinstance(videos, np.ndarray):
        videos = torch.from_numpy(videos)
    if videos.dtype == torch.uint8:
        if videos.ndim != 5 or videos.shape[-1] != 3:
            raise VidiffError(f"uint8 videos must be (N, F, H, W, 3), got shape {tuple(videos.shape)}")
        x = videos.permute(0, 4, 1, 2, 3).float() / 127.5 - 1  # (N, 3, F, H, W)
    elif videos.is_floating_point():
        if videos.ndim != 5 or videos.shape[1] not in (1, 3):
            raise VidiffError(f"float videos must be (N, C, F, H, W), got shape {tuple(videos.shape)}")
        x = videos.float().clamp(-1, 1)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1, -1)
    else:
        raise VidiffError(f"videos must be uint8 or float, got {videos.dtype}")
    N, C, Fr, H, W = x.shape
    if Fr < protocol.num_frames:
        raise VidiffError(f"the FVD protocol uses {protocol.num_frames} frames per clip but the clips have {Fr}")
    x = x[:, :, :protocol.num_frames]
    frames = x.transpose(1, 2).reshape(N * protocol.num_frames, C, H, W)  # fold frames into the batch
    frames = F.interpolate(frames, size=(protocol.size, protocol.size), mode="bilinear", align_corners=False,
                           antialias=False)
    return frames.reshape(N, protocol.num_frames, C, protocol.size, protocol.size).transpose(1, 2).contiguous()


def i3d_features(net: I3D, videos, protocol: FVDProtocol = FVDProtocol(), batch_size: int = 8,
                 device: str | torch.device = "cpu", progress: bool = False, desc: str = "I3D features") -> np.ndarray:
    """Features (N, D) of the network for videos prepared by `prepare_videos`, in batches."""
    from tqdm.auto import tqdm

    n = len(videos)
    out = []
    for start in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False):
        x = prepare_videos(videos[start:start + batch_size], protocol).to(device)
        out.append(net(x).cpu().double().numpy())
    return np.concatenate(out)


def compute_fvd(real, fake, net: I3D, protocol: FVDProtocol = FVDProtocol(), batch_size: int = 8,
                device: str | torch.device = "cpu", progress: bool = False,
                real_features: Optional[np.ndarray] = None) -> dict:
    """FVD between real and generated videos, with the protocol and the weights' checksum alongside the value."""
    fr = real_features if real_features is not None else i3d_features(net, real, protocol, batch_size, device,
                                                                          progress, "I3D real")
    ff = i3d_features(net, fake, protocol, batch_size, device, progress, "I3D generated")
    return {
        "value": frechet_distance(fr, ff),
        "num_real": int(len(fr)),
        "num_generated": int(len(ff)),
        "feature_dim": int(fr.shape[1]),
        "weights": net.path,
        "weights_sha256": net.sha256,
        "call_kwargs": dict(net.call_kwargs),
        "protocol": protocol.to_dict(),
    }
