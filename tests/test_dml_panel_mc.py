"""Coverage evidence for ``gc.dml_panel``: the Monte Carlo script's core at small sizes, and the
coverage diagnostic that says when the nominal interval cannot be trusted (issue 13, item 12).

The full-size table (N = 500, T = 10, >= 200 replications) is in paper/dml_panel/MONTECARLO.md.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LinearRegression

from geocausal.api.dml_panel import dml_panel
from geocausal.datasets.panel_dgp import make_fuhr_papies
from geocausal.designs.dml_panel import RESIDUAL_SHARE_MIN, coverage_verdict
from geocausal.errors import DiagnosticWarning

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from paper.dml_panel.montecarlo import (  # noqa: E402
    main,
    run_montecarlo,
    summarise_mc,
    to_markdown,
)
from paper.dml_panel.pipeline import make_learner  # noqa: E402


def test_montecarlo_table_structure(tmp_path):
    assert main(["--reps", "2", "--structures", "C-u,C-linear", "--approaches", "cre,fd",
                 "--learners", "linear", "--n-units", "30", "--n-periods", "4", "--folds", "2",
                 "--out", str(tmp_path)]) == 0
    import pandas as pd

    reps = pd.read_csv(tmp_path / "replications.csv")
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert len(reps) == 2 * 2 * 2 and set(reps.seed) == {0, 1}
    assert len(summary) == 4 and (summary.reps == 2).all()
    for col in ("coverage", "coverage_mcse", "mean_bias", "mean_se", "sd_estimate", "sd_t",
                "flag_rate", "coverage_unflagged", "coverage_bias_aware"):
        assert col in summary.columns
    # the table is computed from the replications, not made up
    g = reps[(reps.structure == "C-u") & (reps.approach == "fd")]
    s = summary[(summary.structure == "C-u") & (summary.approach == "fd")].iloc[0]
    assert s.coverage == pytest.approx(g.covered.mean())
    assert s.mean_bias == pytest.approx(g.estimate.mean() - 1)
    assert s.sd_estimate == pytest.approx(g.estimate.std())
    assert np.allclose(g.covered, np.abs(g.estimate - 1) <= 1.959964 * g.std_error)
    md = (tmp_path / "summary.md").read_text()
    assert md.count("\n| C-") == 4 and "coverage_mcse" in md
    assert to_markdown(summary).splitlines()[0].startswith("| structure | learner | approach")
    # reproducible: same seeds, same numbers
    again = run_montecarlo(2, structures=["C-linear"], approaches=["fd"], learners=["linear"],
                           n_units=30, n_periods=4, folds=2)
    first = reps[(reps.structure == "C-linear") & (reps.approach == "fd")]
    assert np.allclose(again.estimate, first.estimate)


def test_correctly_specified_linear_coverage_is_nominal():
    # structure C, linear confounding, least-squares nuisances with the CRE features: the
    # partially linear model is correctly specified, so the cluster-robust 95% interval must
    # cover the truth 95% of the time. Two-sided 99% binomial region around 0.95 for 200
    # replications: [0.905, 0.985] (too narrow SEs fail low, too wide ones fail high).
    r = 200
    reps = run_montecarlo(r, structures=["C-linear"], approaches=["cre"], learners=["linear"],
                          n_units=100, n_periods=5, folds=5)
    s = summarise_mc(reps).iloc[0]
    lo = stats.binom.ppf(0.005, r, 0.95) / r
    hi = stats.binom.ppf(0.995, r, 0.95) / r
    assert lo <= s.coverage <= hi, (s.coverage, lo, hi)
    # and the SE matches the spread of the estimates (sd of t near 1; MC sd of it ~0.05)
    assert 0.85 < s.sd_t < 1.15
    assert abs(s.mean_bias) < 3 * s.sd_estimate / np.sqrt(r)


def test_flag_separates_fits_that_cover_from_fits_that_do_not():
    # structure C, u-shaped, spline learners with CRE features at the CI cell: the fits the
    # diagnostic flags (little treatment variance left) miss the truth most of the time;
    # the unflagged ones cover near the nominal level.
    reps = run_montecarlo(30, structures=["C-u"], approaches=["cre"], learners=["spline"],
                          n_units=150, n_periods=5)
    s = summarise_mc(reps).iloc[0]
    assert 0.2 < s.flag_rate < 0.8
    assert s.coverage_flagged < 0.6
    assert s.coverage_unflagged > 0.85
    assert (reps.loc[reps.flag, "residual_share"] < RESIDUAL_SHARE_MIN).all()


def test_small_residual_is_flagged_even_when_the_bias_check_is_blind():
    # seed 3 draws gamma = 2.04 and delta = -2.56: the CI-cell dataset whose estimates are
    # 10+ standard errors from the truth. Splines + ridge are linear smoothers, so the two
    # orthogonal scores coincide and the bias check saw nothing: before, the note read
    # "no sign of bias"; now the small residual share flags it.
    df = make_fuhr_papies(150, 5, structure="C", shape="u", seed=3)
    lrn = make_learner("spline", 3)
    with pytest.warns(DiagnosticWarning, match="variance of treatment 'd'"):
        est = dml_panel("y ~ d + x1", df, unit="unit", time="time", approach="cre",
                        learners={"ml_l": lrn, "ml_m": lrn}, n_boot=0)
    dg = est.diagnostics
    assert abs(est.params["d"] - 1) > 5 * est.std_errors["d"]
    assert dg["coverage_flag"] and dg["coverage_checked"]
    assert dg["residual_share"]["d"] < RESIDUAL_SHARE_MIN
    assert "150 units, 750 rows" in dg["coverage_note"]
    assert "cannot be trusted" in dg["coverage_note"]


def _quiet_fit(df, **kw):
    lin = {"ml_l": LinearRegression(), "ml_m": LinearRegression()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DiagnosticWarning)
        return dml_panel("y ~ d + x1", df, unit="unit", time="time", approach="fd",
                         learners=lin, n_boot=0, **kw)


def test_note_says_unverified_when_nothing_was_checked():
    df = make_fuhr_papies(80, 5, structure="C", shape="linear", seed=1)
    est = _quiet_fit(df, options={"bias_check": False})
    assert not est.diagnostics["coverage_flag"]
    assert not est.diagnostics["coverage_checked"]
    assert est.diagnostics["coverage_note"].startswith("nominal coverage is unverified")
    assert "no sign" not in est.diagnostics["coverage_note"]


def test_note_says_the_bias_check_is_blind_for_linear_smoothers():
    df = make_fuhr_papies(80, 5, structure="C", shape="linear", seed=1)
    est = _quiet_fit(df, options={"bias_check": True})
    assert est.diagnostics["bias_over_se"]["d"] < 1e-8
    assert not est.diagnostics["coverage_checked"]
    assert "cannot see bias" in est.diagnostics["coverage_note"]
    # two repetitions: the split spread is checked, so the note reports what it saw
    est2 = _quiet_fit(df, options={"bias_check": True, "n_rep": 2})
    assert est2.diagnostics["coverage_checked"]
    assert est2.diagnostics["coverage_note"].startswith("no sign")


def test_coverage_verdict_rules():
    flag, note, checked = coverage_verdict(0.7, np.array([0.5]), ["d"], n_units=10, n_rows=50)
    assert flag and checked and "0.70 standard errors" in note and "10 units, 50 rows" in note
    flag, note, _ = coverage_verdict(0.1, np.array([0.5, 0.1]), ["d1", "d2"])
    assert flag and "'d2'" in note and "'d1'" not in note
    flag, note, checked = coverage_verdict(0.1, np.array([np.nan]), ["d"])
    assert not flag and checked and note.startswith("no sign")
    assert coverage_verdict(0.0, np.array([0.5]), ["d"], blind=True)[2] is False
