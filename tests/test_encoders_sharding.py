"""Data-parallel training over two CPU devices follows the single-device loss trajectory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent("""
    import json
    import jax
    import numpy as np
    from geocausal.encoders.modules import ModelSpec, build_model
    from geocausal.encoders.objectives import binary
    from geocausal.encoders.train import TrainConfig, fit

    assert jax.device_count() == 2, jax.devices()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8, 8, 3)).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) > 0).astype(float)
    spec = ModelSpec("cnn", in_bands=3, embed_dim=8, widths=(4, 8), n_outputs=1)
    out = {}
    for shard in (False, True):
        cfg = TrainConfig(epochs=3, batch_size=16, progress=False, shard=shard)
        res = fit(build_model(spec, 0), binary(), x, y, config=cfg, seed=0)
        out[str(shard)] = {"steps": list(res.step_loss), "val": list(res.val_loss)}
    out["devices"] = jax.device_count()
    print("RESULT" + json.dumps(out))
""")


def test_sharded_loss_trajectory_equals_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    out = json.loads(line[len("RESULT"):])
    assert out["devices"] == 2
    single, sharded = out["False"], out["True"]
    assert len(single["steps"]) == len(sharded["steps"]) == 3 * 4
    # same batches, same keys: only the order of float32 reductions differs between the
    # device-local partial sums and one sum, so agreement is to float tolerance
    np.testing.assert_allclose(sharded["steps"], single["steps"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sharded["val"], single["val"], rtol=1e-4, atol=1e-5)
