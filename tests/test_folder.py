"""VideoFolder: scanning every format, clip sampling, augmentation, bad files, and `train --data` end to end."""

import os
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from video_factory import SUFFIXES, frame_ids, frames_with_ids, make_bad_files, write_lossless
from vidiff.data import build_dataset
from vidiff.data.folder import VideoFolder, VideoSkippedWarning, clip_offsets, find_videos
from vidiff.data.transforms import ClipAugment, apply_augment, sample_augment
from vidiff.errors import VidiffError


def _ids(item) -> list[int]:
    """Frame ids of an item's video (C, F, H, W) in [-1, 1], read back from its uint8 frames."""
    frames = ((item["video"].permute(1, 2, 3, 0) + 1) * 127.5).round().byte().numpy()
    return frame_ids(frames)


def _folder(tmp_path, n=30, suffix=".mkv", count=1, **kw):
    root = tmp_path / "videos"
    for i in range(count):
        write_lossless(root / f"v{i}{suffix}", frames_with_ids(n, 32, 32), **kw)  # square: ids survive the resize
    return root


@pytest.fixture
def mixed(tmp_path):
    """Every format in class folders, a caption, a too-short video and every kind of broken file."""
    root = tmp_path / "mixed"
    for i, suffix in enumerate(SUFFIXES + ("",)):
        folder = root / ("cats" if i % 2 else "dogs")
        write_lossless(folder / f"clip{i}{suffix}", frames_with_ids(20))
    (root / "cats" / "clip1.txt").write_text("a cat\nwalks by\n")
    write_lossless(root / "short.mkv", frames_with_ids(3))
    expected = make_bad_files(root / "broken")
    return root, expected


def test_scan_reads_every_format_and_skips_every_bad_file_with_a_warning(mixed):
    root, expected = mixed
    with pytest.warns(VideoSkippedWarning) as record:
        ds = VideoFolder(root, num_frames=8, size=16, clips_per_video=2, progress=False)
    messages = [str(w.message) for w in record]
    for name in expected:
        assert any(f"broken/{name}" in m for m in messages), name
    assert any("short.mkv" in m and "shorter than a clip" in m for m in messages)
    names = [r.name for r in ds.videos]
    assert len(names) == 7 and len(ds) == 14  # mp4, mov, mkv, avi, webm, gif and a png folder
    assert {n.rsplit(".", 1)[-1] for n in names} >= {"mp4", "mov", "mkv", "avi", "webm", "gif"}
    assert ds.classes == ["cats", "dogs"]
    summary = ds.summary()
    assert f"skipped while scanning: {len(expected)} unreadable, 1 shorter than a clip" in summary
    for i in range(len(ds)):
        item = ds[i]
        assert item["video"].shape == (3, 8, 16, 16) and item["video"].dtype == torch.float32
        assert item["video"].abs().max() <= 1
        rec = ds.videos[i % 7]
        assert item["path"] == rec.name and item["label"] == ds.classes.index(rec.class_name)
    caption = next(ds[i]["caption"] for i in range(7) if ds.videos[i].name == "cats/clip1.mov")
    assert caption == "a cat walks by"
    assert set(ds[0]) == {"video", "caption", "label", "labels", "class_name", "path", "start", "fps"}


def test_clip_count_stride_and_determinism_under_a_seed(tmp_path):
    root = _folder(tmp_path, n=30, count=2)
    ds = VideoFolder(root, num_frames=5, size=16, frame_stride=3, clips_per_video=4, seed=7, progress=False)
    assert len(ds) == 8
    starts = set()
    for i in range(len(ds)):
        item = ds[i]
        ids = _ids(item)
        assert ids == [item["start"] + 3 * k for k in range(5)]  # consecutive clip frames are 3 source frames apart
        assert 0 <= item["start"] <= 30 - 13
        assert item["fps"] == pytest.approx(12 / 3)
        starts.add(item["start"])
    assert len(starts) > 2  # random starts
    again = VideoFolder(root, num_frames=5, size=16, frame_stride=3, clips_per_video=4, seed=7, progress=False)
    other = VideoFolder(root, num_frames=5, size=16, frame_stride=3, clips_per_video=4, seed=8, progress=False)
    assert all(torch.equal(ds[i]["video"], again[i]["video"]) for i in range(len(ds)))
    assert [ds[i]["start"] for i in range(8)] != [other[i]["start"] for i in range(8)]
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_target_fps_resamples_by_time(tmp_path):
    root = _folder(tmp_path, n=30, fps=24)
    ds = VideoFolder(root, num_frames=4, size=16, fps=8, progress=False)  # 24 fps -> every 3rd frame
    item = ds[0]
    assert _ids(item) == [item["start"] + 3 * k for k in range(4)] and item["fps"] == pytest.approx(8)
    ds = VideoFolder(root, num_frames=5, size=16, fps=9.6, progress=False)  # 2.5 source frames per clip frame
    item = ds[3]
    assert _ids(item) == [item["start"] + o for o in (0, 2, 5, 7, 10)]
    assert list(clip_offsets(4, 30 / 10)) == [0, 3, 6, 9]  # no float round-down to 8


def test_eval_split_gives_evenly_spaced_deterministic_clips(tmp_path):
    root = _folder(tmp_path, n=30, count=2)
    ds = VideoFolder(root, num_frames=4, size=16, split="eval", eval_clips_per_video=3, seed=1, progress=False)
    assert len(ds) == 6
    assert [ds[i]["start"] for i in range(6)] == [0, 13, 26, 0, 13, 26]  # 30 - 4 = 26: both ends and the middle
    assert _ids(ds[1]) == [13, 14, 15, 16]
    other_seed = VideoFolder(root, num_frames=4, size=16, split="eval", eval_clips_per_video=3, seed=2, progress=False)
    assert all(torch.equal(ds[i]["video"], other_seed[i]["video"]) for i in range(6))
    one = VideoFolder(root, num_frames=4, size=16, split="eval", progress=False)
    assert one[0]["start"] == 13  # one clip per video: the middle one


@pytest.mark.filterwarnings("ignore::vidiff.data.folder.VideoSkippedWarning")
def test_short_video_policies_and_the_longest_video_error(tmp_path):
    root = tmp_path / "short"
    write_lossless(root / "a.mkv", frames_with_ids(5, 32, 32))
    write_lossless(root / "b.mkv", frames_with_ids(7, 32, 32))
    with pytest.raises(VidiffError) as info:
        VideoFolder(root, num_frames=8, size=16, progress=False)
    message = str(info.value)
    assert "b.mkv" in message and "has 7" in message and "needs 8 frames" in message and "\n" not in message
    with pytest.raises(VidiffError, match=r"longest video .*b.mkv, lasts 0.50 s"):
        VideoFolder(root, num_frames=8, size=16, fps=4, progress=False)
    pad = VideoFolder(root, num_frames=8, size=16, short_videos="pad", split="eval", progress=False)
    assert _ids(pad[0]) == [0, 1, 2, 3, 4, 4, 4, 4]
    loop = VideoFolder(root, num_frames=8, size=16, short_videos="loop", seed=3, progress=False)
    for i in range(6):
        item = loop[i]
        n = 5 if item["path"] == "a.mkv" else 7
        assert _ids(item) == [(item["start"] + k) % n for k in range(8)]
    with pytest.warns(VideoSkippedWarning, match="a.mkv: 5 frames"):
        skip = VideoFolder(root, num_frames=6, size=16, progress=False)
    assert [r.name for r in skip.videos] == ["b.mkv"]


def test_folders_without_usable_videos_fail_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no videos here")
    with pytest.raises(VidiffError, match="no videos found in"):
        VideoFolder(tmp_path / "empty", progress=False)
    make_bad_files(tmp_path / "bad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VideoSkippedWarning)
        with pytest.raises(VidiffError) as info:
            VideoFolder(tmp_path / "bad", progress=False)
    assert "no usable video" in str(info.value) and "all 6 found are unreadable" in str(info.value)
    assert "\n" not in str(info.value)
    from vidiff.cli import main

    assert main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vidiff: error: no videos found in") and err.count("\n") == 1
    with pytest.raises(VidiffError, match="not found"):
        VideoFolder(tmp_path / "nowhere", progress=False)


def test_augmentation_is_identical_on_every_frame_of_a_clip(tmp_path):
    still = np.repeat(frames_with_ids(1), 12, axis=0)  # a still scene: every frame the same
    write_lossless(tmp_path / "still" / "s.mkv", still)
    ds = VideoFolder(tmp_path / "still", num_frames=6, size=16, crop="random", crop_scale=0.5, hflip=True,
                     color_jitter=0.4, clips_per_video=20, progress=False)
    plain = VideoFolder(tmp_path / "still", num_frames=6, size=16, progress=False)
    videos = [ds[i]["video"] for i in range(20)]
    for v in videos:  # (C, F, H, W): the same crop, flip and colours on all frames
        assert all(torch.equal(v[:, 0], v[:, f]) for f in range(1, 6))
    assert len({v[:, 0].numpy().tobytes() for v in videos}) == 20  # yet every clip is augmented differently
    assert not any(torch.equal(v, plain[0]["video"]) for v in videos)


def test_flip_and_jitter_match_a_per_frame_reference():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 20, 30, 3), dtype=np.uint8)
    aug = ClipAugment((5, 2, 21, 18), flip=True, brightness=1.2, contrast=0.7, saturation=1.3)
    out = apply_augment(frames, aug, 8)  # (C, F, 8, 8)
    from PIL import Image

    x = np.stack([np.asarray(Image.fromarray(f).resize((8, 8), Image.Resampling.BILINEAR, box=aug.box))
                  for f in frames]).astype(np.float64) / 255
    x = x[:, :, ::-1]
    x = np.clip(x * 1.2, 0, 1)
    grey = lambda y: (y * [0.299, 0.587, 0.114]).sum(-1, keepdims=True)  # noqa: E731
    x = np.clip(0.7 * x + 0.3 * grey(x).mean(), 0, 1)  # one mean grey for the whole clip
    x = np.clip(1.3 * x + (1 - 1.3) * grey(x), 0, 1)
    expected = torch.from_numpy(x * 2 - 1).permute(3, 0, 1, 2).float()
    assert torch.allclose(out, expected, atol=1e-5)
    # the same number of draws whatever is switched on, so crops agree between settings
    a = sample_augment(np.random.default_rng(1), 20, 30, random_crop=True, hflip=True, color_jitter=0.3)
    b = sample_augment(np.random.default_rng(1), 20, 30, random_crop=True)
    assert a.box == b.box and (b.flip, b.brightness) == (False, 1.0)


def test_files_that_vanish_or_break_mid_run_are_skipped_deterministically(tmp_path):
    root = tmp_path / "run"
    for i in range(4):
        write_lossless(root / f"v{i}.mkv", frames_with_ids(12, 32, 32, offset=i * 12))  # ids tell the videos apart
    make = lambda: VideoFolder(root, num_frames=4, size=16, clips_per_video=2, seed=5, progress=False)  # noqa: E731
    ds, twin, fresh = make(), make(), make()  # all scanned while every file was fine
    os.remove(root / "v1.mkv")
    (root / "v2.mkv").write_text("overwritten by something else")
    with pytest.warns(VideoSkippedWarning) as record:
        items = [ds[i] for i in range(len(ds))]
    messages = [str(w.message) for w in record]
    assert len(messages) == 2 and any("v1.mkv" in m and "file not found" in m for m in messages)
    assert any("v2.mkv" in m and "invalid data" in m for m in messages)
    assert [it["path"] for it in items] == ["v0.mkv", "v3.mkv", "v3.mkv", "v3.mkv"] * 2  # the next usable video
    assert set(ds.failed()) == {"v1.mkv", "v2.mkv"}
    assert "failed while reading: 2" in ds.summary()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VideoSkippedWarning)
        assert all(torch.equal(a["video"], twin[i]["video"]) for i, a in enumerate(items))  # same substitutes
        # Failures inside DataLoader worker processes are counted in the main process too.
        loader = DataLoader(fresh, batch_size=4, num_workers=1,
                            collate_fn=lambda b: torch.stack([x["video"] for x in b]))
        assert sum(len(batch) for batch in loader) == len(fresh)
    assert set(fresh.failed()) == {"v1.mkv", "v2.mkv"}
    for name in ("v0.mkv", "v3.mkv"):
        os.remove(root / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VideoSkippedWarning)
        with pytest.raises(VidiffError, match="every video .* failed"):
            ds[0]


def test_find_videos_ignores_thumbnails_hidden_files_and_symlink_loops(tmp_path):
    write_lossless(tmp_path / "a" / "v.mkv", frames_with_ids(4))
    write_lossless(tmp_path / "a" / "thumbs", frames_with_ids(2))  # a real image sequence in a subfolder
    (tmp_path / "a" / "cover1.png").write_bytes(b"")  # a numbered image beside a video: not a sequence
    write_lossless(tmp_path / ".hidden" / "h.mkv", frames_with_ids(4))
    os.symlink(tmp_path, tmp_path / "a" / "loop")  # a symlink cycle must not hang the scan
    assert [p.relative_to(tmp_path).as_posix() for p in find_videos(tmp_path)] == ["a/thumbs", "a/v.mkv"]


def test_build_dataset_accepts_a_folder(tmp_path, tiny_config):
    root = _folder(tmp_path, n=12, count=2)
    cfg = tiny_config.data
    cfg.dataset, cfg.clips_per_video = str(root), 3
    train, held_out = build_dataset(cfg, "train"), build_dataset(cfg, "eval")
    assert isinstance(train, VideoFolder) and len(train) == 6 and len(held_out) == 2
    assert train[0]["video"].shape == (3, cfg.num_frames, cfg.size, cfg.size)
    cfg.dataset = str(tmp_path / "missing")
    with pytest.raises(VidiffError, match="neither 'shapes' nor an existing"):
        build_dataset(cfg)


def test_train_on_a_generated_folder_end_to_end(tmp_path):
    from test_cli import TINY

    from vidiff.cli import main

    root = tmp_path / "mine"
    for i, suffix in enumerate((".mp4", ".webm", ".gif", "")):
        write_lossless(root / f"c{i % 2}" / f"v{i}{suffix}", frames_with_ids(10, offset=i))
    (root / "broken.mp4").write_text("not a video")
    run = tmp_path / "run"
    preset_sampling = [o for o in TINY if not o.startswith("sample.")]  # the preset's image guidance (shapes32-image)
    with pytest.warns(VideoSkippedWarning, match="broken.mp4"):
        code = main(["train", "demo", *preset_sampling, "train.steps=2", "--data", str(root), "--workers", "1",
                     "--out", str(run), "--quiet"])
    assert code == 0
    assert (run / "checkpoints").is_dir() and (run / "loss.csv").read_text().count("\n") >= 2
    from vidiff.config import load_config

    saved = load_config(run / "config.json")
    assert saved.data.dataset == str(root) and saved.train.num_workers == 1
    # Videos in two class folders: a class-conditioned model that knows the folder names.
    assert saved.data.classes == ("c0", "c1") and saved.model.num_labels == 2
    assert saved.sample.image_guidance == 0 and saved.sample.image_model is None  # that image model knows shapes only
    out = tmp_path / "samples"
    assert main(["sample", str(run), "--num", "3", "--steps", "2", "--prompt", "C1", "--out", str(out),
                 "--quiet"]) == 0
    assert (out / "captions.txt").read_text().splitlines() == [f"sample_{i:03d}: c1" for i in range(3)]
    assert np.load(out / "samples.npy").shape == (3, 4, 16, 16, 3)


def test_class_folders_give_class_labels_in_the_trained_order(tmp_path, tiny_config):
    from vidiff.data import folder_classes
    from vidiff.pipeline import VideoPipeline
    from vidiff.build import build_denoiser

    root = tmp_path / "mine"
    for name in ("dogs", "cats", "cats"):
        write_lossless(root / name / f"{name}{len(list((root / name).glob('*'))) if (root / name).exists() else 0}.mkv",
                       frames_with_ids(8))
    assert folder_classes(root) == ["cats", "dogs"]
    cfg = tiny_config
    cfg.data.dataset, cfg.data.num_frames, cfg.data.clips_per_video = str(root), 4, 1
    data = build_dataset(cfg.data)
    by_class = {item["class_name"]: int(item["labels"][0]) for item in (data[i] for i in range(len(data)))}
    assert by_class == {"cats": 0, "dogs": 1}
    cfg.data.classes = ("dogs", "cats", "birds")  # the order a model was trained with wins over the sorted names
    data = build_dataset(cfg.data)
    assert {item["class_name"]: int(item["labels"][0]) for item in (data[i] for i in range(len(data)))} == \
        {"cats": 1, "dogs": 0}

    cfg.model.num_labels = 3
    pipe = VideoPipeline(build_denoiser(cfg).eval(), cfg, torch.device("cpu"))
    assert pipe.labels_for(["cats", " Birds "]).tolist() == [[1], [2]]
    assert pipe.captions_for(torch.tensor([[0], [2]])) == ["dogs", "birds"]
    random = pipe.dataset_labels(64, seed=0)
    assert random.shape == (64, 1) and set(random.flatten().tolist()) == {0, 1, 2}
    with pytest.raises(VidiffError, match="unknown class 'fish': this model knows dogs, cats, birds"):
        pipe.labels_for(["fish"])


def test_class_conditioning_can_be_turned_off_and_needs_a_folder(tmp_path, capsys):
    from test_cli import TINY

    from vidiff.cli import main
    from vidiff.config import load_config

    root = tmp_path / "mine"
    for name in ("a", "b"):
        write_lossless(root / name / "v.mkv", frames_with_ids(8))
    run = tmp_path / "run"
    assert main(["train", "demo", *TINY, "train.steps=1", "model.num_labels=0", "--data", str(root), "--workers",
                 "0", "--out", str(run), "--quiet"]) == 0
    saved = load_config(run / "config.json")
    assert saved.model.num_labels == 0 and saved.data.classes == ()
    assert main(["sample", str(run), "--num", "1", "--steps", "2", "--prompt", "a", "--quiet"]) == 2
    assert "trained without labels" in capsys.readouterr().err
    assert main(["train", "demo", *TINY, "data.classes=[x,y]", "--out", str(tmp_path / "r2"), "--quiet"]) == 2
    assert "data.classes names 2 classes: they need a video folder" in capsys.readouterr().err
