"""VideoUNet: a (2+1)D U-Net denoiser with factorized space-time attention.

The network maps (x_t, c_noise, cond) to a tensor shaped like x_t. It knows nothing of noise
schedules or objectives: `vidiff.diffusion.Denoiser` decides what c_noise is and what the output means.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidiff.config import ModelConfig
from vidiff.models.layers import (Downsample, LabelAttention, ResBlock, SpaceTimeAttention, SpaceTimeConv,
                                  SpatialAttention, TemporalAttention, Upsample, add_labels, group_norm, label_context,
                                  stack_inputs, timestep_embedding, zero_module)


def _attention(channels: int, cfg: ModelConfig, level: int, emb_dim: int) -> list[nn.Module]:
    """The attention layers after each residual block of a level: full space-time attention where the config
    asks for it (it replaces the factorized pair), else spatial and/or temporal attention; then, with
    model.label_attention, cross-attention to the clip's labels at every level that has attention."""
    if level in cfg.spacetime_attention_levels:
        layers = [SpaceTimeAttention(channels, cfg.head_dim, cfg.rope_frame_scale)]
    else:
        layers = ([SpatialAttention(channels, cfg.head_dim)] if level in cfg.spatial_attention_levels else []) + \
            ([TemporalAttention(channels, cfg.head_dim)] if level in cfg.temporal_attention_levels else [])
    if layers and cfg.label_attention:
        layers.append(LabelAttention(channels, emb_dim, cfg.head_dim))
    return layers


class _Level(nn.Module):
    """The residual blocks of one resolution level, each followed by that level's attention layers."""

    def __init__(self, channels_in: list[int], cout: int, emb_dim: int, cfg: ModelConfig, level: int):
        super().__init__()
        self.blocks = nn.ModuleList()
        for cin in channels_in:
            block = ResBlock(cin, cout, emb_dim, cfg.temporal_conv, cfg.dropout, cfg.temporal_init,
                             cfg.temporal_padding)
            self.blocks.append(nn.ModuleList([block, *_attention(cout, cfg, level, emb_dim)]))


def _apply(layers, h: torch.Tensor, emb: torch.Tensor, context) -> torch.Tensor:
    """A residual block (if `layers` starts with one) and its attention layers; context: `label_context`'s
    (context, visible) pair for the label cross-attention, or None."""
    for layer in layers:
        if isinstance(layer, ResBlock):
            h = layer(h, emb)
        elif isinstance(layer, LabelAttention):
            h = layer(h, *context)
        else:
            h = layer(h)
    return h


class VideoUNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        ch, mults, nb = cfg.channels, cfg.channel_mults, cfg.blocks_per_level
        emb_dim = ch * cfg.emb_mult
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if cfg.num_labels:  # one learned vector per label, summed over a clip's labels into the timestep embedding
            self.label_emb = nn.Embedding(cfg.num_labels, emb_dim)
            if cfg.label_attention:  # and the tokens that the label cross-attention reads: a null token, then these
                self.label_null = nn.Parameter(torch.zeros(emb_dim))
        p2 = cfg.patch_size**2
        cin = cfg.in_channels * (2 if cfg.self_condition else 1) + cfg.cond_channels
        self.conv_in = SpaceTimeConv(cin * p2, ch, "none")

        # Encoder: remember the channels of every skip connection for the decoder.
        skips = [ch]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        cur = ch
        for lv, m in enumerate(mults):
            level = _Level([cur] + [ch * m] * (nb - 1), ch * m, emb_dim, cfg, lv)
            self.down.append(level)
            cur = ch * m
            skips += [cur] * nb
            if lv < len(mults) - 1:
                self.downsample.append(Downsample(cur, temporal=lv in cfg.temporal_downsample_levels))
                skips.append(cur)

        self.mid1 = ResBlock(cur, cur, emb_dim, cfg.temporal_conv, cfg.dropout, cfg.temporal_init,
                             cfg.temporal_padding)
        # The middle's attention layers, in order (a plain list: each module is registered under its own name, those
        # of older checkpoints)
        if len(mults) - 1 in cfg.spacetime_attention_levels:
            self.mid_attention = nn.ModuleList([SpaceTimeAttention(cur, cfg.head_dim, cfg.rope_frame_scale)])
            self.mid_layers = list(self.mid_attention)
        else:
            self.mid_spatial = SpatialAttention(cur, cfg.head_dim)
            self.mid_temporal = TemporalAttention(cur, cfg.head_dim)
            self.mid_layers = [self.mid_spatial, self.mid_temporal]
        if cfg.label_attention:
            self.mid_label_attention = LabelAttention(cur, emb_dim, cfg.head_dim)
            self.mid_layers.append(self.mid_label_attention)
        self.mid2 = ResBlock(cur, cur, emb_dim, cfg.temporal_conv, cfg.dropout, cfg.temporal_init,
                             cfg.temporal_padding)

        # Decoder: nb + 1 blocks per level, each eating one skip connection.
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for lv, m in reversed(list(enumerate(mults))):
            cins = []
            for _ in range(nb + 1):
                cins.append(cur + skips.pop())
                cur = ch * m
            self.up.append(_Level(cins, ch * m, emb_dim, cfg, lv))
            if lv > 0:
                self.upsample.append(Upsample(cur, temporal=lv - 1 in cfg.temporal_downsample_levels))

        self.norm_out = group_norm(cur)
        pc = cfg.pixel_channels
        if pc:  # full-resolution stem and head: the tokens' output unfolds to pc features per pixel
            self.pixel_in = nn.Conv3d(cin, pc, (1, 3, 3), padding=(0, 1, 1))
            self.conv_out = SpaceTimeConv(cur, pc * p2, "none")
            self.pixel_block = ResBlock(2 * pc, pc, emb_dim, "none", cfg.dropout)
            if cfg.pixel_blocks > 1:  # (each starts as the identity: ResBlock's last conv is zero)
                self.pixel_more = nn.ModuleList([ResBlock(pc, pc, emb_dim, "none", cfg.dropout)
                                                 for _ in range(cfg.pixel_blocks - 1)])
            self.pixel_norm = group_norm(pc)
            self.pixel_out = zero_module(nn.Conv3d(pc, cfg.in_channels, (1, 3, 3), padding=(0, 1, 1)))
        else:
            self.conv_out = zero_module(SpaceTimeConv(cur, cfg.in_channels * p2, "none"))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: Optional[torch.Tensor] = None,
                x_self: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        # x: (B, C, F, H, W), c_noise: (B,) or one per frame (B, F), cond: (B, cond_channels, F, H, W) or None,
        # x_self: (B, C, F, H, W) previous x0 estimate or None (zeros),
        # labels: (B, L) long label indices, -1 for none, or None (no labels: unconditional) -> (B, C, F, H, W)
        x = stack_inputs(self.config, x, cond, x_self)  # (B, C', F, H, W)
        emb = self.time_mlp(timestep_embedding(c_noise, self.config.channels).to(x.dtype))  # (B, E) or (B, F, E)
        emb = add_labels(emb, labels, getattr(self, "label_emb", None))  # (B, E) or (B, F, E)
        context = None  # the label cross-attention's (B, 1 + L, E) tokens and (B, 1 + L) visibility
        if self.config.label_attention:
            context = label_context(labels, self.label_emb, self.label_null, x.shape[0])

        p = self.config.patch_size
        H, W = x.shape[-2:]
        if H % (p * 2 ** (len(self.down) - 1)) or W % (p * 2 ** (len(self.down) - 1)):
            raise ValueError(f"height and width must be divisible by {p * 2 ** (len(self.down) - 1)}, got {H}x{W}")
        ft = 2 ** len(self.config.temporal_downsample_levels)
        if x.shape[2] % ft:
            raise ValueError(f"this network halves the frames {len(self.config.temporal_downsample_levels)} times: "
                             f"the number of frames must be divisible by {ft}, got {x.shape[2]}")
        pixels = self.pixel_in(x) if self.config.pixel_channels else None  # (B, pc, F, H, W)
        if p > 1:  # space-to-depth: (B, C, F, H, W) -> (B, C*p*p, F, H/p, W/p)
            x = rearrange(x, "b c f (h p1) (w p2) -> b (c p1 p2) f h w", p1=p, p2=p)
        h = self.conv_in(x)
        hs = [h]
        for lv, level in enumerate(self.down):
            for layers in level.blocks:
                h = _apply(layers, h, emb, context)
                hs.append(h)
            if lv < len(self.downsample):
                h = self.downsample[lv](h)  # (B, C', F, H/2, W/2)
                hs.append(h)

        h = self.mid1(h, emb)
        h = _apply(self.mid_layers, h, emb, context)
        h = self.mid2(h, emb)

        for i, level in enumerate(self.up):
            for layers in level.blocks:
                h = _apply(layers, torch.cat([h, hs.pop()], dim=1), emb, context)
            if i < len(self.upsample):
                h = self.upsample[i](h)
        out = self.conv_out(F.silu(self.norm_out(h)))
        if p > 1:  # depth-to-space back to full resolution
            out = rearrange(out, "b (c p1 p2) f h w -> b c f (h p1) (w p2)", p1=p, p2=p)
        if pixels is not None:  # (B, pc, F, H, W) unfolded tokens + stem -> (B, C, F, H, W)
            out = self.pixel_block(torch.cat([out, pixels], dim=1), emb)
            for block in getattr(self, "pixel_more", ()):
                out = block(out, emb)  # (B, pc, F, H, W)
            out = self.pixel_out(F.silu(self.pixel_norm(out)))
        return out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
