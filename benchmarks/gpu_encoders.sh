#!/usr/bin/env bash
# One short run of the default encoder on a GPU: images/s and achieved TFLOP/s for training
# and inference (bfloat16 compute, float32 parameters). FLOPs per step come from XLA's cost
# analysis of the programs compiled for the CPU (jitted.lower(...).compile().cost_analysis()).
#
#   bash benchmarks/gpu_encoders.sh              # on a machine with a GPU (jax[cuda12])
#   bash benchmarks/gpu_encoders.sh --cpu-smoke  # quick check of the script on CPU
#   bash benchmarks/gpu_encoders.sh --cpu        # the same sizes on CPU (float32): the baseline
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python
MODE=gpu
if [ "${1:-}" = "--cpu-smoke" ] || [ "${1:-}" = "--cpu" ]; then
  MODE="${1#--}"
  export JAX_PLATFORMS=cpu
fi
MODE="$MODE" "$PY" - <<'EOF'
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from geocausal.encoders.modules import ModelSpec, build_model
from geocausal.encoders.objectives import binary
from geocausal.encoders.train import TrainConfig, _forward, make_optimizer, make_train_step

sys.path.insert(0, "benchmarks")
from encoders import seconds_per_call, train_call  # noqa: E402

mode = os.environ["MODE"]
if mode == "gpu" and jax.default_backend() != "gpu":
    raise SystemExit(f"no GPU visible to jax (backend {jax.default_backend()}); "
                     "install jax[cuda12] or pass --cpu-smoke")
size, batch, steps = {"cpu-smoke": (32, 8, 2), "cpu": (64, 512, 3), "gpu": (64, 512, 50)}[mode]
dtype = "bfloat16" if mode == "gpu" else "float32"
bands = 6
spec = ModelSpec(encoder="cnn", in_bands=bands, n_outputs=1)
model = build_model(spec, 0)
cfg = TrainConfig(compute_dtype=dtype)
graphdef, params, rest = nnx.split(model, nnx.Param, ...)
opt_state = make_optimizer(cfg).init(params)
step = make_train_step(graphdef, binary(), cfg, dtype)
rng = np.random.default_rng(0)
batch_d = {"x": jnp.asarray(rng.normal(size=(batch, size, size, bands)), jnp.float32),
           "y": jnp.asarray(rng.integers(0, 2, (batch, 1)), jnp.float32)}
key, lr = jax.random.key(0), jnp.float32(1e-3)


def flops(jitted, *args):
    # counted on a CPU compile: on GPUs XLA's cost analysis leaves out the convolutions it
    # hands to cuDNN, which under-counts a CNN's FLOPs by more than an order of magnitude
    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        ca = jitted.lower(*jax.device_put(args, cpu)).compile().cost_analysis()
    ca = ca[0] if isinstance(ca, list) else ca
    return float(ca.get("flops", float("nan")))


f_train = flops(step, params, rest, opt_state, batch_d, key, lr)
fwd = _forward(graphdef, "head", dtype, False, False)
f_inf = flops(fwd, params, rest, batch_d["x"], None, None)
dt_train = seconds_per_call(train_call(step, params, rest, opt_state, batch_d, lr), steps, 3)
dt_inf = seconds_per_call(lambda i: fwd(params, rest, batch_d["x"], None, None), steps, 3)
print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), compute {dtype}, "
      f"{size}x{size}x{bands}, batch {batch}, {steps} timed steps")
print(f"train:     {batch / dt_train:12.1f} img/s  {f_train / dt_train / 1e12:8.3f} TFLOP/s "
      f"({f_train / batch / 1e6:.1f} MFLOP/img)")
print(f"inference: {batch / dt_inf:12.1f} img/s  {f_inf / dt_inf / 1e12:8.3f} TFLOP/s "
      f"({f_inf / batch / 1e6:.1f} MFLOP/img)")
EOF
