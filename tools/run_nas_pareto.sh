#!/usr/bin/env bash
# Latency-constrained NAS on this machine: ProxylessNAS-style digits space, host ONNX Runtime
# (1 thread) as ground truth, targets spanning the space's measured latency range
# (~0.04-0.15 ms end to end here). One search per target; results.csv / results.json /
# pareto.png / history-*.csv land in OUT/<reward>. Resumable: rerunning continues where an
# interrupted run stopped (finished targets, table, calibration and supernet are reused).
#
#   tools/run_nas_pareto.sh [mnas|proxyless|both] [OUT]      (default: both, nas-run)
#
# Cost on the 2-core VM shared with other jobs: ~10 min for mnas, ~15 min for proxyless.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-both}"
out="${2:-nas-run}"
targets=(0.05 0.07 0.09 0.11 0.13)

if [[ "$which" == mnas || "$which" == both ]]; then
  # MnasNet reward (soft constraint, w = -0.07), regularized evolution over the supernet's
  # validation accuracy, 200 candidates per target
  hwsim search nas --space proxyless-digits --device host-ort --threads 1 \
    --reward mnas --constraint soft --target-ms "${targets[@]}" \
    --generations 200 --population 24 --tournament 6 \
    --supernet-epochs 20 --final-epochs 20 --calibrate 12 --seed 0 --out "$out/mnas"
fi
if [[ "$which" == proxyless || "$which" == both ]]; then
  # ProxylessNAS gradient search: mul#log loss with the differentiable E[LAT]
  hwsim search nas --space proxyless-digits --device host-ort --threads 1 \
    --reward proxyless --target-ms 0.05 0.08 0.11 0.14 \
    --grad-epochs 4 --supernet-epochs 20 --final-epochs 20 --calibrate 12 --seed 0 \
    --out "$out/proxyless"
fi
