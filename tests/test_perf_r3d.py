"""R3D speed-ups (issue 18) change no number: in-place residuals, the shared scratch buffer of
the Bell-McCaffrey moments, Gaussian draws by row slabs and functionals by slabs."""

from __future__ import annotations

import numpy as np
import pytest

from geocausal.designs.rdd.bootstrap import _SLAB, functional_effects, gaussian_draws
from geocausal.designs.rdd.estimator import _vce_scale, fit_r3d
from geocausal.designs.rdd.quantiles import FUNCTIONALS
from geocausal.designs.rdd.simulate import simulate
from geocausal.designs.rdd.smallsample import satterthwaite_parts


@pytest.fixture(scope="module")
def data():
    x, Y = simulate("dgp1", 600, 30, delta=1.0, seed=4)
    grid = np.arange(1, 10) / 10
    return x, np.quantile(Y, grid, axis=1).T, grid


def test_gaussian_draws_by_slabs_equal_one_product():
    S = np.random.default_rng(0).normal(size=(300, 7))
    B = 3 * _SLAB + 17                                    # several slabs and a ragged one
    C = S.T @ S
    root = np.linalg.cholesky(C + 1e-12 * np.trace(C) / 7 * np.eye(7))
    want = np.random.default_rng(5).standard_normal((B, 7)) @ root.T
    np.testing.assert_allclose(gaussian_draws(S, B, seed=5), want, rtol=1e-13, atol=1e-13)


def test_functional_effects_by_slabs_equal_all_draws_at_once():
    rng = np.random.default_rng(1)
    g = np.linspace(0.05, 0.95, 19)
    mp, mm = np.sort(rng.normal(1, 1, 19)), np.sort(rng.normal(0, 1, 19))
    B = 2 * _SLAB + 3
    Dp, Dm = rng.normal(0, .1, (B, 19)), rng.normal(0, .1, (B, 19))
    got = functional_effects(mp, mm, Dp, Dm, g)
    for row in got:
        F = FUNCTIONALS[row["functional"]]
        est = F(mp, g) - F(mm, g)
        dev = F(mp + Dp, g) - F(mm + Dm, g) - est
        assert row["estimate"] == pytest.approx(est, abs=1e-14)
        assert row["boot_se"] == pytest.approx(np.std(dev, ddof=1), rel=1e-12)
        assert row["p_value"] == pytest.approx(np.mean(np.abs(dev) >= abs(est)), abs=1e-12)


def test_in_place_work_leaves_the_fit_intact(data):
    x, Q, grid = data
    res = fit_r3d(x, Q, grid, h=0.6)
    fit = res.plus.fit
    # the cached fitted values and leverages are the plain products (no buffer reused them)
    p = fit.p
    hp = fit.h[:, None] ** np.arange(2 * p + 1)
    np.testing.assert_allclose(fit.fitted_window, fit.xpow[:, :p + 1] @ (fit.coef / hp[:, :p + 1].T),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fit.leverage_window, fit.leverage_values(), rtol=0, atol=0)
    # the scores are the leverage-scaled residuals times the weights
    scale = _vce_scale("hc2", fit)
    e = (fit.y_win - fit.fitted_window) * scale * fit.w0_window
    np.testing.assert_allclose(res.plus.score_window[:, np.argsort(res.plus.order)], e,
                               rtol=1e-12, atol=1e-15)


def test_satterthwaite_scratch_gives_the_same_traces(data):
    x, Q, grid = data
    fit = fit_r3d(x, Q, grid, h=0.6).minus.fit
    w = fit.w0_window
    scale = _vce_scale("hc2", fit)
    keep = scale.copy()
    a = satterthwaite_parts(fit, w, scale)
    np.testing.assert_array_equal(scale, keep)                 # not overwritten by default
    b = satterthwaite_parts(fit, w, scale, overwrite_scale=True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(scale, keep)                     # the scratch was used
    assert np.all(np.isfinite(a[0])) and np.all(a[1] > 0)
