"""Property-based checks over every public estimator and the command line.

Random, often malformed, frames, formulas, vcov specifications, learners, folds and grids go in.
The only allowed outcomes are an ``Estimate`` (or ``EstimateSet``) whose numbers are finite, a
:class:`~geocausal.errors.GeocausalError`, or a :class:`~geocausal.errors.GeocausalWarning`;
never any other exception and never a foreign warning about a meaningless number. For the
command line: exit 0, or exit 2 with exactly one line on standard error.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression, LogisticRegression

import geocausal as gc
from geocausal.errors import GeocausalError, GeocausalWarning

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))

# warnings that say nothing about the numbers returned (library housekeeping)
_NOISE = (DeprecationWarning, FutureWarning, PendingDeprecationWarning, ResourceWarning)


# ----------------------------------------------------------------------------- strategies
@st.composite
def frames(draw, panel: bool = False) -> pd.DataFrame:
    """A small frame with y, d, x1, x2, g, unit, time, truth, yhat; sometimes broken."""
    n = draw(st.integers(0, 48))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    d = (rng.random(n) < 1 / (1 + np.exp(-x1))).astype(float)
    y = d + x1 + rng.normal(size=n)
    df = pd.DataFrame({
        "y": y, "d": d, "x1": x1, "x2": rng.normal(size=n),
        "g": rng.integers(0, draw(st.integers(1, 6)), size=n),
        "unit": np.repeat(np.arange((n + 3) // 4), 4)[:n],
        "time": np.tile(np.arange(4), (n + 3) // 4)[:n],
        "truth": y + rng.normal(scale=0.5, size=n),
    })
    df["yhat"] = 0.6 * df["truth"] + rng.normal(scale=0.3, size=n)
    df["dist"] = rng.uniform(-1, 1, size=n)
    breakage = draw(st.sampled_from([
        "none", "none", "none", "nan_y", "inf_x", "huge_y", "const_d", "all_treated",
        "text_d", "none_g", "dup_index", "three_valued_d", "tiny", "string_time",
    ]))
    if n and breakage == "nan_y":
        df.loc[df.index[0], "y"] = np.nan
    elif n and breakage == "inf_x":
        df.loc[df.index[-1], "x1"] = np.inf
    elif n and breakage == "huge_y":
        df.loc[df.index[0], "y"] = 1e300
    elif breakage == "const_d":
        df["d"] = 0.0
    elif breakage == "all_treated":
        df["d"] = 1.0
    elif breakage == "text_d":
        df["d"] = np.where(df["d"] > 0, "yes", "no")
    elif breakage == "none_g":
        df["g"] = df["g"].astype(object)
        if n:
            df.loc[df.index[0], "g"] = None
    elif breakage == "dup_index" and n > 1:
        df.index = [0] * n
    elif breakage == "three_valued_d":
        df["d"] = rng.integers(0, 3, size=n).astype(float)
    elif breakage == "tiny":
        df = df.iloc[: min(n, 3)]
    elif breakage == "string_time":
        df["time"] = "t" + df["time"].astype(str)
    return df


FORMULAS = st.sampled_from([
    "y ~ d + x1", "y ~ d + x1 + x2", "y ~ d", "y ~ d + x1 | g", "y ~", "~ d", "", "y ~ d +",
    "y ~ nope + x1", "nope ~ d", "y ~ d + x1 + x1", "y ~ d + log(x1)", "y ~ d * x1",
])
VCOVS = st.sampled_from([
    "hetero", "iid", "HC1", "hc0", {"cluster": "g"}, {"cluster": "nope"},
    {"cluster": ["g", "unit"]}, {"cluster": ["g", "unit", "time"]}, {"clusters": "g"}, 3, None,
    "cluster", {"cluster": []},
])
FOLDS = st.sampled_from([2, 3, 5, 0, 1, -1, 100, "five", 2.5])
LEARNERS = st.sampled_from([
    None, {"outcome": LinearRegression()}, {"propensity": LogisticRegression()},
    {"outcome": LinearRegression(), "propensity": LogisticRegression()},
    {"typo": LinearRegression()}, {"outcome": "nope"}, {"outcome": LogisticRegression()},
])


# ----------------------------------------------------------------------------- oracle
def _finite(est) -> None:
    parts = list(est) if isinstance(est, gc.EstimateSet) else [est]
    for e in parts:
        assert isinstance(e, gc.Estimate), type(e)
        assert np.all(np.isfinite(e.params.to_numpy())), e.params
        se = e.std_errors.to_numpy()
        assert np.all(np.isfinite(se)) and np.all(se >= 0), se
        tidy = e.tidy()
        assert np.all(np.isfinite(tidy[["estimate", "std_error"]].to_numpy()))


def check(call) -> None:
    """Run ``call``; accept an Estimate with finite numbers or a GeocausalError, else fail."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = call()
        except GeocausalError:
            return
    foreign = [w for w in caught
               if not issubclass(w.category, (GeocausalWarning, *_NOISE))
               and w.category.__module__.split(".")[0] in ("numpy", "builtins")]
    assert not foreign, [f"{w.category.__name__}: {w.message}" for w in foreign]
    if out is not None and not isinstance(out, pd.DataFrame):
        _finite(out)


# ----------------------------------------------------------------------------- designs
@SETTINGS
@given(df=frames(), formula=FORMULAS, vcov=VCOVS, folds=FOLDS, learners=LEARNERS,
       estimand=st.sampled_from(["ATE", "ATT", "ate", "LATE"]),
       design=st.sampled_from(["ipw", "aipw"]), by=st.sampled_from([None, "g", "nope"]))
def test_ipw_aipw_never_crash(df, formula, vcov, folds, learners, estimand, design, by):
    fn = getattr(gc, design)
    check(lambda: fn(formula, df, vcov=vcov, folds=folds, learners=learners,
                     estimand=estimand, by=by))


@SETTINGS
@given(df=frames(), formula=FORMULAS, folds=FOLDS)
def test_placement_never_crashes(df, formula, folds):
    f = formula.replace("y ~", "d ~", 1) if formula.startswith("y ~") else formula
    check(lambda: gc.placement(f, df, folds=folds, learners={"propensity": LogisticRegression()}))


@SETTINGS
@given(df=frames(), formula=st.sampled_from(["y ~ d | unit + time", "y ~ d + x1 | unit",
                                             "y ~ d", "y ~ d | nope", "y ~ | unit"]),
       vcov=VCOVS)
def test_fe_never_crashes(df, formula, vcov):
    check(lambda: gc.fe(formula, df, vcov=vcov))


@SETTINGS
@given(df=frames(), formula=FORMULAS, folds=FOLDS,
       approach=st.sampled_from(["cre", "fd", "wg", "nope"]),
       unit=st.sampled_from(["unit", "nope", "g"]), time=st.sampled_from(["time", "unit"]))
def test_dml_panel_never_crashes(df, formula, folds, approach, unit, time):
    lrn = {"ml_l": LinearRegression(), "ml_m": LinearRegression()}
    check(lambda: gc.dml_panel(formula, df, unit=unit, time=time, approach=approach,
                               folds=folds, learners=lrn, n_boot=50))


@SETTINGS
@given(df=frames(), cal=frames(), method=st.sampled_from(["tweedie", "lcc", "naive", "nope"]),
       vcov=VCOVS)
def test_debias_never_crashes(df, cal, method, vcov):
    cal = cal.rename(columns={"yhat": "prediction"})
    check(lambda: gc.debias("yhat ~ d", df, calibration=cal, method=method, vcov=vcov,
                            n_boot=50, prediction="prediction"))


@SETTINGS
@given(df=frames(), formula=st.sampled_from(["yhat ~ d", "yhat ~ d + x1", "yhat ~ nope"]),
       estimand=st.sampled_from(["ate", "mean", "ols", "nope"]))
def test_ppi_never_crashes(df, formula, estimand):
    check(lambda: gc.ppi(formula, df, truth="truth", estimand=estimand))


@SETTINGS
@given(df=frames(), cutoff=st.sampled_from([0.0, 0.5, 5.0, float("nan")]),
       p=st.sampled_from([0, 1, 2, -1]), alpha=st.sampled_from([0.05, 0.1, 1.5, 0.0]),
       kernel=st.sampled_from(["triangular", "epanechnikov", "uniform", "nope"]),
       h=st.sampled_from([None, 0.5, -1.0, 0.0]))
def test_rdd_never_crashes(df, cutoff, p, alpha, kernel, h):
    check(lambda: gc.rdd("y ~ 1", df, running="dist", cutoff=cutoff,
                         bandwidth={"p": p, "kernel": kernel, "h": h},
                         inference={"alpha": alpha, "n_boot": 50},
                         checks={"density_test": False}))


@SETTINGS
@given(df=frames(), folds=FOLDS, propensity=st.sampled_from([0.5, None, 1.5, "d"]),
       learner=st.sampled_from(["dr", "t", "x", "nope"]))
def test_cate_never_crashes(df, folds, propensity, learner):
    lrn = {"outcome": LinearRegression(), "final": LinearRegression()}
    check(lambda: gc.cate("y ~ d + x1 + x2", df, learner=learner, learners=lrn,
                          propensity=propensity, folds=folds, evaluate=False))


# ----------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory):
    from geocausal.datasets import synthetic_world

    return synthetic_world(tmp_path_factory.mktemp("world"), seed=5, n_units=60, size=8,
                           periods=(2012, 2018)).manifest_path


CLI_ARGS = st.lists(st.sampled_from([
    ["--design", "aipw"], ["--design", "fe"], ["--design", "rdd"], ["--design", "nope"],
    ["--design", "dml_panel"], ["--formula", "y ~ d + x1"], ["--formula", "y ~"],
    ["--formula", "y ~ d | country"], ["--vcov", "cluster:country"], ["--vcov", "cluster:"],
    ["--vcov", "iid"], ["--vcov", "weird"], ["--folds", "2"], ["--folds", "0"],
    ["--folds", "-3"], ["--set", 'folds="five"'], ["--set", "n_boot=0"], ["--set", "nope"],
    ["--set", "trim=2"], ["--running", "x1"], ["--cutoff", "0"], ["--by", "country"],
    ["--by", "nope"], ["--unit", "unit_id"], ["--time", "period"], ["--images", "none"],
]), min_size=0, max_size=6)


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(extra=CLI_ARGS)
def test_cli_estimate_exits_0_or_2_with_one_line(tiny_manifest, tmp_path_factory, extra, capsys):
    from geocausal.cli import main

    out = tmp_path_factory.mktemp("out")
    argv = ["estimate", "--manifest", str(tiny_manifest), "--out", str(out / "o"),
            "--images", "none"]
    for pair in extra:
        argv += pair
    if "--design" not in argv:
        argv += ["--design", "aipw"]
    if "--formula" not in argv:
        argv += ["--formula", "y ~ d + x1"]
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc in (0, 2), (argv, rc, err)
    if rc == 2:
        assert err and len(err.splitlines()) == 1, (argv, err)
