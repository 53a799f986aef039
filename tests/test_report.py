"""`vidiff eval` and `vidiff report` end to end on a tiny run, and the report opened in headless Chromium.

The browser test drives Chromium through the DevTools protocol over --remote-debugging-pipe (no network
port, no extra Python package) and skips, saying why, when no chromium binary is installed
(Debian: `apt-get install chromium`; or point VIDIFF_CHROMIUM at a Chrome/Chromium binary).
"""

import base64
import html
import io
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time

import av
import numpy as np
import pytest
import torch
from torch import nn

from vidiff.cli import main
from test_cli import _one_line_error, run_cli  # noqa: E402

# torch >= 2.10 marks TorchScript deprecated; the I3D export these tests stand in for is TorchScript.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")

# 16 frames x 32x32 (what the shapes classifier takes) with a tiny network: trains and samples in seconds.
TINY = ["data.num_frames=16", "data.size=32", "data.max_objects=2", "model.channels=8", "model.channel_mults=[1,2]",
        "model.spatial_attention_levels=[]", "model.temporal_attention_levels=[1]", "model.head_dim=8",
        "model.spacetime_attention_levels=[]",  # the factorized pair of the older presets
        "model.patch_size=2", "diffusion.timesteps=50", "train.steps=3", "train.batch_size=2", "train.log_every=1",
        "train.warmup_steps=1", "train.preview_steps=2", "train.time_budget_minutes=null", "train.init_from=null"]




@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    """A trained tiny run on which `vidiff eval --num 8` has run."""
    run = tmp_path_factory.mktemp("report") / "run"
    assert main(["train", "demo", *TINY, "--out", str(run), "--quiet"]) == 0
    assert main(["eval", str(run), "--num", "8", "--steps", "2", "--quiet"]) == 0
    return run


def test_eval_writes_metrics_with_baselines_and_protocol(evaluated_run):
    report = json.loads((evaluated_run / "metrics.json").read_text())
    assert set(report["metrics"]) == {"fvd_shapes", "flicker", "warp", "colour_drift"}
    for name, m in report["metrics"].items():
        assert np.isfinite(m["value"]) and np.isfinite(m["baseline"]) and m["baseline_is"], name
    fvd = report["metrics"]["fvd_shapes"]
    # a 3-step model is far from the data: its distance must exceed real-vs-real
    assert fvd["value"] > fvd["baseline"] > 0
    assert re.fullmatch(r"[0-9a-f]{64}", fvd["protocol"]["weights_sha256"])
    assert report["metrics"]["colour_drift"]["baseline"] < 0.06  # real shapes clips keep their colours
    assert report["num_videos"] == 8 and report["samples"]["steps"] == 2 and not report["samples"]["reused"]
    assert report["model_step"] == 3
    samples = np.load(evaluated_run / "eval" / "samples.npy")
    assert samples.shape == (8, 16, 32, 32, 3) and samples.dtype == np.uint8


def test_eval_reuses_matching_samples_and_reads_given_ones(evaluated_run, tmp_path):
    first = json.loads((evaluated_run / "metrics.json").read_text())
    out = tmp_path / "again"
    # Same weights and settings: the samples of the first evaluation are reused only from the same folder.
    assert main(["eval", str(evaluated_run), "--num", "4", "--steps", "2", "--metrics", "flicker", "--quiet"]) == 0
    again = json.loads((evaluated_run / "metrics.json").read_text())
    assert again["samples"]["reused"] and set(again["metrics"]) == {"flicker"}
    # --samples: the first N of a given array; flicker of the same videos gives the same numbers
    assert main(["eval", str(evaluated_run), "--num", "8", "--samples", str(evaluated_run / "eval" / "samples.npy"),
                 "--metrics", "flicker,warp", "--out", str(out), "--quiet"]) == 0
    given = json.loads((out / "metrics.json").read_text())
    assert given["metrics"]["flicker"]["value"] == pytest.approx(first["metrics"]["flicker"]["value"])
    assert given["metrics"]["warp"]["baseline"] == pytest.approx(first["metrics"]["warp"]["baseline"])
    assert (evaluated_run / "metrics.json").exists()
    # put the full metrics back for the report tests
    (evaluated_run / "metrics.json").write_text(json.dumps(first))


class _Features(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(3, 4, (1, 4, 4), stride=(1, 4, 4))

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                return_features: bool = False) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3, 4))


def test_eval_fvd_with_a_local_torchscript_file(evaluated_run, tmp_path):
    path = tmp_path / "i3d_stand_in.pt"
    torch.jit.script(_Features()).save(str(path))
    out = tmp_path / "fvd"
    assert main(["eval", str(evaluated_run), "--num", "4", "--steps", "2", "--metrics", "fvd", "--i3d", str(path),
                 "--out", str(out), "--quiet"]) == 0
    fvd = json.loads((out / "metrics.json").read_text())["metrics"]["fvd"]
    assert fvd["value"] > 0 and fvd["baseline"] >= 0
    assert fvd["protocol"]["protocol"] == {"num_frames": 16, "size": 224, "value_range": [-1.0, 1.0],
                                           "resize": fvd["protocol"]["protocol"]["resize"],
                                           "layout": "(N, 3, F, H, W) float32"}
    assert fvd["protocol"]["call_kwargs"] == {"rescale": False, "resize": False, "return_features": True}
    assert fvd["protocol"]["num_real"] == fvd["protocol"]["num_generated"] == 4




def test_eval_and_report_errors_are_one_line(evaluated_run, tmp_path):
    _one_line_error(run_cli("eval", evaluated_run, "--metrics", "fid"), "unknown metric 'fid'", "fvd_shapes")
    _one_line_error(run_cli("eval", evaluated_run, "--metrics", "fvd"), "--i3d")
    _one_line_error(run_cli("eval", evaluated_run, "--metrics", "fvd", "--i3d", tmp_path / "none.pt"), "not found")
    _one_line_error(run_cli("eval", evaluated_run, "--num", "4", "--samples", tmp_path / "none.npy"), "not found")
    _one_line_error(run_cli("eval", tmp_path / "missing"), "run folder not found")
    _one_line_error(run_cli("report", tmp_path / "missing"), "run folder not found")
    _one_line_error(run_cli("eval", evaluated_run, "--num", "1"), "at least 2")


@pytest.fixture(scope="module")
def report_file(evaluated_run):
    assert main(["report", str(evaluated_run)]) == 0
    return evaluated_run / "report.html"


def _uris(page, tag):
    return re.findall(rf'<{tag}[^>]* src="(data:[^"]+)"', page)


def test_report_is_self_contained_and_shows_everything(report_file, evaluated_run):
    from PIL import Image

    page = report_file.read_text()
    for heading in ("Samples", "Metrics", "Training", "Config"):
        assert f"<h2>{heading}</h2>" in page
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing outside the file
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert report_file.stat().st_size < 2_000_000
    metrics = json.loads((evaluated_run / "metrics.json").read_text())["metrics"]
    assert f"{metrics['fvd_shapes']['value']:.4g}" in page and f"{metrics['fvd_shapes']['baseline']:.4g}" in page
    videos = _uris(page, "video")
    assert len(videos) == 2  # generated and real
    for uri in videos:
        assert uri.startswith("data:video/mp4;base64,")
        with av.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as c:
            assert c.streams.video[0].codec_context.name == "h264"
            assert sum(1 for _ in c.decode(video=0)) == 16
    images = _uris(page, "img")
    assert len(images) >= 3  # two frame grids and the loss curve (and the preview gif)
    for uri in images:
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))
        assert img.std() > 5, "an embedded image is blank"
    config = json.loads((evaluated_run / "config.json").read_text())
    assert html.escape(json.dumps(config, indent=2)) in page


def test_report_without_metrics_or_samples_says_what_to_run(evaluated_run, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "loss.csv"):
        shutil.copy(evaluated_run / name, bare / name)
    page = (tmp_path / "r.html")
    assert main(["report", str(bare), "--out", str(page)]) == 0
    text = page.read_text()
    assert "vidiff eval RUN" in text and "vidiff sample RUN" in text and "loss curve" in text


def test_tasks_json_is_shown(evaluated_run, tmp_path):
    run = tmp_path / "with_tasks"
    shutil.copytree(evaluated_run, run)
    (run / "tasks.json").write_text(json.dumps({"predict": {"psnr": 21.5, "ssim": 0.71}}))
    page = (run / "r.html")
    assert main(["report", str(run), "--out", str(page)]) == 0
    text = page.read_text()
    assert "<h2>Tasks</h2>" in text and "psnr = 21.5" in text and "ssim = 0.71" in text


# ----------------------------------------------------------------------------------------------
# A real browser


def _find_chromium():
    env = os.environ.get("VIDIFF_CHROMIUM")
    if env:
        return env if shutil.which(env) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class DevTools:
    """Chrome DevTools protocol over --remote-debugging-pipe: JSON messages ending in NUL, on fds 3 (in) and 4 (out)."""

    def __init__(self, binary, user_data_dir):
        self._to_r, self._to_w = os.pipe()
        self._from_r, self._from_w = os.pipe()
        to_r, from_w = self._to_r, self._from_w

        def child_fds():  # in the child: chromium reads commands on fd 3 and writes replies on fd 4
            a, b = os.dup(to_r), os.dup(from_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--mute-audio", "--autoplay-policy=no-user-gesture-required",
                "--window-size=1200,900", f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe",
                "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=child_fds, pass_fds=(3, 4))
        os.close(self._to_r)
        os.close(self._from_w)
        self.events, self._replies, self._next_id = [], queue.Queue(), 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        buf = b""
        while True:
            chunk = os.read(self._from_r, 1 << 16)
            if not chunk:
                self._replies.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                (self._replies.put(msg) if "id" in msg else self.events.append(msg))

    def send(self, method, params=None, session=None, timeout=60):
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            reply = self._replies.get(timeout=max(deadline - time.time(), 0.1))
            if reply is None:
                raise RuntimeError("chromium closed the DevTools pipe")
            if reply["id"] == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def wait_event(self, method, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(e.get("method") == method for e in self.events):
                return
            time.sleep(0.05)
        raise TimeoutError(f"no {method} within {timeout} s")

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_w)


MEDIA_STATUS_JS = """(async () => {
  const imgs = [...document.images].map(i => ({ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth}));
  const vids = await Promise.all([...document.querySelectorAll('video')].map(v => new Promise(res => {
    const t0 = performance.now();
    const check = () => {
      const ok = v.readyState >= 2 && v.videoWidth > 0 && v.currentTime > 0;
      if (ok || v.error || performance.now() - t0 > 15000)
        res({ok: ok, ready: v.readyState, w: v.videoWidth, t: v.currentTime, err: v.error ? v.error.code : null});
      else setTimeout(check, 100);
    };
    check();
  })));
  return JSON.stringify({imgs, vids});
})()"""


def _open_in_chromium(page, tmp_path):
    """Load `page` in headless Chromium: per-image and per-video status, console/page errors, a screenshot."""
    binary = _find_chromium()
    if binary is None:
        pytest.skip("no chromium binary found (install Debian's `chromium` package or set VIDIFF_CHROMIUM)")
    browser = DevTools(binary, tmp_path / "profile")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        browser.wait_event("Page.loadEventFired")
        status = browser.send("Runtime.evaluate", {"expression": MEDIA_STATUS_JS, "awaitPromise": True,
                                                   "returnByValue": True}, session=session, timeout=60)
        media = json.loads(status["result"]["value"])
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
        errors = [e for e in browser.events
                  if e.get("method") == "Runtime.exceptionThrown"
                  or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
                  or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    finally:
        browser.close()
    return media, errors, base64.b64decode(shot["data"])


def test_report_opens_in_headless_chromium(report_file, tmp_path):
    from PIL import Image

    media, errors, shot = _open_in_chromium(report_file, tmp_path)
    assert len(media["imgs"]) >= 3 and all(i["ok"] for i in media["imgs"]), media["imgs"]
    assert len(media["vids"]) == 2 and all(v["ok"] for v in media["vids"]), media["vids"]  # decoded and playing
    assert errors == [], errors
    image = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(float)
    assert image.shape[0] > 100 and image.std() > 10 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50


def test_the_browser_check_catches_broken_pages(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><link rel=icon href="data:,"></head><body>'
                    '<img src="data:image/png;base64,AAAA"><video src="data:video/mp4;base64,AAAA" muted autoplay>'
                    '</video><img src="missing.png"><script>undefined_function()</script></body></html>')
    media, errors, _ = _open_in_chromium(page, tmp_path)
    assert not any(i["ok"] for i in media["imgs"]) and not media["vids"][0]["ok"]
    kinds = {e["method"] for e in errors}
    assert "Runtime.exceptionThrown" in kinds and "Log.entryAdded" in kinds  # the script error, the missing file
