#!/usr/bin/env bash
# The GPU work still open, as one batch (run from the repository root on a CUDA machine):
#     bash benchmarks/gpu_batch.sh SECONDS OUT_DIR [STEP ...]     # steps: grid plain fused_grid precision
# Without steps it runs plain: the full grid and its fused comparison are complete (`grid` and `fused_grid`
# would only redraw their reports).
# Each step gets at most its cap of what is left of SECONDS, in that order; results/ is packed into
# OUT_DIR/results.tgz after every step, so a batch cut short still brings back each finished step
# (the grid and fused_grid resume from their runs files).
set -u
end=$(( $(date +%s) + ${1:-540} ))
out=${2:-/tmp}
shift $(( $# < 2 ? $# : 2 ))
steps=${*:-plain}
export CNN_EXP_PROGRESS=0 PYTHONWARNINGS=ignore

step() {  # step NAME CAP_SECONDS COMMAND...
  local name=$1 cap=$2 left=$(( end - $(date +%s) - 15 ))  # 15 s kept for packing
  shift 2
  [[ " $steps " == *" $name "* ]] || return 0
  (( left < cap )) && cap=$left
  if (( cap < 30 )); then echo "== $name skipped, no time left"; return; fi
  echo "== $name: $* (at most ${cap} s)"
  local t0
  t0=$(date +%s)
  timeout -s TERM "$cap" "$@"
  echo "== $name: rc $? after $(( $(date +%s) - t0 )) s"
  tar czf "$out/results.tgz" results
}

step grid 240 python -m cnn_experiments.cli run pooling --profile full --device cuda --fuse 5 --jobs 3 --any-device
step plain 120 python benchmarks/fastai_vs_plain.py --device cuda --n 20000 --rounds 3 \
  --out results/benchmarks/fastai_vs_plain_cuda.md
step fused_grid 560 python benchmarks/fused_grid.py --profile full --device cuda --jobs 3 --any-device \
  --out results/benchmarks/fused_grid_full.md
step precision 200 python benchmarks/precision.py --device cuda --profile medium
