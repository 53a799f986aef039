"""`vidiff report`: one self-contained HTML file that shows a run to a person.

Everything is embedded (images as PNG/GIF data: URIs, videos as H.264 mp4 data: URIs; no scripts, no
external files or fonts), so the file can be mailed, attached to an issue or opened offline. Sections,
each present only when its input exists in the run folder:

- samples: up to 16 generated videos playing together (RUN/eval/samples.npy, written by `vidiff eval`,
  else RUN/samples/samples.npy from `vidiff sample`), next to real clips of the run's held-out data;
- metrics: metrics.json from `vidiff eval`, each value beside its real-data baseline, with the protocol;
- training: the loss curve and learning rate from loss.csv (a matplotlib PNG) and the last preview gif;
- tasks: task results from RUN/tasks.json, a mapping {task: {metric: value}};
- config: config.json.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from vidiff.errors import VidiffError

MAX_VIDEOS = 16
SHOW_SCALE = 4  # 32x32 clips are shown at 128x128 (the browser scales them up, pixelated)
VIDEO_SCALE = 2  # ...from videos encoded at 2x: H.264's 4:2:0 chroma then still has one sample per clip pixel

METRIC_INFO = {  # name -> (title, what it measures)
    "fvd_shapes": ("FVD-shapes", "Frechet distance of shapes-classifier features, generated vs real clips"),
    "fvd": ("FVD (I3D)", "Frechet Video Distance with I3D Kinetics-400 features"),
    "flicker": ("Flicker", "frame-to-frame change of each frame's mean colour"),
    "warp": ("Warping error", "squared error after warping each frame onto the next with optical flow"),
    "colour_drift": ("Colour drift", "how much the colours of a clip's objects change along it (shapes palette)"),
}

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;
color:#1d1d1f;background:#fafafa}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.meta{color:#555}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.35em .7em;
text-align:left;vertical-align:top}th{background:#eee}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f0f0f0;padding:.8em;overflow:auto;font-size:.85em;max-height:30em}
figure{display:inline-block;margin:0 1.5em 1em 0;vertical-align:top}figcaption{color:#555;font-size:.9em}
img.pixel,video.pixel{image-rendering:pixelated;background:#282828}.empty{color:#777;font-style:italic}
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _video_uri(frames: np.ndarray, fps: float = 8.0) -> str:
    """uint8 (F, H, W, 3) -> an H.264 mp4 data: URI (written by vidiff.io, the one place that encodes video)."""
    from vidiff.io import write_video

    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(Path(tmp) / "v.mp4", frames, fps=fps)
        return data_uri(path.read_bytes(), "video/mp4")


def _png_uri(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=True)
    return data_uri(buf.getvalue(), "image/png")


def _video_block(videos: np.ndarray, caption: str) -> str:
    """A figure with the videos tiled and playing together, and below it a png with one row of frames per video."""
    from vidiff.io import frame_grid, video_grid

    columns = min(len(videos), 8)
    tiled = video_grid(videos, columns=columns)
    h, w = tiled.shape[1:3]
    tiled = tiled.repeat(VIDEO_SCALE, axis=1).repeat(VIDEO_SCALE, axis=2)
    grid = frame_grid(videos[:4])
    return (f'<figure><video class="pixel" src="{_video_uri(tiled)}" width="{w * SHOW_SCALE}" '
            f'height="{h * SHOW_SCALE}" autoplay loop muted playsinline></video><figcaption>'
            f'{html.escape(caption)} ({len(videos)} videos)</figcaption></figure>\n<figure><img class="pixel" '
            f'src="{_png_uri(grid)}" alt="frames of {html.escape(caption)}" width="{grid.shape[1] * 2}" '
            f'height="{grid.shape[0] * 2}"><figcaption>the frames of the first {min(len(videos), 4)}, one row per '
            f'video</figcaption></figure>')


def read_loss_csv(path: Path) -> dict[str, np.ndarray]:
    """loss.csv (step, loss, lr, grad_norm, videos_per_s, seconds) -> column arrays."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    cols = {}
    for key in rows[0]:
        try:
            cols[key] = np.array([float(r[key]) for r in rows])
        except (TypeError, ValueError):
            continue
    return cols


def loss_plot_png(cols: dict[str, np.ndarray]) -> bytes:
    """The loss curve (log scale, raw and smoothed) and the learning rate, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step, loss = cols["step"], cols["loss"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), dpi=100, gridspec_kw={"width_ratios": [2.2, 1]})
    ax = axes[0]
    ax.plot(step, loss, color="#9bb8d9", lw=1, label="loss (per log interval)")
    if len(loss) >= 5:  # exponential moving average for the trend, ~1/10 of the curve wide
        alpha, s, smooth = 2 / (max(len(loss) // 10, 2) + 1), loss[0], []
        for v in loss:
            s = alpha * v + (1 - alpha) * s
            smooth.append(s)
        ax.plot(step, smooth, color="#1f4e89", lw=2, label="smoothed")
    if np.all(loss > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper right")
    ax = axes[1]
    if "lr" in cols:
        ax.plot(step, cols["lr"], color="#b5651d")
        ax.set_ylabel("learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _metrics_section(metrics: dict) -> str:
    rows = []
    for name, m in metrics.get("metrics", {}).items():
        title, what = METRIC_INFO.get(name, (name, ""))
        better = "lower is better" if m.get("lower_is_better", True) else "higher is better"
        rows.append(f"<tr><td><b>{html.escape(title)}</b><br><small>{html.escape(what)}; {better}</small></td>"
                    f"<td class=num>{_fmt(m.get('value'))}</td><td class=num>{_fmt(m.get('baseline'))}</td>"
                    f"<td><small>{html.escape(m.get('baseline_is', ''))}</small></td></tr>")
    samples = metrics.get("samples", {})
    how = ", ".join(f"{k} {samples[k]}" for k in ("sampler", "steps", "eta", "seed") if k in samples)
    how = html.escape(how or str(samples.get("source")))
    dataset = html.escape(str(metrics.get("real", {}).get("dataset")))
    head = (f"<p class=meta>N = {metrics.get('num_videos')} generated videos ({how})"
            f" against N held-out real clips of '{dataset}'; model step "
            f"{_fmt(metrics.get('model_step'))}; computed in {_fmt(metrics.get('seconds'))} s by vidiff "
            f"{html.escape(str(metrics.get('vidiff_version')))}.</p>")
    protocol = {name: m.get("protocol") for name, m in metrics.get("metrics", {}).items()}
    return (head + "<table><tr><th>metric</th><th>this run</th><th>baseline</th><th>baseline is</th></tr>"
            + "".join(rows) + "</table><details><summary>protocol of each metric</summary><pre>"
            + html.escape(json.dumps(protocol, indent=1)) + "</pre></details>")


def _tasks_section(tasks: dict) -> str:
    rows = []
    for task, values in tasks.items():
        if isinstance(values, dict):
            cells = ", ".join(f"{html.escape(str(k))} = {_fmt(v)}" for k, v in values.items())
        else:
            cells = _fmt(values)
        rows.append(f"<tr><td>{html.escape(str(task))}</td><td>{cells}</td></tr>")
    return "<table><tr><th>task</th><th>results</th></tr>" + "".join(rows) + "</table>"


def find_samples(run: Path) -> Optional[Path]:
    """The samples the report shows: eval/samples.npy (what the metrics saw), else samples/samples.npy."""
    for path in (run / "eval" / "samples.npy", run / "samples" / "samples.npy"):
        if path.is_file():
            return path
    return None


def build_report(run: str | Path, out: Optional[str | Path] = None, max_videos: int = MAX_VIDEOS,
                 real: bool = True) -> Path:
    """Write the HTML report of a run folder (default: RUN/report.html) and return its path."""
    run = Path(run)
    if not run.is_dir():
        raise VidiffError(f"run folder not found: {run}")
    if not (run / "config.json").is_file() and not (run / "metrics.json").is_file():
        raise VidiffError(f"{run} is not a vidiff run: it has neither config.json nor metrics.json")
    out = Path(out) if out is not None else run / "report.html"
    sections: list[tuple[str, str]] = []

    cfg_data = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else None
    samples_path = find_samples(run)
    if samples_path is not None:
        videos = np.load(samples_path, mmap_mode="r", allow_pickle=False)
        if videos.dtype != np.uint8 or videos.ndim != 5:
            raise VidiffError(f"{samples_path} is not a uint8 (N, F, H, W, 3) array")
        body = _video_block(np.ascontiguousarray(videos[:max_videos]),
                            f"generated, from {samples_path.relative_to(run)}")
        if real and cfg_data is not None:
            from vidiff.config import load_config
            from vidiff.evaluation.evaluate import real_clips

            cfg = load_config(run / "config.json")
            n = min(len(videos), max_videos)
            body += "\n" + _video_block(real_clips(cfg, 0, n), "real held-out clips")
        sections.append(("Samples", body))
    else:
        sections.append(("Samples", '<p class=empty>No samples yet: run <code>vidiff sample RUN</code> or '
                                    '<code>vidiff eval RUN</code>.</p>'))

    if (run / "metrics.json").is_file():
        sections.append(("Metrics", _metrics_section(json.loads((run / "metrics.json").read_text()))))
    else:
        sections.append(("Metrics", '<p class=empty>No metrics.json: run <code>vidiff eval RUN</code>.</p>'))

    training = ""
    if (run / "loss.csv").is_file():
        cols = read_loss_csv(run / "loss.csv")
        if "step" in cols and "loss" in cols and len(cols["step"]):
            last = {k: v[-1] for k, v in cols.items()}
            training += (f'<img src="{data_uri(loss_plot_png(cols), "image/png")}" alt="loss curve" width="1000" '
                         f'height="340"><p class=meta>{int(last["step"])} steps logged; last logged loss '
                         f'{last["loss"]:.4g}' + (f', {last["videos_per_s"]:.1f} videos/s' if "videos_per_s" in last
                                                   else "")
                         + (f', {last["seconds"] / 60:.1f} min of training' if "seconds" in last else "") + ".</p>")
    previews = sorted((run / "previews").glob("*.gif")) if (run / "previews").is_dir() else []
    if previews:
        training += (f'<figure><img class="pixel" src="{data_uri(previews[-1].read_bytes(), "image/gif")}" '
                     f'alt="training preview"><figcaption>last training preview: {html.escape(previews[-1].name)}'
                     f'</figcaption></figure>')
    sections.append(("Training", training or '<p class=empty>No loss.csv or previews in this folder.</p>'))

    if (run / "tasks.json").is_file():
        sections.append(("Tasks", _tasks_section(json.loads((run / "tasks.json").read_text()))))
    if cfg_data is not None:
        sections.append(("Config", f"<pre>{html.escape(json.dumps(cfg_data, indent=2))}</pre>"))

    summary = json.loads((run / "train_summary.json").read_text()) if (run / "train_summary.json").is_file() else {}
    meta = [f"run folder <code>{html.escape(str(run.resolve()))}</code>",
            f"report written {time.strftime('%Y-%m-%d %H:%M')}"]
    if summary:
        meta.insert(1, f"{summary.get('step')} training steps in {summary.get('seconds', 0) / 60:.1f} min, "
                       f"{summary.get('parameters', 0) / 1e6:.2f}M parameters")
    title = f"vidiff run: {run.resolve().name}"
    page = ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<title>{html.escape(title)}</title><link rel=icon href=\"data:,\">"
            f"<meta name=viewport content=\"width=device-width, initial-scale=1\"><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=meta>{' · '.join(meta)}</p>"
            + "".join(f"<h2>{name}</h2>\n{body}\n" for name, body in sections)
            + "</body></html>\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
