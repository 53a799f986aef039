"""FrameAutoencoder: a per-frame convolutional autoencoder, the latent space of latent video diffusion.

As Video LDM (Blattmann et al. 2023) runs its diffusion model in the latent space of an image autoencoder, each
frame is encoded on its own: (B, 3, F, H, W) -> (B, latent_channels, F, H/f, W/f), f = 2^(len(channel_mults) - 1).
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
    # Training: the decoder sees tanh latents plus Gaussian noise of a std drawn uniformly in [0, latent_noise]
    latent_noise: float = 0.2

    @property
    def factor(self) -> int:
        return 2 ** (len(self.channel_mults) - 1)


class _Block(nn.Module):
    """GroupNorm, SiLU, 3x3 conv, twice, with a residual connection (2-D, frames folded into the batch)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(group_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
                                  group_norm(cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, Cin, H, W) -> (N, Cout, H, W)
        return self.skip(x) + self.body(x)


class FrameAutoencoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.config = cfg
        chans = [cfg.channels * m for m in cfg.channel_mults]
        enc: list[nn.Module] = [nn.Conv2d(cfg.in_channels, chans[0], 3, padding=1)]
        for i, c in enumerate(chans):
            enc.append(_Block(chans[max(i - 1, 0)], c))
            if i < len(chans) - 1:
                enc.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        enc += [group_norm(chans[-1]), nn.SiLU(), nn.Conv2d(chans[-1], cfg.latent_channels, 3, padding=1), nn.Tanh()]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, chans[-1], 3, padding=1)]
        for i in reversed(range(len(chans))):
            dec.append(_Block(chans[min(i + 1, len(chans) - 1)], chans[i]))
            if i > 0:
                dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(chans[i], chans[i], 3, padding=1)]
        dec += [group_norm(chans[0]), nn.SiLU(), nn.Conv2d(chans[0], cfg.in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, video: torch.Tensor) -> torch.Tensor:  # (B, C, F, H, W) in [-1, 1] -> (B, L, F, H/f, W/f)
        b = video.shape[0]
        z = self.encoder(rearrange(video, "b c f h w -> (b f) c h w"))
        return rearrange(z, "(b f) c h w -> b c f h w", b=b)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:  # (B, L, F, h, w) -> (B, C, F, h*f, w*f), unclipped
        b = latents.shape[0]
        x = self.decoder(rearrange(latents, "b c f h w -> (b f) c h w"))
        return rearrange(x, "(b f) c h w -> b c f h w", b=b)

    def forward(self, video: torch.Tensor, noise_std: torch.Tensor | float = 0.0) -> torch.Tensor:
        """Reconstruct `video` through latents with Gaussian noise of std `noise_std` ((B,) or a float) added."""
        z = self.encode(video)  # (B, L, F, h, w)
        if not isinstance(noise_std, float) or noise_std > 0:
            std = torch.as_tensor(noise_std, dtype=z.dtype, device=z.device).reshape(-1, 1, 1, 1, 1)
            z = z + std * torch.randn_like(z)
        return self.decode(z)
