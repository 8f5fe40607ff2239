"""Estimate, EstimateSet and influence-function variance."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from geocausal import DataError, Estimate, EstimateSet
from geocausal.inference import (
    adjust_pvalues,
    multiplier_bootstrap,
    sup_t_critical,
    vcov_from_influence,
)
from geocausal.results.export import write_outputs


def _ols_estimate(n=400, seed=0, groups=20):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n) + rng.normal(size=groups)[g]
    y = 1 + 2 * x + rng.normal(size=n) + rng.normal(size=groups)[g]
    X = sm.add_constant(x)
    bread = np.linalg.inv(X.T @ X / n)
    beta = bread @ X.T @ y / n
    psi = (X * (y - X @ beta)[:, None]) @ bread.T
    return X, y, g, beta, psi


def test_hetero_vcov_equals_statsmodels_hc0():
    X, y, _, beta, psi = _ols_estimate()
    est = Estimate.from_influence(pd.Series(beta, index=["const", "x"]), psi)
    ref = sm.OLS(y, X).fit(cov_type="HC0")
    np.testing.assert_allclose(est.params, ref.params, rtol=1e-12)
    np.testing.assert_allclose(est.vcov.to_numpy(), ref.cov_params(), rtol=1e-10)


def test_cluster_vcov_equals_statsmodels_without_df_correction():
    X, y, g, beta, psi = _ols_estimate()
    est = Estimate.from_influence(pd.Series(beta, index=["const", "x"]), psi,
                                  vcov={"cluster": "g"}, cluster_data={"g": g})
    ref = sm.OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": g, "use_correction": False})
    # statsmodels' uncorrected cluster sandwich times the G/(G-1) factor we apply (G = 20)
    np.testing.assert_allclose(est.vcov.to_numpy(), ref.cov_params() * 20 / 19, rtol=1e-10)
    full = sm.OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": g})
    n, k = X.shape
    np.testing.assert_allclose(est.vcov.to_numpy() * (n - 1) / (n - k), full.cov_params(),
                               rtol=1e-10)
    assert est.vcov_type == "cluster(g)"


def test_two_way_cluster_matches_cgm_formula():
    X, y, g, beta, psi = _ols_estimate(seed=3)
    h = np.arange(len(y)) % 7
    v = vcov_from_influence(psi, {"cluster": [g, h]})
    inter = g * 100 + h
    parts = [vcov_from_influence(psi, {"cluster": c}) for c in (g, h, inter)]
    np.testing.assert_allclose(v, parts[0] + parts[1] - parts[2], rtol=1e-10)


def test_with_vcov_is_a_new_object_and_named_clusters_resolve():
    X, y, g, beta, psi = _ols_estimate()
    est = Estimate.from_influence(pd.Series(beta, index=["const", "x"]), psi,
                                  cluster_data={"g": g}, design="ols")
    clus = est.with_vcov({"cluster": "g"})
    assert clus is not est and est.vcov_type == "hetero" and clus.vcov_type == "cluster(g)"
    assert clus.std_errors["x"] > est.std_errors["x"]  # positively correlated within groups
    with pytest.raises(DataError, match="'nope'"):
        est.with_vcov({"cluster": "nope"})


def test_estimate_is_frozen_and_read_only():
    est = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.04]]),
                   influence=np.ones((3, 1)), diagnostics={"a": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.design = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        est.diagnostics["a"] = 2  # type: ignore[index]
    with pytest.raises(ValueError):
        est.influence[0, 0] = 5.0


def test_tidy_columns_and_normal_inference():
    est = Estimate(pd.Series({"d": 1.96}), pd.DataFrame([[1.0]]))
    t = est.tidy()
    assert list(t.columns) == ["term", "estimate", "std_error", "statistic", "p_value",
                               "conf_low", "conf_high"]
    assert t.p_value[0] == pytest.approx(0.05, abs=1e-4)
    assert t.conf_low[0] == pytest.approx(0.0, abs=1e-3)


def test_t_distribution_when_dof_given():
    est = Estimate(pd.Series({"d": 2.0}), pd.DataFrame([[1.0]]), dof=5)
    from scipy import stats

    assert est.pvalues["d"] == pytest.approx(2 * stats.t(5).sf(2.0))


def test_summary_html_dict_and_export(tmp_path):
    est = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.01]]), design="aipw",
                   diagnostics={"n_trimmed": 3, "table": pd.DataFrame({"a": [1]})},
                   provenance={"seed": 1})
    assert "aipw" in str(est.summary()) and "n_trimmed: 3" in str(est.summary())
    assert "<table>" in est._repr_html_()
    d = json.loads(json.dumps(est.to_dict()))
    assert d["coefficients"][0]["term"] == "d"
    paths = write_outputs(est, tmp_path, "out", manifest_hash="abc")
    assert all(p.exists() for p in paths)
    assert json.loads(paths[1].read_text())["manifest_hash"] == "abc"


def test_estimate_set_adjustments_and_etable():
    ests = [Estimate(pd.Series({"d": b}), pd.DataFrame([[1.0]])) for b in (0.5, 2.5, 3.0)]
    s = EstimateSet(ests, ["a", "b", "c"])
    t = s.tidy()
    np.testing.assert_allclose(t.p_holm, adjust_pvalues(t.p_value, "holm"))
    assert (t.p_holm >= t.p_value - 1e-15).all() and (t.p_bh >= t.p_value - 1e-15).all()
    tab = s.etable()
    assert list(tab.columns) == ["a", "b", "c"] and "N" in tab.index
    assert "tabular" in s.etable(fmt="latex") and s["b"].params["d"] == 2.5


def test_multiplier_bootstrap_matches_analytic_se_and_sup_t():
    rng = np.random.default_rng(0)
    psi = rng.normal(size=(2000, 3))
    draws = multiplier_bootstrap(psi, n_boot=4000, seed=1)
    se = np.sqrt(np.diag(vcov_from_influence(psi)))
    # the bootstrap SD of mean(xi * psi) equals the analytic SE up to MC error ~ 1/sqrt(2B)
    np.testing.assert_allclose(draws.std(axis=0), se, rtol=0.05)
    crit = sup_t_critical(draws, se)
    assert 2.2 < crit < 2.6  # joint 95% over 3 independent coordinates: about 2.39


def test_cluster_bootstrap_uses_one_multiplier_per_cluster():
    psi = np.ones((6, 1))
    draws = multiplier_bootstrap(psi, n_boot=5, seed=0, clusters=np.array([0, 0, 0, 1, 1, 1]),
                                 kind="rademacher")
    assert set(np.round(draws[:, 0] * 6).astype(int)) <= {-6, 0, 6}


def test_bad_vcov_and_cluster_inputs():
    psi = np.ones((4, 1))
    with pytest.raises(DataError, match="vcov 'robustish'"):
        vcov_from_influence(psi, "robustish")
    with pytest.raises(DataError, match="length 3"):
        vcov_from_influence(psi, {"cluster": np.array([1, 2, 3])})
    with pytest.raises(DataError, match="at least 2 clusters"):
        vcov_from_influence(psi, {"cluster": np.zeros(4)})
    with pytest.raises(DataError, match="non-finite"):
        vcov_from_influence(np.array([[np.nan], [1.0]]))
