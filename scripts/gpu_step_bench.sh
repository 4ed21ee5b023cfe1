#!/usr/bin/env bash
# Issue 3 (speed), one GPU call: throughput of the real trainer loop (scripts/step_bench.py) for
# iresnet50, bf16, batch 128, ArcFace vs CoReFace, before and after the removal of the per-step
# host<->device synchronisation (docs/benchmarks.md, "Training step without host syncs"). Synthetic batch (400 classes), so no
# data needs to travel; before/after alternate twice on the same warm GPU, then one "after" run
# with torch.backends.cudnn.benchmark on (not a change made here: its effect, for the next step).
#   BEFORE=a copy of the package before the change (folder holding coreface_edge/), carried;
#          without it only "after" is measured.  OUT=results folder (the device tool sets it).
#   Optional: DATA=aligned CFP (prepare-cfp output) also runs train-bench (per-step latency,
#   the figure of docs/benchmarks.md) on the current tree. At most 8 files come back from $OUT:
#   gpu.txt, step_bench.log, 5 step_*.json, train_bench_after.json.
#   Arguments: extra key=value overrides for step_bench (a CPU dry run of this script:
#   OUT=/tmp/dry STEPS=2 bash scripts/gpu_step_bench.sh device=cpu amp=none optim.batch_size=8 model.backbone=iresnet18).
set -u
export PYTHONUNBUFFERED=1
OVERRIDES=("$@")
BEFORE=${BEFORE:-.gpubefore}
DATA=${DATA:-.gpudata/cfp112}
STEPS=${STEPS:-50}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" >> "$OUT/gpu.txt" 2>&1
labels=(after)
[ -d "$BEFORE/coreface_edge" ] && labels=(before after)
bench() {  # label round [extra step_bench options]
  local path=$PWD label=$1 round=$2
  shift 2
  [ "$label" = before ] && path=$(cd "$BEFORE" && pwd)
  PYTHONPATH=$path timeout 180 python3 scripts/step_bench.py configs/iresnet50_coreface.toml --synthetic 400 \
    device=cuda amp=bf16 optim.batch_size=128 log_every=50 --steps "$STEPS" --repeats 3 --label "$label" "$@" \
    ${OVERRIDES[@]+"${OVERRIDES[@]}"} \
    --out "$OUT/step_${label}_$round.json" >> "$OUT/step_bench.log" 2>&1 || echo "step_bench $label round $round failed (rc $?)" | tee -a "$OUT/step_bench.log"
}
for round in 1 2; do
  for label in "${labels[@]}"; do bench "$label" "$round"; done
done
bench after-cudnn-benchmark 1 --cudnn-benchmark  # candidate next change: the trainer leaves it off
if [ -d "$DATA" ]; then
  PYTHONPATH=$PWD timeout 150 python3 -m coreface_edge train-bench configs/iresnet50_coreface.toml data.root="$DATA" \
    data.identities=1-400 data.workers=12 --steps 30 --out "$OUT/train_bench_after.json" >> "$OUT/step_bench.log" 2>&1
fi
python3 - "$OUT" <<'EOF'
import json, pathlib, sys
rows = [(p.stem, json.loads(p.read_text())) for p in sorted(pathlib.Path(sys.argv[1]).glob("step_*.json"))]
print(f"{'run':<32}{'ArcFace img/s':>14}{'CoReFace img/s':>16}{'CoReFace/ArcFace step':>23}{'paired':>8}")
for name, r in rows:
    print(f"{name:<32}{r['arcface_img_s']:>14.0f}{r['coreface_img_s']:>16.0f}{r['coreface_over_arcface']:>23.3f}{r['coreface_over_arcface_paired']:>8.3f}")
EOF
