"""gc.cate: meta-learners, agreement with econml's DRLearner, generic ML coverage, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression, LogisticRegression

import geocausal as gc
from geocausal.designs.cate import crossfit_cate
from geocausal.designs.cate_eval import calibration_test, generic_ml
from geocausal.errors import DataError, DesignError, OptionError
from geocausal.folds import Folds, fold_indices, make_folds


class OLS(RegressorMixin, BaseEstimator):
    """Least squares with intercept via numpy (a fast deterministic learner for Monte Carlo)."""

    def fit(self, X, y, sample_weight=None):
        Z = np.column_stack([np.ones(len(X)), X])
        if sample_weight is not None:
            w = np.sqrt(np.asarray(sample_weight))
            Z, y = Z * w[:, None], y * w
        self.coef_ = np.linalg.lstsq(Z, y, rcond=None)[0]
        return self

    def predict(self, X):
        return self.coef_[0] + np.asarray(X) @ self.coef_[1:]


def dgp(n, seed, het=True):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    d = rng.integers(0, 2, n).astype(float)
    # E[tau] = 1; the linear proxy misses the quadratic part, so the oracle BLP slope is not 1
    tau = 1 + X[:, 0] + 0.5 * (X[:, 1] ** 2 - 1) if het else np.ones(n)
    y = X[:, 0] + X[:, 1] + d * tau + rng.normal(size=n)
    return X, d, y, tau


def frame(X, d, y, tau):
    df = pd.DataFrame(X, columns=["x0", "x1", "x2"])
    df["d"], df["y"], df["tau"] = d, y, tau
    return df


def test_dr_learner_matches_econml():
    from econml.dr import DRLearner

    X, d, y, _ = dgp(800, 1)
    X = X.copy()
    X[:, 2] = X[:, 0] + np.random.default_rng(9).normal(size=800)  # correlated features
    d = (np.random.default_rng(2).random(800) < 1 / (1 + np.exp(-X[:, 0]))).astype(float)
    folds = make_folds(800, 4, seed=3, stratify=d)
    ours = crossfit_cate("dr", X, y, d, folds, outcome_mode="pooled", clip=1e-6,
                         learners={"outcome": LinearRegression(), "final": LinearRegression(),
                                   "propensity": LogisticRegression()})
    splits = [(tr, te) for tr, te in fold_indices(folds)]
    ref = DRLearner(model_propensity=LogisticRegression(), model_regression=LinearRegression(),
                    model_final=LinearRegression(), cv=splits, min_propensity=1e-6)
    ref.fit(y, d, X=X)
    np.testing.assert_allclose(ours.predict(X), ref.effect(X), rtol=0, atol=1e-6)
    Xnew = np.random.default_rng(5).normal(size=(50, 3))
    np.testing.assert_allclose(ours.predict(Xnew), ref.effect(Xnew), rtol=0, atol=1e-6)


@pytest.mark.parametrize("learner,min_cor", [("dr", .9), ("r", .9), ("x", .9), ("t", .9),
                                             ("s", .0), ("forest", .6)])
def test_learners_recover_cate(learner, min_cor):
    X, d, y, _ = dgp(1500, 4)
    tau = 1 + X[:, 0]
    y = X[:, 1] + d * tau + np.random.default_rng(7).normal(size=1500)
    df = frame(X, d, y, tau)
    est = gc.cate("y ~ d + x0 + x1 + x2", df, learner=learner, propensity=.5,
                  options=gc.CateOptions(evaluate=False), truth="tau")
    assert abs(est.params["d"] - 1) < 4 * est.std_errors["d"]
    # the S-learner with a linear outcome model has no interaction, hence no heterogeneity
    if learner == "s":
        assert np.ptp(est.fitted.predict(X)) < 1e-8
    else:
        assert est.diagnostics["cor_truth"] > min_cor


def test_estimated_propensity_grouped_and_spatial_folds():
    X, d, y, tau = dgp(900, 5)
    df = frame(X, d, y, tau)
    df["village"] = np.arange(900) // 9
    df["lon"], df["lat"] = np.random.default_rng(1).uniform(0, 10, (2, 900))
    a = gc.cate("y ~ d + x0 + x1", df, folds=Folds.group("village"),
                vcov={"cluster": "village"}, options={"n_splits": 3, "n_boot": 50})
    assert a.vcov_type == "cluster(village)"
    f = a.diagnostics["fold_ids"]
    assert all(len(np.unique(f[df.village == v])) == 1 for v in range(0, 100, 7))
    b = gc.cate("y ~ d + x0 + x1", df, folds=Folds.spatial(("lon", "lat")), propensity=.5,
                options={"n_splits": 3, "n_boot": 50})
    ev = b.diagnostics["evaluation"]
    assert ev.rate["AUTOC"].estimate > 0 and np.isfinite(ev.rate["AUTOC"].std_error)
    assert set(ev.tidy()["part"]) >= {"blp", "gates", "clan", "rate", "calibration"}
    assert "AUTOC" in str(ev.summary()) or "autoc" in str(b.summary())


def proxy(X, y, d, lrn):
    """A DR-learner proxy trained on auxiliary rows with two inner folds."""
    def fit(rows, s):
        return crossfit_cate("dr", X[rows], y[rows], d[rows],
                             make_folds(rows.size, 2, s, stratify=d[rows]), propensity=.5,
                             learners=lrn)
    return fit


def test_blp_coverage_and_size():
    """BLP intercept covers the ATE and the slope covers its oracle in >= 90% of replications.

    The aggregated intervals have level >= 90% (per-split 95%, median over splits); with
    R = 80 replications, if true coverage were 0.95 the binomial sd is 0.024, so observing
    < 0.90 has probability < 3%; the median aggregation is conservative in practice (~0.99).
    Under no heterogeneity the calibration test's one-sided 5% test rejects at ~5%: with
    R = 80 the MC sd is 0.024, so we accept [0, 0.125] (3 sd); the median-aggregated BLP test is
    conservative by construction (its size is at most 5%), so we check it rejects <= 0.125.
    """
    R, n = 80, 500
    cover1 = cover2 = rej_blp = rej_cal = 0
    lrn = {"outcome": OLS(), "final": OLS()}
    for r in range(R):
        X, d, y, tau = dgp(n, 100 + r)
        fp = proxy(X, y, d, lrn)
        t = generic_ml(y, d, fp, X, propensity=.5, n_splits=5, truth=tau, seed=r)
        t = t.table.set_index("term")
        cover1 += t.loc["beta1", "conf_low"] <= 1 <= t.loc["beta1", "conf_high"]
        cover2 += t.loc["beta2", "conf_low"] <= t.loc["beta2", "oracle"] <= t.loc["beta2", "conf_high"]
        X, d, y, tau = dgp(n, 500 + r, het=False)
        fp = proxy(X, y, d, lrn)
        t = generic_ml(y, d, fp, X, propensity=.5, n_splits=5, seed=r).table.set_index("term")
        rej_blp += t.loc["beta2", "p_value"] < .05
        f = crossfit_cate("dr", X, y, d, make_folds(n, 5, r, stratify=d), propensity=.5,
                          learners=lrn)
        cal = calibration_test(y, d, f.e, f.e * f.mu1 + (1 - f.e) * f.mu0, f.tau)
        rej_cal += cal.p_value[1] < .05
    print(f"coverage beta1 {cover1 / R:.3f} beta2 {cover2 / R:.3f}; size BLP {rej_blp / R:.3f} "
          f"calibration {rej_cal / R:.3f}")
    assert cover1 / R >= .90
    assert cover2 / R >= .90
    assert rej_blp / R <= .125
    assert rej_cal / R <= .125


def test_gates_ordered_and_clan():
    X, d, y, tau = dgp(3000, 11)
    df = frame(X, d, y, tau)
    est = gc.cate("y ~ d + x0 + x1 + x2", df, propensity=.5,
                  options=gc.CateOptions(n_splits=10, n_boot=50), truth="tau")
    g = est.diagnostics["evaluation"].generic_ml
    gates = g.gates.set_index("term")["estimate"]
    vals = [gates[f"gates_{k}"] for k in range(1, 6)]
    assert all(np.diff(vals) > 0), vals
    clan = g.clan.set_index("term")
    # the most affected group has much larger x0 than the least affected, x2 is irrelevant
    assert clan.loc["clan_x0", "conf_low"] > 1
    assert clan.loc["clan_x2", "conf_low"] < 0 < clan.loc["clan_x2", "conf_high"]
    assert est.diagnostics["blp_beta2_p"] < .01


def test_bad_input():
    X, d, y, tau = dgp(200, 3)
    df = frame(X, d, y, tau)
    df["d3"] = np.arange(200) % 3
    with pytest.raises(DataError, match="d3"):
        gc.cate("y ~ d3 + x0", df)
    small = df.iloc[:12].copy()
    small["d"] = [1] + [0] * 11
    with pytest.raises(DesignError, match="treated"):
        gc.cate("y ~ d + x0", small, folds=3)
    df["g"] = np.arange(200) % 3
    with pytest.raises(DesignError, match="groups"):
        gc.cate("y ~ d + x0", df, folds=Folds.group("g", k=5))
    with pytest.raises(DataError, match="learner"):
        gc.cate("y ~ d + x0", df, learner="causal")
    with pytest.raises(DataError, match="effect modifiers"):
        gc.cate("y ~ d", df)
    with pytest.raises(DataError, match="propensity"):
        gc.cate("y ~ d + x0", df, propensity=1.5)
    with pytest.raises(DesignError, match="too few"):
        generic_ml(y[:30], d[:30], None, X[:30])


def test_same_seed_same_numbers_and_summary():
    X, d, y, tau = dgp(400, 8)
    df = frame(X, d, y, tau)
    a = gc.cate("y ~ d + x0", df, options={"n_splits": 3, "n_boot": 30}, seed=2)
    b = gc.cate("y ~ d + x0", df, options={"n_splits": 3, "n_boot": 30}, seed=2)
    np.testing.assert_array_equal(a.diagnostics["cate"], b.diagnostics["cate"])
    assert a.diagnostics["autoc_se"] == b.diagnostics["autoc_se"]
    text = str(a.summary())
    assert "blp_beta2" in text and "autoc" in text
    assert a.to_dict()["design"] == "cate-dr"
    assert gc.api.cate.predict_cate(a, X[:5, :1]).shape == (5,)


# ----------------------------------------------------------------------------- vocabulary
def test_learner_slots_aliases_and_unknown_slot():
    """econml's names are aliases of the canonical slots (same numbers); a typo is an error."""
    X, d, y, tau = dgp(400, 21)
    df = frame(X, d, y, tau)
    kw = {"propensity": None, "options": gc.CateOptions(evaluate=False), "folds": 4}
    canon = gc.cate("y ~ d + x0 + x1", df, learners={"outcome": OLS(), "final": OLS(),
                                                     "propensity": LogisticRegression()}, **kw)
    alias = gc.cate("y ~ d + x0 + x1", df, learners={
        "model_regression": OLS(), "model_final": OLS(),
        "model_propensity": LogisticRegression()}, **kw)
    np.testing.assert_array_equal(canon.diagnostics["cate"], alias.diagnostics["cate"])
    with pytest.raises(OptionError, match="outcom"):
        gc.cate("y ~ d + x0", df, learners={"outcom": OLS()}, **kw)
    with pytest.raises(OptionError, match="given twice"):
        gc.cate("y ~ d + x0", df, learners={"outcome": OLS(), "model_regression": OLS()}, **kw)
    with pytest.raises(OptionError, match="ml_l"):
        crossfit_cate("dr", X, y, d, np.arange(400) % 4, learners={"ml_x": OLS()})


def test_options_object_dict_and_deprecated_keywords():
    """options= takes the object or a dict; old keywords warn and give the same numbers."""
    X, d, y, tau = dgp(500, 22)
    df = frame(X, d, y, tau)
    df["village"] = np.arange(500) // 10
    new = gc.cate("y ~ d + x0", df, propensity=.5, folds=Folds.group("village", k=4),
                  options=gc.CateOptions(n_splits=2, n_boot=40), truth="tau", progress=False)
    as_dict = gc.cate("y ~ d + x0", df, propensity=.5, folds=Folds.group("village", k=4),
                      options={"n_splits": 2, "n_boot": 40}, truth="tau", progress=False)
    with pytest.warns(FutureWarning, match="options=gc.CateOptions") as rec:
        old = gc.cate("y ~ d + x0", df, propensity=.5, folds=4, groups="village", n_splits=2,
                      n_boot=40, truth="tau", progress=False)
    assert any("Folds.group" in str(w.message) for w in rec)
    for other in (as_dict, old):
        assert other.params.equals(new.params)
        assert other.diagnostics["autoc_se"] == new.diagnostics["autoc_se"]
        pd.testing.assert_frame_equal(other.tables["gates"], new.tables["gates"])
    assert new.tables["rate"]["n_boot"].tolist() == [40, 40]
    with pytest.raises(OptionError, match="n_bot"):
        gc.cate("y ~ d + x0", df, options={"n_bot": 40})
    with pytest.raises(OptionError, match="outcome_mode"):
        gc.CateOptions(outcome_mode="joint")
    with pytest.raises(OptionError, match="n_boot"):
        gc.CateOptions(n_boot=1)
    with pytest.raises(OptionError, match="alpha"):
        gc.CateOptions(alpha=1.5)
    with pytest.raises(OptionError, match="clip"):
        gc.cate("y ~ d + x0", df, clip=0.7, options={"evaluate": False})
    with pytest.raises(OptionError, match="Folds.spatial"):
        gc.cate("y ~ d + x0", df, block_size=2.0, options={"evaluate": False})
    with pytest.raises(OptionError, match="fold_groups"):
        gc.cate("y ~ d + x0", df, fold_groups="village")
    # case-insensitive learner names, the shared default n_boot
    up = gc.cate("y ~ d + x0", df, learner="DR", propensity=.5, options={"evaluate": False})
    assert up.design == "cate-dr" and gc.CateOptions().n_boot == 999


def test_tables_fitted_and_spatial_folds_cluster_the_bootstrap():
    """Evaluation tables in est.tables (one convention), the model in est.fitted, spatial
    blocks of Folds.spatial are the RATE bootstrap clusters (differs from unclustered)."""
    X, d, y, tau = dgp(600, 23)
    df = frame(X, d, y, tau)
    df["lon"], df["lat"] = np.random.default_rng(3).uniform(0, 10, (2, 600))
    kw = {"propensity": .5, "options": {"n_splits": 2, "n_boot": 60}, "progress": False}
    sp = gc.cate("y ~ d + x0 + x1", df, folds=Folds.spatial(("lon", "lat"), k=5), **kw)
    assert set(sp.tables) == {"blp", "gates", "clan", "rate", "toc", "calibration"}
    for name, t in sp.tables.items():
        assert list(t.columns[1:3]) == ["estimate", "std_error"] or name in (
            "blp", "gates", "clan"), name
        assert {"ci_low", "ci_high"} <= set(t.columns), name
    toc = sp.tables["toc"]
    assert np.all(toc.ci_low <= toc.estimate) and np.all(toc.estimate <= toc.ci_high)
    assert isinstance(sp.fitted, gc.CateModel) and "model" not in sp.diagnostics
    rate = sp.tables["rate"].set_index("target")
    assert rate.loc["AUTOC", "estimate"] == sp.diagnostics["autoc"]
    ids = np.asarray(sp.diagnostics["fold_ids"])
    rnd = gc.cate("y ~ d + x0 + x1", df, folds=ids, **kw)  # same folds, no clusters
    assert rnd.params.equals(sp.params)
    assert rnd.diagnostics["autoc_se"] != sp.diagnostics["autoc_se"]
