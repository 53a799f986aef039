"""The spatio-temporal heat equation on a video: du/dt = div(D grad u) over (frame, y, x).

D = diag(D_time, D_space, D_space): one diffusivity along the frame axis and one in the image plane,
homogeneous Neumann boundaries (nothing flows out of the video), each channel on its own. Running it for
time t is, away from the borders, a Gaussian blur with standard deviation sqrt(2 D t) along each axis
(in units of the grid spacing): the linear scale space (Witkin 1983, Koenderink 1984).

    smooth = heat_diffusion(video, time=2.0)                         # explicit, dt at the stability limit
    smooth = heat_diffusion(video, time=50.0, scheme="aos", dt=5.0)  # large steps, unconditionally stable
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from vidiff.classical.discretization import Scheme, axis_weights, check_video, evolve


def heat_diffusion(video: torch.Tensor, time: float, *, spatial: float = 1.0, temporal: float = 1.0,
                   spacing: Sequence[float] = (1.0, 1.0, 1.0), scheme: Scheme | str = Scheme.EXPLICIT,
                   dt: Optional[float] = None, progress: bool = False,
                   callback: Optional[Callable[[int, float, torch.Tensor], None]] = None) -> torch.Tensor:
    """Diffuse `video` (C, F, H, W) or (B, C, F, H, W), float, for diffusion time `time`; returns the same shape.

    spatial, temporal: the diffusivities D_space (along y and x) and D_time (along frames); 0 switches an
        axis off (temporal=0 filters each frame on its own).
    spacing: grid spacing (h_frame, h_y, h_x).
    scheme: "explicit" (forward Euler; a dt above 1 / (2 sum_i D_i / h_i^2) is refused with a VidiffError)
        or "aos" (additive operator splitting, Weickert et al. 1998: stable for any dt, first-order accurate).
    dt: the longest step to take (default: the explicit stability limit, or 8x it for AOS). The steps are
        made equal, ceil(time / dt) of them, ending exactly at `time`.
    callback(step, t, u): called after every step, e.g. to score the whole trajectory in one run.

    Values are in whatever units the tensor uses (the filter is linear); the mean of every channel of
    every video is preserved.
    """
    check_video(video)
    weights = axis_weights(spatial, temporal, spacing)

    def conductance(d: torch.Tensor, axis: int) -> float:
        return weights[axis]  # constant: D_a / h_a^2 on every face of axis a

    return evolve(video, time, dt, conductance, weights, scheme, "heat", progress, callback)
