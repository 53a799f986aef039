"""Metrics against independent references: scikit-image SSIM/PSNR, scipy sqrtm, closed forms."""

import numpy as np
import pytest
import torch

from vidiff.errors import VidiffError
from vidiff.evaluation import metrics as M


def _smooth_videos(rng, n=2, f=3, h=24, w=20):
    """Random uint8 videos with structure (smooth blobs) and noise: SSIM values well inside (0, 1)."""
    base = rng.random((n, f, h // 4, w // 4, 3))
    big = base.repeat(4, axis=2).repeat(4, axis=3)
    noisy = np.clip(big + 0.15 * rng.standard_normal(big.shape), 0, 1)
    return np.round(noisy * 255).astype(np.uint8)


def _to_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, F, H, W, 3) -> float (N, 3, F, H, W) in [-1, 1], the library layout."""
    return torch.from_numpy(frames).permute(0, 4, 1, 2, 3).double() / 127.5 - 1


def test_psnr_matches_scikit_image_and_takes_both_layouts():
    from skimage.metrics import peak_signal_noise_ratio

    rng = np.random.default_rng(0)
    a, b = _smooth_videos(rng), _smooth_videos(rng)
    ours = M.psnr(a, b)
    ref = [peak_signal_noise_ratio(a[i], b[i], data_range=255) for i in range(len(a))]
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    np.testing.assert_allclose(M.psnr(_to_float(a), _to_float(b)), ref, rtol=1e-10)
    assert M.psnr(a[0], a[0])[0] == np.inf


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    a = _smooth_videos(rng)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    ours = M.ssim(a, b)
    ref = [np.mean([structural_similarity(a[i, t] / 255.0, b[i, t] / 255.0, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=1.0, channel_axis=-1)
                    for t in range(a.shape[1])]) for i in range(len(a))]
    assert 0.1 < min(ref) and max(ref) < 0.95  # a case where SSIM is informative, not saturated
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(M.ssim(_to_float(a), _to_float(b)), ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(M.ssim(a, a), 1.0)


def test_ssim_refuses_frames_smaller_than_its_window():
    small = np.zeros((1, 2, 8, 8, 3), np.uint8)
    with pytest.raises(VidiffError, match="at least 11x11"):
        M.ssim(small, small)


def _scipy_frechet(x, y):
    """The textbook formula with scipy.linalg.sqrtm of the (non-symmetric) product, as in pytorch-fid."""
    from scipy import linalg

    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(2)
    d = 8
    x = rng.standard_normal((200, d)) @ rng.standard_normal((d, d))
    y = 0.5 + rng.standard_normal((150, d)) @ rng.standard_normal((d, d))
    ours = M.frechet_distance(x, y)
    assert ours > 1
    np.testing.assert_allclose(ours, _scipy_frechet(x, y), rtol=1e-8)
    np.testing.assert_allclose(M.frechet_distance(y, x), ours, rtol=1e-10)  # symmetric
    assert M.frechet_distance(x, x) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_closed_form_in_one_dimension():
    # For 1-D Gaussians the distance is (m1 - m2)^2 + (s1 - s2)^2.
    x = np.array([-1.0, 1.0, -1.0, 1.0])  # mean 0, unbiased variance 4/3
    y = 3 + 2 * x  # mean 3, variance 4 * 4/3
    s1, s2 = np.sqrt(4 / 3), 2 * np.sqrt(4 / 3)
    assert M.frechet_distance(x[:, None], y[:, None]) == pytest.approx(9 + (s1 - s2) ** 2, rel=1e-12)


def test_frechet_distance_with_fewer_samples_than_dimensions_is_finite():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((10, 32)), rng.standard_normal((10, 32)) + 1
    value = M.frechet_distance(x, y)
    assert np.isfinite(value) and value > 32 * 0.5  # the mean shift alone contributes about 32
    with pytest.raises(VidiffError, match="N >= 2"):
        M.frechet_distance(x[:1], y)


def test_flicker_is_zero_for_motion_and_measures_brightness_jumps():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    moving = np.stack([np.roll(image, t, axis=1) for t in range(5)])[None]  # pure (cyclic) motion
    assert M.flicker(moving)[0] == pytest.approx(0, abs=1e-12)
    pulse = np.zeros((1, 5, 8, 8, 3), np.uint8)
    pulse[:, 1::2] = 102  # 0, 0.4, 0, 0.4, 0 on the [0, 1] scale
    assert M.flicker(pulse)[0] == pytest.approx(0.4, abs=1e-12)


def _texture(rng, size):
    """A smooth random texture in [0, 1] (blurred noise), which optical flow can track."""
    from scipy.ndimage import gaussian_filter

    t = gaussian_filter(rng.random((size, size, 3)), sigma=(2, 2, 0))
    return (t - t.min()) / (t.max() - t.min())


def test_warping_error_small_for_consistent_motion_large_for_flicker():
    rng = np.random.default_rng(5)
    tex = _texture(rng, 64)
    # A 32x32 window sliding 1 pixel per frame over the texture: consistent motion.
    moving = np.stack([tex[10:42, 10 + t:42 + t] for t in range(6)])
    noise = np.stack([_texture(rng, 64)[10:42, 10:42] for t in range(6)])  # unrelated frames
    to_u8 = lambda v: np.round(v * 255).astype(np.uint8)[None]
    still = M.warping_error(to_u8(np.repeat(moving[:1], 6, axis=0)))[0]
    consistent = M.warping_error(to_u8(moving))[0]
    inconsistent = M.warping_error(to_u8(noise))[0]
    assert still < 1e-6  # Farneback returns tiny non-zero flow on static frames
    assert consistent < 2e-3
    assert inconsistent > 10 * consistent


def test_warping_error_ranks_real_clips_below_frame_shuffled_ones():
    from vidiff.data import BouncingShapes

    ds = BouncingShapes(num_frames=8, size=32, max_objects=2, seed=3)
    real = torch.stack([ds[i]["video"] for i in range(4)])  # (N, C, F, H, W) in [-1, 1]
    shuffled = real[:, :, [0, 5, 2, 7, 1, 4, 6, 3]]
    assert M.warping_error(real).mean() * 3 < M.warping_error(shuffled).mean()
    assert M.flicker(real).mean() < 0.01


def test_colour_drift_is_zero_for_moving_objects_and_half_for_a_colour_switch_halfway():
    from vidiff.data import BouncingShapes
    from vidiff.data.shapes import COLORS

    red, green = COLORS["red"], COLORS["green"]
    v = np.zeros((1, 8, 8, 8, 3), np.uint8)
    for t in range(8):  # a 2x2 square moving right, red for 4 frames, then green
        v[0, t, 3:5, t:t + 2] = np.round(np.array(red if t < 4 else green) * 255)
    steady = v.copy()
    steady[0, 4:, ..., :] = np.where(steady[0, 4:].max(-1, keepdims=True) > 0, np.round(np.array(red) * 255), 0)
    assert M.colour_drift(steady)[0] == pytest.approx(0, abs=1e-12)
    assert M.colour_drift(v)[0] == pytest.approx(0.5, abs=1e-12)
    assert M.colour_drift(np.zeros((2, 4, 8, 8, 3), np.uint8)).tolist() == [0, 0]  # nothing to measure
    ds = BouncingShapes(num_frames=16, size=32, max_objects=2, seed=3)
    real = torch.stack([ds[i]["video"] for i in range(8)])
    assert M.colour_drift(real).mean() < 0.05  # anti-aliased edges and occlusions only
    assert M.colour_drift(real[:, [1, 2, 0]]).mean() < 0.05  # off-palette colours still get one label each
    with pytest.raises(VidiffError, match="3-channel"):
        M.colour_drift(real[:, :1])


def test_colour_frequencies_count_object_pixels_per_palette_colour():
    from vidiff.data import BouncingShapes
    from vidiff.data.shapes import COLOR_NAMES, COLORS

    v = np.zeros((2, 4, 8, 8, 3), np.uint8)
    v[0, :, 0:2, 0:2] = np.round(np.array(COLORS["red"]) * 255)  # 16 red pixels
    v[1, :, 4:8, 4:6] = np.round(np.array(COLORS["blue"]) * 255)  # 32 blue pixels
    f = M.colour_frequencies(v)
    assert f.shape == (len(COLORS),)
    assert f[COLOR_NAMES.index("red")] == pytest.approx(1 / 3) and f[COLOR_NAMES.index("blue")] == pytest.approx(2 / 3)
    assert M.colour_frequencies(np.zeros((1, 2, 8, 8, 3), np.uint8)).sum() == 0  # no object pixel
    px = M.colour_pixels(v)  # (N, K) pixels per frame
    assert px[0, COLOR_NAMES.index("red")] == 4 and px[1, COLOR_NAMES.index("blue")] == 8 and px.sum() == 12
    ds = BouncingShapes(num_frames=4, size=32, max_objects=2, seed=3)
    real = torch.stack([ds[i]["video"] for i in range(96)])
    assert M.colour_frequencies(real).min() > 0.05  # every colour of the palette shows up in real clips
    count = (M.colour_pixels(real) >= 10).sum(1)  # objects per clip
    assert (count == torch.stack([ds[i]["label_color"] for i in range(96)]).ge(0).sum(1).numpy()).mean() > 0.9
    with pytest.raises(VidiffError, match="3-channel"):
        M.colour_frequencies(real[:, :1])


def test_colour_centroids_find_the_objects_of_real_clips():
    from vidiff.data import BouncingShapes
    from vidiff.data.shapes import COLOR_NAMES

    v = np.zeros((1, 2, 8, 10, 3), np.uint8)
    v[0, 0, 1:3, 2:4, 0] = 255  # a red 2x2 square centred at (1.5, 2.5)
    v[0, 1, 5:8, 7:10, 2] = 255  # a blue 3x3 square centred at (6, 8)
    c, mass = M.colour_centroids(v)  # (N, F, K, 2), (N, F, K)
    red, blue = COLOR_NAMES.index("red"), COLOR_NAMES.index("blue")
    assert mass[0, 0, red] == 4 and mass[0, 1, blue] == 9 and mass.sum() == 13
    assert c[0, 0, red].tolist() == [1.5, 2.5] and c[0, 1, blue].tolist() == [6.0, 8.0]
    ds = BouncingShapes(num_frames=4, size=32, max_objects=1, seed=4)  # one object: nothing hides it
    for i in range(12):
        item = ds[i]
        k = int(item["label_color"][0])
        c, mass = M.colour_centroids(item["video"][None])
        assert (mass[0, :, k] > 20).all()
        # the dataset's centres are (x, y) in continuous coordinates (pixel i spans [i, i + 1]); a triangle's
        # centroid sits a little off its centre
        assert np.abs(c[0, :, k] + 0.5 - item["centers"][:, 0].numpy()[:, ::-1]).max() < 0.5


def test_colour_pieces_count_the_fragments_of_each_colour():
    from vidiff.data import BouncingShapes
    from vidiff.data.shapes import COLOR_NAMES

    red, blue = COLOR_NAMES.index("red"), COLOR_NAMES.index("blue")
    v = np.zeros((1, 3, 12, 12, 3), np.uint8)
    v[0, 0, 1:4, 1:4, 0] = 255  # one red square
    v[0, 1, 1:4, 1:4, 0] = 255  # two red squares apart, and a red speck of 2 pixels (under min_pixels)
    v[0, 1, 7:10, 7:10, 0] = 255
    v[0, 1, 0, 10:12, 0] = 255
    v[0, 2, 2:4, 2:4, 2] = 255  # two blue squares touching only at a corner: one piece (8-neighbourhood)
    v[0, 2, 4:6, 4:6, 2] = 255
    pieces = M.colour_pieces(v)  # (N, F, K)
    assert pieces.shape == (1, 3, len(COLOR_NAMES))
    assert pieces[0, 0, red] == 1 and pieces[0, 1, red] == 2 and pieces[0, 2, blue] == 1 and pieces[0, 2, red] == 0
    assert pieces.sum() == 4
    ds = BouncingShapes(num_frames=4, size=32, max_objects=1, seed=4)  # one object: one piece in every frame
    for i in range(8):
        item = ds[i]
        assert (M.colour_pieces(item["video"][None])[0, :, int(item["label_color"][0])] == 1).all()


def test_inputs_are_checked():
    with pytest.raises(VidiffError, match=r"\[-1, 1\]"):
        M.psnr(torch.full((3, 2, 8, 8), 2.0), torch.zeros(3, 2, 8, 8))
    with pytest.raises(VidiffError, match="same shape"):
        M.psnr(np.zeros((1, 2, 8, 8, 3), np.uint8), np.zeros((1, 3, 8, 8, 3), np.uint8))
    with pytest.raises(VidiffError, match="uint8"):
        M.flicker(np.zeros((1, 2, 8, 8, 3), np.int32))
    # uint8 and float inputs mean the same thing
    rng = np.random.default_rng(6)
    u8 = rng.integers(0, 256, (2, 3, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_allclose(M.as_videos(u8), M.as_videos(_to_float(u8).float()), atol=1e-6)


def test_object_motion_measures_speed_and_finds_empty_clips():
    from vidiff.data import BouncingShapes

    v = np.zeros((3, 8, 16, 16, 3), np.uint8)
    for t in range(8):
        v[0, t, 4:7, 2 + t:5 + t, 0] = 255  # a 3x3 square moving 1 px per frame to the right
        v[1, t, 4:7, 4:7, 1] = 255  # a frozen square
    v[0, 5] = 0  # one frame without the object: the two pairs around it do not count
    empty, speed, pairs = M.object_motion(v)
    assert empty.tolist() == [False, False, True]
    assert speed.tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-12)
    assert pairs.tolist() == [5, 7, 0]
    step, both, mass = M.centroid_steps(v)  # per pair of frames: what object_motion averages
    assert both[0].tolist() == [True] * 4 + [False] * 2 + [True]
    assert step[0, both[0]].tolist() == pytest.approx([1.0] * 5) and mass[0].tolist() == [9] * 5 + [0] + [9] * 2
    ds = BouncingShapes(num_frames=16, size=32, max_objects=1, seed=3)
    item = ds[0]
    centres = item["centers"][:, 0]  # (F, 2) the true trajectory of the one object
    true_speed = (centres[1:] - centres[:-1]).norm(dim=-1).mean().item()
    e, s, _ = M.object_motion(item["video"])
    assert not e[0] and s[0] == pytest.approx(true_speed, abs=0.35)  # rasterisation jitter only
