"""Building blocks of the video networks. Every tensor is (B, C, F, H, W) unless a comment says otherwise."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with the most groups (<= 32) that leaves at least 4 channels per group."""
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0 and channels // g >= 4 or g == 1)
    return nn.GroupNorm(groups, channels)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero-initialise the last layer of a residual branch so that every block starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of a float tensor (Vaswani et al. 2017, sec. 3.5): (B,) -> (B, dim), or one timestep per
    frame (B, F) -> (B, F, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[..., None] * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class SpaceTimeConv(nn.Module):
    """A 3x3 spatial conv, then (factorized) a 3-tap temporal conv: (2+1)D of Tran et al. 2018.

    `mode="full"` is one 3x3x3 conv, `mode="none"` the spatial conv alone. Written as Conv3d with
    (1,3,3) and (3,1,1) kernels: on CPU this beat reshape + Conv2d + Conv1d by ~1.35x (MACHINE-NOTES).
    `identity_init` starts the temporal conv as the identity (centre tap = I), so that the network begins as a
    per-frame image model and learns motion on top of it (Singer et al. 2022, Make-A-Video, sec. 3.2).
    `temporal_padding` is what the 3 taps see beyond the first and last frame: "zeros", or "replicate" (the edge
    frame again), which does not tell a clip's end frames apart from its middle ones by a drop in activation.
    """

    def __init__(self, cin: int, cout: int, mode: str = "factorized", identity_init: bool = False,
                 temporal_padding: str = "zeros"):
        super().__init__()
        self.mode = mode
        self.replicate = temporal_padding == "replicate" and mode != "none"  # then padded in forward, not by the conv
        zero_pad = 0 if self.replicate else 1  # the conv's own (zero) temporal padding
        if mode == "full":
            self.spatial = nn.Conv3d(cin, cout, (3, 3, 3), padding=(zero_pad, 1, 1))
            self.temporal = None
        else:
            self.spatial = nn.Conv3d(cin, cout, (1, 3, 3), padding=(0, 1, 1))
            self.temporal = nn.Conv3d(cout, cout, (3, 1, 1), padding=(zero_pad, 0, 0)) if mode == "factorized" else None
            if self.temporal is not None and identity_init:
                nn.init.dirac_(self.temporal.weight)  # centre tap = I, the others 0
                nn.init.zeros_(self.temporal.bias)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, F, H, W) -> (B, C, F + 2, H, W), edge frames repeated
        return F.pad(x, (0, 0, 0, 0, 1, 1), mode="replicate") if self.replicate else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, F, H, W) -> (B, Cout, F, H, W)
        if self.mode == "full":
            return self.spatial(self._pad(x))
        x = self.spatial(x)
        return self.temporal(self._pad(x)) if self.temporal is not None else x


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with the timestep embedding as scale and shift (Dhariwal & Nichol 2021, sec. 3)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, temporal_conv: str = "factorized", dropout: float = 0.0,
                 temporal_init: str = "random", temporal_padding: str = "zeros"):
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = SpaceTimeConv(cin, cout, temporal_conv, identity_init=temporal_init == "identity",
                                   temporal_padding=temporal_padding)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = group_norm(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = SpaceTimeConv(cout, cout, temporal_conv, temporal_padding=temporal_padding)
        # Zero only the last conv of the pair: zeroing both would leave each with a zero gradient forever.
        zero_module(self.conv2.temporal if self.conv2.temporal is not None else self.conv2.spatial)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # x (B, Cin, F, H, W), emb (B, E) or one per frame (B, F0, E), F0 a multiple of F (frames halved inside)
        h = self.conv1(F.silu(self.norm1(x)))  # (B, Cout, F, H, W)
        scale, shift = frame_modulation(self.emb(F.silu(emb)), h.shape[2]).chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


def frame_modulation(m: torch.Tensor, frames: int) -> torch.Tensor:
    """A block's scale and shift from the embedding, shaped to broadcast over (B, C, F, H, W): (B, C) -> (B, C, 1, 1, 1);
    per frame (B, F0, C) -> (B, C, F, 1, 1), averaging groups of F0 / F frames where the network has halved them."""
    if m.ndim == 2:
        return m[:, :, None, None, None]
    B, F0, C = m.shape
    if F0 != frames:
        m = m.reshape(B, frames, F0 // frames, C).mean(2)
    return m.permute(0, 2, 1)[:, :, :, None, None]


def stack_inputs(cfg, x: torch.Tensor, cond: torch.Tensor | None, x_self: torch.Tensor | None) -> torch.Tensor:
    """What a denoiser network reads, concatenated on channels: x_t (B, C, F, H, W), then the previous x0 estimate of
    a self-conditioned model (zeros when None), then cfg.cond_channels conditioning channels."""
    if cfg.self_condition:
        x = torch.cat([x, torch.zeros_like(x) if x_self is None else x_self.to(x.dtype)], dim=1)
    if cfg.cond_channels:
        if cond is None:
            raise ValueError(f"this model needs {cfg.cond_channels} conditioning channels")
        x = torch.cat([x, cond.to(x.dtype)], dim=1)
    return x


def add_labels(emb: torch.Tensor, labels: torch.Tensor | None, table: nn.Embedding | None) -> torch.Tensor:
    """emb (B, E) plus the sum of the embeddings of each clip's labels (B, L), -1 for none; unchanged without
    labels or a label table (unconditional)."""
    if labels is None or table is None:
        return emb
    if labels.ndim != 2 or labels.shape[0] != emb.shape[0]:  # (values are checked where they come in: no sync)
        raise ValueError(f"labels must be (batch, slots) = ({emb.shape[0]}, ...), got {tuple(labels.shape)}")
    present = (labels >= 0).unsqueeze(-1).to(emb.dtype)  # (B, L, 1)
    lab = (table(labels.clamp(min=0)).to(emb.dtype) * present).sum(1)  # (B, E)
    return emb + (lab if emb.ndim == 2 else lab[:, None])  # (B, E), or (B, F, E) with one timestep per frame


def rotary(x: torch.Tensor, positions: torch.Tensor, base: float = 10_000.0) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021) on the last dim of x (..., L, D) for positions (L,)."""
    d = x.shape[-1] // 2 * 2
    freqs = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angles = positions.float()[:, None] * freqs[None]  # (L, d/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2, rest = x[..., 0:d:2], x[..., 1:d:2], x[..., d:]
    rotated = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    return torch.cat([rotated, rest], dim=-1)


def rotary_axes(x: torch.Tensor, positions: torch.Tensor, base: float = 10_000.0) -> torch.Tensor:
    """Axial rotary embedding on x (..., L, D) for positions (L, 3) = (frame, row, column) of each token: half
    of D encodes the frame, a quarter each the row and the column (as in 3D RoPE of video transformers)."""
    d = x.shape[-1]
    dr = 2 * (d // 8)  # dims for the row and for the column, even
    dt = d - 2 * dr
    parts = x.split([dt, dr, dr], dim=-1)  # (dr = 0 below 8 dims: frames only)
    return torch.cat([rotary(part, positions[:, i], base) for i, part in enumerate(parts)], dim=-1)


def rotary_axes_tables(positions: torch.Tensor, dim: int, base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables (L, dim) of `rotary_axes` for positions (L, 3), computed once for many layers:
    `apply_rotary(x, cos, sin)` then equals `rotary_axes(x, positions, base)` for x (..., L, dim), dim even."""
    if dim % 2:
        raise ValueError(f"rotary tables need an even head width, got {dim}")
    dr = 2 * (dim // 8)
    cos, sin = [], []
    for d, pos in zip([dim - 2 * dr, dr, dr], positions.unbind(1)):  # every part even
        freqs = base ** (-torch.arange(0, d, 2, device=positions.device, dtype=torch.float32) / d)
        angles = (pos.float()[:, None] * freqs[None]).repeat_interleave(2, dim=1)  # (L, d): pairs share an angle
        cos.append(angles.cos())
        sin.append(angles.sin())
    return torch.cat(cos, dim=1), torch.cat(sin, dim=1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., L, D) by the tables of `rotary_axes_tables`: pairs (2i, 2i+1) turn by their angle."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., L, D/2, 2)
    turned = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)  # (..., L, D)
    return x * cos.to(x.dtype) + turned * sin.to(x.dtype)


def space_time_positions(frames: int, height: int, width: int, frame_scale: float = 1.0,
                         device=None) -> torch.Tensor:
    """(frame * frame_scale, row, column) of every token of a clip in (f h w) order: (F*H*W, 3) float."""
    positions = torch.cartesian_prod(*(torch.arange(n, device=device, dtype=torch.float32)
                                       for n in (frames, height, width)))
    return positions * torch.tensor([frame_scale, 1.0, 1.0], device=device)


class _Attention(nn.Module):
    """Multi-head self-attention over a token axis, computed with scaled_dot_product_attention."""

    def __init__(self, channels: int, head_dim: int):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_module(nn.Linear(channels, channels))

    def attend(self, tokens: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        # tokens (N, L, C), positions (L,) or (L, 3) -> (N, L, C)
        q, k, v = rearrange(self.qkv(tokens), "n l (three h d) -> three n h l d", three=3, h=self.heads)
        if positions is not None:
            rope = rotary if positions.dim() == 1 else rotary_axes
            q, k = rope(q, positions), rope(k, positions)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, heads, L, d)
        return self.proj(rearrange(out, "n h l d -> n l (h d)"))


class SpatialAttention(_Attention):
    """Self-attention among the H*W positions of each frame; frames are folded into the batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, F, H, W) -> same
        B, C, Fr, H, W = x.shape
        tokens = rearrange(self.norm(x), "b c f h w -> (b f) (h w) c")
        out = rearrange(self.attend(tokens), "(b f) (h w) c -> b c f h w", b=B, h=H)
        return x + out


class TemporalAttention(_Attention):
    """Self-attention among the F frames at each pixel, with rotary frame positions (relative, so it
    also applies to clips of other lengths); pixels are folded into the batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, F, H, W) -> same
        B, C, Fr, H, W = x.shape
        tokens = rearrange(self.norm(x), "b c f h w -> (b h w) f c")
        positions = torch.arange(Fr, device=x.device)
        out = rearrange(self.attend(tokens, positions), "(b h w) f c -> b c f h w", b=B, h=H)
        return x + out


class SpaceTimeAttention(_Attention):
    """Full self-attention among all F*H*W positions of a clip, with axial rotary positions (frame, row,
    column): a token can follow an object to a nearby place in another frame in one hop, which factorized
    attention needs two for. Quadratic in F*H*W: meant for the low resolutions of the U-Net. Frame positions are
    multiplied by `frame_scale` (model.rope_frame_scale)."""

    def __init__(self, channels: int, head_dim: int, frame_scale: float = 1.0):
        super().__init__(channels, head_dim)
        self.frame_scale = frame_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, F, H, W) -> same
        B, C, Fr, H, W = x.shape
        tokens = rearrange(self.norm(x), "b c f h w -> b (f h w) c")
        positions = space_time_positions(Fr, H, W, self.frame_scale, x.device)  # (F*H*W, 3)
        out = rearrange(self.attend(tokens, positions), "b (f h w) c -> b c f h w", f=Fr, h=H)
        return x + out


class LabelAttention(nn.Module):
    """Cross-attention from every position of a clip to its label tokens: each token can read which objects the
    clip is asked to show and take one of them, where a summed label vector in the timestep embedding only gives
    every position the same mixture (Rombach et al. 2022 condition on text tokens this way). The context is a
    learned null token followed by the clip's label embeddings (B, 1 + L, E), the null token always visible, so a
    clip without labels (the unconditional case of classifier-free guidance) attends to it alone. The output
    projection starts at zero: added to a trained network, the layer changes nothing until it learns."""

    def __init__(self, channels: int, context_dim: int, head_dim: int):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = group_norm(channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.proj = zero_module(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, context: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        # x (B, C, F, H, W), context (B, S, E), visible (B, S) bool -> (B, C, F, H, W)
        B, C, Fr, H, W = x.shape
        q = rearrange(self.q(rearrange(self.norm(x), "b c f h w -> b (f h w) c")), "b l (h d) -> b h l d",
                      h=self.heads)
        k, v = rearrange(self.kv(context.to(x.dtype)), "b s (two h d) -> two b h s d", two=2, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None, None, :])  # (B, heads, FHW, d)
        out = self.proj(rearrange(out, "b h l d -> b l (h d)"))
        return x + rearrange(out, "b (f h w) c -> b c f h w", f=Fr, h=H)


def label_context(labels: torch.Tensor | None, table: nn.Embedding, null: torch.Tensor,
                  batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The context of `LabelAttention`: labels (B, L) long, -1 for none, or None (no labels for the whole batch)
    -> (context (B, 1 + L, E): the null token, then each label's embedding; visible (B, 1 + L) bool)."""
    if labels is None:
        return null.expand(batch, 1, -1), torch.ones(batch, 1, dtype=torch.bool, device=null.device)
    present = labels >= 0  # (B, L)
    context = torch.cat([null.expand(labels.shape[0], 1, -1), table(labels.clamp(min=0))], dim=1)
    visible = torch.cat([torch.ones_like(present[:, :1]), present], dim=1)
    return context, visible


class Downsample(nn.Module):
    """Halve H and W with a strided 3x3 conv; with `temporal`, halve F too (a strided 3x3x3 conv)."""

    def __init__(self, channels: int, temporal: bool = False):
        super().__init__()
        kt = 3 if temporal else 1
        self.conv = nn.Conv3d(channels, channels, (kt, 3, 3), stride=(2 if temporal else 1, 2, 2),
                              padding=(kt // 2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, F, H, W) -> (B, C, F or F/2, H/2, W/2)
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W (nearest) and smooth with a 3x3 conv; with `temporal`, double F too (3x3x3 conv)."""

    def __init__(self, channels: int, temporal: bool = False):
        super().__init__()
        self.temporal = temporal
        kt = 3 if temporal else 1
        self.conv = nn.Conv3d(channels, channels, (kt, 3, 3), padding=(kt // 2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, F, H, W) -> (B, C, F or 2F, 2H, 2W)
        return self.conv(F.interpolate(x, scale_factor=(2 if self.temporal else 1, 2, 2), mode="nearest"))
