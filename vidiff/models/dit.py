"""VideoDiT: a diffusion transformer over space-time patches (Peebles & Xie 2023, "Scalable Diffusion Models
with Transformers"; over video as in Latte, Ma et al. 2024, with full space-time attention).

A clip is cut into patch_size x patch_size patches of each frame, every patch is a token, and all F * H/p * W/p
tokens of a clip attend to each other in every block, with axial rotary positions (frame, row, column; relative,
so clips of other lengths and sizes go through the same weights). The timestep (and label) embedding conditions
every block by adaLN-Zero: it sets the scale and shift of each pre-norm and a gate on each residual branch, the
gates starting at zero so that every block begins as the identity.

The network maps (x_t, c_noise, cond) to a tensor shaped like x_t and knows nothing of noise schedules, exactly as
VideoUNet does: `vidiff.diffusion.Denoiser` decides what c_noise is and what the output means. It is meant for
small token grids (latents of `vidiff train-autoencoder`, or large patches): attention is quadratic in the tokens.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidiff.config import ModelConfig
from vidiff.models.layers import (add_labels, apply_rotary, rotary_axes_tables, space_time_positions, stack_inputs,
                                  timestep_embedding)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]  # x (B, L, D), shift/scale (B, D)


class DiTBlock(nn.Module):
    """Pre-norm transformer block: space-time self-attention, then an MLP, each modulated and gated by adaLN-Zero."""

    def __init__(self, width: int, head_dim: int, mlp_ratio: float, dropout: float = 0.0):
        super().__init__()
        self.heads = max(1, width // head_dim)
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                 nn.Linear(hidden, width))
        self.ada = nn.Linear(width, 6 * width)  # emb -> shift, scale, gate for attention and for the MLP
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        # x (B, L, D) tokens, emb (B, D), rope: cos and sin tables (L, head_dim) of the tokens' positions -> (B, L, D)
        sa, ca, ga, sm, cm, gm = self.ada(F.silu(emb)).chunk(6, dim=1)  # each (B, D)
        q, k, v = rearrange(self.qkv(_modulate(self.norm1(x), sa, ca)), "b l (three h d) -> three b h l d",
                            three=3, h=self.heads)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        a = F.scaled_dot_product_attention(q, k, v)  # (B, heads, L, d)
        x = x + ga[:, None] * self.proj(rearrange(a, "b h l d -> b l (h d)"))
        return x + gm[:, None] * self.mlp(_modulate(self.norm2(x), sm, cm))


class VideoDiT(nn.Module):
    """Config fields it reads: channels (the token width), depth, head_dim, mlp_ratio, patch_size, in_channels,
    cond_channels, self_condition, num_labels, dropout. The U-Net's level fields are ignored."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        D, p = cfg.channels, cfg.patch_size
        cin = cfg.in_channels * (2 if cfg.self_condition else 1) + cfg.cond_channels
        self.patch = nn.Conv3d(cin, D, (1, p, p), stride=(1, p, p))  # (B, cin, F, H, W) -> (B, D, F, H/p, W/p)
        self.time_mlp = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        if cfg.num_labels:  # one learned vector per label, summed over a clip's labels into the timestep embedding
            self.label_emb = nn.Embedding(cfg.num_labels, D)
        self.blocks = nn.ModuleList(DiTBlock(D, cfg.head_dim, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        self.head_width = D // max(1, D // cfg.head_dim)  # the width of one attention head, for the rotary tables
        self.rope_frame_scale = cfg.rope_frame_scale
        self.norm_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(D, 2 * D)
        self.out = nn.Linear(D, cfg.in_channels * p * p)
        for layer in (self.ada_out, self.out):  # the network starts by predicting zeros
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: Optional[torch.Tensor] = None,
                x_self: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        # x: (B, C, F, H, W), c_noise: (B,), cond: (B, cond_channels, F, H, W) or None,
        # x_self: (B, C, F, H, W) previous x0 estimate or None (zeros),
        # labels: (B, L) long label indices, -1 for none, or None (unconditional) -> (B, C, F, H, W)
        cfg, p = self.config, self.config.patch_size
        Fr, H, W = x.shape[2:]
        if H % p or W % p:
            raise ValueError(f"height and width must be divisible by the patch size {p}, got {H}x{W}")
        x = stack_inputs(cfg, x, cond, x_self)  # (B, cin, F, H, W)
        if c_noise.ndim != 1:
            raise ValueError("VideoDiT takes one noise level per clip (B,), not one per frame")
        emb = self.time_mlp(timestep_embedding(c_noise, cfg.channels).to(x.dtype))  # (B, D)
        emb = add_labels(emb, labels, getattr(self, "label_emb", None))  # (B, D)

        h, w = H // p, W // p
        tokens = rearrange(self.patch(x), "b d f h w -> b (f h w) d")  # (B, F*h*w, D)
        positions = space_time_positions(Fr, h, w, self.rope_frame_scale, x.device)  # (F*h*w, 3)
        rope = rotary_axes_tables(positions, self.head_width)
        for block in self.blocks:
            tokens = block(tokens, emb, rope)
        shift, scale = self.ada_out(F.silu(emb)).chunk(2, dim=1)
        out = self.out(_modulate(self.norm_out(tokens), shift, scale))  # (B, F*h*w, C*p*p)
        return rearrange(out, "b (f h w) (c p1 p2) -> b c f (h p1) (w p2)", f=Fr, h=h, p1=p, p2=p)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
