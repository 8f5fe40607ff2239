"""On a GPU (skipped without one): the encoder trains in bfloat16 and predicts finite numbers
that agree with the same model's float32 forward pass."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def test_encoder_trains_in_bfloat16_on_the_gpu():
    import jax
    import jax.numpy as jnp

    from geocausal.encoders import ModelSpec, TrainConfig, build_model, fit, predict
    from geocausal.encoders.objectives import binary
    from geocausal.encoders.train import resolve_dtype

    assert jax.default_backend() == "gpu"
    assert resolve_dtype("auto") == jnp.bfloat16
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8, 8, 2)).astype("float32")
    y = (x[..., 0].mean((1, 2)) > 0).astype("float32")[:, None]
    model = build_model(ModelSpec("cnn", in_bands=2, embed_dim=8, widths=(8,), n_outputs=1))
    res = fit(model, binary(), x, y, config=TrainConfig(epochs=5, batch_size=64,
                                                        progress=False), seed=0)
    assert res.train_loss[-1] < res.train_loss[0]
    logits = np.asarray(predict(res.model, x, compute_dtype="float32"))
    assert logits.shape == (256, 1) and np.isfinite(logits).all()
    auc_pairs = (logits[y[:, 0] == 1, 0][:, None] > logits[y[:, 0] == 0, 0][None, :]).mean()
    assert auc_pairs > 0.8
