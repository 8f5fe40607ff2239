"""The outcome fits' first-order term of the AIPW influence function (issue 12: the default
image stack's SE missed the fits' own sampling error)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from geocausal.designs.ipw import aipw_ate, aipw_att, aipw_outcome_gradient
from geocausal.nuisance.smoothers import smoother_adjoint
from geocausal.nuisance.sparse import GCVRidge, PostLassoRegressor
from geocausal.nuisance.stacking import PooledArms, outcome_fit_influence, stack_nuisances


def _moved(make, X, Xt, y, delta, g):
    """How ``g @ predictions`` moves when the training outcomes move by ``delta``."""
    return g @ (make().fit(X, y + delta).predict(Xt) - make().fit(X, y).predict(Xt))


@pytest.mark.parametrize("kind", ["ols", "ols_no_intercept", "ridge", "gcv_pipeline",
                                  "wide_ridge", "post_lasso"])
def test_adjoint_is_how_the_weighted_predictions_move(kind):
    rng = np.random.default_rng(1)
    n, p = (40, 80) if kind == "wide_ridge" else (120, 6)
    X, Xt = rng.normal(size=(n, p)) * 3 + 1, rng.normal(size=(25, p)) * 3 + 1
    y = X[:, 0] - 2 * X[:, 1] + rng.normal(size=n)
    g = rng.normal(size=25)
    fitted = {"ols": LinearRegression, "ols_no_intercept": lambda: Ridge(0.0, fit_intercept=False),
              "ridge": lambda: Ridge(alpha=5.0), "wide_ridge": lambda: Ridge(alpha=2.0),
              "gcv_pipeline": lambda: make_pipeline(StandardScaler(),
                                                    GCVRidge(alphas=np.logspace(-2, 3, 6))),
              "post_lasso": PostLassoRegressor}[kind]
    fit = fitted().fit(X, y)
    if kind == "gcv_pipeline":  # the penalty held at the one chosen
        a = fit[-1].alpha_
        fitted = lambda: make_pipeline(StandardScaler(), GCVRidge(alphas=[a]))  # noqa: E731
    # post-lasso: a small move keeps the lasso's selection, so the refit is linear
    scale = 1e-4 if kind == "post_lasso" else 1.0
    delta = scale * rng.normal(size=n)
    if kind == "post_lasso":
        assert fitted().fit(X, y + delta).selected_.tolist() == fit.selected_.tolist()
    h = smoother_adjoint(fit, X, Xt, g)
    assert h.shape == (n,)
    assert np.isclose(h @ delta, _moved(fitted, X, Xt, y, delta, g), rtol=1e-6, atol=1e-10)


def test_adjoint_is_none_for_learners_that_are_not_linear_smoothers():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(60, 3)), rng.normal(size=60)
    g = np.ones(5)
    hgb = HistGradientBoostingRegressor(max_iter=5).fit(X, y)
    poly = make_pipeline(PolynomialFeatures(2), LinearRegression()).fit(X, y)
    assert smoother_adjoint(hgb, X, X[:5], g) is None
    assert smoother_adjoint(poly, X, X[:5], g) is None  # only scalers before the last step


def test_aipw_outcome_gradient_is_the_derivative_of_the_estimate():
    rng = np.random.default_rng(3)
    n = 50
    d = (rng.uniform(size=n) < 0.4).astype(float)
    e, y = rng.uniform(0.2, 0.8, n), rng.normal(size=n)
    mu0, mu1 = rng.normal(size=n), rng.normal(size=n)
    bump = rng.normal(size=n)
    g = aipw_outcome_gradient(d, e)
    assert np.isclose(aipw_ate(y, d, e, mu0, mu1 + bump)[0] - aipw_ate(y, d, e, mu0, mu1)[0],
                      g["mu1"] @ bump)
    assert np.isclose(aipw_ate(y, d, e, mu0 + bump, mu1)[0] - aipw_ate(y, d, e, mu0, mu1)[0],
                      g["mu0"] @ bump)
    gt = aipw_outcome_gradient(d, e, "ATT")
    assert set(gt) == {"mu0"}
    assert np.isclose(aipw_att(y, d, e, mu0 + bump)[0] - aipw_att(y, d, e, mu0)[0],
                      gt["mu0"] @ bump)


def _stack(x, y, d, folds, outcome):
    return stack_nuisances({"x": x}, y, d, folds, LogisticRegression(C=0.01), outcome)


def test_the_term_is_how_the_estimate_moves_through_the_refitted_outcomes():
    """Moving unit j's outcome moves the stacked out-of-fold predictions of the other folds;
    the term (divided by j's residual) is that move of the AIPW estimate, the score's own
    outcome and the propensity held fixed, for pooled and per-arm learners."""
    rng = np.random.default_rng(4)
    n = 160
    x = rng.normal(size=(n, 3))
    d = (rng.uniform(size=n) < 1 / (1 + np.exp(-x[:, 0]))).astype(int)
    y = x @ [1.0, -1.0, 0.5] + d + rng.normal(size=n)
    folds = np.arange(n) % 4
    for outcome in (LinearRegression(), PooledArms(Ridge(alpha=3.0))):
        res = _stack(x, y, d, folds, outcome)
        g = aipw_outcome_gradient(d, res.e)
        resid = y - np.where(d == 1, res.mu1, res.mu0)
        term, fixed = outcome_fit_influence(res, folds, g, resid)
        assert fixed == 0.0
        for j in (0, 7, 101):
            bumped = y.copy()
            bumped[j] += 1.0
            res2 = _stack(x, bumped, d, folds, outcome)
            moved = g["mu0"] @ (res2.mu0 - res.mu0) + g["mu1"] @ (res2.mu1 - res.mu1)
            assert np.isclose(term[j] / resid[j], moved, rtol=1e-8, atol=1e-12)


def test_a_learner_that_is_not_a_smoother_is_held_fixed_and_counted():
    rng = np.random.default_rng(5)
    n = 200
    x = rng.normal(size=(n, 2))
    d = (rng.uniform(size=n) < 0.5).astype(int)
    y = x[:, 0] + rng.normal(size=n)
    folds = np.arange(n) % 2
    hgb = HistGradientBoostingRegressor(max_iter=10)
    res = _stack(x, y, d, folds, {"hgb": hgb})
    term, fixed = outcome_fit_influence(res, folds, aipw_outcome_gradient(d, res.e),
                                        y - np.where(d == 1, res.mu1, res.mu0))
    assert fixed == 1.0 and not term.any()
    both = _stack(x, y, d, folds, {"hgb": hgb, "ols": LinearRegression()})
    term, fixed = outcome_fit_influence(both, folds, aipw_outcome_gradient(d, both.e),
                                        y - np.where(d == 1, both.mu1, both.mu0))
    w_hgb = [w[0] for k in ("mu0", "mu1") for w in both.fold_weights[k].values()]
    assert 0.0 <= fixed <= 1.0 and (fixed > 0) == any(w > 0 for w in w_hgb)


def _draw(seed, n=300):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    d = (rng.uniform(size=n) < 1 / (1 + np.exp(-2.5 * x[:, 0]))).astype(int)
    y = 3 * x[:, 0] + x[:, 1] + 1.0 * d + rng.normal(size=n)
    return x, y, d


def test_with_a_shrunk_propensity_the_term_makes_the_se_match_the_spread():
    """Monte Carlo with a truth: a heavily penalised propensity (AIPW then leans on the outcome
    fits) and least-squares outcomes. The SE that holds the fits fixed is too small (0.62 and
    0.68 of the spread on two sets of 400 draws); with the term it matches the spread (0.92,
    1.01). The SD's Monte Carlo SE over 400 draws is 4-5% here (the two sets' SDs differ by
    9%), so the accept region [0.85, 1.15] is three of them either side."""
    est, se_fixed, se = [], [], []
    for s in range(400):
        x, y, d = _draw(s)
        folds = np.arange(len(y)) % 5
        res = _stack(x, y, d, folds, LinearRegression())
        e = res.e
        theta, psi = aipw_ate(y, d, e, res.mu0, res.mu1)
        term, _ = outcome_fit_influence(res, folds, aipw_outcome_gradient(d, e),
                                        y - np.where(d == 1, res.mu1, res.mu0))
        n = len(y)
        est.append(theta)
        se_fixed.append(np.sqrt((psi ** 2).sum()) / n)
        se.append(np.sqrt(((psi + n * term) ** 2).sum()) / n)
    sd = np.std(est, ddof=1)
    assert abs(np.mean(est) - 1.0) < 3 * sd / np.sqrt(len(est))  # unbiased: the outcome is linear
    assert 0.85 < np.mean(se) / sd < 1.15
    assert np.mean(se_fixed) / sd < 0.8  # what the term corrects


def test_the_fold_fits_are_kept_and_the_learner_passed_in_is_not_fitted():
    x, y, d = _draw(0, 80)
    lrn = LinearRegression()
    res = _stack(x, y, d, np.arange(80) % 2, lrn)
    assert not hasattr(lrn, "coef_")
    (tr, te, model), _ = res.outcome_fits["mu1"]["x"].folds
    assert model is not lrn and hasattr(model, "coef_") and len(tr) + len(te) <= 80
    assert clone(model).get_params() == lrn.get_params()
