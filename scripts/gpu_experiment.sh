#!/usr/bin/env bash
# The issue-3 experiment in one GPU call (docs/experiments.md): training throughput of iresnet50
# (ArcFace vs CoReFace, bf16, real JPEG loading), then MobileFaceNet on CFP identities 001-400,
# ArcFace vs CoReFace one-way / two-way / 2N, two seeds each, run side by side on one GPU and
# scored on the CFP open-set protocol (401-500).
#   DATA=aligned CFP (prepare-cfp output)  CFP=CFP release (its Protocol/)  OUT=results folder
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
DATA=${DATA:-.gpudata/cfp112}
CFP=${CFP:-.gpudata/cfp}
OUT=${OUT:-runs/gpu}
EPOCHS=${EPOCHS:-40}
LIMIT=${LIMIT:-600}  # seconds per process
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__)" >> "$OUT/gpu.txt"

timeout 120 python3 -m coreface_edge train-bench configs/iresnet50_coreface.toml data.root="$DATA" \
  data.identities=1-400 data.workers=12 --steps 30 --out "$OUT/bench_iresnet50.json" > "$OUT/bench.log" 2>&1

common=(data.root="$DATA" eval.aligned_dir="$DATA" eval.cfp_root="$CFP" data.workers=1 device=cuda amp=bf16
        optim.epochs="$EPOCHS" optim.batch_size=128 optim.base_batch=128 "optim.milestones=[$((EPOCHS/2)),$((EPOCHS*3/4)),$((EPOCHS*9/10))]"
        eval.every_epochs=$((EPOCHS/4)) log_every=20 checkpoint_every=0)
for seed in 0 1; do
  for variant in arcface one-way two-way 2N; do
    name="$variant-s$seed"
    if [ "$variant" = arcface ]; then extra=(method.name=arcface); else extra=(method.name=coreface method.protocol="$variant"); fi
    timeout "$LIMIT" python3 -m coreface_edge train configs/mobilefacenet_coreface.yaml "${common[@]}" "${extra[@]}" \
      seed=$seed output="$OUT/$name" > "$OUT/$name.log" 2>&1 &
  done
done
wait
