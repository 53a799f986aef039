"""Copy a run's EMA weights and config into vidiff/weights/NAME (the models shipped with the package).

    python bench/ship_weights.py runs/shapes32 --name shapes32
    python bench/ship_weights.py runs/L7 --name shapes32 --step 5000   # the EMA weights of a kept checkpoint
    python bench/ship_weights.py runs/s34/long --name shapes32 sample.guidance_per_label=0   # key=value: config edits
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run folder (config.json + model.safetensors)")
    p.add_argument("--name", default="shapes32")
    p.add_argument("--step", type=int, help="ship the EMA weights of checkpoints/step_N instead of the final ones")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="changes to the shipped config, e.g. sample.guidance_per_label=0 (how the model is sampled)")
    args = p.parse_intermixed_args()  # KEY=VALUE may follow --name
    from vidiff.config import load_config
    from vidiff.errors import VidiffError
    from vidiff.pipeline import VideoPipeline
    from vidiff.training.checkpoint import checkpoint_ema_weights, load_tensors, save_tensors

    run = Path(args.run)
    try:  # everything that can fail on bad input, before anything is written
        cfg = load_config(run / "config.json", args.overrides)
        summary = json.loads((run / "train_summary.json").read_text()) if (run / "train_summary.json").exists() else {}
        weights, step = run / "model.safetensors", summary.get("step", "?")
        if args.step is not None:
            weights, step = checkpoint_ema_weights(run, args.step), args.step
    except VidiffError as e:
        sys.exit(f"error: {e}")
    cfg.train.time_budget_minutes = None  # a shipped config describes the model, not a demo budget
    init_from, cfg.train.init_from = cfg.train.init_from, None  # (nor where its run started: that goes to the metadata)
    out = ROOT / "vidiff" / "weights" / args.name
    metadata = {"source_run": run.name, "step": str(step), **({"init_from": init_from} if init_from else {})}
    if (out / "model.safetensors").exists():  # the weights replaced (perhaps the very ones this run started from)
        import hashlib

        metadata["replaces_sha256"] = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.json")
    save_tensors(out / "model.safetensors", load_tensors(weights), metadata=metadata)
    VideoPipeline.from_pretrained(out)  # loads: shapes and config agree
    size = (out / "model.safetensors").stat().st_size / 2**20
    print(f"shipped {weights} (step {step}) as {out} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()
