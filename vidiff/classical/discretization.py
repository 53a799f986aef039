"""Finite differences on the (frame, y, x) grid of a video, shared by the heat and Perona-Malik filters.

Both filters solve du/dt = div(C grad u) over the three axes (F, H, W) of a video tensor (..., F, H, W),
channel by channel (leading dimensions are never mixed). The discretisation is the conservative,
cell-centred one of Perona & Malik (1990, eq. 8) extended to three axes:

    du_i/dt = sum_axes [ c_{i+1/2} (u_{i+1} - u_i) - c_{i-1/2} (u_i - u_{i-1}) ]

with one conductance c per face between neighbouring voxels and c = 0 on the faces outside the video
(homogeneous Neumann boundaries: no flux leaves the video). Because the flux through each face is
counted once with each sign, the sum of u (hence its mean) is conserved exactly by every scheme below.
Two time steppers share this semi-discrete system:

- `explicit_step`: forward Euler. Stable (and a convex combination of neighbours, so it obeys the
  maximum principle and does not increase the total variation) iff dt * sum_axes (c_{i-1/2} + c_{i+1/2})
  <= 1 everywhere; for conductances bounded by D_a / h_a^2 this is dt <= 1 / (2 sum_a D_a / h_a^2).
- `aos_step`: additive operator splitting (Weickert, ter Haar Romeny & Viergever 1998, eq. 42):
  u' = (1/m) sum_a (I - m dt A_a)^-1 u, one tridiagonal solve per axis (Thomas algorithm). Stable for
  any dt, conserves the mean and keeps the maximum principle; accuracy is first order in dt.
"""

from __future__ import annotations

import enum
import math
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from vidiff.errors import VidiffError

AXES = (-3, -2, -1)  # (frame, y, x)
AXIS_NAMES = ("frame", "y", "x")

# conductance(d, axis) -> c: d holds the forward differences u_{i+1} - u_i along `axis` (one per interior
# face), c the conductance on each of those faces, same shape (or broadcastable, e.g. a float).
Conductance = Callable[[torch.Tensor, int], torch.Tensor]


class Scheme(str, enum.Enum):
    EXPLICIT = "explicit"  # forward Euler; dt limited by the stability bound
    AOS = "aos"  # additive operator splitting; any dt


def check_video(video: torch.Tensor, name: str = "video") -> torch.Tensor:
    """Accept a float (C, F, H, W) or (B, C, F, H, W) tensor; integer or other ranks are a VidiffError."""
    if not isinstance(video, torch.Tensor):
        raise VidiffError(f"{name} must be a torch tensor, got {type(video).__name__}")
    if video.ndim not in (4, 5):
        raise VidiffError(f"{name} must be (C, F, H, W) or (B, C, F, H, W), got shape {tuple(video.shape)}")
    if not video.is_floating_point():
        raise VidiffError(f"{name} must be a float tensor (values in [-1, 1]), got {video.dtype}")
    return video


def axis_weights(spatial: float, temporal: float, spacing: Sequence[float]) -> tuple[float, float, float]:
    """D_a / h_a^2 for the axes (frame, y, x): temporal diffusivity along frames, spatial along y and x.

    `spacing` = (h_frame, h_y, h_x), the grid spacing of each axis (1 = one frame, one pixel).
    """
    for label, value in (("spatial diffusivity", spatial), ("temporal diffusivity", temporal)):
        if not (math.isfinite(value) and value >= 0):
            raise VidiffError(f"{label} must be a finite number >= 0, got {value}")
    spacing = tuple(float(h) for h in spacing)
    if len(spacing) != 3 or not all(math.isfinite(h) and h > 0 for h in spacing):
        raise VidiffError(f"spacing must be three positive numbers (frame, y, x), got {spacing}")
    h_f, h_y, h_x = spacing
    return temporal / h_f**2, spatial / h_y**2, spatial / h_x**2


def active_axes(shape: Sequence[int], weights: Sequence[float]) -> list[int]:
    """Indices (0, 1, 2 for frame, y, x) of the axes along which anything diffuses: weight > 0 and size > 1."""
    return [a for a in range(3) if weights[a] > 0 and shape[AXES[a]] > 1]


def stable_dt(shape: Sequence[int], weights: Sequence[float]) -> float:
    """The explicit scheme's step limit 1 / (2 sum_a D_a / h_a^2) over the active axes (inf if none)."""
    total = sum(weights[a] for a in active_axes(shape, weights))
    return math.inf if total == 0 else 1.0 / (2.0 * total)


def max_stable_dt(shape: Sequence[int], spatial: float = 1.0, temporal: float = 1.0,
                  spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> float:
    """The longest explicit step for a video of `shape` (..., F, H, W): 1 / (2 sum_i D_i / h_i^2), over the
    axes longer than one voxel. Also the limit for Perona-Malik, whose conductances never exceed D_i / h_i^2."""
    return stable_dt(shape, axis_weights(spatial, temporal, spacing))


def _pad_spec(axis: int, before: int, after: int) -> list[int]:
    # F.pad lists (before, after) pairs from the last dimension backwards.
    spec = [0, 0] * (-axis)
    spec[2 * (-axis) - 2], spec[2 * (-axis) - 1] = before, after
    return spec


def neumann_divergence(flux: torch.Tensor, axis: int) -> torch.Tensor:
    """(n-1) face fluxes along `axis` -> (n) voxel values flux_{i+1/2} - flux_{i-1/2}, zero flux at both ends."""
    return torch.diff(F.pad(flux, _pad_spec(axis, 1, 1)), dim=axis)


def explicit_step(u: torch.Tensor, dt: float, conductance: Conductance, axes: Sequence[int]) -> torch.Tensor:
    """One forward-Euler step of du/dt = sum_axes div_a(c_a grad_a u); `axes` index (frame, y, x) as 0, 1, 2."""
    update = torch.zeros_like(u)
    for a in axes:
        axis = AXES[a]
        d = torch.diff(u, dim=axis)  # forward differences on the interior faces
        update = update + neumann_divergence(conductance(d, a) * d, axis)
    return u + dt * update


def tridiagonal_solve(lower: torch.Tensor, diag: torch.Tensor, upper: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Solve tridiagonal systems along the last dimension with the Thomas algorithm, vectorised over the rest.

    Row i reads lower[i] x[i-1] + diag[i] x[i] + upper[i] x[i+1] = rhs[i]; lower[..., 0] and upper[..., -1]
    are ignored. All four tensors broadcast to one shape (..., n). Without pivoting, which is safe for the
    diagonally dominant matrices I - tau A that diffusion produces.
    """
    lower, diag, upper, rhs = torch.broadcast_tensors(lower, diag, upper, rhs)
    n = rhs.shape[-1]
    c = torch.empty_like(rhs)  # modified super-diagonal c'_i
    d = torch.empty_like(rhs)  # modified right-hand side d'_i
    c[..., 0] = upper[..., 0] / diag[..., 0]
    d[..., 0] = rhs[..., 0] / diag[..., 0]
    for i in range(1, n):
        m = diag[..., i] - lower[..., i] * c[..., i - 1]
        c[..., i] = upper[..., i] / m
        d[..., i] = (rhs[..., i] - lower[..., i] * d[..., i - 1]) / m
    x = torch.empty_like(rhs)
    x[..., n - 1] = d[..., n - 1]
    for i in range(n - 2, -1, -1):
        x[..., i] = d[..., i] - c[..., i] * x[..., i + 1]
    return x


def implicit_axis_solve(u: torch.Tensor, face_conductance: torch.Tensor, tau: float, axis: int) -> torch.Tensor:
    """(I - tau A_axis)^-1 u, where A_axis is the 1-D Neumann diffusion operator with the given face conductances.

    `face_conductance` has n-1 entries along `axis` (broadcastable against torch.diff(u, dim=axis)).
    """
    u_last = u.movedim(axis, -1)  # (..., n)
    c = torch.broadcast_to(face_conductance, torch.diff(u, dim=axis).shape).movedim(axis, -1)  # (..., n-1)
    zero = torch.zeros_like(c[..., :1])
    c_before = torch.cat([zero, c], dim=-1)  # c_{i-1/2}, 0 on the first voxel
    c_after = torch.cat([c, zero], dim=-1)  # c_{i+1/2}, 0 on the last voxel
    diag = 1 + tau * (c_before + c_after)
    x = tridiagonal_solve(-tau * c_before, diag, -tau * c_after, u_last)
    return x.movedim(-1, axis)


def aos_step(u: torch.Tensor, dt: float, conductance: Conductance, axes: Sequence[int]) -> torch.Tensor:
    """One AOS step (Weickert et al. 1998, eq. 42): u' = (1/m) sum_a (I - m dt A_a(u))^-1 u over the m active axes.

    The conductances are taken from u (semi-implicit: linear in u' for a nonlinear filter).
    """
    m = len(axes)
    if m == 0:
        return u.clone()
    out = torch.zeros_like(u)
    for a in axes:
        axis = AXES[a]
        c = conductance(torch.diff(u, dim=axis), a)
        if not isinstance(c, torch.Tensor):
            c = torch.tensor(c, dtype=u.dtype, device=u.device)
        out = out + implicit_axis_solve(u, c, m * dt, axis)
    return out / m


def evolve(u: torch.Tensor, time: float, dt: Optional[float], conductance: Conductance, weights: Sequence[float],
           scheme: Scheme | str, what: str, progress: bool = False,
           callback: Optional[Callable[[int, float, torch.Tensor], None]] = None) -> torch.Tensor:
    """Integrate du/dt = div(C grad u) from 0 to `time` with `scheme`, in equal steps no longer than `dt`.

    `conductance` must be bounded by `weights` (D_a / h_a^2) on each axis: the explicit stability check
    relies on it. dt=None takes the explicit limit (explicit) or 8 times it (AOS, where accuracy, not
    stability, limits the step). `callback(step, t, u)` sees the state after every step.
    """
    try:
        scheme = Scheme(scheme)
    except ValueError:
        raise VidiffError(f"unknown scheme {scheme!r}; choose from {', '.join(s.value for s in Scheme)}") from None
    if not (math.isfinite(time) and time >= 0):
        raise VidiffError(f"diffusion time must be a finite number >= 0, got {time}")
    axes = active_axes(u.shape, weights)
    limit = stable_dt(u.shape, weights)
    if dt is None:
        dt = limit if scheme == Scheme.EXPLICIT else 8 * limit
    elif not (math.isfinite(dt) and dt > 0):
        raise VidiffError(f"time step dt must be a positive number, got {dt}")
    elif scheme == Scheme.EXPLICIT and dt > limit * (1 + 1e-9):
        raise VidiffError(f"dt={dt:g} is unstable for the explicit {what} scheme: it needs "
                          f"dt <= 1 / (2 sum_i D_i/h_i^2) = {limit:.6g} here; use a smaller dt or scheme 'aos'")
    if time == 0 or not axes:
        return u.clone()
    steps = max(1, math.ceil(time / dt - 1e-9))
    dt = time / steps  # equal steps that end exactly at `time`, each no longer than the requested dt
    step = explicit_step if scheme == Scheme.EXPLICIT else aos_step
    from tqdm.auto import tqdm

    for n in tqdm(range(steps), desc=what, leave=False, disable=not progress):
        u = step(u, dt, conductance, axes)
        if callback is not None:
            callback(n + 1, (n + 1) * dt, u)
    return u


def total_variation(video: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation sum_a sum |u_{i+1} - u_i| over (frame, y, x), per leading index.

    (..., F, H, W) -> (...). The heat schemes (constant conductances) provably never increase it: a
    stable 1-D step is total-variation diminishing along its axis (Harten 1983) and, being the same
    nonnegative, mean-preserving operator on every line, an L1 contraction of the differences along the
    other axes; the explicit 3-D step is a convex combination of such 1-D steps (weights D_a/h_a^2 over
    their sum) and the AOS step their average.
    """
    return sum(torch.diff(video, dim=axis).abs().flatten(-3).sum(-1) for axis in AXES)
