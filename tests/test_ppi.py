"""PPI / PPI++ against ppi-python, and gc.ppi."""

from __future__ import annotations

import numpy as np
import pandas as pd
import ppi_py
import pytest
from _studies import confounded
from scipy import stats

import geocausal as gc
from geocausal.designs.ppi import ht_pseudo_outcome, ppi_ate, ppi_mean, ppi_ols
from geocausal.errors import DataError

Z90 = stats.norm.ppf(0.95)      # ppi_py's default alpha is 0.1: 90% intervals


def _data(seed=0, n=150, big_n=4000):
    rng = np.random.default_rng(seed)
    y = rng.normal(1, 1, n)
    yhat = 0.6 * y + rng.normal(0, 0.5, n)
    yu = 0.6 * rng.normal(1, 1, big_n) + rng.normal(0, 0.5, big_n)
    return y, yhat, yu


@pytest.mark.parametrize("lam", [None, 1.0, 0.0, 0.37])
def test_mean_matches_ppi_py(lam):
    y, yhat, yu = _data()
    r = ppi_mean(y, yhat, yu, lam=lam)
    lo, hi = ppi_py.ppi_mean_ci(y, yhat, yu, lam=lam)          # alpha = 0.1 default
    se = np.sqrt(r.vcov[0, 0])
    assert abs(r.estimate[0] - Z90 * se - np.ravel(lo)[0]) < 1e-10
    assert abs(r.estimate[0] + Z90 * se - np.ravel(hi)[0]) < 1e-10
    pe = np.ravel(ppi_py.ppi_mean_pointestimate(y, yhat, yu, lam=lam))[0]
    assert abs(r.estimate[0] - pe) < 1e-10
    lo95, _ = ppi_py.ppi_mean_ci(y, yhat, yu, alpha=0.05, lam=lam)
    assert abs(r.estimate[0] - stats.norm.ppf(0.975) * se - np.ravel(lo95)[0]) < 1e-10
    # the stacked influence reproduces the variance
    assert abs((r.influence ** 2).sum() / r.influence.shape[0] ** 2 - r.vcov[0, 0]) < 1e-14


@pytest.mark.parametrize("lam", [None, 1.0, 0.0, 0.5])
def test_ols_matches_ppi_py(lam):
    rng = np.random.default_rng(1)
    n, big_n = 200, 3000
    x = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    xu = np.column_stack([np.ones(big_n), rng.normal(size=(big_n, 2))])
    beta = np.array([1.0, 2.0, -0.5])
    y = x @ beta + rng.normal(size=n)
    yhat = 0.7 * y + rng.normal(0, 0.3, n)
    yu = 0.7 * (xu @ beta + rng.normal(size=big_n)) + rng.normal(0, 0.3, big_n)
    r = ppi_ols(x, y, yhat, xu, yu, lam=lam)
    lo, hi = ppi_py.ppi_ols_ci(x, y, yhat, xu, yu, lam=lam)
    se = np.sqrt(np.diag(r.vcov))
    np.testing.assert_allclose(r.estimate - Z90 * se, lo, atol=1e-10)
    np.testing.assert_allclose(r.estimate + Z90 * se, hi, atol=1e-10)
    if lam is not None:   # with lam=None ppi_py's point estimate uses the pilot-tuned lam
        np.testing.assert_allclose(r.estimate, ppi_py.ppi_ols_pointestimate(
            x, y, yhat, xu, yu, lam=lam), atol=1e-10)
    else:
        pe = ppi_py.ppi_ols_pointestimate(x, y, yhat, xu, yu)
        assert np.abs(r.estimate - pe).max() < 0.05      # same estimator, lam re-tuned once


def test_ate_is_ppi_mean_of_pseudo_outcomes():
    rng = np.random.default_rng(2)
    n, big_n = 300, 5000
    c, cu = rng.normal(size=n), rng.normal(size=big_n)
    e, eu = 1 / (1 + np.exp(-c)), 1 / (1 + np.exp(-cu))
    a, au = (rng.random(n) < e).astype(float), (rng.random(big_n) < eu).astype(float)
    y = 2 * a + c + rng.normal(size=n)
    yhat = 0.5 * y + rng.normal(0, .3, n)
    yu = 0.5 * (2 * au + cu + rng.normal(size=big_n)) + rng.normal(0, .3, big_n)
    for lam in (None, 1.0):
        r = ppi_ate(y, yhat, a, e, yu, au, eu, lam=lam)
        lo, hi = ppi_py.ppi_mean_ci(ht_pseudo_outcome(y, a, e), ht_pseudo_outcome(yhat, a, e),
                                    ht_pseudo_outcome(yu, au, eu), lam=lam)
        se = np.sqrt(r.vcov[0, 0])
        assert abs(r.estimate[0] - Z90 * se - np.ravel(lo)[0]) < 1e-10
        assert abs(r.estimate[0] + Z90 * se - np.ravel(hi)[0]) < 1e-10


def test_gc_ppi_api():
    rng = np.random.default_rng(3)
    n = 4000
    c, e, d, y = confounded(rng, n, tau=2.0)
    df = pd.DataFrame({"yhat": 0.5 * y + rng.normal(0, .3, n), "d": d, "c": c, "e": e,
                       "y": np.where(np.arange(n) < 400, y, np.nan)})
    ate = gc.ppi("yhat ~ d", df, truth="y", estimand="ate", propensity="e")
    # with 400 labels the PPI++ ATE's se is about 0.2; the naive prediction contrast is ~1
    assert abs(ate.params["d"] - 2) < 0.6 and ate.diagnostics["n_labelled"] == 400
    assert 0 <= ate.diagnostics["lam"] <= 1
    ppi1 = gc.ppi("yhat ~ d + c", df, truth="y", estimand="ate", lam=1.0)
    assert ppi1.diagnostics["method"] == "ppi"
    mean = gc.ppi("yhat ~ 1", df, truth="y", estimand="mean")
    lab = df.y.notna().to_numpy()
    lo, hi = ppi_py.ppi_mean_ci(df.y[lab].to_numpy(), df.yhat[lab].to_numpy(),
                                df.yhat[~lab].to_numpy(), alpha=0.05)
    ci = mean.conf_int()
    assert abs(ci["conf_low"].iloc[0] - np.ravel(lo)[0]) < 1e-10
    assert abs(ci["conf_high"].iloc[0] - np.ravel(hi)[0]) < 1e-10
    ols = gc.ppi("yhat ~ d + c", df, truth="y", estimand="ols", lam=0.0)
    assert list(ols.params.index) == ["Intercept", "d", "c"]
    with pytest.raises(DataError, match="truth column 'nope'"):
        gc.ppi("yhat ~ d", df, truth="nope")
    with pytest.raises(DataError, match="labels have 3 values but labelled predictions have 2"):
        ppi_mean([1.0, 2.0, 3.0], [1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="missing"):
        ppi_mean([1.0, np.nan, 3.0], [1.0, 2.0, 2.0], [1.0, 2.0, 3.0])


def test_ppi_estimand_spelling_and_learner_slots():
    from sklearn.linear_model import LogisticRegression

    from geocausal.errors import OptionError

    rng = np.random.default_rng(5)
    n = 1500
    c = rng.normal(size=n)
    d = (rng.random(n) < 1 / (1 + np.exp(-c))).astype(int)
    y = d + c + rng.normal(size=n)
    df = pd.DataFrame({"yhat": y + rng.normal(0, .5, n), "d": d, "c": c,
                       "y": np.where(np.arange(n) < 300, y, np.nan)})
    lr = LogisticRegression()
    a = gc.ppi("yhat ~ d + c", df, truth="y", estimand="ate", learners={"propensity": lr})
    b = gc.ppi("yhat ~ d + c", df, truth="y", estimand="ATE", learners={"ml_m": lr})
    assert a.estimand == b.estimand == "ATE"
    assert a.params["d"] == b.params["d"]
    with pytest.raises(OptionError, match="estimand='late'"):
        gc.ppi("yhat ~ d", df, truth="y", estimand="late")
    with pytest.raises(OptionError, match="no learner slot 'outcome'"):
        gc.ppi("yhat ~ d + c", df, truth="y", learners={"outcome": lr})
