"""FVD loading and feature protocol with TorchScript modules built here; the shipped shapes classifier."""

import hashlib

import numpy as np
import pytest
import torch
from torch import nn

from vidiff.errors import CheckpointError, VidiffError

# torch >= 2.10 marks TorchScript deprecated; the I3D export these tests stand in for is TorchScript.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")
from vidiff.evaluation import classifier as C
from vidiff.evaluation.fvd import FVDProtocol, compute_fvd, i3d_features, load_i3d, prepare_videos
from vidiff.evaluation.metrics import frechet_distance


class Probe(nn.Module):
    """Has the signature of the StyleGAN-V I3D export and returns what it was given, as 'features'."""

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                return_features: bool = False) -> torch.Tensor:
        n = x.shape[0]
        flat = x.reshape(n, -1)
        stats = torch.stack([torch.full((n,), float(x.shape[1])), torch.full((n,), float(x.shape[2])),
                             torch.full((n,), float(x.shape[3])), torch.full((n,), float(x.shape[4])),
                             flat.min(1).values, flat.max(1).values, flat.mean(1),
                             torch.full((n,), float(rescale)), torch.full((n,), float(resize)),
                             torch.full((n,), float(return_features))], 1)
        return stats


class TinyNet(nn.Module):
    """A plain `forward(x)` feature network: a conv and global pooling."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(3, 6, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean(dim=(2, 3, 4))


@pytest.fixture
def probe_file(tmp_path):
    path = tmp_path / "probe.pt"
    torch.jit.script(Probe()).save(str(path))
    return path


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.jit.script(TinyNet()).save(str(path))
    return path


def test_the_network_sees_the_documented_protocol(probe_file):
    net = load_i3d(probe_file)
    assert net.call_kwargs == {"rescale": False, "resize": False, "return_features": True}
    assert net.sha256 == hashlib.sha256(probe_file.read_bytes()).hexdigest()
    # Constant-colour uint8 videos with 20 frames: value v must arrive as v / 127.5 - 1, 16 frames, 224 x 224.
    levels = np.array([0, 51, 255], np.uint8)
    videos = np.broadcast_to(levels[:, None, None, None, None], (3, 20, 12, 10, 3)).copy()
    feats = i3d_features(net, videos, FVDProtocol(), batch_size=2)
    assert feats.shape == (3, 10)
    np.testing.assert_array_equal(feats[:, :4], [[3, 16, 224, 224]] * 3)
    np.testing.assert_allclose(feats[:, 6], levels / 127.5 - 1, atol=1e-6)
    np.testing.assert_array_equal(feats[:, 7:], [[0, 0, 1]] * 3)  # rescale=False, resize=False, return_features=True


def _bilinear_reference(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres and edge clamping, written out pixel by pixel."""
    h, w = image.shape
    out = np.empty((size, size))
    for i in range(size):
        for j in range(size):
            y = min(max((i + 0.5) * h / size - 0.5, 0), h - 1)
            x = min(max((j + 0.5) * w / size - 0.5, 0), w - 1)
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            dy, dx = y - y0, x - x0
            out[i, j] = ((1 - dy) * (1 - dx) * image[y0, x0] + (1 - dy) * dx * image[y0, x1]
                         + dy * (1 - dx) * image[y1, x0] + dy * dx * image[y1, x1])
    return out


def test_prepare_videos_resizes_bilinearly_with_half_pixel_centres():
    rng = np.random.default_rng(0)
    videos = rng.integers(0, 256, (1, 3, 5, 4, 3), dtype=np.uint8)  # 3 frames of 5 x 4
    protocol = FVDProtocol(num_frames=2, size=9)
    x = prepare_videos(videos, protocol)
    assert x.shape == (1, 3, 2, 9, 9) and x.dtype == torch.float32
    for t in range(2):
        for c in range(3):
            ref = _bilinear_reference(videos[0, t, :, :, c] / 127.5 - 1, 9)
            np.testing.assert_allclose(x[0, c, t].numpy(), ref, atol=1e-5)
    # float input in [-1, 1], library layout, gives the same tensor
    as_float = torch.from_numpy(videos).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    torch.testing.assert_close(prepare_videos(as_float, protocol), x)


def test_fvd_of_a_set_with_itself_is_zero_and_batching_does_not_matter(tiny_file):
    net = load_i3d(tiny_file)
    assert net.call_kwargs == {}  # a plain forward(x) is called as net(x)
    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, (6, 4, 8, 8, 3), dtype=np.uint8)
    fake = np.clip(real.astype(int) + 60, 0, 255).astype(np.uint8)
    protocol = FVDProtocol(num_frames=4, size=16)
    same = compute_fvd(real, real, net, protocol, batch_size=4)
    assert same["value"] == pytest.approx(0, abs=1e-6)
    out = compute_fvd(real, fake, net, protocol, batch_size=4)
    # independent path: the module called directly on the prepared tensor, one batch
    module = torch.jit.load(str(tiny_file))
    with torch.no_grad():
        fr = module(prepare_videos(real, protocol)).double().numpy()
        ff = module(prepare_videos(fake, protocol)).double().numpy()
    assert out["value"] == pytest.approx(frechet_distance(fr, ff), rel=1e-5) and out["value"] > 0
    assert compute_fvd(real, fake, net, protocol, batch_size=1)["value"] == pytest.approx(out["value"], rel=1e-5)
    assert out["weights_sha256"] == hashlib.sha256(tiny_file.read_bytes()).hexdigest()
    assert out["protocol"]["num_frames"] == 4 and out["protocol"]["size"] == 16
    assert out["num_real"] == out["num_generated"] == 6 and out["feature_dim"] == 6


def test_fvd_errors_are_one_line(tmp_path, tiny_file):
    with pytest.raises(VidiffError, match="not found.*downloads nothing"):
        load_i3d(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torchscript archive")
    with pytest.raises(VidiffError, match="cannot load .* as a TorchScript module"):
        load_i3d(junk)
    short = np.zeros((2, 8, 8, 8, 3), np.uint8)
    with pytest.raises(VidiffError, match="uses 16 frames per clip but the clips have 8"):
        i3d_features(load_i3d(tiny_file), short)


# ----------------------------------------------------------------------------------------------
# The shapes classifier (FVD-shapes)


def test_direction_bins_and_mirroring():
    v = np.array([[1, 0], [1, 1], [0, 1], [-1, 0], [0, -1], [1, -1], [0.9, 0.3]])
    assert list(C.direction_bin(v)) == [0, 1, 2, 4, 6, 7, 0]  # E, SE, S (y down), W, N, NE, E
    # mirroring the clip negates vx: the bins must map like the velocities do
    rng = np.random.default_rng(0)
    vel = rng.standard_normal((200, 2))
    mirrored = C.mirror_labels({"direction": torch.as_tensor(C.direction_bin(vel))})["direction"]
    expected = C.direction_bin(vel * np.array([-1, 1]))
    exact = np.abs(np.abs(np.arctan2(vel[:, 1], vel[:, 0])) - np.pi / 2) % (np.pi / 4) > 1e-9  # not on a boundary
    np.testing.assert_array_equal(mirrored.numpy()[exact], expected[exact])


def test_color_channels_separate_the_objects():
    model = C.ShapesClassifier(C.ShapesClassifierConfig())
    ds = C.BouncingShapes(16, 32, 3, seed=5, length=20)
    for i in range(20):
        item, labels = ds[i], C.clip_labels(ds, i)
        ch = model.color_channels(item["video"][None])[0]  # (7, F, H, W)
        mass = ch[:6].flatten(1).sum(1).numpy()
        present = labels["present"]
        # absent colours are empty, except thin anti-aliased seams where two objects' colours mix into a third
        assert mass[~present].max(initial=0) < 0.1 * mass[present].min(), (i, mass, present)
        # each object's channel holds its own pixels: total brightness ~ that of the RGB frame's max channel
        value = ((item["video"] + 1) / 2).amax(0)
        assert abs(float(ch.sum() - value.sum())) < 0.02 * float(value.sum())
    # the moments see motion: a channel whose centroid moves right by 1 pixel a frame
    v = torch.zeros(1, 1, 16, 32, 32)
    for t in range(16):
        v[0, 0, t, 10:14, 4 + t:8 + t] = 1
    m = C.ShapesClassifier.moments(v)[0]  # (F, 7)
    np.testing.assert_allclose(m[:-1, 3].numpy(), 4.0, atol=1e-5)  # x step, in pixels x 4
    np.testing.assert_allclose(m[:, 4].numpy(), 0.0, atol=1e-5)


def test_shipped_classifier_is_accurate_on_held_out_clips():
    model = C.load_shapes_classifier()
    results = model.results["held_out_accuracy"]
    assert min(results["colors"], results["shape"], results["direction"]) >= 0.85
    # Re-measure on clips it has never seen (another seed than its training and test sets).
    ds = C.BouncingShapes(16, 32, 3, seed=123_456, length=48)
    videos, labels = C.render_clips(ds, 48)
    acc = C.attribute_accuracy(C.predict_attributes(model, videos), {k: torch.as_tensor(v) for k, v in labels.items()})
    assert acc["colors"] >= 0.85 and acc["shape"] >= 0.8 and acc["direction"] >= 0.7
    # Garbage is not recognised: uniform noise clips rarely look like exactly the right objects.
    noise = np.random.default_rng(0).integers(0, 256, videos.shape, dtype=np.uint8)
    acc_noise = C.attribute_accuracy(C.predict_attributes(model, noise),
                                     {k: torch.as_tensor(v) for k, v in labels.items()})
    assert acc_noise["all"] < 0.2


def test_fvd_shapes_separates_real_from_broken_clips():
    model = C.load_shapes_classifier()
    a, _ = C.render_clips(C.BouncingShapes(16, 32, 2, seed=11, length=40), 40)
    b, _ = C.render_clips(C.BouncingShapes(16, 32, 2, seed=12, length=40), 40)
    shuffled = b[:, np.random.default_rng(0).permutation(16)]  # right objects, incoherent motion
    fa, fb, fs = (C.shapes_features(model, v) for v in (a, b, shuffled))
    assert fa.shape == (40, model.cfg.feature_dim)
    real_vs_real, real_vs_shuffled = frechet_distance(fa, fb), frechet_distance(fa, fs)
    assert real_vs_shuffled > 2 * real_vs_real
    with pytest.raises(VidiffError, match="16 frames x 32x32"):
        C.shapes_features(model, np.zeros((2, 8, 32, 32, 3), np.uint8))


def test_training_writes_loadable_weights(tmp_path):
    cfg = C.ShapesClassifierConfig(channels=(8, 8, 8, 8), groups=4, train_clips=8, test_clips=4, steps=2,
                                   batch_size=4, num_frames=16, size=32)
    model, results = C.train_shapes_classifier(cfg, tmp_path / "cls", progress=False)
    assert set(results["held_out_accuracy"]) == {"colors", "shape", "direction", "all"}
    loaded = C.load_shapes_classifier(tmp_path / "cls")
    x = torch.rand(2, 3, 16, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded.features(x), model.features(x))
    assert loaded.results["train_clips"] == 8
    with pytest.raises(CheckpointError, match="no shapes classifier"):
        C.load_shapes_classifier(tmp_path / "nowhere")
