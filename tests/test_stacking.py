"""The default image path: cross-fitted stacking of nuisance candidates (issue 12, item 3)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import geocausal as gc
from geocausal.errors import CandidateFailedWarning, DataError, ImageFeaturesWorseWarning
from geocausal.nuisance.stacking import convex_weights, nuisance_quality, stack_nuisances


def _centre_study(n: int, seed: int):
    """The confounder is the first band at the chip's centre (not its ring)."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    chips = rng.normal(size=(n, 8, 8, 3)) * 0.3
    chips[:, 2:6, 2:6, 0] += signal[:, None, None]
    d = rng.binomial(1, 1 / (1 + np.exp(-1.2 * signal)))
    x = rng.normal(size=n)
    df = pd.DataFrame({"y": 1.0 * d + 2 * signal + 0.5 * x + rng.normal(size=n), "d": d,
                       "x": x})
    return df, chips


def test_default_stack_removes_image_confounding_and_records_quality():
    df, chips = _centre_study(800, 0)
    tab = gc.aipw("y ~ d + x", df, clip=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gc.errors.DiagnosticWarning)
        est = gc.aipw("y ~ d + x", df, images=chips, clip=0.01)
    # tabular-only is far off; the default covers the truth (1.0) within 3.5 SE (two-sided)
    assert abs(tab.params["d"] - 1.0) > 8 * tab.std_errors["d"]
    assert abs(est.params["d"] - 1.0) < 3.5 * est.std_errors["d"]
    q = est.diagnostics["nuisance_quality"]
    cands = {"tabular", "summary", "engineered"}
    # candidates, the stack, and each candidate x learner of the default libraries
    assert set(q.candidate) == cands | {"stack"} | {f"{c}/{m}" for c in cands
                                                    for m in ("ridge", "ridge_pooled", "post_lasso",
                                                              "post_lasso_pooled", "hgb")}
    assert set(q.nuisance) == {"propensity", "outcome0", "outcome1"}
    prop = q[q.nuisance == "propensity"].set_index("candidate")
    assert prop.loc["summary", "auc"] > prop.loc["tabular", "auc"] + 0.15
    assert 0.7 < prop.loc["stack", "calibration_slope"] < 1.3
    sel = est.diagnostics["nuisance_selection"]
    assert sel["winner"]["e"] in ("summary", "engineered")
    assert sel["skipped"]["learned"].startswith("800 images")
    for k in ("e", "mu0", "mu1"):
        assert abs(sum(sel["weights"][k].values()) - 1.0) < 1e-9
    text = str(est.summary())
    assert "propensity_winner" in text and "Nuisance quality (out-of-fold)" in text


def test_tabular_only_candidate_equals_plain_aipw():
    """Peer check: a stack of one candidate is exactly the package's plain AIPW; its SE adds
    the outcome fits' term (the fixed-fit SE, kept in the diagnostics, is the plain one)."""
    from geocausal.nuisance.candidates import stack_learners

    df, chips = _centre_study(300, 1)
    lrn = stack_learners(3)
    lrn = {"propensity": lrn["propensity"], "outcome": lrn["outcome"]["ridge"]}
    plain = gc.aipw("y ~ d + x", df, seed=3, learners=lrn)
    one = gc.aipw("y ~ d + x", df, images=chips, seed=3, learners=lrn,
                  options={"image_options": {"candidates": ("tabular",)}})
    assert one.params["d"] == pytest.approx(plain.params["d"], abs=1e-12)
    assert one.diagnostics["se_outcome_fits_fixed"] == pytest.approx(plain.std_errors["d"],
                                                                     abs=1e-12)
    se_fit = one.diagnostics["outcome_fit_se"]
    assert se_fit > 0 and one.diagnostics["outcome_fits_fixed_share"] == 0.0
    assert one.std_errors["d"] != plain.std_errors["d"]


def test_stack_weights_are_crossfitted_and_noise_gets_little_weight():
    rng = np.random.default_rng(2)
    n = 600
    x = rng.normal(size=(n, 2))
    d = rng.binomial(1, 1 / (1 + np.exp(-x[:, 0])))
    y = d + x[:, 0] + x[:, 1] + rng.normal(size=n)
    folds = np.arange(n) % 4
    noise = np.column_stack([x[:, 1:], rng.normal(size=(n, 20))])
    res = stack_nuisances({"tabular": x[:, 1:], "good": x, "noise": noise}, y, d, folds,
                          LogisticRegression(), LinearRegression())
    assert res.winner == {"e": "good", "mu0": "good", "mu1": "good"}
    assert res.weights["e"]["good"] > 0.8 and res.weights["mu0"]["noise"] < 0.2
    # the weights used for fold 0 are fitted on folds 1-3 only
    P = np.column_stack([res.candidates[c]["e"] for c in ("tabular", "good", "noise")])
    w0 = convex_weights(P[folds != 0], d[folds != 0], "logloss")
    assert np.allclose(res.e[folds == 0], P[folds == 0] @ w0)
    sel = stack_nuisances({"tabular": x[:, 1:], "good": x}, y, d, folds, LogisticRegression(),
                          LinearRegression(), combine="select")
    assert np.allclose(sel.e, sel.candidates["good"]["e"])
    # select_propensity: the propensity as "select" picks it, the outcomes as "stack" mixes them
    cands = {"tabular": x[:, 1:], "good": x, "noise": noise}
    mix = stack_nuisances(cands, y, d, folds, LogisticRegression(), LinearRegression(),
                          combine="select_propensity")
    every = stack_nuisances(cands, y, d, folds, LogisticRegression(), LinearRegression(),
                            combine="select")
    assert np.array_equal(mix.e, every.e) and np.allclose(mix.e, mix.candidates["good"]["e"])
    assert np.array_equal(mix.mu0, res.mu0) and np.array_equal(mix.mu1, res.mu1)
    assert not np.allclose(mix.e, res.e)
    assert sorted(mix.weights["e"].values()) == [0.0, 0.0, 1.0]
    assert mix.combine == "select_propensity"
    assert "select_propensity" in set(mix.quality.candidate)
    with pytest.raises(DataError, match="combine='mix' is not one of"):
        stack_nuisances(cands, y, d, folds, LogisticRegression(), LinearRegression(),
                        combine="mix")


def test_failed_candidate_is_dropped_with_a_named_warning():
    rng = np.random.default_rng(3)
    n = 200
    x = rng.normal(size=(n, 2))
    d = rng.binomial(1, 0.5, n)
    y = x[:, 0] + rng.normal(size=n)

    def broken():
        raise RuntimeError("training diverged in fold 2")

    with pytest.warns(CandidateFailedWarning, match="'learned' failed.*diverged"):
        res = stack_nuisances({"tabular": x, "learned": broken}, y, d, np.arange(n) % 2,
                              LogisticRegression(), LinearRegression())
    assert "learned" in res.dropped and list(res.candidates) == ["tabular"]
    with pytest.raises(RuntimeError):  # the baseline never fails silently
        stack_nuisances({"tabular": broken}, y, d, np.arange(n) % 2, LogisticRegression())
    with pytest.raises(DataError, match="combine"):
        stack_nuisances({"tabular": x}, y, d, np.arange(n) % 2, LogisticRegression(),
                        combine="average")


def test_learned_candidate_that_cannot_train_is_dropped_end_to_end():
    """A learned candidate that fails (here: pretraining with 0 epochs) -> warning, no traceback."""
    df, chips = _centre_study(200, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gc.errors.DiagnosticWarning)
        with pytest.warns(CandidateFailedWarning, match="'learned'.*epochs=0"):
            est = gc.aipw("y ~ d + x", df, images=chips, folds=2, options=gc.IPWOptions(
                image_options={"candidates": ("tabular", "summary", "learned"),
                               "min_learned_images": 0, "learned": {"epochs": 0}}))
    assert "learned" in est.diagnostics["nuisance_selection"]["dropped"]
    assert np.isfinite(est.params["d"])


def test_image_noise_warns_that_images_hurt():
    rng = np.random.default_rng(5)
    n = 300
    x = rng.normal(size=n)
    d = rng.binomial(1, 1 / (1 + np.exp(-x)))
    df = pd.DataFrame({"y": d + x + rng.normal(size=n), "d": d, "x": x})
    chips = rng.normal(size=(n, 8, 8, 4))  # pure noise
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    lrn = {"propensity": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
           "outcome": LinearRegression()}
    with pytest.warns(ImageFeaturesWorseWarning, match="worse than the tabular controls"):
        est = gc.aipw("y ~ d + x", df, images=chips, learners=lrn, folds=3)
    assert abs(est.params["d"] - 1.0) < 4 * est.std_errors["d"]


def test_bad_representation_options_are_named_errors():
    df, chips = _centre_study(100, 6)
    with pytest.raises(DataError, match="representation='bogus'"):
        gc.aipw("y ~ d + x", df, images=chips, options={"representation": "bogus"})
    with pytest.raises(DataError, match="image_options.*colour"):
        gc.aipw("y ~ d + x", df, images=chips, options={"image_options": {"colour": 1}})
    with pytest.raises(DataError, match="unknown nuisance candidates"):
        gc.aipw("y ~ d + x", df, images=chips,
                options={"image_options": {"candidates": ("cnn",)}})
    with pytest.raises(DataError, match="outcome_adaptive='yes' must be True or False"):
        gc.aipw("y ~ d + x", df, images=chips,
                options={"image_options": {"outcome_adaptive": "yes"}})


def test_bad_combine_is_refused_before_the_candidates_are_computed(monkeypatch):
    from geocausal.errors import OptionError
    from geocausal.nuisance import candidates

    def never(*a, **k):
        raise AssertionError("candidates computed before the options were checked")

    monkeypatch.setattr(candidates, "image_candidates", never)
    df, chips = _centre_study(100, 6)
    with pytest.raises(OptionError, match="image_options combine='mix' is not one of 'stack', "
                                          "'select', 'select_propensity'"):
        gc.aipw("y ~ d + x", df, images=chips, options={"image_options": {"combine": "mix"}})


def test_outcome_adaptive_reuses_the_pooled_post_lasso_selection(monkeypatch):
    from geocausal.nuisance import sparse
    from geocausal.nuisance.candidates import propensity_library, stack_learners

    rng = np.random.default_rng(4)
    n = 300
    x = rng.normal(size=(n, 10))
    d = rng.binomial(1, 0.5, n)
    y = x[:, 0] + d + rng.normal(size=n)
    folds = np.arange(n) % 5
    lrn = stack_learners(0)
    prop = propensity_library(lrn["propensity"], outcome_adaptive=True)
    alone = stack_nuisances({"a": x}, y, d, folds, prop, None).library["e"]["a/outcome_adaptive"]  # selector fitted itself
    shapes = []
    fit = sparse.PostLassoRegressor.fit
    monkeypatch.setattr(sparse.PostLassoRegressor, "fit",
                        lambda self, X, t: (shapes.append(X.shape), fit(self, X, t))[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stack_nuisances({"a": x}, y, d, folds, prop, lrn["outcome"])
    # per fold: post_lasso on each arm and one pooled fit (on [d, x]); no fit of its own
    assert len(shapes) == 15 and sum(s == (240, 11) for s in shapes) == 5
    assert np.allclose(res.library["e"]["a/outcome_adaptive"], alone)


def test_outcome_adaptive_entry_is_opt_in():
    df, chips = _centre_study(300, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on = gc.aipw("y ~ d + x", df, images=chips, clip=0.01,
                     options={"image_options": {"candidates": ("tabular", "summary"),
                                                "outcome_adaptive": True}})
        off = gc.aipw("y ~ d + x", df, images=chips, clip=0.01,
                      options={"image_options": {"candidates": ("tabular", "summary")}})
    w_on = on.diagnostics["nuisance_selection"]["weights"]["e"]
    w_off = off.diagnostics["nuisance_selection"]["weights"]["e"]
    assert set(w_on) == {f"{c}/{m}" for c in ("tabular", "summary")
                         for m in ("all_columns", "outcome_adaptive")}
    assert set(w_off) == {"tabular", "summary"}
    # the outcome regressions do not depend on the propensity library
    assert on.diagnostics["nuisance_selection"]["weights"]["mu0"] == \
        off.diagnostics["nuisance_selection"]["weights"]["mu0"]


def test_nuisance_quality_matches_sklearn_metrics():
    from sklearn.metrics import log_loss, r2_score, roc_auc_score

    rng = np.random.default_rng(7)
    n = 400
    d = rng.binomial(1, 0.4, n)
    e = np.clip(0.4 + 0.2 * (d - 0.4) + rng.normal(0, 0.1, n), 0.05, 0.95)
    y = rng.normal(size=n)
    mu0 = y + rng.normal(0, 0.5, n)
    q = nuisance_quality({"m": {"e": e, "mu0": mu0}}, y, d).set_index("nuisance")
    assert q.loc["propensity", "loss"] == pytest.approx(log_loss(d, e), rel=1e-9)
    assert q.loc["propensity", "auc"] == pytest.approx(roc_auc_score(d, e), rel=1e-12)
    assert q.loc["outcome0", "r2"] == pytest.approx(r2_score(y[d == 0], mu0[d == 0]), rel=1e-9)


def test_calibration_slope_matches_statsmodels():
    import statsmodels.api as sm

    rng = np.random.default_rng(8)
    e = rng.uniform(0.1, 0.9, 500)
    d = rng.binomial(1, 1 / (1 + np.exp(-1.7 * np.log(e / (1 - e)))))
    ref = sm.GLM(d, sm.add_constant(np.log(e / (1 - e))), family=sm.families.Binomial()).fit()
    q = nuisance_quality({"m": {"e": e}}, np.zeros(500), d)
    assert q.loc[0, "calibration_slope"] == pytest.approx(ref.params[1], abs=1e-8)


def test_multiscale_features_mask_nan_and_warn_when_not_converged():
    from geocausal.encoders.multiscale import multiscale_features, region_masks

    m = region_masks(4, 4)
    assert np.allclose(m.sum(axis=(1, 2)), 1.0) and m[2, 1:3, 1:3].sum() == 0
    rng = np.random.default_rng(9)
    chips = rng.normal(size=(40, 2, 8, 8, 2)).astype("float32")
    mask = np.ones((40, 2, 8, 8), bool)
    chips[0, 0, :4] = np.nan            # a cloud: masked, NaN pixels
    mask[0, 0, :4] = False
    with pytest.warns(gc.errors.ConvergenceWarning, match="still falling"):
        z, pre = multiscale_features(chips, mask, epochs=1, patience=1, embed_dim=4,
                                     widths=(4,), return_model=True)
    assert z.shape == (40, 2 * 12 + 12) and np.isfinite(z).all()
    # the change columns are the last date's embedding minus the first date's
    assert np.allclose(z[:, 24:], z[:, 12:24] - z[:, :12])
    with pytest.raises(DataError, match="mask shape"):
        multiscale_features(chips, mask[:, 0], epochs=1)


def test_learned_candidate_end_to_end_with_salience(tmp_path):
    from geocausal.results.plot import save
    from geocausal.results.plot_ipw import salience_plot

    df, chips = _centre_study(200, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gc.errors.GeocausalWarning)
        est = gc.aipw("y ~ d + x", df, images=chips.astype("float32"), folds=2, options={
            "image_options": {"candidates": ("tabular", "learned"), "min_learned_images": 0,
                              "learned": {"epochs": 2, "embed_dim": 4, "widths": (4,)}}})
    q = est.diagnostics["nuisance_quality"]
    assert "learned" in set(q.candidate) and np.isfinite(est.params["d"])
    sal = est.diagnostics["salience"]
    assert isinstance(sal, dict), sal
    assert np.asarray(sal["maps"]).shape == (6, 8, 8) and np.isfinite(sal["maps"]).all()
    assert np.asarray(sal["maps"]).max() > 0
    assert save(salience_plot(est), tmp_path / "salience.png").stat().st_size > 0


def test_learned_sides_pool_the_four_halves_beside_the_default_regions(tmp_path):
    """sides=True keeps the default's whole / centre / ring embeddings (the same pretraining)
    and adds the north, south, west and east halves; the image stack and its salience take
    it through image_options={"learned": {"sides": True}}."""
    from geocausal.encoders.multiscale import multiscale_features, multiscale_salience, region_masks

    m = region_masks(4, 4, sides=True)
    assert m.shape == (7, 4, 4) and np.allclose(m.sum(axis=(1, 2)), 1.0)
    assert np.allclose(m[:3], region_masks(4, 4))
    assert m[3, :2].sum() == pytest.approx(1.0) and m[4, 2:].sum() == pytest.approx(1.0)
    assert m[5, :, :2].sum() == pytest.approx(1.0) and m[6, :, 2:].sum() == pytest.approx(1.0)
    assert np.allclose(region_masks(1, 1, sides=True), 1.0)  # one cell: every region is it
    rng = np.random.default_rng(5)
    chips = rng.normal(size=(30, 2, 8, 8, 2)).astype("float32")
    kw = {"epochs": 1, "patience": 1, "embed_dim": 4, "widths": (4,)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gc.errors.ConvergenceWarning)
        z3, pre = multiscale_features(chips, **kw, return_model=True)
        z7 = multiscale_features(chips, **kw, sides=True)
    assert z3.shape == (30, 2 * 12 + 12) and z7.shape == (30, 2 * 28 + 28)
    per_date = z7[:, :56].reshape(30, 2, 28)
    assert np.allclose(per_date[:, :, :12], z3[:, :24].reshape(30, 2, 12), atol=1e-6)
    assert np.allclose(z7[:, 56:], per_date[:, 1] - per_date[:, 0], atol=1e-6)
    s = multiscale_salience(pre.model, chips[:3], None, np.ones(84), sides=True)
    assert s.shape == (3, 2, 8, 8) and np.isfinite(s).all() and s.max() > 0
    with pytest.raises(DataError, match="expected \\(84,\\)"):
        multiscale_salience(pre.model, chips[:3], None, np.ones(36), sides=True)
    with pytest.raises(gc.errors.OptionError, match="sides='yes' must be True or False"):
        multiscale_features(chips, **kw, sides="yes")
    df, img = _centre_study(200, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gc.errors.GeocausalWarning)
        est = gc.aipw("y ~ d + x", df, images=img.astype("float32"), folds=2, options={
            "image_options": {"candidates": ("tabular", "learned"), "min_learned_images": 0,
                              "learned": {**kw, "sides": True}}})
    assert np.isfinite(est.params["d"])
    sal = est.diagnostics["salience"]
    assert isinstance(sal, dict), sal
    assert np.asarray(sal["maps"]).shape == (6, 8, 8) and np.isfinite(sal["maps"]).all()


def test_learner_library_stacks_candidate_by_learner_pairs():
    """Outcome linear in x: the linear learner on the right candidate wins; each candidate's own
    prediction is the fold-wise combination of its learners; weights are convex."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(11)
    n = 600
    x = rng.normal(size=(n, 3))
    d = rng.binomial(1, 1 / (1 + np.exp(-x[:, 0])))
    y = d + 2 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2] + rng.normal(size=n)
    folds = np.arange(n) % 4
    lib = {"ols": LinearRegression(),
           "hgb": HistGradientBoostingRegressor(max_iter=50, random_state=0)}
    res = stack_nuisances({"tabular": x[:, 2:], "full": x}, y, d, folds,
                          LogisticRegression(), lib)
    assert res.winner == {"e": "full", "mu0": "full/ols", "mu1": "full/ols"}
    assert set(res.library["mu0"]) == {"tabular/ols", "tabular/hgb", "full/ols", "full/hgb"}
    assert set(res.weights["e"]) == {"tabular", "full"}
    for k in ("e", "mu0", "mu1"):
        w = np.array(list(res.weights[k].values()))
        assert (w >= 0).all() and abs(w.sum() - 1) < 1e-9
    assert res.weights["mu0"]["full/ols"] > 0.5
    # the candidate "full" alone: its two learners combined with weights from the other folds
    P = np.column_stack([res.library["mu0"]["full/ols"], res.library["mu0"]["full/hgb"]])
    rows = (d == 0) & (folds != 2)
    w2 = convex_weights(P[rows], y[rows], "mse")
    assert np.allclose(res.candidates["full"]["mu0"][folds == 2], P[folds == 2] @ w2)
    q = res.quality.set_index(["nuisance", "candidate"])
    assert q.loc[("outcome0", "full/ols"), "r2"] > q.loc[("outcome0", "tabular/ols"), "r2"] + 0.5
    assert q.loc[("outcome0", "full"), "weight"] == pytest.approx(
        res.weights["mu0"]["full/ols"] + res.weights["mu0"]["full/hgb"])
    # the stacked AIPW lands on the truth (1.0), two-sided
    from geocausal.designs.ipw import Nuisances, estimate

    theta, psi = estimate(y, d, Nuisances(res.e, res.mu0, res.mu1), "aipw", "ATE")
    se = float(np.sqrt((psi ** 2).sum()) / n)
    assert abs(theta - 1.0) < 3.5 * se and 0.05 < se < 0.2
    with pytest.raises(DataError, match="learner library names"):
        stack_nuisances({"tabular": x}, y, d, folds, LogisticRegression(), {"a/b": lib["ols"]})


def test_convex_weights_mix_two_halves_and_never_lose_to_the_best_column():
    rng = np.random.default_rng(12)
    t = rng.normal(size=500)
    a, b = t + rng.normal(size=500), t + rng.normal(size=500)  # independent errors: mix 1/2
    P = np.column_stack([a, b, np.zeros(500)])  # the zero column shrinks: weight ~1/3
    w = convex_weights(P, t, "mse")
    # peer: the equality-constrained least squares solution (KKT system), interior here
    kkt = np.block([[2 * P.T @ P, np.ones((3, 1))], [np.ones((1, 3)), np.zeros((1, 1))]])
    exact = np.linalg.solve(kkt, np.concatenate([2 * P.T @ t, [1.0]]))[:3]
    assert (exact > 0).all() and np.allclose(w, exact, atol=1e-4)
    p = 1 / (1 + np.exp(-rng.normal(size=500)))
    dd = rng.binomial(1, p)
    P = np.column_stack([p, np.full(500, dd.mean()), np.clip(p + 0.3, 0, 1)])
    w = convex_weights(P, dd, "logloss")
    loss = lambda q: -np.mean(dd * np.log(q) + (1 - dd) * np.log1p(-q))  # noqa: E731
    assert loss(P @ w) <= min(loss(P[:, j]) for j in range(3)) + 1e-12


def test_pooled_arms_learner_is_one_fit_on_both_arms_per_fold():
    from geocausal.nuisance.stacking import PooledArms

    rng = np.random.default_rng(13)
    n = 300
    x = rng.normal(size=(n, 2))
    d = rng.binomial(1, 0.5, n)
    y = 2 * d + x[:, 0] + rng.normal(size=n)
    folds = np.arange(n) % 3
    res = stack_nuisances({"tabular": x}, y, d, folds, LogisticRegression(),
                          {"pooled": PooledArms(LinearRegression())})
    for f in range(3):
        tr, te = folds != f, folds == f
        fit = LinearRegression().fit(np.column_stack([d[tr], x[tr]]), y[tr])
        for k, arm in (("mu0", 0.0), ("mu1", 1.0)):
            want = fit.predict(np.column_stack([np.full(te.sum(), arm), x[te]]))
            assert np.allclose(res.library[k]["tabular/pooled"][te], want)
    assert np.allclose(res.mu1 - res.mu0, res.mu1[0] - res.mu0[0], atol=0.3)  # ~2: one slope
    with pytest.raises(DataError, match="PooledArms needs a regressor"):
        PooledArms(object())


def test_outcome_adaptive_propensity_fits_the_outcome_selected_columns_per_fold():
    from geocausal.nuisance.sparse import PostLassoRegressor
    from geocausal.nuisance.stacking import OutcomeAdaptive

    rng = np.random.default_rng(21)
    n = 600
    x = rng.normal(size=(n, 6))  # 0: confounder, 1: instrument (treatment only), 2: outcome only
    d = rng.binomial(1, 1 / (1 + np.exp(-(0.8 * x[:, 0] + 1.2 * x[:, 1]))))
    y = d + 2 * x[:, 0] + 1.5 * x[:, 2] + rng.normal(size=n)
    folds = np.arange(n) % 4
    lib = {"plain": LogisticRegression(), "adaptive": OutcomeAdaptive(LogisticRegression())}
    res = stack_nuisances({"tabular": x}, y, d, folds, lib, LinearRegression())
    got = res.library["e"]["tabular/adaptive"]
    for f in range(4):
        tr, te = folds != f, folds == f
        sel = PostLassoRegressor().fit(np.column_stack([d[tr], x[tr]]), y[tr]).selected_
        cols = np.sort(np.asarray(sel)[np.asarray(sel) > 0] - 1)
        assert 0 in cols and 1 not in cols  # the instrument moves only the treatment
        want = LogisticRegression().fit(x[tr][:, cols], d[tr]).predict_proba(x[te][:, cols])[:, 1]
        assert np.allclose(got[te], want)
    # dropping the instrument makes the propensity less extreme than the plain one's
    assert np.var(got) < np.var(res.library["e"]["tabular/plain"])
    # no column predicts a pure-noise outcome: the propensity is each fold's treated share
    noise = rng.normal(size=n)
    res0 = stack_nuisances({"tabular": x}, noise, d, folds,
                           {"adaptive": OutcomeAdaptive(LogisticRegression())}, LinearRegression())
    for f in range(4):
        assert np.allclose(res0.e[folds == f], d[folds != f].mean())
    with pytest.raises(DataError, match="OutcomeAdaptive needs a classifier"):
        OutcomeAdaptive(LinearRegression())
    with pytest.raises(DataError, match="selector needs fit"):
        OutcomeAdaptive(LogisticRegression(), selector=object())
    with pytest.raises(DataError, match="sets no selected_"):
        stack_nuisances({"tabular": x}, y, d, folds,
                        OutcomeAdaptive(LogisticRegression(), selector=LinearRegression()))


def test_default_engineered_candidate_uses_every_statistic_group():
    from geocausal.features.engineered import (
        ALL_STATS,
        INDEX_CONTRAST_VALUES,
        INDEX_THRESHOLD_VALUES,
    )
    from geocausal.features.indices import NORMALISED_DIFFERENCES
    from geocausal.nuisance.candidates import ENGINEERED_DEFAULTS

    assert tuple(ENGINEERED_DEFAULTS["stats"]) == ALL_STATS
    assert ENGINEERED_DEFAULTS["threshold_channels"] == "all"
    vals = ENGINEERED_DEFAULTS["index_threshold_values"]
    assert set(vals) == set(NORMALISED_DIFFERENCES) and vals["NDVI"] == INDEX_THRESHOLD_VALUES
    assert len(INDEX_THRESHOLD_VALUES) == 19 and {-0.9, 0.0, 0.4, 0.9} <= set(INDEX_THRESHOLD_VALUES)
    assert ENGINEERED_DEFAULTS["index_contrast_values"] == {
        k: INDEX_CONTRAST_VALUES for k in NORMALISED_DIFFERENCES}


def test_gcv_ridge_is_ridgecv_on_tall_and_wide_matrices():
    """Peer check: the same penalty and predictions as scikit-learn's RidgeCV (default mode),
    whichever decomposition the shape picks."""
    from sklearn.linear_model import RidgeCV

    from geocausal.nuisance.sparse import GCVRidge, gcv_mode

    rng = np.random.default_rng(11)
    alphas = np.logspace(-2, 5, 15)
    for n, p in ((120, 100), (80, 150), (200, 5)):
        X = rng.normal(size=(n, p)) @ rng.normal(size=(p, p)) * 0.3
        y = X[:, 0] - X[:, 1] + rng.normal(size=n)
        a = GCVRidge(alphas=alphas).fit(X, y)
        b = RidgeCV(alphas=alphas).fit(X, y)
        assert a.alpha_ == b.alpha_ and a.best_score_ == pytest.approx(b.best_score_, rel=1e-6)
        assert np.allclose(a.predict(X), b.predict(X), rtol=1e-6, atol=1e-8)
        assert a.ridge_.gcv_mode == gcv_mode(X.shape) == ("svd" if n > p else "auto")


def test_distinct_columns_drops_constant_and_repeated_columns_and_the_candidate_uses_it():
    from geocausal.nuisance.candidates import engineered_candidate
    from geocausal.nuisance.sparse import distinct_columns

    rng = np.random.default_rng(3)
    a = rng.normal(size=(30, 3))
    X = np.column_stack([a[:, 0], np.full(30, 2.0), a[:, 1], a[:, 0], a[:, 2], a[:, 1]])
    assert distinct_columns(X).tolist() == [0, 2, 4]
    assert distinct_columns(np.ones((4, 2))).tolist() == []
    chips = rng.uniform(0.05, 0.5, size=(12, 8, 8, 2))
    chips[:, :, :, 1] = 0.3  # a constant band: its statistics are constant
    f = engineered_candidate(chips, None, {"red": 1, "nir": 2}, {"indices": ["NDVI"]})
    assert np.ptp(f, axis=0).min() > 0
    assert np.unique(f, axis=1).shape[1] == f.shape[1]


def test_post_lasso_selects_the_sparse_columns_and_refits_them_like_ols():
    """Peer check: after selection the coefficients are statsmodels' OLS on those columns
    (no lasso shrinkage); with a dense signal the selection is capped."""
    import statsmodels.api as sm

    from geocausal.nuisance.sparse import PostLassoRegressor

    rng = np.random.default_rng(21)
    n, p = 400, 300
    x = rng.normal(size=(n, p))
    y = 1.0 + 2.0 * x[:, 3] - 1.5 * x[:, 10] + 0.5 * x[:, 200] + rng.normal(size=n)
    m = PostLassoRegressor().fit(x, y)
    assert {3, 10, 200} <= set(m.selected_.tolist()) and len(m.selected_) <= 10
    ols = sm.OLS(y, sm.add_constant(x[:, m.selected_])).fit()
    np.testing.assert_allclose(m.coef_[m.selected_], ols.params[1:], rtol=1e-4, atol=1e-6)
    assert m.intercept_ == pytest.approx(ols.params[0], abs=1e-5)
    np.testing.assert_allclose(m.predict(x), ols.fittedvalues, atol=1e-5)
    # no signal: (almost) nothing selected, predictions near the mean
    z = PostLassoRegressor().fit(x, rng.normal(size=n))
    assert len(z.selected_) <= 3
    dense = PostLassoRegressor(max_share=0.02).fit(x, x[:, :100].sum(1))
    assert len(dense.selected_) <= 8
    with pytest.raises(DataError, match="max_share"):
        PostLassoRegressor(max_share=0).fit(x, y)


def test_post_lasso_leaves_constant_and_repeated_columns_out_of_the_path():
    """Constant columns (a threshold share without variation in one arm of one fold) and
    repeats of an earlier column made scikit-learn's LARS fail inside the default stack (the
    engineered candidate was dropped); they are left out, so the selection is that of the
    distinct columns, mapped back to the first copy."""
    from geocausal.nuisance.sparse import PostLassoRegressor, bic_select

    rng = np.random.default_rng(5)
    n = 200
    x = rng.normal(size=(n, 30))
    y = 2.0 * x[:, 4] - x[:, 17] + rng.normal(size=n)
    # columns: x0..x29, a constant, x4 again, x17 again, zeros
    wide = np.column_stack([x, np.full(n, 3.0), x[:, 4], x[:, 17], np.zeros(n)])
    xs = (x - x.mean(0)) / x.std(0)
    ws = (wide - wide.mean(0)) / np.where(wide.std(0) > 0, wide.std(0), 1.0)
    sel = bic_select(ws, y, 20)
    assert sel.tolist() == bic_select(xs, y, 20).tolist()  # same columns, first copies only
    assert {4, 17} <= set(sel.tolist()) and not set(sel.tolist()) & {30, 31, 32, 33}
    m = PostLassoRegressor().fit(wide, y)
    np.testing.assert_allclose(m.predict(wide), PostLassoRegressor().fit(x, y).predict(x),
                               atol=1e-8)
    assert m.coef_[30:].tolist() == [0.0, 0.0, 0.0, 0.0]
    # a matrix of constant columns selects nothing and predicts the mean
    flat = PostLassoRegressor().fit(np.ones((n, 3)), y)
    assert flat.selected_.tolist() == [] and flat.predict(np.ones((2, 3))) == pytest.approx(
        [y.mean()] * 2)


@pytest.mark.parametrize("estimand,trim", [("ATT", None), ("ATE", 0.1)])
def test_stack_se_with_the_outcome_fits_for_the_att_and_after_trimming(estimand, trim):
    """The ATT's term has the control arm's fits only; after trimming, the kept units' term.
    The fixed-fit SE is the plain AIPW's on the same nuisances in both."""
    from geocausal.nuisance.candidates import stack_learners

    df, chips = _centre_study(300, 2)
    lrn = stack_learners(3)
    lrn = {"propensity": lrn["propensity"], "outcome": lrn["outcome"]["post_lasso"]}
    kw = {"estimand": estimand, "trim": trim, "seed": 3, "learners": lrn}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gc.errors.DiagnosticWarning)
        plain = gc.aipw("y ~ d + x", df, **kw)
        one = gc.aipw("y ~ d + x", df, images=chips, **kw,
                      options={"image_options": {"candidates": ("tabular",)}})
    assert one.params["d"] == pytest.approx(plain.params["d"], abs=1e-12)
    diag = one.diagnostics
    assert diag["se_outcome_fits_fixed"] == pytest.approx(plain.std_errors["d"], abs=1e-12)
    assert np.isfinite(one.std_errors["d"]) and diag["outcome_fit_se"] > 0
    assert "outcome_fit_se" in str(one.summary())


def test_ipw_on_the_stack_keeps_the_stack_nuisance_quality():
    """Weighting without an outcome model on the image stack: the diagnostics are the
    stack's (its candidates and the stack), not replaced by a single model's quality."""
    df, chips = _centre_study(300, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gc.errors.DiagnosticWarning)
        est = gc.ipw("y ~ d + x", df, images=chips, seed=3,
                     options={"image_options": {"candidates": ("tabular",)}})
    q = est.diagnostics["nuisance_quality"]
    assert "stack" in set(q.candidate) and "model" not in set(q.candidate)
    assert "se_outcome_fits_fixed" not in est.diagnostics  # no outcome fits in IPW
