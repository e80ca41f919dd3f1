#!/usr/bin/env bash
# The GPU measurements and the full pooling profile, as one batch, from the repository root on a CUDA machine:
#     bash benchmarks/gpu_batch.sh SECONDS OUT_DIR [STEP ...]
# Steps, in this order (default: all): roofline plain serial precision reproducibility pooling fine_tune cluttered.
# Each step gets what is left of SECONDS, at most its cap; results/ is packed into OUT_DIR/results.tgz after
# every step, so a batch cut short keeps each finished step, and `pooling` resumes from its runs file.
set -u
end=$(( $(date +%s) + ${1:-540} ))
out=${2:-/tmp}
shift $(( $# < 2 ? $# : 2 ))
steps=${*:-roofline plain serial precision reproducibility pooling fine_tune cluttered}
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

step roofline 90 python benchmarks/roofline.py --device cuda --publish
step plain 90 python benchmarks/fastai_vs_plain.py --device cuda --n 20000 --rounds 3 --publish
step serial 90 python benchmarks/fused_vs_serial.py --device cuda --publish
step precision 120 python benchmarks/precision.py --device cuda --profile medium --publish
step reproducibility 60 python benchmarks/reproducibility.py --device cuda --publish
# a fused model carries a column of the grid (heads x seeds, or heads x rates in the search); the jobs run the
# CPU-side head-only probes of one model while the next trains
step pooling 560 python -m cnn_experiments.cli run pooling --profile full --device cuda --fuse 60 --jobs 4
step fine_tune 560 python -m cnn_experiments.cli run fine_tune --profile full --device cuda --jobs 4
step cluttered 560 python -m cnn_experiments.cli run cluttered --profile full --device cuda --fuse 15 --jobs 2
