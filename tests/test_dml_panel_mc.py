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
from geocausal.designs.dml_panel import RESIDUAL_SHARE_MIN, _score, coverage_verdict
from geocausal.designs.panel_transforms import transform_panel
from geocausal.errors import DiagnosticWarning
from geocausal.folds import make_folds
from geocausal.inference.variance import vcov_from_influence

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


def _batched_lstsq(Z, targets, train):
    """Least squares of ``targets`` (b, n, q) on ``Z`` (b, n, p) over the rows where ``train``
    (b, n) is 1, for every batch at once (masked rows are zeroed; QR, as lstsq would solve).
    """
    zw = Z * train[..., None]
    q, r = np.linalg.qr(zw)
    return np.linalg.solve(r, np.einsum("bnp,bnq->bpq", q, targets * train[..., None]))


def _vectorised_cre_linear(r, n_units, n_periods, folds):
    """``gc.dml_panel(approach="cre", learners=least squares, folds=folds, seed=s)`` on the
    C-linear dataset of seed ``s`` for ``s = 0..r-1``, as ``run_montecarlo`` fits it, with the
    two cross-fitted OLS nuisances of all replications solved at once.

    The CRE features come from the package's ``transform_panel``, the unit folds from
    ``make_folds(groups=unit)`` (what ``fold_plan`` calls for an integer ``folds``), and each
    replication's estimate and cluster-robust SE from the design's own ``_score`` and
    ``vcov_from_influence``; only the nuisance regressions are batched here.
    """
    trs, fold_ids = [], []
    for s in range(r):
        df = make_fuhr_papies(n_units, n_periods, structure="C", shape="linear", seed=s)
        tr = transform_panel("cre", df["y"].to_numpy(), df[["d"]].to_numpy(),
                             df[["x1"]].to_numpy(), df["unit"].to_numpy(),
                             df["time"].to_numpy(), x_names=["x1"], d_names=["d"])
        trs.append(tr)
        fold_ids.append(make_folds(tr.y.size, folds, s, groups=tr.unit))
    m = trs[0].y.size
    assert all(tr.y.size == m for tr in trs)
    Z = np.stack([np.column_stack([np.ones(m), tr.features]) for tr in trs])  # (r, m, p)
    targets = np.stack([np.column_stack([tr.y, tr.d]) for tr in trs])        # (r, m, 2)
    fold = np.stack(fold_ids)
    pred = np.empty_like(targets)
    for k in range(folds):
        beta = _batched_lstsq(Z, targets, (fold != k).astype(float))
        held = fold == k
        pred[held] = np.einsum("bnp,bpq->bnq", Z, beta)[held]
    theta, se = np.empty(r), np.empty(r)
    for s, tr in enumerate(trs):
        v = tr.d - pred[s, :, 1:]
        th, infl = _score(v, tr.d, tr.y - pred[s, :, 0], False, "partialling-out")
        theta[s] = th[0]
        se[s] = np.sqrt(vcov_from_influence(infl, {"cluster": tr.unit})[0, 0])
    return theta, se


def test_correctly_specified_linear_coverage_is_nominal():
    # structure C, linear confounding, least-squares nuisances with the CRE features: the
    # partially linear model is correctly specified, so the cluster-robust 95% interval must
    # cover the truth 95% of the time. Two-sided 99% binomial region around 0.95 for 200
    # replications: [0.905, 0.985] (too narrow SEs fail low, too wide ones fail high).
    # Vectorised over replications (as test_ipw): the nuisances of the 200 fits are solved
    # at once, the score and the clustered variance are the package's.
    r, n_units, n_periods, folds = 200, 100, 5, 5
    theta, se = _vectorised_cre_linear(r, n_units, n_periods, folds)
    # the shortcut is the real face: the first 3 replications fitted by gc.dml_panel
    lin = LinearRegression()
    for s in range(3):
        df = make_fuhr_papies(n_units, n_periods, structure="C", shape="linear", seed=s)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DiagnosticWarning)
            est = dml_panel("y ~ d + x1", df, unit="unit", time="time", approach="cre",
                            learners={"ml_l": lin, "ml_m": lin}, folds=folds, seed=s,
                            options={"bias_check": False, "n_boot": 0})
        assert abs(est.params["d"] - theta[s]) < 1e-8, (s, est.params["d"], theta[s])
        assert abs(est.std_errors["d"] - se[s]) < 1e-8, (s, est.std_errors["d"], se[s])
    t = (theta - 1.0) / se
    coverage = float(np.mean(np.abs(theta - 1.0) <= 1.959964 * se))
    lo = stats.binom.ppf(0.005, r, 0.95) / r
    hi = stats.binom.ppf(0.995, r, 0.95) / r
    assert lo <= coverage <= hi, (coverage, lo, hi)
    # and the SE matches the spread of the estimates (sd of t near 1; MC sd of it ~0.05)
    sd_t = float(np.std(t, ddof=1))
    assert 0.85 < sd_t < 1.15, sd_t
    sd_est = float(np.std(theta, ddof=1))
    assert abs(theta.mean() - 1.0) < 3 * sd_est / np.sqrt(r), (theta.mean(), sd_est)


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
                        learners={"ml_l": lrn, "ml_m": lrn}, options={"n_boot": 0})
    dg = est.diagnostics
    assert abs(est.params["d"] - 1) > 5 * est.std_errors["d"]
    assert dg["coverage_flag"] and dg["coverage_checked"]
    assert dg["residual_share"]["d"] < RESIDUAL_SHARE_MIN
    assert "150 units, 750 rows" in dg["coverage_note"]
    assert "cannot be trusted" in dg["coverage_note"]


def _quiet_fit(df, *, options):
    lin = {"ml_l": LinearRegression(), "ml_m": LinearRegression()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DiagnosticWarning)
        return dml_panel("y ~ d + x1", df, unit="unit", time="time", approach="fd",
                         learners=lin, options={**options, "n_boot": 0})


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
