"""FrameAutoencoder: a convolutional video autoencoder, the latent space of latent video diffusion.

By default each frame is encoded on its own, as Video LDM (Blattmann et al. 2023) runs its diffusion model in the
latent space of an image autoencoder: (B, 3, F, H, W) -> (B, latent_channels, F, H/f, W/f),
f = 2^(len(channel_mults) - 1). With `temporal_levels` it also compresses time, as the video autoencoders of
MAGVIT (Yu et al. 2023) and later latent video models do: every block gets a residual 3-tap temporal conv, and the
downsampling after each listed level halves F as well (a 3x3x3 conv of stride 2), so
(B, 3, F, H, W) -> (B, latent_channels, F/t, H/f, W/f), t = 2^len(temporal_levels). Objects that move smoothly
need few latent frames, and the diffusion model then has t times fewer positions to keep consistent.
The latents pass through tanh, so they lie in [-1, 1] like pixels and the samplers' x0 clipping keeps its meaning.
The decoder is trained on latents with noise added (`AutoencoderConfig.latent_noise`), so that it also turns a
diffusion model's slightly-off latents into clean frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from vidiff.models.layers import group_norm


@dataclass
class AutoencoderConfig:
    channels: int = 16  # channels at full resolution
    channel_mults: tuple[int, ...] = (1, 2, 4)  # one level per entry; each level after the first halves H and W
    latent_channels: int = 4
    in_channels: int = 3
    # levels (0 .. len(channel_mults) - 2) whose downsampling also halves the frames; () = a per-frame autoencoder
    temporal_levels: tuple[int, ...] = ()
    # Training: the decoder sees tanh latents plus Gaussian noise of a std drawn uniformly in [0, latent_noise]
    latent_noise: float = 0.2

    @property
    def factor(self) -> int:
        return 2 ** (len(self.channel_mults) - 1)

    @property
    def time_factor(self) -> int:
        return 2 ** len(self.temporal_levels)


def _fold(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D module to every frame: (B, C, F, H, W) -> (B, C', F, H', W')."""
    y = m(rearrange(x, "b c f h w -> (b f) c h w"))
    return rearrange(y, "(b f) c h w -> b c f h w", b=x.shape[0])


class _Block(nn.Module):
    """GroupNorm, SiLU, 3x3 conv, twice, with a residual connection, per frame; in a temporal autoencoder then a
    residual GroupNorm, SiLU, 3-tap temporal conv (zero-initialised, so it starts as the identity)."""

    def __init__(self, cin: int, cout: int, temporal: bool = False):
        super().__init__()
        self.body = nn.Sequential(group_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
                                  group_norm(cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.time = None
        if temporal:
            self.time = nn.Sequential(group_norm(cout), nn.SiLU(), nn.Conv3d(cout, cout, (3, 1, 1), padding=(1, 0, 0)))
            nn.init.zeros_(self.time[-1].weight)
            nn.init.zeros_(self.time[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, F, H, W) -> (B, Cout, F, H, W)
        x = _fold(lambda y: self.skip(y) + self.body(y), x)
        return x if self.time is None else x + self.time(x)


class _Upsample(nn.Module):
    """Nearest-neighbour upsampling by 2 in H and W, and in F when `time`: (B, C, F, H, W) -> (B, C, F', 2H, 2W)."""

    def __init__(self, time: bool):
        super().__init__()
        self.scale = (2, 2, 2) if time else (1, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")


_VIDEO_MODULES = (_Block, _Upsample, nn.Conv3d)  # these take (B, C, F, H, W); every other layer works frame by frame


def _run(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    for m in layers:
        x = m(x) if isinstance(m, _VIDEO_MODULES) else _fold(m, x)
    return x


class FrameAutoencoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.config = cfg
        chans = [cfg.channels * m for m in cfg.channel_mults]
        temporal = bool(cfg.temporal_levels)

        def down(c: int, level: int) -> nn.Module:
            if level in cfg.temporal_levels:
                return nn.Conv3d(c, c, 3, stride=2, padding=1)
            return nn.Conv2d(c, c, 3, stride=2, padding=1)

        def up(c: int, level: int) -> list[nn.Module]:  # undoes down(c, level)
            conv = nn.Conv3d(c, c, 3, padding=1) if level in cfg.temporal_levels else nn.Conv2d(c, c, 3, padding=1)
            return [_Upsample(level in cfg.temporal_levels), conv]

        enc: list[nn.Module] = [nn.Conv2d(cfg.in_channels, chans[0], 3, padding=1)]
        for i, c in enumerate(chans):
            enc.append(_Block(chans[max(i - 1, 0)], c, temporal))
            if i < len(chans) - 1:
                enc.append(down(c, i))
        enc += [group_norm(chans[-1]), nn.SiLU(), nn.Conv2d(chans[-1], cfg.latent_channels, 3, padding=1), nn.Tanh()]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, chans[-1], 3, padding=1)]
        for i in reversed(range(len(chans))):
            dec.append(_Block(chans[min(i + 1, len(chans) - 1)], chans[i], temporal))
            if i > 0:
                dec += up(chans[i], i - 1)
        dec += [group_norm(chans[0]), nn.SiLU(), nn.Conv2d(chans[0], cfg.in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, video: torch.Tensor) -> torch.Tensor:  # (B, C, F, H, W) in [-1, 1] -> (B, L, F/t, H/f, W/f)
        return _run(self.encoder, video)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:  # (B, L, F', h, w) -> (B, C, F' t, h f, w f), unclipped
        return _run(self.decoder, latents)

    def forward(self, video: torch.Tensor, noise_std: torch.Tensor | float = 0.0) -> torch.Tensor:
        """Reconstruct `video` through latents with Gaussian noise of std `noise_std` ((B,) or a float) added."""
        z = self.encode(video)  # (B, L, F, h, w)
        if not isinstance(noise_std, float) or noise_std > 0:
            std = torch.as_tensor(noise_std, dtype=z.dtype, device=z.device).reshape(-1, 1, 1, 1, 1)
            z = z + std * torch.randn_like(z)
        return self.decode(z)
