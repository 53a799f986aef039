"""Classical diffusion on video: PDE filters that smooth pixel values over (frame, y, x).

The physical meaning of "diffusion", next to the learned denoising diffusion models of `vidiff.diffusion`:
the heat equation (linear, isotropic within space) and Perona-Malik (nonlinear, edge-preserving), on
float tensors (C, F, H, W) or (B, C, F, H, W), per channel, on any device. `estimate_noise_sigma` gives
the noise level these filters (and `vidiff.denoise`) are tuned for.
"""

from vidiff.classical.discretization import (Scheme, aos_step, explicit_step, max_stable_dt, total_variation,
                                             tridiagonal_solve)
from vidiff.classical.heat import heat_diffusion
from vidiff.classical.noise import estimate_noise_sigma
from vidiff.classical.perona_malik import EdgeStop, edge_stopping, perona_malik

__all__ = ["Scheme", "EdgeStop", "heat_diffusion", "perona_malik", "edge_stopping", "estimate_noise_sigma",
           "max_stable_dt", "total_variation", "tridiagonal_solve", "explicit_step", "aos_step"]
