#!/usr/bin/env bash
# Issue 8's missing figure in one GPU call: a *trained* iresnet50 (CFP identities 001-400, a
# few minutes on an H100), exported, then INT8 with the accuracy guard on held-out faces of CFP
# 401-430 (the device's CPU runs ONNX Runtime; the speed ratio is measured on the 2-core CPU,
# where weights do not change it: docs/benchmarks.md).
#
# Prepare here (not prepared in git):
#   .gpudata/cfp112  aligned CFP (coreface-edge data prepare-cfp), .gpudata/cfp/Protocol
#   .whl/onnxslim-*.whl  (export needs onnxslim, which the device image lacks; its own needs are there)
# The tree plus carried paths must stay under 64 MiB: re-encode .gpudata/cfp112 if needed.
# Run (device tool):  run(command="bash scripts/gpu_iresnet50_int8.sh", carry=[".gpudata", ".whl"], timeout_s=540)
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
DATA=${DATA:-.gpudata/cfp112}
CFP=${CFP:-.gpudata/cfp}
DEST=${OUT:-runs/gpu_int8}   # $OUT is the device's output folder (at most 8 files come back): read it, never assign it
RESULTS=/tmp/results
EPOCHS=${EPOCHS:-30}
RUN=/tmp/iresnet50
mkdir -p "$RESULTS" "$DEST" /tmp/hold /tmp/calib
nvidia-smi --query-gpu=name --format=csv,noheader > "$RESULTS/gpu.txt" 2>&1

timeout 300 python3 -m coreface_edge train configs/iresnet50_coreface.toml data.root="$DATA" data.identities=1-400 \
  data.workers=12 device=cuda amp=bf16 optim.epochs="$EPOCHS" "optim.milestones=[$((EPOCHS/2)),$((EPOCHS*3/4))]" \
  eval.every_epochs="$EPOCHS" eval.aligned_dir="$DATA" eval.cfp_root="$CFP" eval.identities=401-500 \
  checkpoint_every=0 log_every=20 output="$RUN" > "$RESULTS/train.log" 2>&1
cp "$RUN/metrics.jsonl" "$RESULTS/train_metrics.jsonl"

python3 -m coreface_edge export "$RUN/backbone.pt" -o /tmp/iresnet50.onnx > "$RESULTS/export.log" 2>&1
for i in $(seq 401 430); do ln -s "$PWD/$DATA/$i" /tmp/hold/$i; done        # held out: never trained on
for i in $(seq -w 1 40); do ln -s "$PWD/$DATA/$(printf %03d $((10#$i * 10)))" /tmp/calib/c$i; done  # 40 training identities
python3 -m coreface_edge calibrate collect /tmp/calib/c* -o /tmp/calib.npz --size 512 > "$RESULTS/collect.log" 2>&1
for target in cpu tensorrt; do
  for method in minmax entropy; do
    python3 -m coreface_edge calibrate quantize /tmp/iresnet50.onnx --calib /tmp/calib.npz --holdout /tmp/hold \
      --target $target --method $method --precision int8 --holdout-max 400 --speed-iterations 3 \
      -o /tmp/q_${target}_${method}.onnx > "$RESULTS/quantize_${target}_${method}.log" 2>&1
  done
done
cp /tmp/q_*.report.json /tmp/q_*.report.md "$RESULTS/" 2>/dev/null
tar czf "$DEST/results.tgz" -C "$RESULTS" . && ls -la "$RESULTS"
grep -h "verdict\|mean cosine" "$RESULTS"/quantize_*.log
