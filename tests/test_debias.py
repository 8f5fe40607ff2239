"""Correctors: LCC exactness, KDE score against scipy and closed forms, guardrails, integration."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from _studies import confounded
from scipy import stats
from sklearn.linear_model import LinearRegression, LogisticRegression

import geocausal as gc
from geocausal.api.debias import fit_corrector
from geocausal.designs.debias import (
    LinearCalibration,
    Tweedie,
    bandwidth,
    hajek_ate,
    kde_log_density,
    kde_score,
)
from geocausal.errors import DataError, DesignError, DiagnosticWarning


def _shrunk(n, k=0.4, m=1.5, noise=0.0, tau=1.0, seed=0):
    rng = np.random.default_rng(seed)
    _, e, a, y = confounded(rng, n, tau)
    yhat = m + k * y + rng.normal(0, noise, n) if noise else m + k * y
    return a, e, y, yhat


def test_lcc_exact_on_linear_shrinkage():
    _, _, y, yhat = _shrunk(500)
    lcc = LinearCalibration().fit(yhat, y)
    assert abs(lcc.slope - 0.4) < 1e-12 and abs(lcc.intercept - 1.5) < 1e-12
    np.testing.assert_allclose(lcc.transform(yhat), y, atol=1e-10)


def test_lcc_unbiased_contrast_with_noise():
    # k = 0.4 with independent prediction noise: naive IPW shrinks to 0.4 * tau, LCC recovers
    # tau. n = 200k downstream and 20k calibration: the corrected estimate's sd is ~0.03, so
    # 0.1 is more than three sd.
    _, _, yc, yhc = _shrunk(20_000, noise=0.5, seed=1)
    a, e, y, yh = _shrunk(200_000, noise=0.5, tau=2.0, seed=2)
    lcc = LinearCalibration().fit(yhc, yc)
    naive = float(hajek_ate(yh, a, e))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        corrected = float(hajek_ate(lcc.transform(yh), a, e))
    assert abs(naive - 0.8) < 0.05
    assert abs(corrected - 2.0) < 0.1


def test_bandwidths_match_scipy():
    x = np.random.default_rng(3).normal(2, 1.5, 700)
    for rule in ("scott", "silverman"):
        kde = stats.gaussian_kde(x, bw_method=rule)
        assert np.isclose(bandwidth(x, rule), np.sqrt(kde.covariance[0, 0]), rtol=1e-12)
        pts = np.linspace(-2, 6, 40)
        np.testing.assert_allclose(kde_log_density(pts, x, bandwidth(x, rule)),
                                   kde.logpdf(pts), rtol=1e-10, atol=1e-10)
    # cross-validated bandwidth of a Gaussian sample lies near the rule-of-thumb values
    h_cv = bandwidth(x, "cv")
    assert 0.5 * bandwidth(x, "silverman") < h_cv < 2 * bandwidth(x, "scott")
    assert bandwidth(x, 0.3) == 0.3
    with pytest.raises(DataError, match="bandwidth rule"):
        bandwidth(x, "nrd0")


def test_analytic_score_equals_derivative_of_scipy_kde():
    x = np.random.default_rng(4).standard_t(5, 600)
    kde = stats.gaussian_kde(x)
    h = float(np.sqrt(kde.covariance[0, 0]))
    pts = np.linspace(-3, 3, 25)
    d = 1e-5
    fd = (kde.logpdf(pts + d) - kde.logpdf(pts - d)) / (2 * d)
    np.testing.assert_allclose(kde_score(pts, x, h), fd, atol=1e-5)
    np.testing.assert_allclose(kde_score(pts, x, h, derivative="fd", delta=1e-4), fd, atol=1e-5)
    # far in the tails the analytic score stays finite (log-sum-exp weights)
    assert np.isfinite(kde_score(np.array([80.0, -80.0]), x, h)).all()


def test_tweedie_matches_closed_form_score_on_gaussian():
    # yhat ~ N(0, rho); y = yhat + N(0, 1 - rho). A Gaussian KDE of a Gaussian sample has
    # expected density N(0, rho + h^2), so its score is -x / (rho + h^2). Pointwise the KDE
    # score is noisy (variance ~ 1 / (n h^3)): over seeds 0-4 at n = 20k the RMSE on
    # |x| <= 1.5 sd was 0.12-0.18 (Scott) and 0.06-0.10 (CV) for scores ranging over +-2.1,
    # and the least-squares slope of the score on x was within 1% of -1 / (rho + h^2).
    rho, n = 0.5, 20_000
    rng = np.random.default_rng(5)
    yhat = rng.normal(0, np.sqrt(rho), n)
    y = yhat + rng.normal(0, np.sqrt(1 - rho), n)
    pts = np.linspace(-1.5, 1.5, 31) * np.sqrt(rho)
    tw = Tweedie().fit(yhat, y)
    for bw, tol in (("scott", 0.25), ("cv", 0.15)):
        t = tw if bw == "scott" else Tweedie(bandwidth=bw).fit(yhat, y)
        err = t.score_fn(pts) + pts / (rho + t.h ** 2)
        assert np.sqrt(np.mean(err ** 2)) < tol
    sub = yhat[:2000]
    assert abs(np.polyfit(sub, tw.score_fn(sub), 1)[0] * (rho + tw.h ** 2) + 1) < 0.03
    assert abs(tw.sigma2 - (1 - rho)) < 0.03     # sd of the variance estimate ~0.005
    # with the closed-form score the correction is exact: E[y_tilde | y] = y
    exact = Tweedie(score=lambda v: -v / rho).fit(yhat, y)
    slope = np.polyfit(y, exact.transform(yhat), 1)[0]
    assert abs(slope - 1) < 0.03                  # slope se ~ 0.007
    m = 2000                                      # KDE correction on a subsample (se ~ 0.02)
    slope_kde = np.polyfit(y[:m], tw.transform(yhat[:m]), 1)[0]
    assert abs(slope_kde - 1) < 0.07
    naive_slope = np.polyfit(y, yhat, 1)[0]
    assert abs(naive_slope - rho) < 0.03


def test_tweedie_contrast_form_equals_corrected_contrast():
    a, e, y, yh = _shrunk(3000, k=0.6, noise=0.4, seed=6)
    _, _, yc, yhc = _shrunk(800, k=0.6, noise=0.4, seed=7)
    tw = Tweedie(bandwidth="silverman").fit(yhc, yc, score_sample=yh)
    left = float(hajek_ate(tw.transform(yh), a, e))
    right = float(hajek_ate(yh, a, e)) - tw.sigma2 * float(hajek_ate(tw.score_fn(yh), a, e))
    assert abs(left - right) < 1e-12


def test_bad_input_errors_and_warnings():
    y = np.linspace(-1, 1, 150)
    with pytest.raises(DataError, match="150 values but truths have 149"):
        LinearCalibration().fit(y, y[:-1])
    with pytest.raises(DataError, match="1 missing"):
        Tweedie().fit(np.where(np.arange(150) == 3, np.nan, y), y)
    with pytest.raises(DataError, match="predictions are constant"):
        LinearCalibration().fit(np.full(150, 2.0), y)
    with pytest.raises(DataError, match="predictions are constant"):
        Tweedie().fit(np.full(150, 2.0), y)
    with pytest.raises(DesignError, match="k = -1"):
        LinearCalibration().fit(-y, y)
    with pytest.raises(DesignError, match="not fitted"):
        LinearCalibration().transform(y)
    with pytest.warns(DiagnosticWarning, match="k = 0.1 < 0.2"):
        LinearCalibration().fit(0.1 * y, y)
    with pytest.warns(DiagnosticWarning, match="only 50 calibration units"):
        LinearCalibration().fit(y[:50], y[:50])
    lcc = LinearCalibration().fit(y, y)
    with pytest.warns(DiagnosticWarning, match="3 of 5 predictions lie outside"):
        lcc.transform(np.array([-5.0, 0.0, 0.5, 3.0, 9.0]))
    with pytest.raises(DataError, match="method 'ridge'"):
        fit_corrector(y, y, method="ridge")


def test_outcome_correction_hook_with_fe():
    rng = np.random.default_rng(8)
    units, periods = 60, 4
    df = pd.DataFrame({"unit": np.repeat(np.arange(units), periods),
                       "t": np.tile(np.arange(periods), units)})
    df["d"] = rng.binomial(1, 0.5, len(df))
    y = 2.0 * df.d + 0.1 * df.unit + rng.normal(size=len(df))
    df["yhat"] = 0.5 + 0.5 * y + rng.normal(0, 0.2, len(df))
    yc = rng.normal(0, 2, 500)
    lcc = fit_corrector(0.5 + 0.5 * yc + rng.normal(0, 0.2, 500), yc, method="lcc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        hooked = gc.fe("yhat ~ d | unit + t", df, outcome_correction=lcc)
        manual = gc.fe("ycorr ~ d | unit + t", df.assign(ycorr=lcc.transform(df.yhat)))
    assert abs(hooked.params["d"] - manual.params["d"]) < 1e-10
    naive = gc.fe("yhat ~ d | unit + t", df)
    assert abs(hooked.params["d"] - naive.params["d"] / lcc.slope) < 1e-8
    assert abs(hooked.params["d"] - 2.0) < 0.4


def test_outcome_correction_hook_with_ipw_and_aipw():
    rng = np.random.default_rng(9)
    n = 1500
    c, e, d, y = confounded(rng, n)
    df = pd.DataFrame({"yhat": 0.6 * y + rng.normal(0, 0.4, n), "d": d, "c": c, "e": e})
    yc = rng.normal(0.3, 1.5, 600)
    cal = (0.6 * yc + rng.normal(0, 0.4, 600), yc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        tw = fit_corrector(*cal, method="tweedie")
        hooked = gc.ipw("yhat ~ d", df, propensity="e", outcome_correction=tw)
        manual = gc.ipw("yc ~ d", df.assign(yc=tw.transform(df.yhat)), propensity="e")
        own = gc.debias("yhat ~ d", df, calibration=tw, propensity="e", interval="fixed")
        light = {"propensity": LogisticRegression(), "outcome": LinearRegression()}
        a_hooked = gc.aipw("yhat ~ d + c", df, outcome_correction=tw, seed=1, learners=light,
                           folds=2)
        a_manual = gc.aipw("yc ~ d + c", df.assign(yc=tw.transform(df.yhat)), seed=1,
                           learners=light, folds=2)
    assert abs(hooked.params["d"] - manual.params["d"]) < 1e-10
    assert abs(hooked.params["d"] - own.params["d"]) < 1e-8
    assert abs(a_hooked.params["d"] - a_manual.params["d"]) < 1e-10
