"""No silent wrong numbers (issue 13, item 8): each case is a named error, never a number.

* Tweedie (and LCC) refuse a calibration set whose predictions are not significantly
  positively related to the truth (the t statistic is the one of scipy's ``linregress``).
* Non-finite or absurd-magnitude values (squares that overflow float64) in any design's
  outcome, treatment or controls are a ``DataError`` naming the column; a non-finite estimate
  or variance is a ``DesignError``.
* Collinear regressors in PPI OLS (and any linear solve behind a design) name the columns.
* Cross-fitting folds with too few treated or control units per fold are refused with counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _studies import confounded
from scipy import stats
from sklearn.linear_model import LinearRegression, LogisticRegression

import geocausal as gc
from geocausal.designs.common import check_full_rank, check_values
from geocausal.designs.debias import LinearCalibration, Tweedie, calibration_relation
from geocausal.designs.ipw import Nuisances, estimate
from geocausal.designs.ppi import ppi_ols
from geocausal.errors import DataError, DesignError
from geocausal.nuisance.crossfit import check_fold_arms, make_folds

LIN = {"propensity": LogisticRegression(), "outcome": LinearRegression()}


# ----------------------------------------------------------------------------- Tweedie
def _calibration(rho: float, n: int = 400, seed: int = 0):
    """Truth ``y`` and a prediction with correlation ``rho`` to it."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    return rho * y + np.sqrt(1 - rho ** 2) * rng.normal(size=n), y


@pytest.mark.parametrize("corrector", [Tweedie, LinearCalibration])
@pytest.mark.parametrize("rho", [0.0, -0.5])
def test_unrelated_or_reversed_calibration_is_refused(corrector, rho):
    yhat, y = _calibration(rho)
    with pytest.raises(DesignError, match="not significantly positively related"):
        corrector().fit(yhat, y)


def test_tweedie_unrelated_calibration_refused_by_gc_debias():
    # on main this returned a confident number (the bootstrap does not see that the
    # correction amplifies noise): Tweedie multiplied the naive effect by about 3
    rng = np.random.default_rng(1)
    _, e, a, y = confounded(rng, 2000)
    yc = rng.normal(size=500)
    cal = pd.DataFrame({"yhat": rng.normal(size=500), "truth": yc})
    df = pd.DataFrame({"yhat": 0.5 * y + rng.normal(0, .3, 2000), "d": a, "e": e})
    with pytest.raises(DesignError, match=r"calibration predictions 'yhat'.*truths 'truth'"):
        gc.debias("yhat ~ d", df, calibration=cal, propensity="e", n_boot=50)


def test_calibration_relation_matches_linregress_and_accepts_real_relations():
    for rho, seed in ((0.3, 2), (0.9, 3), (0.05, 4)):
        yhat, y = _calibration(rho, seed=seed)
        rel = calibration_relation(yhat, y)
        lr = stats.linregress(y, yhat)                 # a peer: slope of yhat on y, its se
        assert rel["slope"] == pytest.approx(lr.slope, rel=1e-12)
        assert rel["t"] == pytest.approx(lr.slope / lr.stderr, rel=1e-10)
        assert rel["t"] == pytest.approx(stats.linregress(yhat, y).slope
                                         / stats.linregress(yhat, y).stderr, rel=1e-10)
    # rho = 0.3 with n = 400: t is about 6.3, far from the 1.96 border, and both fit
    yhat, y = _calibration(0.3, seed=2)
    tw = Tweedie().fit(yhat, y)
    assert tw.diagnostics()["calibration_t"] > 1.96
    assert LinearCalibration().fit(yhat, y).slope > 0


def test_refusal_rate_under_independence_is_the_test_level():
    # under independence t ~ t(n-2), so the refusal rate is P(t < 1.96) = 0.974 at n = 60;
    # with 400 draws its Monte Carlo se is 0.008: accept [0.94, 0.995] (about -4 / +2.6 se)
    rng = np.random.default_rng(5)
    refused = 0
    for _ in range(400):
        y, yhat = rng.normal(size=60), rng.normal(size=60)
        refused += calibration_relation(yhat, y)["t"] < 1.96
    assert 0.94 <= refused / 400 <= 0.995


# ----------------------------------------------------------------------------- magnitudes
def _study(n=300, seed=0):
    rng = np.random.default_rng(seed)
    c, e, a, y = confounded(rng, n)
    return pd.DataFrame({"y": y, "d": a, "x": c, "e": e, "g": np.arange(n) % 10,
                         "t": np.arange(n) // 10})


FACES = {
    "aipw": lambda df: gc.aipw("y ~ d + x", df, learners=LIN),
    "ipw": lambda df: gc.ipw("y ~ d + x", df),
    "cate": lambda df: gc.cate("y ~ d + x", df, options={"evaluate": False},
                               learners={"outcome": LinearRegression(),
                                         "final": LinearRegression()}),
    "fe": lambda df: gc.fe("y ~ d + x | g", df),
    "debias": lambda df: gc.debias("y ~ d", df, method="none", propensity="e"),
    "dml_panel": lambda df: gc.dml_panel("y ~ d + x", df, unit="g", time="t"),
}


CASES = [(face, col, value) for face in sorted(FACES)
         for col, value in (("y", 1e300), ("y", np.inf), ("x", -1e200), ("x", np.inf))
         if not (face == "debias" and col == "x")]       # debias's formula has no control


@pytest.mark.parametrize("face, col, value", CASES)
def test_absurd_or_infinite_values_name_the_column(face, col, value):
    # on main: y = 1e300 gave an AIPW ATE of 4.8e297 with SE inf
    df = _study()
    df.loc[7, col] = value
    with pytest.raises(DataError, match=rf"'{col}' has 1 (infinite|values? beyond)"):
        FACES[face](df)


def test_ppi_refuses_absurd_labels_and_predictions():
    df = _study(400)
    df["lab"] = np.where(np.arange(400) < 100, df.y, np.nan)
    df.loc[3, "lab"] = 1e300
    with pytest.raises(DataError, match="'lab'"):
        gc.ppi("y ~ 1", df, truth="lab", estimand="mean")
    df.loc[3, "lab"] = 0.0
    df.loc[200, "y"] = -1e250
    with pytest.raises(DataError, match="'y'"):
        gc.ppi("y ~ 1", df, truth="lab", estimand="mean")


def test_check_values_limits():
    ok = np.array([1e99, -1e99, 0.0])
    assert check_values(ok, "v") is not None
    with pytest.raises(DataError, match=r"column 'v' has 2 values beyond \+-1e\+100"):
        check_values(np.array([1e101, -1e300, 3.0]), "v")
    with pytest.raises(DataError, match="column 'v' has 1 infinite"):
        check_values(np.array([np.inf, 3.0]), "v")


def test_non_finite_estimate_or_variance_is_refused():
    # y of 1e160 passes no face (the validator stops it at 1e100) but a pure design function
    # can be called directly: its squared influence overflows and the estimate is refused
    n = 50
    d = np.arange(n) % 2
    y = np.where(np.arange(n) == 3, 1e160, 1.0)
    with pytest.raises(DesignError, match="not finite"):
        estimate(y, d, Nuisances(np.full(n, 0.5)), "hajek")


# ----------------------------------------------------------------------------- collinearity
def test_ppi_ols_collinear_regressors_named():
    rng = np.random.default_rng(6)
    n, big_n = 200, 2000
    df = pd.DataFrame({"x1": rng.normal(size=n + big_n)})
    df["x2"] = 2 * df.x1 + 1
    df["y"] = 1 + df.x1 + rng.normal(size=n + big_n)
    df["yhat"] = 0.7 * df.y + rng.normal(0, .3, n + big_n)
    df["lab"] = np.where(np.arange(n + big_n) < n, df.y, np.nan)
    # on main: SE of x2 was 0 (or of order 1e-17) next to a finite coefficient
    with pytest.raises(DesignError, match=r"\['x2'\].*collinear"):
        gc.ppi("yhat ~ x1 + x2", df, truth="lab", estimand="ols")
    x = np.column_stack([np.ones(n + big_n), df.x1, df.x2])
    lab = np.arange(n + big_n) < n
    with pytest.raises(DesignError, match="collinear"):
        ppi_ols(x[lab], df.y[lab], df.yhat[lab], x[~lab], df.yhat[~lab])
    # collinear only among the labelled rows (a dummy that is 0 on every label)
    dummy = (np.arange(n + big_n) >= n + 5).astype(float)
    x3 = np.column_stack([np.ones(n + big_n), df.x1, dummy])
    with pytest.raises(DesignError, match="labelled"):
        ppi_ols(x3[lab], df.y[lab], df.yhat[lab], x3[~lab], df.yhat[~lab], names=["1", "x1", "z"])


def test_check_full_rank_names_dependent_columns():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=50), rng.normal(size=50)
    X = np.column_stack([np.ones(50), a, b, a - b])
    with pytest.raises(DesignError, match=r"rank 3 of 4.*\['a_minus_b'\]"):
        check_full_rank(X, ["const", "a", "b", "a_minus_b"], "test regressors")
    check_full_rank(X[:, :3], ["const", "a", "b"], "test regressors")


# ----------------------------------------------------------------------------- folds
def test_twelve_units_two_treated_five_folds_refused():
    rng = np.random.default_rng(8)
    df = pd.DataFrame({"x": rng.normal(size=12), "d": [1, 1] + [0] * 10,
                       "y": rng.normal(size=12)})
    # on main: a number (ATE 0.49, se 2.1) with only scikit-learn's warning
    with pytest.raises(DesignError, match=r"2 treated units \(treatment 1\) for 5 folds"):
        gc.aipw("y ~ d + x", df, folds=5, learners=LIN)
    with pytest.raises(DesignError, match="2 treated units"):
        make_folds(12, 5, stratify=df.d)
    with pytest.raises(DesignError, match="1 treated"):
        gc.aipw("y ~ d + x", df, folds=2, learners=LIN)


def test_fold_arm_checks_for_group_and_given_folds():
    d = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    groups = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    f = make_folds(12, 2, 0, groups=groups)
    with pytest.raises(DesignError, match=r"fold \d has a training part with 0 treated"):
        check_fold_arms(d, f)
    with pytest.raises(DesignError, match="training part with 0 treated"):
        gc.aipw("y ~ d + x", pd.DataFrame({"y": np.arange(12.0), "d": d,
                                           "x": np.arange(12.0) ** 2}),
                folds=np.where(d == 1, 0, 1 + np.arange(12) % 2), learners=LIN)
    with pytest.raises(DataError, match="integer"):
        make_folds(12, 2.5)
    with pytest.raises(DataError, match="stratify has 11 labels"):
        make_folds(12, 2, stratify=d[:-1])
    with pytest.raises(DesignError, match="12 units cannot be split into 13 folds"):
        make_folds(12, 13)


def test_blp_with_constant_proxy_is_refused_not_a_zero_se():
    # on main: beta2 = 0.0 with standard error 0.0 (statsmodels' pseudo-inverse)
    from geocausal.designs.cate_eval import split_once

    rng = np.random.default_rng(9)
    n = 400
    d = rng.integers(0, 2, n).astype(float)
    y = d + rng.normal(size=n)
    with pytest.raises(DesignError, match=r"BLP regressors have rank 2 of 3.*beta2.*zero"):
        split_once(y, d, np.full(n, .5), np.full(n, .7), np.zeros(n))
    r = split_once(y, d, np.full(n, .5), rng.normal(size=n), np.zeros(n))
    assert r["beta2"][1] > 0


def test_cate_and_given_predictions_refuse_bad_inputs():
    rng = np.random.default_rng(10)
    df = pd.DataFrame({"x": rng.normal(size=12), "d": [1, 1] + [0] * 10,
                       "y": rng.normal(size=12)})
    with pytest.raises(DesignError, match="2 treated units"):
        gc.cate("y ~ d + x", df, options={"evaluate": False})
    df = _study(200)
    mu = np.zeros(200)
    mu[5] = np.inf
    with pytest.raises(DataError, match=r"predictions\['mu0'\] has 1 infinite"):
        gc.aipw("y ~ d + x", df, propensity="e", predictions={"mu0": mu, "mu1": np.zeros(200)})


def test_by_column_with_missing_values_is_a_named_error():
    """A ``by=`` column with None values was a TypeError deep in the label builder."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x1": rng.normal(size=120)})
    df["d"] = (rng.random(120) < 0.5).astype(float)
    df["y"] = df["d"] + df["x1"] + rng.normal(size=120)
    df["funder"] = np.where(rng.random(120) < 0.5, "a", "b").astype(object)
    df.loc[3, "funder"] = None
    with pytest.raises(DataError, match="funder"):
        gc.aipw("y ~ d + x1", df, by="funder")
    with pytest.raises(DataError, match="funder"):
        gc.placement("d ~ x1", df, by="funder")


def test_rdd_outcome_and_running_variable_pass_the_value_validator():
    """gc.rdd built its arrays itself: 1e300 in the outcome or running variable is named."""
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"x": rng.uniform(-1, 1, 400)})
    df["y"] = (df["x"] >= 0) + df["x"] + rng.normal(size=400)
    with pytest.raises(DataError, match="column 'y'.*beyond"):
        gc.rdd("y ~ 1", df.assign(y=np.where(df.index == 0, 1e300, df["y"])), running="x")
    with pytest.raises(DataError, match="column 'x'.*beyond"):
        gc.rdd("y ~ 1", df.assign(x=np.where(df.index == 0, 1e300, df["x"])), running="x")


def test_debias_bootstrap_refuses_iid():
    """vcov='iid' was silently the unclustered (robust) bootstrap under an 'iid' request."""
    rng = np.random.default_rng(2)
    truth = rng.normal(size=300)
    cal = pd.DataFrame({"truth": truth, "prediction": 0.7 * truth + rng.normal(0, .3, 300)})
    d = (rng.random(400) < 0.5).astype(float)
    df = pd.DataFrame({"d": d, "yhat": 0.7 * (d + rng.normal(size=400))})
    with pytest.raises(DesignError, match="iid"):
        gc.debias("yhat ~ d", df, calibration=cal, method="lcc", vcov="iid", n_boot=50,
                  prediction="prediction")
