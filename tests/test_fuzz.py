"""Hostile inputs (property-based, hypothesis): random and mutated bytes into the video reader, random
YAML/JSON and overrides into the config loader. The only allowed outcomes are a result or a VidiffError:
never another exception, never a hang (each example runs under a SIGALRM watchdog)."""

import json
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidiff.config import load_config
from vidiff.errors import VidiffError
from vidiff.io import probe_video, read_video, write_video

EXAMPLES = 150
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                             HealthCheck.function_scoped_fixture])


class Hang(Exception):
    pass


@contextmanager
def watchdog(seconds: int = 10):
    def fire(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _valid_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for suffix in (".mp4", ".webm", ".gif"):
            path = write_video(Path(d) / f"v{suffix}", frames, fps=8)
            out[suffix] = path.read_bytes()
    return out


VALID = _valid_files()


def _read(data: bytes, suffix: str):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"fuzz{suffix}"
        path.write_bytes(data)
        with watchdog():
            try:
                info = probe_video(path)
                frames, fps = read_video(path, num_frames=min(info.num_frames, 8) or None)
                assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3
            except VidiffError as e:
                assert str(e) and "\n" not in str(e)


@FUZZ
@given(data=st.binary(min_size=0, max_size=4096), suffix=st.sampled_from([".mp4", ".webm", ".gif", ".avi", ".mkv"]))
def test_random_bytes_never_crash_the_reader(data, suffix):
    _read(data, suffix)


@FUZZ
@given(suffix=st.sampled_from(sorted(VALID)), edits=st.lists(
    st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=20),
    cut=st.floats(0.05, 1.0))
def test_mutated_videos_never_crash_the_reader(suffix, edits, cut):
    data = bytearray(VALID[suffix])
    for where, value in edits:  # flip bytes anywhere, header included
        data[int(where * len(data))] = value
    _read(bytes(data[: max(1, int(cut * len(data)))]), suffix)  # and truncate


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                         st.text(max_size=20))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)
known_sections = st.dictionaries(
    st.sampled_from(["data", "model", "diffusion", "train", "masks", "bogus"]),
    st.dictionaries(st.sampled_from(["steps", "lr", "size", "channels", "channel_mults", "objective",
                                     "num_frames", "enabled", "min_snr_gamma", "nope"]), yaml_values, max_size=4),
    max_size=4)


def _load_text(text: str, suffix: str):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"c{suffix}"
        path.write_text(text)
        with watchdog():
            try:
                load_config(path)
            except VidiffError as e:
                assert str(e) and "\n" not in str(e)


@FUZZ
@given(text=st.text(max_size=300))
def test_random_yaml_text(text):
    _load_text(text, ".yaml")


@FUZZ
@given(doc=st.one_of(yaml_values, known_sections))
def test_random_json_documents(doc):
    _load_text(json.dumps(doc), ".json")


@FUZZ
@given(overrides=st.lists(st.text(max_size=30), max_size=4),
       keyed=st.lists(st.tuples(st.sampled_from(["train.steps", "model.channel_mults", "data.size", "diffusion.objective",
                                                 "masks.p_none", "train.lr", "model.head_dim", "train"]),
                                st.text(max_size=12)), max_size=3))
def test_random_overrides(overrides, keyed):
    with watchdog():
        try:
            load_config(None, overrides + [f"{k}={v}" for k, v in keyed])
        except VidiffError as e:
            assert str(e) and "\n" not in str(e)


def test_regression_non_utf8_metadata():
    """Found by the seeded loop below: a mutated webm whose tags are not UTF-8 made PyAV raise
    UnicodeDecodeError on open. The reader now decodes metadata leniently."""
    path = Path(__file__).parent / "data" / "fuzz_bad_metadata.webm"
    _read(path.read_bytes(), ".webm")


def test_seeded_byte_mutations():
    """Plain random byte flips + truncation, many cheap cases (found the crash above when hypothesis did not)."""
    import random

    rng = random.Random(1234)
    outcomes = {"decoded": 0, "error": 0}
    for _ in range(300):
        suffix = rng.choice(sorted(VALID))
        data = bytearray(VALID[suffix])
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data[: max(1, int(rng.uniform(0.3, 1.0) * len(data)))])
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / f"m{suffix}"
            path.write_bytes(data)
            with watchdog():
                try:
                    read_video(path, num_frames=min(probe_video(path).num_frames, 8) or None)
                    outcomes["decoded"] += 1
                except VidiffError:
                    outcomes["error"] += 1
    assert outcomes["decoded"] > 20 and outcomes["error"] > 20  # both paths exercised
