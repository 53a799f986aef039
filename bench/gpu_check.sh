#!/usr/bin/env bash
# The GPU code paths, run for real on a CUDA machine: the demo recipe trained in fp32, bf16 autocast, bf16 +
# torch.compile and a larger batch; DDP over NCCL through torchrun; --resume on the GPU; sampling with the
# pipeline on the GPU. Prints steady-state steps/s and videos/s (from loss.csv, steps 100-300, so compilation
# is not counted) and the sampling time per video at 50 DDIM steps.
#
#   OUT=runs/gpu bash bench/gpu_check.sh
set -u
OUT=${OUT:-runs/gpu_check}; STEPS=${STEPS:-300}; R=$OUT/runs
mkdir -p "$R"
python -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" || exit 1
rate() {  # run-dir batch: steady steps/s from loss.csv (step, loss, lr, grad-norm, it/s, elapsed seconds)
    python - "$1" "$2" <<'PY'
import sys
rows = [l.split(",") for l in open(sys.argv[1] + "/loss.csv").read().split("\n")[1:] if l]
a = next((r for r in rows if int(r[0]) >= 100), rows[0]) if int(rows[-1][0]) > 100 else rows[0]
b = rows[-1]
sps = (int(b[0]) - int(a[0])) / max(1e-9, float(b[-1]) - float(a[-1]))
print(f"{sys.argv[1]}: {sps:.1f} steps/s, {sps * int(sys.argv[2]):.0f} videos/s; final loss {float(b[1]):.4f}")
PY
}
train() {  # name batch overrides...
    local name=$1 batch=$2; shift 2
    timeout 240 python -m vidiff train demo --out "$R/$name" train.steps=$STEPS train.time_budget_minutes=null \
        train.device=cuda train.batch_size=$batch --quiet "$@" > "$R/$name.log" 2>&1 \
        && rate "$R/$name" "$batch" || { echo "$name: FAILED"; tail -5 "$R/$name.log"; }
}
train fp32 4
train bf16-compile 4 train.precision=bf16 train.compile=true
# resume: 300 -> 400 steps on the GPU
timeout 120 python -m vidiff train --resume --out "$R/fp32" --quiet train.steps=$((STEPS + 100)) > "$R/resume.log" 2>&1 \
    && echo "resume: $(tail -n1 "$R/fp32/loss.csv")" || { echo "resume: FAILED"; tail -5 "$R/resume.log"; }
# DDP over NCCL (one process per GPU; here as many as there are)
n=$(python -c "import torch; print(torch.cuda.device_count())")
timeout 180 torchrun --standalone --nproc_per_node=$n -m vidiff train demo --out "$R/ddp" train.steps=100 \
    train.time_budget_minutes=null --quiet > "$R/ddp.log" 2>&1 \
    && echo "ddp over $n GPU(s): $(tail -n1 "$R/ddp/loss.csv")" || { echo "ddp: FAILED"; tail -8 "$R/ddp.log"; }
# sampling on the GPU through the pipeline, 50 DDIM steps, guided
timeout 120 python - "$R/fp32" <<'PY' || echo "sampling: FAILED"
import sys, time, torch
from vidiff.pipeline import VideoPipeline
pipe = VideoPipeline.from_pretrained(sys.argv[1], device="cuda")
for n in (8, 64):
    pipe(num_videos=n, num_inference_steps=5, generator=torch.Generator().manual_seed(0))  # warm-up
    torch.cuda.synchronize(); t = time.perf_counter()
    out = pipe(num_videos=n, num_inference_steps=50, generator=torch.Generator().manual_seed(0), batch_size=n)
    torch.cuda.synchronize(); dt = time.perf_counter() - t
    print(f"sampling {n} videos, 50 DDIM steps on {pipe.device}: {dt:.2f} s, {dt / n * 1000:.0f} ms per video; "
          f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
PY
train bf16 4 train.precision=bf16
train bf16-compile-b32 32 train.precision=bf16 train.compile=true
