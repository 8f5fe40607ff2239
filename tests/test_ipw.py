"""IPW / AIPW: agreement with DoubleML, the NHEFS textbook example, coverage, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import geocausal as gc
from geocausal.designs.ipw import aipw_ate, aipw_att
from geocausal.errors import DataError, DesignError, DiagnosticWarning, GeocausalError
from geocausal.nuisance.crossfit import fold_indices, make_folds


def _confounded(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    e = 1 / (1 + np.exp(-(0.8 * x[:, 0] - 0.5 * x[:, 1])))
    d = rng.binomial(1, e)
    y = 1.0 + 2.0 * d + x @ np.array([1.0, 0.5, -0.3]) + 0.5 * d * x[:, 2] + rng.normal(size=n)
    df = pd.DataFrame(x, columns=["x1", "x2", "x3"])
    df["d"], df["y"], df["e"] = d, y, e
    return df


LEARNERS = {"propensity": LogisticRegression(), "outcome": LinearRegression()}


# ----------------------------------------------------------------------------- DoubleML
@pytest.mark.parametrize(("score", "estimand"), [("ATE", "ATE"), ("ATTE", "ATT")])
def test_aipw_equals_doubleml_with_external_predictions(score, estimand):
    import doubleml as dml

    df = _confounded(1500, 1)
    rng = np.random.default_rng(2)
    ehat = np.clip(df.e + rng.normal(0, 0.03, len(df)), 0.05, 0.95).to_numpy()
    mu0 = (1 + df[["x1", "x2", "x3"]].to_numpy() @ [1.0, 0.5, -0.3] + rng.normal(0, .2, len(df)))
    mu1 = mu0 + 2 + rng.normal(0, 0.2, len(df))
    obj = dml.DoubleMLData(df.drop(columns="e"), "y", "d", ["x1", "x2", "x3"])
    m = dml.DoubleMLIRM(obj, LinearRegression(), LogisticRegression(), score=score)
    m.fit(external_predictions={"d": {"ml_g0": mu0[:, None], "ml_g1": mu1[:, None],
                                      "ml_m": ehat[:, None]}})
    ours = gc.aipw("y ~ d + x1 + x2 + x3", df, estimand=estimand, propensity=ehat,
                   predictions={"mu0": mu0, "mu1": mu1})
    assert abs(ours.params["d"] - m.coef[0]) < 1e-8
    assert abs(ours.std_errors["d"] - m.se[0]) < 1e-8


@pytest.mark.parametrize(("score", "estimand"), [("ATE", "ATE"), ("ATTE", "ATT")])
def test_aipw_equals_doubleml_same_learners_and_folds(score, estimand):
    import doubleml as dml

    df = _confounded(1200, 3)
    folds = make_folds(len(df), 5, seed=4, stratify=df.d)
    smpls = [(tr, te) for tr, te in fold_indices(folds)]
    obj = dml.DoubleMLData(df.drop(columns="e"), "y", "d", ["x1", "x2", "x3"])
    m = dml.DoubleMLIRM(obj, LinearRegression(), LogisticRegression(), score=score,
                        draw_sample_splitting=False)
    m.set_sample_splitting([smpls])
    m.fit()
    ours = gc.aipw("y ~ d + x1 + x2 + x3", df, estimand=estimand, learners=LEARNERS,
                   folds=folds)
    assert abs(ours.params["d"] - m.coef[0]) < 1e-8
    assert abs(ours.std_errors["d"] - m.se[0]) < 1e-8


# ----------------------------------------------------------------------------- NHEFS
NHEFS_FORMULA = (
    "wt82_71 ~ qsmk + sex + race + age + I(age**2) + C(education) + smokeintensity"
    " + I(smokeintensity**2) + smokeyrs + I(smokeyrs**2) + C(exercise) + C(active)"
    " + wt71 + I(wt71**2)")


def test_nhefs_stabilized_ipw_matches_hernan_robins():
    """Hernan & Robins ch. 12 (Program 12.3): 3.44 kg, 95% CI [2.41, 4.47].

    Their CI is the robust (GEE sandwich) SE of the weighted regression of wt82_71 on qsmk
    with stabilised weights; our Hajek IPW with the textbook logistic propensity held fixed
    and vcov="hetero" is exactly that sandwich.
    """
    import statsmodels.formula.api as smf
    from causaldata import nhefs

    df = nhefs.load_pandas().data
    df = df[df["wt82"].notna()].reset_index(drop=True)
    assert len(df) == 1566
    ps_formula = NHEFS_FORMULA.replace("wt82_71 ~ qsmk +", "qsmk ~")
    ps = smf.logit(ps_formula, df).fit(disp=0).predict(df).to_numpy()
    est = gc.ipw(NHEFS_FORMULA, df, propensity=ps, options=gc.IPWOptions(stabilized=True))
    ci = est.conf_int().loc["qsmk"]
    assert round(est.params["qsmk"], 2) == 3.44
    assert round(ci.conf_low, 2) == 2.41 and round(ci.conf_high, 2) == 4.47
    # the weighted regression with stabilised weights gives the same point estimate
    sw = np.where(df.qsmk == 1, df.qsmk.mean() / ps, (1 - df.qsmk.mean()) / (1 - ps))
    wls = smf.wls("wt82_71 ~ qsmk", df, weights=sw).fit(cov_type="HC0")
    assert abs(wls.params["qsmk"] - est.params["qsmk"]) < 1e-10
    assert abs(wls.bse["qsmk"] - est.std_errors["qsmk"]) < 1e-10
    # balance improves after weighting on every covariate
    bal = est.diagnostics["balance"]
    assert bal["smd_weighted"].abs().max() < 0.1 < bal["smd_unweighted"].abs().max()


# ----------------------------------------------------------------------------- coverage
def _batched_logit(X, d, mask, iters=12):
    """Unpenalised logistic regression by Newton steps, one fit per replication (batched)."""
    beta = np.zeros(X.shape[::2])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.einsum("bnk,bk->bn", X, beta)))
        w = p * (1 - p) * mask
        H = np.einsum("bnk,bn,bnl->bkl", X, w, X)
        g = np.einsum("bnk,bn->bk", X, (d - p) * mask)
        beta += np.linalg.solve(H, g[..., None])[..., 0]
    return beta


def _batched_ols(X, y, mask):
    XtX = np.einsum("bnk,bn,bnl->bkl", X, mask, X)
    return np.linalg.solve(XtX, np.einsum("bnk,bn->bk", X, mask * y)[..., None])[..., 0]


def test_monte_carlo_coverage_aipw_ate_and_att():
    """300 replications of a confounded DGP (true ATE 2; ATT 2 + 0.5 E[x3 | d=1] = 2).

    Nuisances are fixed parametric learners (logistic and linear regression) fitted with
    2-fold cross-fitting, vectorised over replications. 95% CIs must cover in [0.92, 0.98]:
    the binomial MC s.e. at 0.95 is 0.0126, so this is a +/- 2.4 s.e. band.
    """
    reps, n = 300, 400
    dfs = [_confounded(n, 1000 + r) for r in range(reps)]
    X = np.stack([np.column_stack([np.ones(n), f[["x1", "x2", "x3"]].to_numpy()]) for f in dfs])
    y = np.stack([f.y.to_numpy() for f in dfs])
    d = np.stack([f.d.to_numpy() for f in dfs]).astype(float)
    fold = np.stack([make_folds(n, 2, seed=r, stratify=d[r]) for r in range(reps)])
    e, mu0, mu1 = np.empty_like(y), np.empty_like(y), np.empty_like(y)
    for k in (0, 1):
        train = (fold != k).astype(float)
        pred = lambda b: np.einsum("bnk,bk->bn", X, b)  # noqa: E731
        test = fold == k
        e[test] = (1 / (1 + np.exp(-pred(_batched_logit(X, d, train)))))[test]
        mu0[test] = pred(_batched_ols(X, y, train * (1 - d)))[test]
        mu1[test] = pred(_batched_ols(X, y, train * d))[test]
    hits = {"ATE": 0, "ATT": 0}
    for r in range(reps):
        for est, (theta, psi) in (("ATE", aipw_ate(y[r], d[r], e[r], mu0[r], mu1[r])),
                                  ("ATT", aipw_att(y[r], d[r], e[r], mu0[r]))):
            se = np.sqrt(psi @ psi) / n
            hits[est] += abs(theta - 2.0) <= 1.959964 * se
    naive = (y * d).sum(1) / d.sum(1) - (y * (1 - d)).sum(1) / (1 - d).sum(1) - 2.0
    assert naive.mean() > 0.3  # the DGP is confounded: naive bias about 0.47
    for est in hits:
        assert 0.92 <= hits[est] / reps <= 0.98, (est, hits[est] / reps)


# ----------------------------------------------------------------------------- features
def test_images_feature_matrix_removes_image_confounding():
    rng = np.random.default_rng(5)
    n = 2000
    img = rng.normal(size=(n, 4))  # image features that drive placement and outcomes
    x = rng.normal(size=n)
    e = 1 / (1 + np.exp(-(1.2 * img[:, 0] + 0.3 * x)))
    d = rng.binomial(1, e)
    y = 1.0 * d + 2.0 * img[:, 0] + x + rng.normal(size=n)
    df = pd.DataFrame({"y": y, "d": d, "x": x, "country": rng.integers(0, 20, n)})
    tab = gc.aipw("y ~ d + x", df, learners=LEARNERS, seed=1)
    both = gc.aipw("y ~ d + x", df, images=img, learners=LEARNERS, seed=1)
    assert tab.params["d"] - 1.0 > 1.0  # biased without imagery
    assert abs(both.params["d"] - 1.0) < 3 * both.std_errors["d"]
    assert both.diagnostics["features"] == "tabular+image"
    assert "image_pc1" in set(both.diagnostics["balance"]["term"])
    # cluster-robust SE from any data column, after the fact
    cl = both.with_vcov({"cluster": "country"})
    assert cl.vcov_type == "cluster(country)" and cl.std_errors["d"] > 0
    direct = gc.aipw("y ~ d + x", df, images=img, learners=LEARNERS, seed=1,
                     vcov={"cluster": "country"})
    assert abs(direct.std_errors["d"] - cl.std_errors["d"]) < 1e-12


def test_ipw_variants_and_trimming():
    df = _confounded(1500, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        ht = gc.ipw("y ~ d + x1 + x2 + x3", df, normalized=False, propensity="e")
        hj = gc.ipw("y ~ d + x1 + x2 + x3", df, propensity="e")
        att = gc.ipw("y ~ d + x1 + x2 + x3", df, propensity="e", estimand="ATT")
    for est in (ht, hj, att):
        assert abs(est.params["d"] - 2.0) < 4 * est.std_errors["d"]
    assert ht.design == "ipw-ht" and hj.design == "ipw-hajek" and att.estimand == "ATT"
    with pytest.warns(DiagnosticWarning, match="dropped"):
        tr = gc.aipw("y ~ d + x1 + x2 + x3", df, learners=LEARNERS, trim=0.1)
    assert tr.diagnostics["n_trimmed"] > 0
    assert tr.nobs == len(df) - tr.diagnostics["n_trimmed"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        cr = gc.aipw("y ~ d + x1 + x2 + x3", df, learners=LEARNERS, trim="crump")
    assert cr.diagnostics["trimming"]["rule"] == "crump"
    assert cr.diagnostics["propensity_min"] >= cr.diagnostics["trimming"]["threshold"]


def test_by_subgroups_estimate_set():
    df = _confounded(1600, 8)
    rng = np.random.default_rng(0)
    df["funder"] = rng.choice(["china", "world_bank"], len(df))
    df["sector"] = rng.choice(["health", "transport"], len(df))
    res = gc.aipw("y ~ d + x1 + x2 + x3", df, learners=LEARNERS, by=["funder", "sector"])
    assert isinstance(res, gc.EstimateSet) and len(res) == 4
    tidy = res.tidy()
    assert {"p_holm", "p_bh"} <= set(tidy.columns)
    assert (tidy.p_holm >= tidy.p_value - 1e-15).all()
    assert "china x health" in res.etable().columns
    assert res.plot() is not None
    # a subgroup with no treated units is skipped with a warning giving counts
    df.loc[df.funder == "china", "d"] = 0
    with pytest.warns(DiagnosticWarning, match=r"0 treated and \d+ control"):
        res2 = gc.aipw("y ~ d + x1 + x2 + x3", df, learners=LEARNERS, by="funder")
    assert res2.names == ("world_bank",)
    assert res2.diagnostics["skipped_groups"]["china"].startswith("0 treated")


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors():
    df = _confounded(300, 9)
    bad = df.assign(d=df.d * 2 + (df.x1 > 1))
    with pytest.raises(DataError, match="binary"):
        gc.aipw("y ~ d + x1", bad)
    nan = df.copy()
    nan.loc[:4, "x1"] = np.nan
    with pytest.raises(DataError, match=r"'x1': 5"):
        gc.aipw("y ~ d + x1", nan)
    e = df.e.to_numpy().copy()
    e[:3], e[3:5] = 0.0, 1.0
    with pytest.raises(DesignError, match="3 propensities are <= 0 and 2 are >= 1"):
        gc.ipw("y ~ d + x1", df, propensity=e)
    with pytest.warns(DiagnosticWarning, match="dropped 5 units"):
        gc.ipw("y ~ d + x1", df, propensity=e, trim=0.01)
    with pytest.raises(DesignError, match="0 treated"):
        gc.aipw("y ~ d + x1", df.assign(d=0))
    with pytest.raises(GeocausalError):
        gc.aipw("y ~ d + x1", df, estimand="LATE")
    with pytest.raises(DataError, match="features"):
        gc.aipw("y ~ d", df)


def test_balance_and_plots(tmp_path):
    from geocausal.results.plot import save
    from geocausal.results.plot_ipw import love_plot, overlap_plot

    df = _confounded(800, 10)
    tab = gc.balance("y ~ d + x1 + x2 + x3", df, propensity="e")
    assert list(tab.term) == ["x1", "x2", "x3"]
    assert tab.smd_weighted.abs().max() < tab.smd_unweighted.abs().max()
    est = gc.aipw("y ~ d + x1 + x2 + x3", df, learners=LEARNERS)
    p1 = save(overlap_plot(est), tmp_path / "overlap.png")
    p2 = save(love_plot(est), tmp_path / "love.png")
    assert p1.stat().st_size > 0 and p2.stat().st_size > 0
    assert "ess_treated" in est.diagnostics and est.summary() is not None
    assert est.to_dict()["design"] == "aipw"


class _ChipMeanLogit:
    """A minimal image learner: logistic regression on per-band chip means.

    ``uses_images = True`` asks the design to feed it the chips rather than the features.
    """

    uses_images = True

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self

    def fit(self, chips, d):
        self.model_ = LogisticRegression().fit(chips.mean(axis=(1, 2)), d)
        return self

    def predict_proba(self, chips):
        return self.model_.predict_proba(chips.mean(axis=(1, 2)))


def test_chips_and_image_learner_routes():
    rng = np.random.default_rng(11)
    n = 600
    signal = rng.normal(size=n)
    chips = rng.normal(size=(n, 6, 6, 2)) * 0.3 + signal[:, None, None, None] * np.array([1.0, 0.0])
    d = rng.binomial(1, 1 / (1 + np.exp(-1.5 * signal)))
    y = 1.0 * d + 2.0 * signal + rng.normal(size=n)
    df = pd.DataFrame({"y": y, "d": d, "x": rng.normal(size=n)})
    # chips (N, H, W, C) become per-band summary features
    est = gc.aipw("y ~ d + x", df, images=chips, learners=LEARNERS)
    assert abs(est.params["d"] - 1.0) < 4 * est.std_errors["d"]
    # an image learner receives the chips themselves
    est2 = gc.ipw("y ~ d + x", df, images=chips, learners={"propensity": _ChipMeanLogit()})
    assert abs(est2.params["d"] - 1.0) < 4 * est2.std_errors["d"]
    assert est2.diagnostics["salience"].startswith("unavailable") or "maps" in est2.diagnostics["salience"]


def test_image_learner_propensity_with_salience(tmp_path):
    """The JAX ImageLearner fills the propensity slot; salience maps come back and draw."""
    from geocausal.nuisance.image_learner import ImageLearner
    from geocausal.results.plot import save
    from geocausal.results.plot_ipw import salience_plot

    rng = np.random.default_rng(12)
    n = 160
    signal = rng.normal(size=n)
    chips = (rng.normal(size=(n, 8, 8, 3)) * 0.3
             + signal[:, None, None, None] * np.array([1.0, 0.0, 0.0])).astype("float32")
    d = rng.binomial(1, 1 / (1 + np.exp(-signal)))
    df = pd.DataFrame({"y": d + signal + rng.normal(size=n), "d": d, "x": rng.normal(size=n)})
    lrn = ImageLearner(epochs=2, widths=(4,), embed_dim=4, batch_size=32, seed=0)
    est = gc.ipw("y ~ d + x", df, images=chips, learners={"propensity": lrn}, folds=2)
    e = est.diagnostics["propensity"]["propensity"]
    assert e.between(0, 1).all() and np.isfinite(est.params["d"])
    sal = est.diagnostics["salience"]
    assert isinstance(sal, dict), sal
    assert np.asarray(sal["maps"]).shape == (6, 8, 8) and np.all(np.isfinite(sal["maps"]))
    assert save(salience_plot(est), tmp_path / "salience.png").stat().st_size > 0


def test_image_learners_also_adjust_for_the_formula_controls():
    """Image nuisance models see the tabular controls too: a confounder x that is not in the
    images is adjusted for (without it both CNN nuisances ignored x and AIPW kept its bias)."""
    from geocausal.nuisance.image_learner import ImageLearner

    rng = np.random.default_rng(21)
    n = 800
    chips = rng.normal(size=(n, 8, 8, 2)).astype("float32")
    x = rng.normal(size=n)
    d = (rng.random(n) < 1 / (1 + np.exp(-1.5 * x))).astype(int)
    df = pd.DataFrame({"y": 1.0 * d + 2 * x + rng.normal(size=n), "d": d, "x": x})
    lr = ImageLearner(epochs=3, widths=(4,), embed_dim=4, batch_size=64, seed=0)
    est = gc.aipw("y ~ d + x", df, images=chips, learners={"propensity": lr, "outcome": lr},
                  folds=2, clip=0.01)
    naive = df.y[df.d == 1].mean() - df.y[df.d == 0].mean()
    se = est.std_errors["d"]
    assert abs(naive - 1.0) > 10 * se          # x confounds strongly
    assert abs(est.params["d"] - 1.0) < 4 * se, (est.params["d"], se)
