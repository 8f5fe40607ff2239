"""Bell-McCaffrey degrees of freedom of the R3D variance against the O(m^2) definition."""

from __future__ import annotations

import numpy as np
import pytest

from geocausal.designs.rdd.estimator import fit_r3d
from geocausal.designs.rdd.locpoly import local_poly
from geocausal.designs.rdd.smallsample import normal_equivalent, satterthwaite_parts, t_critical


def _brute(fit, w, scale, k):
    """tr(C), tr(C^2) with C = A^1/2 M M' A^1/2 built as dense matrices."""
    h = fit.h[k]
    R = fit.xpow[:, : fit.p + 1] / h ** np.arange(fit.p + 1)
    Kw = fit.kw[:, k]
    G = (R * Kw[:, None]).T @ R
    M = np.eye(Kw.size) - R @ np.linalg.solve(G, (R * Kw[:, None]).T)
    a = (w[:, k] * np.broadcast_to(scale, w.shape)[:, k]) ** 2
    C = np.sqrt(a)[:, None] * (M @ M.T) * np.sqrt(a)[None, :]
    return np.trace(C), np.sum(C * C)


@pytest.mark.parametrize("p,kernel", [(1, "triangular"), (2, "epanechnikov"), (3, "uniform")])
def test_traces_equal_the_dense_definition(p, kernel):
    rng = np.random.default_rng(p)
    x = rng.uniform(-1, 1, 250)
    fit = local_poly(x, rng.normal(size=(250, 3)), np.array([0.4, 0.6, 0.9]), p, kernel, "minus")
    w = fit.w0_window
    scale = 1 / np.sqrt(1 - np.clip(fit.leverage_window, 0, 0.99))
    tr, tr2 = satterthwaite_parts(fit, w, scale)
    for k in range(3):
        bt, bt2 = _brute(fit, w, scale, k)
        assert tr[k] == pytest.approx(bt, rel=1e-10)
        assert tr2[k] == pytest.approx(bt2, rel=1e-10)
    df = tr**2 / tr2
    # more units in the window, more degrees of freedom; never more than the units used
    assert np.all(np.diff(df) > 0) and np.all(df < fit.n_eff)


def test_uniform_kernel_local_constant_has_n_minus_one_df():
    """Local constant, uniform kernel, HC0: M = I - 11'/m is idempotent and A = I / m^2, so
    tr(C) = (m - 1) / m^2, tr(C^2) = (m - 1) / m^4 and df = m - 1 (the sample variance)."""
    x = np.linspace(0.005, 0.5, 100)
    fit = local_poly(x, np.zeros((100, 1)), np.array([1.0]), 0, "uniform", "plus")
    tr, tr2 = satterthwaite_parts(fit, fit.w0_window, 1.0)
    assert tr[0] ** 2 / tr2[0] == pytest.approx(99.0, rel=1e-10)


def test_result_df_combines_both_sides_and_follows_the_sort():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 400)
    Q = np.sort(rng.normal(size=(400, 5)), axis=1) + (x >= 0)[:, None]
    g = np.linspace(0.1, 0.9, 5)
    r = fit_r3d(x, Q, g, h=0.5, kernel="triangular")
    tp, t2p = r.plus.df_parts
    tm, t2m = r.minus.df_parts
    np.testing.assert_allclose(r.df, (tp + tm) ** 2 / (t2p + t2m))
    assert np.all((r.df > 5) & (r.df < 400))


def test_t_critical_and_normal_equivalent_are_inverse():
    df = np.array([3.0, 12.0, 60.0, np.inf])
    c = t_critical(2.7, df)
    assert np.all(np.diff(c) < 0) and c[-1] == 2.7
    np.testing.assert_allclose(normal_equivalent(c, df), 2.7, atol=1e-8)
