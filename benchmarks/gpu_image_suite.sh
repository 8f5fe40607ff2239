#!/usr/bin/env bash
# The semi-synthetic image suite (benchmarks/image_representations_mc.py) on a lent GPU
# machine, for issue 12's "when a GPU is lent, record the suite's wall time there too": the
# learned candidate's self-supervised encoder is pretrained there again (--relearn, JAX on
# the GPU), and the draws run on all of its CPU cores.
#
# Prepare here, once, in the repository root (the suite's chips and the wheels the GPU image
# lacks; the suite needs no rasterio, GDAL or zarr when it reads exported chips):
#   echo /.irmc/ >> .git/info/exclude; echo /.whl/ >> .git/info/exclude
#   .venv/bin/python benchmarks/image_representations_mc.py --export-chips .irmc   # 6 MiB
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl spyndex==0.12.0 python-box
# Then one device run, carrying .irmc and .whl:
#   OUT=$OUT bash benchmarks/gpu_image_suite.sh
# Here, without a GPU, it runs the same steps (a smoke test):
#   PYTHON=.venv/bin/python CHIPS=/tmp/irmc WHEELS=none REPS=1 WORKERS=2 OUT=/tmp/gpu_suite \
#     bash benchmarks/gpu_image_suite.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT="${OUT:-results/gpu_suite}"
CHIPS="${CHIPS:-.irmc}"
WHEELS="${WHEELS:-.whl}"  # the folder of carried wheels, or none
mkdir -p "$OUT"
if [ "$WHEELS" != none ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
if [ ! -f "$CHIPS/meta.json" ]; then
  echo "no exported chips in $CHIPS: run image_representations_mc.py --export-chips $CHIPS here"
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"
"$PY" -c "import jax; print('jax', jax.__version__, jax.devices())"
nproc
t=$SECONDS
# stop starting draws after BUDGET seconds: the report says how many ran
timeout "${T_SUITE:-540}" "$PY" benchmarks/image_representations_mc.py --chips "$CHIPS" \
  --relearn --reps "${REPS:-100}" --workers "${WORKERS:-$(nproc)}" \
  --time-budget "${BUDGET:-360}" --out "$OUT/image_representations_mc_gpu.md" 2>&1 \
  | grep -v Warning | tee "$OUT/suite.txt"
echo "image suite: $((SECONDS - t)) s"
