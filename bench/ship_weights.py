"""Copy a run's EMA weights and config into vidiff/weights/NAME (the models shipped with the package).

    python bench/ship_weights.py runs/shapes32 --name shapes32
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
    args = p.parse_args()
    from vidiff.config import load_config
    from vidiff.pipeline import VideoPipeline
    from vidiff.training.checkpoint import load_tensors, save_tensors

    run = Path(args.run)
    cfg = load_config(run / "config.json")
    cfg.train.time_budget_minutes = None  # a shipped config describes the model, not a demo budget
    out = ROOT / "vidiff" / "weights" / args.name
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.json")
    summary = json.loads((run / "train_summary.json").read_text()) if (run / "train_summary.json").exists() else {}
    save_tensors(out / "model.safetensors", load_tensors(run / "model.safetensors"),
                 metadata={"source_run": run.name, "step": summary.get("step", "?")})
    VideoPipeline.from_pretrained(out)  # loads: shapes and config agree
    size = (out / "model.safetensors").stat().st_size / 2**20
    print(f"shipped {run} as {out} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()
