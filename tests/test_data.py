import numpy as np
import pytest
import torch

from vidiff.data import BouncingShapes
from vidiff.data.shapes import COLOR_NAMES, SHAPES, bounce


def test_items_are_deterministic_and_well_formed():
    a, b = BouncingShapes(seed=3), BouncingShapes(seed=3)
    item = a[17]
    assert torch.equal(item["video"], b[17]["video"])
    assert not torch.equal(item["video"], BouncingShapes(seed=4)[17]["video"])
    v = item["video"]
    assert v.shape == (3, 16, 32, 32) and v.dtype == torch.float32
    assert v.min() >= -1 and v.max() <= 1 and v.min() == -1  # black background
    n = item["num_objects"]
    assert 1 <= n <= 3
    assert (item["label_shape"][:n] >= 0).all() and (item["label_shape"][n:] == -1).all()
    assert item["centers"].shape == (16, 3, 2) and item["velocity"].shape == (3, 2)
    words = item["caption"].replace(",", "").split()
    assert sum(w in SHAPES for w in words) == n and sum(w in COLOR_NAMES for w in words) == n


def test_colours_are_distinct_and_size_64_works():
    ds = BouncingShapes(size=64, num_frames=8, max_objects=3)
    for i in range(30):
        item = ds[i]
        n = item["num_objects"]
        assert len(set(item["label_color"][:n].tolist())) == n
        assert item["video"].shape == (3, 8, 64, 64)


def test_caption_names_the_rendered_colour():
    ds = BouncingShapes(max_objects=1)
    item = ds[0]
    colour = COLOR_NAMES[item["label_color"][0]]
    assert colour in item["caption"]
    # the brightest channel where the object sits matches the colour name
    cx, cy = item["centers"][0, 0].round().long().tolist()
    rgb = item["video"][:, 0, cy, cx]
    assert rgb.max() > 0.5


def test_bounce_is_elastic_and_stays_inside():
    start, vel = np.array([[2.0, 5.0]]), np.array([[1.5, -0.7]])
    lo, hi = np.array([[1.0, 1.0]]), np.array([[9.0, 9.0]])
    pos = bounce(start, vel, lo, hi, np.arange(40.0))  # (F, 1, 2)
    assert (pos >= lo - 1e-9).all() and (pos <= hi + 1e-9).all()
    speed = np.abs(np.diff(pos, axis=0))
    # away from walls the per-frame displacement equals the velocity; at a wall it folds back
    assert np.isclose(np.median(speed[:, 0, 0]), 1.5) and np.isclose(np.median(speed[:, 0, 1]), 0.7)
    assert (speed[:, 0, 0] <= 1.5 + 1e-9).all()


def test_objects_move_smoothly_in_the_pixels():
    """The rendered centroid of a single object follows its metadata centre to sub-pixel accuracy."""
    ds = BouncingShapes(max_objects=1, num_frames=16)
    item = ds[5]
    mass = ((item["video"] + 1) / 2).sum(0)  # (F, H, W)
    ys, xs = torch.meshgrid(torch.arange(32.0) + 0.5, torch.arange(32.0) + 0.5, indexing="ij")
    cx = (mass * xs).sum((1, 2)) / mass.sum((1, 2))
    cy = (mass * ys).sum((1, 2)) / mass.sum((1, 2))
    centre = item["centers"][:, 0]
    if ds.objects(5)["shapes"][0] != "triangle":  # a triangle's centroid is not its circumcentre
        assert torch.allclose(cx, centre[:, 0], atol=0.25) and torch.allclose(cy, centre[:, 1], atol=0.25)


def test_speed_scale_keeps_the_layout_and_scales_the_motion():
    moving, still, slow = (BouncingShapes(max_objects=2, speed_scale=k)[7] for k in (1.0, 0.0, 0.5))
    assert moving["caption"] == still["caption"] == slow["caption"]
    assert torch.equal(moving["video"][:, 0], still["video"][:, 0])  # the same first frame
    assert torch.equal(still["video"], still["video"][:, :1].expand_as(still["video"]))  # every frame the same
    step = lambda item: (item["centers"][1] - item["centers"][0]).norm(dim=-1)  # noqa: E731  (no bounce in one frame)
    assert torch.allclose(step(slow), step(moving) / 2, atol=1e-4) and step(moving).min() > 0


def test_still_fraction_stops_some_clips_and_leaves_the_others():
    plain, mixed = BouncingShapes(max_objects=2), BouncingShapes(max_objects=2, still_fraction=0.5)
    moved = lambda ds, i: float(np.abs(ds.objects(i)["centers"][-1] - ds.objects(i)["centers"][0]).max())  # noqa: E731
    still = [i for i in range(40) if moved(mixed, i) == 0]
    assert 10 <= len(still) <= 30 and all(moved(plain, i) > 0 for i in still)  # about half, chosen per clip
    for i in set(range(40)) - set(still):  # every other clip is exactly the clip without the option
        assert torch.equal(mixed[i]["video"], plain[i]["video"])
    assert mixed[still[0]]["caption"] == plain[still[0]]["caption"]


def test_min_objects_from_the_config():
    from vidiff.config import DataConfig
    from vidiff.data import build_dataset

    ds = build_dataset(DataConfig(max_objects=3, min_objects=2, length=40), "train")
    counts = {ds[i]["num_objects"] for i in range(40)}
    assert counts == {2, 3}


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        BouncingShapes(max_objects=9)
    with pytest.raises(IndexError):
        BouncingShapes(length=5)[5]
    with pytest.raises(ValueError, match="speed_scale"):
        BouncingShapes(speed_scale=-1)
