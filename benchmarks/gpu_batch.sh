#!/usr/bin/env bash
# The GPU work still open, as one batch (run from the repository root on a CUDA machine):
#     bash benchmarks/gpu_batch.sh SECONDS OUT_DIR
# Each step gets at most its cap of what is left of SECONDS; results/ is packed into OUT_DIR/results.tgz
# after every step, so a batch cut short still brings back each finished step (the sweep resumes).
set -u
end=$(( $(date +%s) + ${1:-540} ))
out=${2:-/tmp}
export CNN_EXP_PROGRESS=0 PYTHONWARNINGS=ignore

step() {  # step CAP_SECONDS COMMAND...
  local cap=$1 left=$(( end - $(date +%s) - 15 ))  # 15 s kept for packing
  shift
  (( left < cap )) && cap=$left
  if (( cap < 30 )); then echo "== skipped, no time left: $*"; return; fi
  echo "== $* (at most ${cap} s)"
  local t0
  t0=$(date +%s)
  timeout -s TERM "$cap" "$@"
  echo "== rc $? after $(( $(date +%s) - t0 )) s"
  tar czf "$out/results.tgz" results
}

step 260 python -m cnn_experiments.cli run pooling --profile full --device cuda --fuse 5 --jobs 3
step 130 python benchmarks/fastai_vs_plain.py --device cuda --n 20000 --rounds 3 \
  --out results/benchmarks/fastai_vs_plain_cuda.md
step 300 python benchmarks/fused_grid.py --profile full --device cuda --complete-only
step 200 python benchmarks/precision.py --device cuda --profile medium
