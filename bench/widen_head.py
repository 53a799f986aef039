"""Widen a U-Net's full-resolution stem and head (model.pixel_channels) without changing what it computes.

    python bench/widen_head.py shapes32-image --pixel-channels 32 --out runs/wide/img32
    vidiff train demo --out runs/wide/img32-ft train.init_from=runs/wide/img32 model.pixel_channels=32 ...

Writes OUT/config.json and OUT/model.safetensors: the old channels keep their weights, the new ones start from
the new network's random initialisation, and every weight from a new channel into an old one is zero, so the widened
network gives the same output as the old one (checked here on a random input before anything is written) and
training grows the new channels from there (Net2Net's function-preserving start, Chen et al. 2016, with zeros instead
of copies). GroupNorm must keep 4 channels per group on both sides: 16 -> 32 or 64 works, 48 does not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def widen(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor], pc_old: int, pc_new: int) -> dict[str, torch.Tensor]:
    """The widened state dict: `new` (a fresh model's tensors, pc_new pixel channels) with `old`'s values placed at
    their channels and the weights from new channels into old ones zeroed. An axis of the head holds pixel channels
    (old i -> i), or a pair of them: the first block's input [unfolded tokens, stem] and every block's embedding
    output [scale, shift] (old i -> i, old pc + i -> pc_new + i); conv_out's token channels (channel c of pixel
    offset k at c * p2 + k) keep their old indices."""
    pc = torch.arange(pc_old)
    pair = torch.cat([pc, pc_new + pc])
    out = {}
    for name, target in new.items():
        src = old[name]
        if src.shape == target.shape:
            out[name] = src.clone()
            continue
        parts = name.split(".")  # e.g. pixel_block.conv1.spatial.weight, pixel_more.0.emb.bias, pixel_out.weight
        module = parts[0]
        layer = {"pixel_block": parts[1], "pixel_more": parts[2] if len(parts) > 2 else ""}.get(module, "")
        if module in ("conv_out", "pixel_in"):  # old output channels first, inputs unchanged
            rows, cols = torch.arange(src.shape[0]), None
        elif module == "pixel_norm":
            rows, cols = pc, None
        elif module == "pixel_out":  # (3, pc, ...): old input columns, the new ones zero
            rows, cols = torch.arange(src.shape[0]), pc
        elif layer == "emb":
            rows, cols = pair, None
        elif module == "pixel_block" and layer == "norm1":
            rows, cols = pair, None
        elif module == "pixel_block" and layer in ("conv1", "skip"):
            rows, cols = pc, pair
        elif layer in ("norm1", "norm2"):
            rows, cols = pc, None
        elif layer in ("conv1", "conv2", "skip"):
            rows, cols = pc, pc
        else:
            raise ValueError(f"{name} differs in shape ({tuple(src.shape)} -> {tuple(target.shape)}) but is not part "
                             "of the full-resolution head")
        t = target.clone()
        if src.ndim == 1 or cols is None or cols.numel() == t.shape[1]:
            t[rows] = src
        else:
            t[rows] = 0  # an old output reads only old inputs
            t[rows[:, None], cols[None, :]] = src
        out[name] = t
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run folder or shipped model name")
    p.add_argument("--pixel-channels", type=int, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    from vidiff.build import build_denoiser
    from vidiff.config import load_config
    from vidiff.errors import VidiffError
    from vidiff.training.checkpoint import CONFIG, WEIGHTS, load_tensors, resolve_run, save_tensors

    try:
        src = resolve_run(args.run)
        cfg = load_config(src / CONFIG)
    except VidiffError as e:
        sys.exit(f"error: {e}")
    pc_old = cfg.model.pixel_channels
    if not pc_old or args.pixel_channels <= pc_old:
        sys.exit(f"error: {args.run} has pixel_channels {pc_old}: give a larger --pixel-channels")
    old_net = build_denoiser(cfg).net
    old_net.load_state_dict(load_tensors(src / WEIGHTS))
    cfg.model.pixel_channels = args.pixel_channels
    torch.manual_seed(0)
    new_net = build_denoiser(cfg).net
    new_net.load_state_dict(widen(old_net.state_dict(), new_net.state_dict(), pc_old, args.pixel_channels))

    g = torch.Generator().manual_seed(0)
    frames = cfg.data.num_frames
    x = torch.randn(2, cfg.model.in_channels, frames, cfg.data.size, cfg.data.size, generator=g)
    x_self = torch.randn(x.shape, generator=g) if cfg.model.self_condition else None
    labels = torch.tensor([[0, 7], [3, -1]]) if cfg.model.num_labels else None
    c = torch.tensor([0.3, 0.9])
    with torch.no_grad():
        a = old_net(x, c, None, x_self, labels)
        b = new_net(x, c, None, x_self, labels)
    err = (a - b).abs().max().item()
    if err > 1e-4:
        sys.exit(f"error: the widened network differs from the old one by up to {err:.2e}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / CONFIG)
    save_tensors(out / WEIGHTS, {k: v.contiguous() for k, v in new_net.state_dict().items()})
    n_old, n_new = old_net.num_parameters(), new_net.num_parameters()
    print(f"{out}: pixel_channels {pc_old} -> {args.pixel_channels}, {n_old:,} -> {n_new:,} parameters, "
          f"largest output difference {err:.1e}")


if __name__ == "__main__":
    main()
