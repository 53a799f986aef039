"""Video metrics: PSNR, SSIM, Frechet distance, flicker, optical-flow warping error and colour drift.

Inputs and value ranges (every function here accepts both):
- uint8 videos in the file layout `(N, F, H, W, 3)` (or one video `(F, H, W, 3)`), values 0..255;
- float videos (torch tensors or numpy arrays) in the library layout `(N, C, F, H, W)` (or one video
  `(C, F, H, W)`), values in [-1, 1]. Values outside [-1, 1] are an error, not silently clipped.

Internally every video becomes float64 `(N, F, H, W, C)` in [0, 1], so PSNR and SSIM use a data
range of 1 (identical to a range of 255 on uint8 frames), and flicker and warping error are in
[0, 1] units. Per-video functions return a numpy array of shape (N,): average it yourself
(`.mean()`) so that nothing is averaged in a way you did not choose.
"""

from __future__ import annotations

import numpy as np
import torch

from vidiff.errors import VidiffError

# SSIM constants of Wang et al. 2004 ("Image quality assessment: from error visibility to structural
# similarity"), Sec. III-C: an 11x11 circular-symmetric Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03.
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # 11 taps: int(3.5 * 1.5 + 0.5), scikit-image's truncation of the same window
SSIM_K1, SSIM_K2 = 0.01, 0.03

# Farneback optical flow (Farneback 2003, OpenCV's calcOpticalFlowFarneback) on frames enlarged 2x
# (bilinear), so that a 32x32 clip gives a 64 -> 32 -> 16 -> 8 pixel pyramid. Chosen on bouncing-shapes clips:
# of the settings tried (upscale 1/2/4, window 5..21, 1..3 levels) this one gave a low error on real clips
# (0.0023) and the largest ratio (~12x) between clips with shuffled frames and real ones.
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.1, flags=0)
FLOW_UPSCALE = 2


def as_videos(videos) -> np.ndarray:
    """uint8 (N, F, H, W, 3) or float (N, C, F, H, W) in [-1, 1] (one video: no N) -> float64 (N, F, H, W, C)
    in [0, 1]."""
    if isinstance(videos, torch.Tensor):
        is_float = videos.is_floating_point()
        videos = videos.detach().cpu()
        videos = videos.double().numpy() if is_float else videos.numpy()
    videos = np.asarray(videos)
    if videos.dtype == np.uint8:
        if videos.ndim == 4:
            videos = videos[None]
        if videos.ndim != 5 or videos.shape[-1] not in (1, 3):
            raise VidiffError(f"uint8 videos must be (N, F, H, W, 3) or (F, H, W, 3), got shape {videos.shape}")
        return videos.astype(np.float64) / 255.0
    if not np.issubdtype(videos.dtype, np.floating):
        raise VidiffError(f"videos must be uint8 (0..255) or float (in [-1, 1]), got dtype {videos.dtype}")
    if videos.ndim == 4:
        videos = videos[None]
    if videos.ndim != 5 or videos.shape[1] not in (1, 3):
        raise VidiffError(f"float videos must be (N, C, F, H, W) or (C, F, H, W) with C = 1 or 3, "
                          f"got shape {videos.shape}")
    lo, hi = float(videos.min()), float(videos.max())
    if lo < -1.001 or hi > 1.001 or not np.isfinite(lo + hi):
        raise VidiffError(f"float videos must lie in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]")
    return (np.clip(videos.astype(np.float64), -1, 1).transpose(0, 2, 3, 4, 1) + 1) / 2  # (N, F, H, W, C)


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_videos(a), as_videos(b)
    if a.shape != b.shape:
        raise VidiffError(f"videos to compare must have the same shape, got {a.shape[1:]} x {len(a)} "
                          f"and {b.shape[1:]} x {len(b)} (N, F, H, W, C)")
    return a, b


def psnr(a, b) -> np.ndarray:
    """Peak signal-to-noise ratio per video, in dB: 10 log10(1 / MSE) with the MSE over all frames and pixels.

    Returns (N,); identical videos give +inf.
    """
    a, b = _pair(a, b)
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(1.0 / mse)


def _gaussian_taps(sigma: float = SSIM_SIGMA, radius: int = SSIM_RADIUS) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _blur_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter over the last two axes, keeping only positions where the window fits.

    (..., H, W) -> (..., H - 2r, W - 2r). Dropping the border is what scikit-image does too, so no padding
    rule enters the result.
    """
    k = len(taps)
    x = np.lib.stride_tricks.sliding_window_view(x, k, axis=-2) @ taps  # (..., H-2r, W)
    return np.lib.stride_tricks.sliding_window_view(x, k, axis=-1) @ taps  # (..., H-2r, W-2r)


def ssim(a, b) -> np.ndarray:
    """Structural similarity (Wang et al. 2004, Eq. 13) per video: the mean SSIM map over frames and channels.

    Gaussian 11x11 window (sigma 1.5), K1 = 0.01, K2 = 0.03, data range 1, population (not sample)
    statistics; border pixels where the window does not fit are left out. This equals scikit-image's
    `structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1, channel_axis=-1)` on each frame, averaged over frames. Frames must be at least 11x11.
    Returns (N,) in [-1, 1].
    """
    a, b = _pair(a, b)
    if min(a.shape[2:4]) < 2 * SSIM_RADIUS + 1:
        raise VidiffError(f"SSIM needs frames of at least {2 * SSIM_RADIUS + 1}x{2 * SSIM_RADIUS + 1} pixels, "
                          f"got {a.shape[2]}x{a.shape[3]}")
    taps = _gaussian_taps()
    c1, c2 = (SSIM_K1 * 1.0) ** 2, (SSIM_K2 * 1.0) ** 2
    out = np.empty(len(a))
    for i in range(len(a)):  # one video at a time keeps memory flat for large N
        x, y = a[i].transpose(0, 3, 1, 2), b[i].transpose(0, 3, 1, 2)  # (F, C, H, W)
        mx, my = _blur_valid(x, taps), _blur_valid(y, taps)
        vx = _blur_valid(x * x, taps) - mx * mx
        vy = _blur_valid(y * y, taps) - my * my
        cxy = _blur_valid(x * y, taps) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        out[i] = s.mean()
    return out


# ----------------------------------------------------------------------------------------------
# Frechet distance (FID: Heusel et al. 2017; FVD: Unterthiner et al. 2018)


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64. Needs N >= 2."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise VidiffError(f"need features of shape (N, D) with N >= 2, got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix via its eigendecomposition."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance_from_statistics(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2) (Dowson & Landau 1982):

        |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)).

    The trace of the matrix square root is computed as the sum of the square roots of the eigenvalues of
    sigma1^(1/2) sigma2 sigma1^(1/2), a symmetric PSD matrix similar to sigma1 sigma2. This avoids the
    complex round-off of a general `sqrtm` of the non-symmetric product and works for singular covariances
    (fewer samples than feature dimensions).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise VidiffError(f"feature statistics do not match: means {mu1.shape} and {mu2.shape}, "
                          f"covariances {s1.shape} and {s2.shape}")
    r1 = _psd_sqrt(s1)
    eig = np.linalg.eigvalsh(r1 @ s2 @ r1)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)
    return max(value, 0.0)  # round-off can give -1e-12 for identical sets


def frechet_distance(features_a, features_b) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N1, D) and (N2, D)."""
    return frechet_distance_from_statistics(*feature_statistics(features_a), *feature_statistics(features_b))


# ----------------------------------------------------------------------------------------------
# Temporal consistency


def flicker(videos) -> np.ndarray:
    """Global flicker per video: mean over frame pairs and channels of |m_{t+1} - m_t|, where m_t is the
    spatial mean of a channel of frame t, in [0, 1] units.

    Moving objects leave a frame's mean colour unchanged, so motion scores 0; a brightness pulse, a
    colour change or an object that (dis)appears does not. Local, motion-compensated consistency is
    `warping_error`'s job. Returns (N,).
    """
    v = as_videos(videos)
    if v.shape[1] < 2:
        raise VidiffError("flicker needs videos with at least 2 frames")
    means = v.mean(axis=(2, 3))  # (N, F, C)
    return np.abs(np.diff(means, axis=1)).mean(axis=(1, 2))


def _palette_labels(videos, palette, threshold: float, who: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Object pixels (brightest channel > threshold, [0, 1] units) and the index of each pixel's nearest palette
    colour: (obj (N, F, H, W) bool, label (N, F, H, W) int, K)."""
    if palette is None:
        from vidiff.data.shapes import COLORS

        palette = list(COLORS.values())
    pal = np.asarray(palette, dtype=np.float64)  # (K, 3)
    v = as_videos(videos)  # (N, F, H, W, 3)
    if v.shape[-1] != pal.shape[1]:
        raise VidiffError(f"{who} needs {pal.shape[1]}-channel videos, got {v.shape[-1]} channels")
    # nearest palette colour: argmin_k |p_k|^2 - 2 v.p_k (no (N, F, H, W, K, 3) difference tensor)
    label = ((pal**2).sum(-1) - 2 * v @ pal.T).argmin(-1)  # (N, F, H, W)
    return v.max(-1) > threshold, label, len(pal)


def colour_drift(videos, palette=None, threshold: float = 0.5) -> np.ndarray:
    """How much the colours of a clip's objects change along it, for data drawn from a known palette (the
    `shapes` colours by default). Pixels whose brightest channel exceeds `threshold` ([0, 1] units) are objects;
    each is labelled with the nearest palette colour; per frame, the total-variation distance between that
    frame's histogram of labels and the clip's mean histogram (over frames with object pixels) is averaged.
    0: every frame shows the same colours in the same proportions; an object turning from red to green
    halfway through a clip scores 0.5. Videos without object pixels score 0. Returns (N,).
    """
    obj, label, k = _palette_labels(videos, palette, threshold, "colour_drift")
    hist = np.stack([(obj & (label == i)).sum((2, 3)) for i in range(k)], -1).astype(np.float64)  # (N, F, K)
    total = hist.sum(-1, keepdims=True)  # (N, F, 1)
    hist = hist / np.maximum(total, 1)
    present = total[..., 0] > 0  # (N, F)
    n = np.maximum(present.sum(1), 1)  # (N,)
    mean = (hist * present[..., None]).sum(1, keepdims=True) / n[:, None, None]
    tv = 0.5 * np.abs(hist - mean).sum(-1)  # (N, F)
    return (tv * present).sum(1) / n


def colour_pixels(videos, palette=None, threshold: float = 0.5, per_frame: bool = False) -> np.ndarray:
    """Object pixels (as in `colour_drift`) per frame nearest to each palette colour, averaged over each clip's
    frames: (N, K), or (N, F, K) frame by frame with `per_frame`. In `shapes` clips every object has its own colour,
    so the number of colours with more than a few pixels counts a clip's objects (an object whose colour drifts
    counts twice)."""
    obj, label, k = _palette_labels(videos, palette, threshold, "colour_pixels")
    counts = np.stack([(obj & (label == i)).sum((2, 3)) for i in range(k)], -1)  # (N, F, K)
    return counts if per_frame else counts.mean(1)


def colour_centroids(videos, palette=None, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Where each palette colour sits, frame by frame: the centroid (y, x) in pixel indices (the first pixel's centre
    is 0) of the object pixels (as in `colour_drift`) nearest to each colour, (N, F, K, 2), and their count,
    (N, F, K) (centroid 0 where the count is 0). In `shapes` clips each object has its own colour, so these are the objects' centres (of the visible part)."""
    obj, label, k = _palette_labels(videos, palette, threshold, "colour_centroids")
    m = np.stack([obj & (label == i) for i in range(k)], 2).astype(np.float64)  # (N, F, K, H, W)
    mass = m.sum((3, 4))  # (N, F, K)
    ys, xs = np.arange(m.shape[3], dtype=np.float64), np.arange(m.shape[4], dtype=np.float64)
    cy = (m.sum(4) * ys).sum(3) / np.maximum(mass, 1)
    cx = (m.sum(3) * xs).sum(3) / np.maximum(mass, 1)
    return np.stack([cy, cx], -1), mass


def colour_pieces(videos, palette=None, threshold: float = 0.5, min_pixels: int = 3) -> np.ndarray:
    """Into how many pieces each palette colour falls, frame by frame: the connected regions (8-neighbourhood) of the
    object pixels (as in `colour_drift`) nearest to each colour that have at least `min_pixels` pixels, (N, F, K) int.
    In `shapes` clips each object has its own colour and is one convex shape, so a real object is one piece (or
    none, hidden); an object drawn in several fragments counts each."""
    import cv2

    obj, label, k = _palette_labels(videos, palette, threshold, "colour_pieces")
    N, F = obj.shape[:2]
    out = np.zeros((N, F, k), dtype=np.int64)
    for n in range(N):
        for f in range(F):
            for i in range(k):
                mask = (obj[n, f] & (label[n, f] == i)).astype(np.uint8)
                if mask.sum() < min_pixels:
                    continue
                count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
                out[n, f, i] = int((stats[1:, cv2.CC_STAT_AREA] >= min_pixels).sum())  # (row 0: the background)
    return out


def colour_frequencies(videos, palette=None, threshold: float = 0.5) -> np.ndarray:
    """Which colours a set of clips shows: the fraction of all object pixels (as in `colour_drift`) nearest to
    each palette colour, pooled over the clips. Returns (K,) summing to 1 (zeros if there is no object pixel).
    Real `shapes` clips spread evenly over the six colours; a model that draws mostly one colour does not.
    """
    counts = colour_pixels(videos, palette, threshold).sum(0)
    return counts / max(counts.sum(), 1)


def centroid_steps(videos, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For clips of objects on a dark background: pixels whose brightest channel exceeds `threshold` ([0, 1] units)
    are objects. Returns (step, both, mass): the distance in pixels between the centroids of the object pixels of
    frames f and f + 1 (N, F-1), whether both frames have object pixels (N, F-1), and object pixels per frame (N, F).
    """
    v = as_videos(videos)  # (N, F, H, W, C)
    obj = (v.max(-1) > threshold).astype(np.float64)  # (N, F, H, W)
    mass = obj.sum((2, 3))  # (N, F)
    ys, xs = np.arange(obj.shape[2]), np.arange(obj.shape[3])
    cy = (obj.sum(3) * ys).sum(2) / np.maximum(mass, 1)  # (N, F)
    cx = (obj.sum(2) * xs).sum(2) / np.maximum(mass, 1)
    step = np.hypot(np.diff(cy, axis=1), np.diff(cx, axis=1))  # (N, F-1)
    both = (mass[:, 1:] > 0) & (mass[:, :-1] > 0)
    return step, both, mass


def object_motion(videos, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For clips of objects on a dark background (the `shapes` data): pixels whose brightest channel exceeds
    `threshold` ([0, 1] units) are objects. Returns (empty, speed, pairs), each (N,): whether a clip has no object
    pixel in any frame; the mean distance in pixels between the centroids of the object pixels of consecutive
    frames, over the `pairs` pairs of frames that both have object pixels (speed 0 where there are none; weight by
    `pairs` to pool clips). Frozen objects score 0; objects moving at constant velocity score their speed (plus
    rasterisation jitter of a fraction of a pixel).
    """
    step, both, mass = centroid_steps(videos, threshold)
    speed = (step * both).sum(1) / np.maximum(both.sum(1), 1)
    return ~(mass > 0).any(1), speed, both.sum(1)


def _gray_upscaled(frame: np.ndarray) -> np.ndarray:
    import cv2

    gray = frame.mean(axis=-1) if frame.shape[-1] == 3 else frame[..., 0]
    gray = np.round(gray * 255).astype(np.uint8)
    h, w = gray.shape
    return cv2.resize(gray, (w * FLOW_UPSCALE, h * FLOW_UPSCALE), interpolation=cv2.INTER_LINEAR)


def _flow(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Farneback flow (H, W, 2) in pixels of the original frame: dst(x) ~ src(x + flow(x))."""
    import cv2

    flow = cv2.calcOpticalFlowFarneback(_gray_upscaled(dst), _gray_upscaled(src), None, **FARNEBACK)
    # Back to the original resolution: sample at the centre of each FLOW_UPSCALE x FLOW_UPSCALE block.
    h, w = dst.shape[:2]
    flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA)
    return flow / FLOW_UPSCALE


def _warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """image sampled at x + flow(x) (bilinear) and a mask of the positions that fall inside the frame."""
    import cv2

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + flow[..., 0], gy + flow[..., 1]
    warped = cv2.remap(image.astype(np.float32), mx, my, interpolation=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return warped.reshape(image.shape), inside


def warping_error(videos) -> np.ndarray:
    """Optical-flow warping error per video (Lai et al. 2018, "Learning Blind Video Temporal Consistency").

    For each pair of frames (t, t+1): Farneback flow from t+1 back to t warps frame t onto frame t+1;
    pixels that are occluded (forward-backward flow check of Sundaram et al. 2010: |f_b + f_f(x + f_b)|^2 >
    0.01 (|f_b|^2 + |f_f(x + f_b)|^2) + 0.5) or that map outside the frame are left out; the error is the
    mean over the remaining pixels of the squared RGB distance ||I_{t+1}(x) - I_t(x + f_b(x))||^2 in [0, 1]
    units, averaged over frame pairs. A video that moves consistently scores near 0; flicker, speckle and
    objects that jump or change colour score high. Returns (N,).
    """
    v = as_videos(videos).astype(np.float32)
    if v.shape[1] < 2:
        raise VidiffError("warping error needs videos with at least 2 frames")
    out = np.empty(len(v))
    for i, video in enumerate(v):
        errors = []
        for t in range(video.shape[0] - 1):
            prev, nxt = video[t], video[t + 1]
            back = _flow(prev, nxt)  # nxt(x) ~ prev(x + back(x))
            fwd = _flow(nxt, prev)  # prev(y) ~ nxt(y + fwd(y))
            fwd_at, inside = _warp(fwd, back)  # fwd evaluated at x + back(x)
            mismatch = ((back + fwd_at) ** 2).sum(-1)
            valid = inside & (mismatch <= 0.01 * ((back ** 2).sum(-1) + (fwd_at ** 2).sum(-1)) + 0.5)
            warped, _ = _warp(prev, back)
            diff = ((nxt - warped) ** 2).sum(-1)  # (H, W)
            errors.append(diff[valid].mean() if valid.any() else diff.mean())
        out[i] = float(np.mean(errors))
    return out
