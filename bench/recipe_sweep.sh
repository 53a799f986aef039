#!/usr/bin/env bash
# Train the demo recipe (and variants) for a fixed number of steps over several seeds at once, and score each run
# with bench/sampler_probe.py. Meant for a GPU, where a demo-sized run takes a minute instead of ten; on a CPU
# give it tiny numbers (STEPS=2 NUM=2 PSTEPS=2) to check it.
#
#   OUT=results STEPS=774 SEEDS="0 1 2 3" VARIANTS="scratch img" IMG=path/to/image_model bash bench/recipe_sweep.sh
#
# Variants: scratch (the demo preset), img (the preset from the image model IMG: train.init_from), img-lr1e-3 and
# img-lr5e-4 (the same at that learning rate), img-nc (noise shared half by all frames, diffusion.noise_correlation=0.5,
# as when PYoCo turns an image model into a video model), img-rep (model.temporal_padding=replicate), img-nc-rep,
# img-tmp (only the temporal layers train: train.trainable=[temporal]) and img-tmpattn (the temporal layers and every
# attention layer), img-tmp-r03 and img-tmpattn-r03 (the same layers at the full lr, the rest at 0.3 x lr:
# train.rest_lr_scale), img-ip (input perturbation 0.1, diffusion.input_perturbation), img-hd16 and img-hd8 (attention heads of 16 or 8
# channels instead of 32: 2 or 4 heads at level 0; the same parameters, model.head_dim), img-fd (a loss on the frame-to-frame differences of the error, diffusion.frame_difference_weight=1)
# and img-nc-fd, img-pf and img-pf25 (half or a quarter of the clips with a noise level per frame,
# diffusion.per_frame_noise: Diffusion Forcing), img-keeppix (the full-resolution stem and head keep the image
# model's weights), img-rope0 and img-rope01 (frame positions of the space-time attention times 0 or 0.1,
# model.rope_frame_scale), img-xa (label cross-attention, model.label_attention; IMG must have it too),
# img-still25 (a quarter of the clips do not move, data.still_fraction=0.25), img-min2 (every clip
# shows two objects, data.min_objects=2; probed, as every variant, on the preset's one or two objects), img-shift4
# (diffusion.shift=4: SNR / 16 at every t instead of / 4); img-11min trains 11/8 of STEPS (an 11-minute budget
# instead of the demo's 8).
# Each run's probe goes to $OUT/probes/VARIANT-sSEED.txt, and a one-line summary per run (persistence, colour
# drift, speed, colours right, shape right) to $OUT/summary.txt.
set -u
OUT=${OUT:-runs/sweep}; STEPS=${STEPS:-774}; SEEDS=${SEEDS:-"0 1 2 3"}; VARIANTS=${VARIANTS:-"scratch img"}
NUM=${NUM:-48}; PSTEPS=${PSTEPS:-100}; PSAMPLER=${PSAMPLER:-ddpm}; DEVICE=${DEVICE:-auto}; THREADS=${THREADS:-2}; IMG=${IMG:-}
RUNS=${RUNS:-$OUT/runs}
mkdir -p "$OUT/probes" "$RUNS"
one() {  # variant seed
    local v=$1 s=$2 extra=""
    case $v in
        scratch) ;;
        img) extra="train.init_from=$IMG" ;;
        img-lr1e-3) extra="train.init_from=$IMG train.lr=1e-3" ;;
        img-lr5e-4) extra="train.init_from=$IMG train.lr=5e-4" ;;
        img-nc) extra="train.init_from=$IMG diffusion.noise_correlation=0.5" ;;
        img-rep) extra="train.init_from=$IMG model.temporal_padding=replicate" ;;
        img-nc-rep) extra="train.init_from=$IMG diffusion.noise_correlation=0.5 model.temporal_padding=replicate" ;;
        img-11min) extra="train.init_from=$IMG train.steps=$(( STEPS * 11 / 8 ))" ;;  # the steps of an 11-minute budget
        img-fd) extra="train.init_from=$IMG diffusion.frame_difference_weight=1" ;;
        img-nc-fd) extra="train.init_from=$IMG diffusion.noise_correlation=0.5 diffusion.frame_difference_weight=1" ;;
        img-pf) extra="train.init_from=$IMG diffusion.per_frame_noise=0.5" ;;
        img-pf25) extra="train.init_from=$IMG diffusion.per_frame_noise=0.25" ;;
        img-keeppix) extra="train.init_from=$IMG train.trainable=['^(?!pixel_)']" ;;
        img-rope0) extra="train.init_from=$IMG model.rope_frame_scale=0" ;;
        img-rope01) extra="train.init_from=$IMG model.rope_frame_scale=0.1" ;;
        img-still25) extra="train.init_from=$IMG data.still_fraction=0.25" ;;
        img-xa) extra="train.init_from=$IMG model.label_attention=true" ;;
        img-min2) extra="train.init_from=$IMG data.min_objects=2" ;;
        img-tmp) extra="train.init_from=$IMG train.trainable=[temporal]" ;;
        img-tmpattn) extra="train.init_from=$IMG train.trainable=[temporal,qkv,proj,\.norm\.]" ;;
        img-tmpattn-r03) extra="train.init_from=$IMG train.trainable=[temporal,qkv,proj,\.norm\.] train.rest_lr_scale=0.3" ;;
        img-tmp-r03) extra="train.init_from=$IMG train.trainable=[temporal] train.rest_lr_scale=0.3" ;;
        img-ip) extra="train.init_from=$IMG diffusion.input_perturbation=0.1" ;;
        img-hd16) extra="train.init_from=$IMG model.head_dim=16" ;;
        img-hd8) extra="train.init_from=$IMG model.head_dim=8" ;;
        img-shift4) extra="train.init_from=$IMG diffusion.shift=4" ;;
        *) echo "unknown variant $v"; return 1 ;;
    esac
    local run=$RUNS/$v-s$s
    python -m vidiff train demo --out "$run" train.seed=$s train.steps=$STEPS train.time_budget_minutes=null \
        train.threads=$THREADS train.device=$DEVICE $extra > "$run.log" 2>&1 || { echo "$v s$s: training failed"; tail -3 "$run.log"; return 1; }
    # the probe asks for the objects of held-out clips of the run's own data: score every variant on the preset's
    # (the config the run trained with stays as config.trained.json)
    python - "$run/config.json" <<'PY'
import json, shutil, sys
cfg = json.load(open(sys.argv[1]))
if cfg["data"].get("min_objects", 1) != 1:
    shutil.copy(sys.argv[1], sys.argv[1].replace("config.json", "config.trained.json"))
    cfg["data"]["min_objects"] = 1
    open(sys.argv[1], "w").write(json.dumps(cfg, indent=2) + "\n")
PY
    python bench/sampler_probe.py "$run" --num $NUM --steps $PSTEPS --sampler $PSAMPLER --threads $THREADS --device $DEVICE \
        --grid "$OUT/probes/$v-s$s.png" > "$OUT/probes/$v-s$s.txt" 2>&1 || { echo "$v s$s: probe failed"; tail -3 "$OUT/probes/$v-s$s.txt"; return 1; }
    python - "$OUT/probes/$v-s$s.txt" "$run" "$v" "$s" >> "$OUT/summary.txt" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
num = lambda pat: (re.search(pat, text) or [None, "nan"])[1]
summary = json.load(open(sys.argv[2] + "/train_summary.json"))
loss = [float(l.split(",")[1]) for l in open(sys.argv[2] + "/loss.csv").read().split("\n")[1:] if l]
tail = sum(loss[-75:]) / max(1, len(loss[-75:]))
pers, drift, speed = num(r"persistence ([\d.]+)"), num(r"colour drift ([\d.]+)"), num(r"speed ([\d.]+);")
colours, shape = num(r"colours exactly right ([\d.]+)"), num(r"shape right ([\d.]+)")
kept = num(r"every asked colour in every frame ([\d.]+)")
print(f"{sys.argv[3]:12s} seed {sys.argv[4]}: persistence {pers} drift {drift} speed {speed} colours {colours} shape {shape} two kept {kept} "
      f"loss(last 75) {tail:.4f} steps {summary['step']} in {summary['seconds']:.0f} s", flush=True)
PY
}
for v in $VARIANTS; do for s in $SEEDS; do one "$v" "$s" & done; done
wait
sort "$OUT/summary.txt"
