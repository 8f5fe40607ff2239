#!/usr/bin/env bash
# One GPU session, three parts, each under its own time limit so one failure leaves the rest:
#   1. the one-map-many-trials simulation with the paper's predictor recipe (full-batch Adam,
#      lr 1e-4, up to 50,000 epochs, patience 200, final weights) over several seeds;
#   2. encoder training / inference throughput (benchmarks/gpu_encoders.sh);
#   3. a short end-to-end AIPW estimate with CNN nuisances (benchmarks/gpu_end_to_end.py).
#
#   OUT=results/gpu SEEDS="0 1 2" bash benchmarks/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT="${OUT:-results/gpu}"
SEEDS="${SEEDS:-0 1 2 3 4 5 6 7 8 9}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__,
'optax', optax.__version__, jax.devices())"
t=$SECONDS
# shellcheck disable=SC2086
timeout "${T_ONEMAP:-240}" "$PY" paper/one_map_many_trials/pipeline.py --size "${SIZE:-full}" \
  --seeds $SEEDS --out "$OUT/one_map" 2>&1 | tee "$OUT/one_map.txt"
echo "one-map simulation: $((SECONDS - t)) s"; t=$SECONDS
timeout "${T_ENCODERS:-120}" env PYTHON="$PY" bash benchmarks/gpu_encoders.sh 2>&1 \
  | tee "$OUT/encoders.txt"
echo "encoder benchmark: $((SECONDS - t)) s"; t=$SECONDS
timeout "${T_E2E:-150}" "$PY" benchmarks/gpu_end_to_end.py 2>&1 | grep -v Warning \
  | tee "$OUT/end_to_end.txt"
echo "end-to-end estimate: $((SECONDS - t)) s"
