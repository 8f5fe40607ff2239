"""gc.placement: cross-validated AUCs, DeLong against a direct computation, paired tests."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

import geocausal as gc
from geocausal.designs.placement import bootstrap_auc, delong
from geocausal.errors import DiagnosticWarning


def _delong_bruteforce(s, y):
    """DeLong (1988) structural components written out with explicit pair comparisons."""
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return psi.mean(), v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)


def test_delong_matches_bruteforce_and_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.vstack([y + rng.normal(size=300), np.round(0.5 * y + rng.normal(size=300), 1)])
    aucs, cov, psi = delong(s, y)
    for i in range(2):
        a, v = _delong_bruteforce(s[i], y)
        assert abs(aucs[i] - a) < 1e-12 and abs(aucs[i] - roc_auc_score(y, s[i])) < 1e-12
        assert abs(cov[i, i] - v) < 1e-12
    # influence functions reproduce the DeLong variance up to the (m-1)/m, (n-1)/n factors
    assert np.allclose(psi.T @ psi / 300**2, cov, rtol=0.02, atol=2e-5)
    # the paired bootstrap agrees with DeLong within Monte Carlo error (400 draws: ~7% on a SD)
    _, bcov = bootstrap_auc(s, y, n_boot=400, seed=1)
    assert np.allclose(np.sqrt(np.diag(bcov)), np.sqrt(np.diag(cov)), rtol=0.2)


def _placement_data(n=1200, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n, 3))
    x = rng.normal(size=(n, 2))
    funder = rng.choice(["china", "world_bank"], n)
    strength = np.where(funder == "world_bank", 1.5, 0.3)
    lin = strength * img[:, 0] + 0.5 * x[:, 0]
    d = rng.binomial(1, 1 / (1 + np.exp(-lin)))
    df = pd.DataFrame({"d": d, "x1": x[:, 0], "x2": x[:, 1], "funder": funder})
    return df, img


def test_placement_image_tabular_both_by_funder():
    df, img = _placement_data()
    res = gc.placement("d ~ x1 + x2", df, images=img, by="funder",
                       learners={"propensity": LogisticRegression()}, folds=5, seed=0)
    assert res.names == ("china", "world_bank")
    wb, cn = res["world_bank"], res["china"]
    assert list(wb.params.index) == ["auc_image", "auc_tabular", "auc_both",
                                     "both_minus_tabular", "image_minus_tabular"]
    # placement is far more predictable from imagery for the World Bank in this DGP
    assert wb.params["auc_image"] > cn.params["auc_image"] + 0.1
    assert wb.params["both_minus_tabular"] > 0 and wb.pvalues["both_minus_tabular"] < 0.01
    ci = wb.conf_int()
    assert (ci.conf_low < wb.params).all() and (wb.params < ci.conf_high).all()
    # the difference's variance is consistent with the DeLong covariance of the AUCs
    v = wb.vcov.to_numpy()
    assert abs(v[3, 3] - (v[2, 2] + v[1, 1] - 2 * v[1, 2])) < 1e-14
    assert wb.diagnostics["p_vs_chance"]["auc_image"] < 1e-6
    # same formula as the effect designs ("y ~ d + x"): the treatment is the first RHS term
    df["y"] = rng_y = np.random.default_rng(3).normal(size=len(df))
    assert rng_y.shape[0] == len(df)
    alt = gc.placement("y ~ d + x1 + x2", df, images=img,
                       learners={"propensity": LogisticRegression()})
    assert "auc_both" in alt.params.index
    boot = gc.placement("d ~ x1 + x2", df, images=img, vcov="bootstrap", n_boot=100,
                        learners={"propensity": LogisticRegression()})
    assert boot.vcov_type == "bootstrap"


def test_placement_skips_groups_without_both_arms():
    df, img = _placement_data(600, 1)
    df.loc[df.funder == "china", "d"] = 1
    with pytest.warns(DiagnosticWarning, match="0 control"):
        res = gc.placement("d ~ x1", df, images=img, by="funder",
                           learners={"propensity": LogisticRegression()})
    assert res.names == ("world_bank",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tab_only = gc.placement("d ~ x1 + x2", df[df.funder == "world_bank"],
                                learners={"propensity": LogisticRegression()})
    assert list(tab_only.params.index) == ["auc_tabular"]
