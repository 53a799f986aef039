"""The clip cache: prepare (parallel, resumable) -> memory-mapped shards -> CachedClips, plus `vidiff data` CLI."""

import json
import os
import warnings

import numpy as np
import pytest
import torch

from video_factory import SUFFIXES, frame_ids, frames_with_ids, make_bad_files, write_lossless
from vidiff.cli import main
from vidiff.data import build_dataset
from vidiff.data.cache import CachedClips, is_cache, prepare, read_index
from vidiff.data.folder import VideoSkippedWarning
from vidiff.data.inspect import format_report, inspect_source
from vidiff.data.transforms import center_box, crop_resize
from vidiff.errors import VidiffError
from vidiff.io import read_video


@pytest.fixture
def source(tmp_path):
    """Every format (32x24, 20-26 frames, ids offset per video), a short one, a caption and the broken files."""
    root = tmp_path / "src"
    for i, suffix in enumerate(SUFFIXES + ("",)):
        write_lossless(root / ("a" if i % 2 else "b") / f"v{i}{suffix}", frames_with_ids(20 + i, offset=i))
    (root / "a" / "v1.txt").write_text("a caption")
    write_lossless(root / "tiny.mkv", frames_with_ids(3))
    bad = make_bad_files(root / "broken")
    return root, bad


def _prepare(src, out, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VideoSkippedWarning)
        return prepare(src, out, progress=False, **kw)


def test_prepared_clips_equal_the_frames_decoded_directly(source, tmp_path):
    src, bad = source
    out = tmp_path / "cache"
    summary = _prepare(src, out, size=16, frames=4, stride=2, workers=2)  # a process pool
    assert summary["files"] == 7 + 1 + len(bad)
    assert (summary["prepared"], summary["short"], summary["errors"]) == (7, 1, len(bad))
    index = read_index(out)
    assert index["clip_shape"] == [4, 16, 16, 3] and is_cache(out) and not is_cache(src)
    for name, word in bad.items():
        entry = index["files"][f"broken/{name}"]
        assert entry["status"] == "error" and word in entry["reason"]
    assert index["files"]["tiny.mkv"]["status"] == "short"
    ds = CachedClips(out, split="eval")
    assert len(ds.videos) == 7
    total = 0
    for v, rec in enumerate(ds.videos):
        entry = index["files"][rec.name]
        n = entry["frames"]
        assert entry["starts"] == list(range(0, n - 6, 8))  # consecutive 4-frame clips at stride 2 span 8 frames
        assert entry["class"] == rec.name.split("/")[0]
        assert (entry["caption"] == "a caption") == (rec.name == "a/v1.mov")
        for c, start in enumerate(entry["starts"]):
            frames, _ = read_video(src / rec.name, start=start, num_frames=4, stride=2)
            expected = crop_resize(frames, center_box(24, 32), 16)
            assert np.array_equal(ds.clip(v, c), expected), (rec.name, c)  # bit for bit
            total += 1
    assert total == summary["clips"]


def test_prepare_resumes_and_skips_finished_files(source, tmp_path):
    src, bad = source
    out = tmp_path / "cache"
    first = _prepare(src, out, size=16, frames=4, workers=1)
    shards = sorted((out / "shards").iterdir())
    stamps = {p.name: p.stat().st_mtime_ns for p in shards}
    again = _prepare(src, out, size=16, frames=4, workers=1)
    assert again["done_before"] == again["files"] and again["prepared"] == again["errors"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()} == stamps  # nothing rewritten
    assert again["clips"] == first["clips"]

    # Simulate an interrupted run: one file never recorded, its shard half written, a temp file left behind.
    index = json.loads((out / "index.json").read_text())
    lost = index["files"].pop("a/v3.avi")
    (out / "index.json").write_text(json.dumps(index))
    (out / lost["shard"]).write_bytes(b"\0" * 100)
    (out / "shards" / "99999999.u8.tmp").write_bytes(b"\0" * 10)
    resumed = _prepare(src, out, size=16, frames=4, workers=1)
    assert resumed["prepared"] == 1 and resumed["done_before"] == resumed["files"] - 1
    assert not (out / "shards" / "99999999.u8.tmp").exists() and not (out / lost["shard"]).exists()
    assert resumed["clips"] == first["clips"]
    fresh = tmp_path / "fresh"
    _prepare(src, fresh, size=16, frames=4, workers=1)
    a, b = CachedClips(out, split="eval"), CachedClips(fresh, split="eval")
    assert [r.name for r in a.videos] == [r.name for r in b.videos]
    assert all(torch.equal(a[i]["video"], b[i]["video"]) for i in range(len(a)))

    # A source file that changed is prepared again; a finished bad file is not retried.
    write_lossless(src / "a" / "v1.mov", frames_with_ids(40, offset=1))
    changed = _prepare(src, out, size=16, frames=4, workers=1)
    assert changed["prepared"] == 1 and changed["errors"] == 0
    assert read_index(out)["files"]["a/v1.mov"]["clips"] == 10

    with pytest.raises(VidiffError, match="other settings: size 16 \\(now 32\\)"):
        prepare(src, out, size=32, frames=4, progress=False)


def test_short_policies_and_max_clips_in_prepare(tmp_path):
    src = tmp_path / "src"
    write_lossless(src / "short.mkv", frames_with_ids(3, 16, 16))
    write_lossless(src / "long.mkv", frames_with_ids(60, 16, 16))
    out = tmp_path / "loop"
    _prepare(src, out, size=16, frames=5, short="loop", max_clips_per_video=3, workers=1)
    ds = CachedClips(out)
    clips = {r.name: r for r in ds.videos}
    assert clips["long.mkv"].extra["starts"] == [0, 30, 55]  # 12 consecutive clips; 3 kept, spread out
    assert frame_ids(ds.clip([r.name for r in ds.videos].index("short.mkv"), 0)) == [0, 1, 2, 0, 1]
    _prepare(src, tmp_path / "pad", size=16, frames=5, short="pad", workers=1)
    pad = CachedClips(tmp_path / "pad")
    assert frame_ids(pad.clip([r.name for r in pad.videos].index("short.mkv"), 0)) == [0, 1, 2, 2, 2]
    _prepare(src, tmp_path / "fps", size=16, frames=4, fps=4, workers=1)  # 12 fps -> every 3rd frame
    fps = CachedClips(tmp_path / "fps")
    assert frame_ids(fps.clip(0, 1)) == [12, 15, 18, 21] and fps.videos[0].extra["starts"][:2] == [0, 12]


def test_cached_clips_dataset_items_windows_and_errors(source, tmp_path):
    src, _ = source
    out = tmp_path / "cache"
    _prepare(src, out, size=16, frames=6, workers=1)
    train = CachedClips(out, num_frames=4, size=8, seed=3, clips_per_video=5, crop="random", hflip=True,
                        color_jitter=0.2)
    assert len(train) == 7 * 5
    item = train[4]
    assert item["video"].shape == (3, 4, 8, 8) and set(item) == {"video", "caption", "label", "labels", "class_name",
                                                                  "path", "start", "fps"}
    again = CachedClips(out, num_frames=4, size=8, seed=3, clips_per_video=5, crop="random", hflip=True,
                        color_jitter=0.2)
    assert all(torch.equal(train[i]["video"], again[i]["video"]) for i in range(len(train)))
    assert train.classes == ["a", "b"] and "7 usable videos" in train.summary()
    # A window of 4 of the 6 cached frames: its ids follow the recorded start.
    plain = CachedClips(out, num_frames=4, seed=3)
    for i in range(14):
        item = plain[i]
        offset = int(item["path"].split("/")[-1][1])
        frames = ((item["video"].permute(1, 2, 3, 0) + 1) * 127.5).round().byte().numpy()
        assert frame_ids(frames, offset) == [item["start"] + k for k in range(4)]
    with pytest.raises(VidiffError, match="holds clips of 6 frames at 16x16"):
        CachedClips(out, num_frames=8)
    # DataLoader workers reopen the memory maps (they are not pickled).
    loader = torch.utils.data.DataLoader(train, batch_size=5, num_workers=1,
                                         collate_fn=lambda b: torch.stack([x["video"] for x in b]))
    assert next(iter(loader)).shape == (5, 3, 4, 8, 8)
    # A shard truncated mid-run (after it was opened): its items come from the next video, with a warning.
    live = CachedClips(out, seed=1)
    assert live[0]["path"] == "a/v1.mov"
    shard = out / read_index(out)["files"]["a/v1.mov"]["shard"]
    os.truncate(shard, 10)
    with pytest.warns(VideoSkippedWarning, match="a/v1.mov.*truncated"):
        assert live[7]["path"] == "a/v3.avi"
    assert "failed while reading: 1" in live.summary()
    # A shard that vanished before opening: that video is skipped with a warning naming it; the rest loads.
    index = read_index(out)
    os.remove(out / index["files"]["b/v0.mp4"]["shard"])
    with pytest.warns(VideoSkippedWarning) as record:
        left = CachedClips(out)
    assert sorted(str(w.message).split(":")[0] for w in record) == ["skipping a/v1.mov", "skipping b/v0.mp4"]
    assert len(left.videos) == 5  # and the truncated one
    (out / "index.json").write_text("{not json")
    with pytest.raises(VidiffError, match="not a readable vidiff cache"):
        CachedClips(out)


def test_build_dataset_and_train_from_a_cache(source, tmp_path, tiny_config):
    from test_cli import TINY

    src, _ = source
    out = tmp_path / "cache"
    assert main(["data", "prepare", str(src), "--out", str(out), "--size", "16", "--frames", "4", "--workers", "2",
                 "--quiet"]) == 0
    cfg = tiny_config.data
    cfg.dataset = str(out)
    assert isinstance(build_dataset(cfg, "train"), CachedClips) and len(build_dataset(cfg, "eval")) == 7
    cfg.frame_stride = 3
    with pytest.raises(VidiffError, match="prepared with stride 1"):
        build_dataset(cfg)
    run = tmp_path / "run"
    assert main(["train", "demo", *TINY, "train.steps=2", "--data", str(out), "--workers", "1", "--out", str(run),
                 "--quiet"]) == 0
    assert (run / "checkpoints").is_dir()
    from vidiff.config import load_config

    saved = load_config(run / "config.json")  # the cache's class folders a and b: a class-conditioned model
    assert saved.data.classes == ("a", "b") and saved.model.num_labels == 2


def test_inspect_lists_formats_and_unreadable_files(source, tmp_path, capsys):
    src, bad = source
    report = inspect_source(src, progress=False)
    assert len(report.infos) == 8 and len(report.errors) == len(bad)
    text = format_report(report, files=True)
    assert "| files | 14 (8 readable, 6 unreadable) |" in text
    for word in ("h264", "ffv1", "vp9", "png", "gif", "32x24", "| fps |", "total duration"):
        assert word in text
    for name, reason in bad.items():
        assert any(line.startswith(f"  broken/{name}: ") and reason in line for line in text.splitlines())
    assert main(["data", "inspect", str(src), "--quiet"]) == 0
    assert "unreadable (6):" in capsys.readouterr().out
    # --deep also finds a file whose data ends early (its header is fine)
    from video_factory import make_truncated_avi

    make_truncated_avi(src / "cut.avi")
    assert not any(n == "cut.avi" for n, _ in inspect_source(src, progress=False).errors)
    deep = inspect_source(src, deep=True, progress=False)
    assert any(n == "cut.avi" and "truncated" in r for n, r in deep.errors)
    out = tmp_path / "cache"
    _prepare(src, out, size=16, frames=4, workers=1)
    assert main(["data", "inspect", str(out)]) == 0
    cache_text = capsys.readouterr().out
    assert "| clip | 4 frames x 16x16, stride 1" in cache_text and "broken/text.mp4" in cache_text
    assert main(["data", "inspect", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
