#!/usr/bin/env bash
# Latency-constrained NAS on this machine: ProxylessNAS-style digits space (8x8 input, 9
# searchable blocks), host ONNX Runtime on 1 thread as ground truth, targets spanning the
# space's measured latency range (~0.025-0.165 ms per network here, CPU time). One search per
# target; results.csv / results.json / pareto.png / history-*.csv land in OUT/<run>.
# Resumable: rerunning continues where an interrupted run stopped (finished targets, latency
# table, calibration and supernet are reused).
#
#   tools/run_nas_pareto.sh [mnas|mnas-hard|proxyless|all] [OUT]      (default: all, nas-run)
#
# mnas-hard and proxyless reuse the table, calibration and supernet of OUT/mnas when present
# (same space, device, seed and supernet settings); without it each measures and trains its own.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
out="${2:-nas-run}"
targets=(0.05 0.07 0.09 0.11 0.13)
common=(--space proxyless-digits --device host-ort --threads 1 --supernet-epochs 20
        --final-epochs 15 --calibrate 12 --seed 0)

reuse() {  # reuse() DIR: copy what OUT/mnas already measured / trained into DIR
  mkdir -p "$1"
  for f in lut-host-ort.csv calibration.json supernet.npz; do
    if [[ -f "$out/mnas/$f" && ! -e "$1/$f" ]]; then cp "$out/mnas/$f" "$1/$f"; fi
  done
}

if [[ "$which" == mnas || "$which" == all ]]; then
  # MnasNet reward, soft constraint (w = -0.07), regularized evolution over the supernet's
  # validation accuracy, 200 candidates per target
  hwsim search nas "${common[@]}" --reward mnas --constraint soft --target-ms "${targets[@]}" \
    --generations 200 --population 24 --tournament 6 --out "$out/mnas"
fi
if [[ "$which" == proxyless || "$which" == all ]]; then
  # ProxylessNAS gradient search: mul#log loss with the differentiable E[LAT]
  reuse "$out/proxyless"
  hwsim search nas "${common[@]}" --reward proxyless --target-ms 0.05 0.09 0.13 \
    --grad-epochs 3 --out "$out/proxyless"
fi
if [[ "$which" == mnas-hard || "$which" == all ]]; then
  # MnasNet reward, hard constraint (alpha = 0, beta = -1)
  reuse "$out/mnas-hard"
  hwsim search nas "${common[@]}" --reward mnas --constraint hard --target-ms "${targets[@]}" \
    --generations 200 --population 24 --tournament 6 --out "$out/mnas-hard"
fi
