"""Encoders: shapes and dtypes, augmentation, objectives, checkpoints, seeds, salience, embed."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from geocausal.encoders.augment import augment, dihedral, drop_bands
from geocausal.encoders.checkpoint import load_model, save_model
from geocausal.encoders.embed import embed, learned_features
from geocausal.encoders.modules import ModelSpec, build_model, set_normaliser
from geocausal.encoders.objectives import multitask, nt_xent
from geocausal.encoders.salience import (
    gradient_salience,
    head_output,
    integrated_gradients,
    pixel_gradients,
)
from geocausal.errors import DataError
from geocausal.nuisance.image_learner import ImageLearner
from geocausal.results.plot_salience import salience_figure

TINY = dict(embed_dim=8, widths=(4, 8), dim=8, heads=2, depth=1)


@pytest.mark.parametrize("encoder,bands,t", [
    ("cnn", 1, None), ("cnn", 7, None), ("vit", 3, None), ("random", 5, None),
    ("sequence", 2, 1), ("sequence", 6, 4),
])
def test_shapes_and_dtypes_any_band_count_and_length(encoder, bands, t):
    spec = ModelSpec(encoder, in_bands=bands, n_outputs=3, n_tabular=2, **TINY)
    model = build_model(spec, 0)
    shape = (5, 16, 16, bands) if t is None else (5, t, 16, 16, bands)
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    z = model.embed(x)
    assert z.shape == (5, model.embed_dim) and z.dtype == jnp.float32
    out = model(x, np.zeros((5, 2), "float32"))
    assert out.shape == (5, 3) and out.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(out)))


@pytest.mark.parametrize("agg,mult", [("mean", 1), ("meandiff", 2), ("variance", 2)])
def test_cheap_aggregators(agg, mult):
    model = build_model(ModelSpec("sequence", in_bands=3, aggregator=agg, **TINY), 0)
    x = np.random.default_rng(1).normal(size=(2, 3, 8, 8, 3)).astype("float32")
    z = np.asarray(model.embed(x))
    f = np.asarray(model.encoder.frames(model.normalise(x)))
    assert z.shape == (2, 8 * mult)
    np.testing.assert_allclose(z[:, :8], f.mean(axis=1), rtol=1e-5, atol=1e-6)
    if agg == "meandiff":
        np.testing.assert_allclose(z[:, 8:], np.diff(f, axis=1).mean(axis=1), rtol=1e-4,
                                   atol=1e-5)
    if agg == "variance":
        np.testing.assert_allclose(z[:, 8:], f.var(axis=1), rtol=1e-4, atol=1e-6)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(DataError, match="patch"):
        build_model(ModelSpec("vit", in_bands=2, patch=3, **{**TINY}), 0).embed(
            np.zeros((1, 8, 8, 2), "float32"))
    with pytest.raises(DataError, match="encoder"):
        build_model(ModelSpec("resnet9000", in_bands=2), 0)
    with pytest.raises(DataError, match="bands"):
        set_normaliser(build_model(ModelSpec("cnn", in_bands=2, **TINY)),
                       np.zeros((2, 4, 4, 3)))
    with pytest.raises(DataError, match="image_shape"):
        ImageLearner().fit(np.zeros((4, 10)), np.array([0, 1, 0, 1]))


def test_normaliser_stored_and_mask_respected():
    model = build_model(ModelSpec("cnn", in_bands=2, **TINY), 0)
    rng = np.random.default_rng(0)
    x = rng.normal([5.0, -3.0], [2.0, 0.5], size=(50, 6, 6, 2))
    mask = np.ones((50, 6, 6), bool)
    x[:, 0, 0] = 1e6  # masked garbage must not move the statistics
    mask[:, 0, 0] = False
    set_normaliser(model, x, mask)
    np.testing.assert_allclose(model.band_mean[...], x[mask].mean(axis=0), rtol=1e-5)
    z = np.asarray(model.normalise(x, mask))
    assert np.all(z[:, 0, 0] == 0) and abs(z[mask].mean()) < 1e-4


def test_augmentations_are_symmetries_and_keep_bands():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(64, 5, 5, 3)), jnp.float32)
    y = dihedral(jax.random.key(0), x)
    for i in range(x.shape[0]):
        views = [np.rot90(np.asarray(x[i]), k) for k in range(4)]
        views += [np.flip(v, 0) for v in views]
        assert any(np.array_equal(np.asarray(y[i]), v) for v in views)
    assert len({np.asarray(y[i]).tobytes() for i in range(8)}) > 1
    # sequences: all dates of a sample get the same transform
    s = jnp.stack([x, x], axis=1)
    ys = dihedral(jax.random.key(1), s)
    np.testing.assert_array_equal(ys[:, 0], ys[:, 1])
    d = drop_bands(jax.random.key(2), jnp.ones((200, 2, 2, 3)), 0.9)
    kept = np.asarray(d[:, 0, 0, :]).sum(axis=1)
    assert kept.min() >= 1 and kept.max() <= 3
    assert augment(jax.random.key(3), x).shape == x.shape


def test_objectives():
    z = jax.random.normal(jax.random.key(0), (16, 8))
    same = float(nt_xent(z, z + 0.01, 0.2))
    other = float(nt_xent(z, jax.random.normal(jax.random.key(1), (16, 8)), 0.2))
    assert same < other
    model = build_model(ModelSpec("cnn", in_bands=2, n_outputs=2, **TINY), 0)
    x = jnp.zeros((4, 8, 8, 2))
    y = jnp.asarray([[1.0, np.nan], [0.0, 2.0], [1.0, 1.0], [np.nan, 0.5]])
    loss = multitask([True, False]).loss(model, {"x": x, "y": y}, jax.random.key(0),
                                         lambda k, v: v)
    assert np.isfinite(float(loss))


def test_checkpoint_round_trip_identical_embeddings(tmp_path):
    for spec in (ModelSpec("cnn", in_bands=3, n_outputs=1, proj_dim=4, **TINY),
                 ModelSpec("sequence", in_bands=3, n_outputs=1, **TINY),
                 ModelSpec("random", in_bands=3, **TINY)):
        model = build_model(spec, 7)
        x = np.random.default_rng(0).normal(2.0, 3.0, size=(40, 8, 8, 3)).astype("float32")
        set_normaliser(model, x)
        xs = x.reshape(20, 2, 8, 8, 3) if spec.encoder == "sequence" else x
        path = save_model(model, tmp_path / spec.encoder)
        again = load_model(path)
        np.testing.assert_array_equal(np.asarray(model.embed(xs)), np.asarray(again.embed(xs)))
        np.testing.assert_array_equal(np.asarray(again.band_mean[...]),
                                      np.asarray(model.band_mean[...]))
    with pytest.raises(DataError, match="spec.json"):
        load_model(tmp_path / "nothing")


def test_same_seed_same_numbers_learned_features():
    chips = np.random.default_rng(0).normal(size=(24, 2, 8, 8, 3)).astype("float32")
    kw = dict(epochs=1, embed_dim=4, widths=(4,), batch_size=16, progress=False)
    a = learned_features(chips, seed=3, **kw)
    b = learned_features(chips, seed=3, **kw)
    c = learned_features(chips, seed=4, **kw)
    assert a.shape == (24, 8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_image_learner_survives_clone():
    lr = ImageLearner(encoder="vit", widths=(4, 8), epochs=3, seed=5)
    c = clone(lr)
    assert c.get_params() == lr.get_params() and not hasattr(c, "model_")


def test_salience_gradients_and_integrated_gradients():
    model = build_model(ModelSpec("cnn", in_bands=3, n_outputs=1, **TINY), 1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 8, 8, 3)).astype("float32")
    set_normaliser(model, x)
    g = pixel_gradients(model, x)
    # finite difference check on one pixel (float32, central difference)
    eps = 1e-2
    xp, xm = x.copy(), x.copy()
    xp[0, 3, 4, 1] += eps
    xm[0, 3, 4, 1] -= eps
    fd = (head_output(model, xp)[0] - head_output(model, xm)[0]) / (2 * eps)
    assert abs(fd - g[0, 3, 4, 1]) < 1e-2 * max(1.0, abs(fd))
    sal = gradient_salience(model, x)
    np.testing.assert_allclose(sal, np.sqrt((g ** 2).sum(-1)), rtol=1e-6)
    ig = integrated_gradients(model, x, steps=64)
    base = np.broadcast_to(np.asarray(model.band_mean[...]), x.shape)
    gap = head_output(model, x) - head_output(model, base.astype("float32"))
    # completeness holds up to the midpoint rule's O(1/steps^2) error
    np.testing.assert_allclose(ig.reshape(3, -1).sum(1), gap, atol=0.02 * np.abs(gap).max())
    fig = salience_figure(x, sal, head_output(model, x), n=1)
    assert len(fig.axes) == 5  # 2 x (image, salience) + colorbar


def _cache(n=6, t=2):
    rng = np.random.default_rng(0)
    return types.SimpleNamespace(chips=rng.normal(size=(n, t, 8, 8, 3)).astype("float32"),
                                 mask=np.ones((n, t, 8, 8), bool), unit_ids=np.arange(10, 10 + n),
                                 periods=np.array([2019, 2021][:t]), bands=["b", "g", "r"])


def test_embed_writes_parquet_per_unit_and_period(tmp_path, monkeypatch):
    cache = _cache()
    p = embed(cache, tmp_path / "seq.parquet", encoder="sequence", epochs=1, embed_dim=4,
              batch_size=4, progress=False)
    df = pd.read_parquet(p)
    assert len(df) == 12 and list(df.columns[:2]) == ["unit_id", "period"]
    assert df.filter(like="emb_").shape[1] == 4 and df.filter(like="seq_").shape[1] == 4
    assert df.set_index(["unit_id", "period"]).index.is_unique
    # the command line goes through open_cache(path) then embed
    import geocausal.data.chips as chips_mod
    from geocausal.cli import main

    monkeypatch.setattr(chips_mod, "open_cache", lambda path: cache)
    out = tmp_path / "rnd.parquet"
    assert main(["embed", "--cache", "c.zarr", "--out", str(out), "--encoder", "random",
                 "--epochs", "0", "--seed", "1"]) == 0
    r = pd.read_parquet(out)
    assert r.shape[0] == 12 and np.all(np.isfinite(r.filter(like="emb_").to_numpy()))
    with pytest.raises(DataError, match="encoder"):
        embed(cache, tmp_path / "x.parquet", encoder="clip")


def test_images_learned_branch_uses_encoders():
    from geocausal.features.images import image_features

    chips = np.random.default_rng(0).normal(size=(20, 2, 8, 8, 3)).astype("float32")
    f = image_features(chips, 20, representation="learned", seed=0, epochs=1, embed_dim=4,
                       widths=(4,), batch_size=8, progress=False)
    assert f.shape == (20, 8) and np.all(np.isfinite(f))


def test_image_learner_warns_when_stopped_while_still_improving():
    """A learner cut off while its held-out loss still falls says so (it biases AIPW)."""
    from geocausal.errors import DiagnosticWarning

    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 0.1, size=(400, 8, 8, 2)).astype("float32")
    shift = rng.uniform(0, 1, 400)
    x[..., 0] += shift[:, None, None]
    y = 3 * shift + rng.normal(0, 0.1, 400)
    kw = dict(widths=(4,), embed_dim=4, batch_size=64, seed=0, band_dropout=0.0)
    with pytest.warns(DiagnosticWarning, match="under-trained"):
        short = ImageLearner(epochs=5, learning_rate=1e-3, **kw).fit(x, y)
    assert short.converged_ is False
    # trained to a plateau (early stopping) it is quiet
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DiagnosticWarning)
        long = ImageLearner(epochs=200, learning_rate=1e-2, patience=5, **kw).fit(x, y)
    assert long.converged_ and long.history_.stopped_early


def test_image_learner_learns_linear_tabular_effects_in_a_short_run():
    """A covariate's linear effect is in place from the start (head warm start): with random
    head weights Adam needs ~1/lr steps to grow the coefficient and 30 epochs left R^2 at 0.74."""
    rng = np.random.default_rng(0)
    chips = rng.normal(size=(1000, 8, 8, 2)).astype("float32")
    x = rng.normal(size=(1000, 2))
    y = 2 * x[:, 0] - x[:, 1] + 0.1 * rng.normal(size=1000)
    reg = ImageLearner(epochs=5, widths=(4,), embed_dim=4, batch_size=64, seed=0,
                       patience=5).fit((chips[:800], x[:800]), y[:800])
    p = reg.predict((chips[800:], x[800:]))
    assert 1 - np.mean((p - y[800:]) ** 2) / np.var(y[800:]) > 0.95
    d = (rng.random(1000) < 1 / (1 + np.exp(-2 * x[:, 0]))).astype(int)
    clf = ImageLearner(epochs=5, widths=(4,), embed_dim=4, batch_size=64, seed=0,
                       patience=5).fit((chips[:800], x[:800]), d[:800])
    from sklearn.metrics import roc_auc_score

    # the oracle AUC of this logistic model is about 0.86
    assert roc_auc_score(d[800:], clf.predict_proba((chips[800:], x[800:]))[:, 1]) > 0.8


def test_contrastive_gradient_is_finite_for_an_all_zero_view():
    """A view embedded to exactly 0 (an image whose valid bands were all dropped) used to give
    a 0/0 gradient in nt_xent and a 'training diverged' error."""
    z1 = jnp.zeros((4, 3)).at[1:].set(jax.random.normal(jax.random.key(0), (3, 3)))
    z2 = jax.random.normal(jax.random.key(1), (4, 3))
    g = jax.grad(lambda a: nt_xent(a, z2, 0.2))(z1)
    assert bool(jnp.all(jnp.isfinite(g)))


def test_learned_features_train_when_a_band_of_one_chip_has_no_valid_pixel():
    rng = np.random.default_rng(3)
    chips = rng.normal(1, 2, size=(60, 2, 8, 8, 3)).astype("float32")
    chips[5, 1, ..., 0] = np.nan
    f = learned_features(chips, seed=0, progress=False)
    assert f.shape == (60, 32) and np.all(np.isfinite(f))
