"""Golden numbers of the reference R3D implementation (tests/fixtures/r3d/README.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geocausal.designs.rdd.bandwidth import density_at_cutoff, select_bandwidth
from geocausal.designs.rdd.bootstrap import (
    critical_value,
    curve_tests,
    draws,
    functional_effects,
    uniform_band,
)
from geocausal.designs.rdd.estimator import fit_r3d
from geocausal.designs.rdd.frechet import isotonic_rows
from geocausal.designs.rdd.locpoly import local_poly
from geocausal.designs.rdd.quantiles import gini, unit_quantiles

FIX = Path(__file__).parent / "fixtures" / "r3d"
GRID = np.arange(1, 21) / 21


def _csv(name):
    return pd.read_csv(FIX / name)


@pytest.fixture(scope="module")
def sharp():
    d = _csv("ref_data_sharp_simple_20.csv")
    return d.X.to_numpy(), d.iloc[:, 1:].to_numpy()


def test_type7_quantiles():
    ref = _csv("ref_quantiles.csv")
    for case, grp in ref.groupby("case"):
        y = _csv(f"ref_quantile_y_{case}.csv").y.to_numpy()
        for _, g in grp.groupby("grid"):
            got = unit_quantiles([y], g.q.to_numpy())[0]
            np.testing.assert_allclose(got, g.value.to_numpy(), rtol=0, atol=1e-12)


def test_gini_from_quantile_function():
    ref = _csv("ref_gini.csv").set_index("case").gini
    for case in ("uniform", "exponential", "degenerate"):
        qf = _csv(f"ref_gini_qf_{case}.csv")
        got = float(gini(qf.qf.to_numpy(), qf.q.to_numpy()))
        # uniform is stored with 6 digits in the reference file
        assert got == pytest.approx(ref[case], abs=1e-6)


def test_isotonic_projection():
    ref = _csv("ref_isotonic.csv")
    for _, g in ref.groupby("case"):
        np.testing.assert_allclose(isotonic_rows(g.input.to_numpy()[None])[0], g.output, atol=1e-14)


@pytest.mark.parametrize("kernel", ["triangular", "epanechnikov", "uniform"])
def test_local_polynomial_coefficients_and_weights(sharp, kernel):
    x, Q = sharp
    h = _csv(f"ref_locpoly_bw_{kernel}.csv").h.to_numpy()
    for side in ("plus", "minus"):
        fit = local_poly(x, Q, h, 2, kernel, side)
        alpha = _csv(f"ref_locpoly_alpha_{side}_{kernel}.csv").to_numpy()
        w = _csv(f"ref_locpoly_w_{side}_{kernel}.csv").to_numpy()
        np.testing.assert_allclose(fit.coef, alpha, atol=1e-10)
        np.testing.assert_allclose(fit.w0, w, atol=1e-12)
        # the intercept is exactly the weighted sum of the unit quantiles
        np.testing.assert_allclose((fit.w0 * Q).sum(0), fit.intercept, atol=1e-12)


def test_frechet_fit_sharp_and_fuzzy(sharp):
    x, Q = sharp
    ref = _csv("ref_results_sharp_frechet_20.csv")
    r = fit_r3d(x, Q, GRID, method="frechet", h=ref.bw_num[0], p=2, kernel="epanechnikov")
    np.testing.assert_allclose(r.tau, ref.tau, atol=1e-10)
    np.testing.assert_allclose(r.plus.m, ref.int_plus, atol=1e-10)
    np.testing.assert_allclose(r.minus.m, ref.int_minus, atol=1e-10)
    d = _csv("ref_data_fuzzy_simple_20.csv")
    ref = _csv("ref_results_fuzzy_frechet_20.csv")
    r = fit_r3d(d.X.to_numpy(), d.iloc[:, 2:].to_numpy(), GRID, T=d.T_treat.to_numpy(),
                method="frechet", h=ref.bw_num[0], h_den=ref.bw_den[0], p=2,
                kernel="epanechnikov")
    np.testing.assert_allclose(r.tau, ref.tau, atol=1e-10)


@pytest.mark.parametrize("name,kernel,p", [("fixedbw", "epanechnikov", 2),
                                           ("triangular", "triangular", 2),
                                           ("uniform", "uniform", 2),
                                           ("p1", "epanechnikov", 1),
                                           ("p3", "epanechnikov", 3)])
def test_simple_fit_up_to_rearrangement(sharp, name, kernel, p):
    """Deviation: the reference's interpolating rearrangement moves values by up to ~1e-3.

    Our exact rearrangement keeps the curve's end points (matched to 1e-10 here, where the
    curve is already monotone at the ends) and stays within 2e-3 elsewhere.
    """
    x, Q = sharp
    ref = _csv(f"ref_results_sharp_simple_{name}.csv")
    r = fit_r3d(x, Q, GRID, h=ref.bw_num.to_numpy(), p=p, kernel=kernel)
    np.testing.assert_allclose(r.tau, ref.tau, atol=2e-3)
    assert r.plus.m[0] == pytest.approx(ref.int_plus[0], abs=1e-10)
    assert r.minus.m[-1] == pytest.approx(ref.int_minus.iloc[-1], abs=1e-10)
    assert np.all(np.diff(r.plus.m) >= 0) and np.all(np.diff(r.minus.m) >= 0)


def test_deterministic_bootstrap_with_reference_quirk(sharp):
    x, Q = sharp
    ref = _csv("ref_results_bootstrap_sharp.csv")
    xi = _csv("ref_xi_matrix.csv").to_numpy().T            # (B, n)
    taus = _csv("ref_bootstrap_taus.csv").to_numpy().T     # (B, K)
    r = fit_r3d(x, Q, GRID, h=ref.bw_num.to_numpy(), p=2, kernel="epanechnikov",
                positive_weights_only=True, vce="hc0")
    D = draws(r.score, xi)
    np.testing.assert_allclose(D, taus, atol=1e-10)
    det = _csv("ref_bootstrap_deterministic.csv")
    crit = critical_value(np.abs(D).max(axis=1), 0.05)
    assert crit == pytest.approx(det.crit_val[0], abs=1e-10)
    # band = reference tau +- crit
    np.testing.assert_allclose(ref.tau - crit, det.cb_lower, atol=1e-10)
    pv = _csv("ref_pvalues_deterministic.csv")
    tests = curve_tests(ref.tau.to_numpy(), np.ones(20), taus, GRID, ("nullity", "homogeneity"))
    assert tests[0]["statistic"] == pytest.approx(pv.test_stat[0], abs=1e-12)
    assert tests[0]["p_value"] == pv.p_value[0]
    assert tests[1]["statistic"] == pytest.approx(pv.test_stat[1], abs=1e-12)
    assert tests[1]["p_value"] == pytest.approx(pv.p_value[1], abs=1e-12)


def test_corrected_bootstrap_uses_negative_weight_units(sharp):
    """Deviation: every unit with a non-zero weight enters the scores."""
    x, Q = sharp
    h = _csv("ref_results_bootstrap_sharp.csv").bw_num.to_numpy()
    quirk = fit_r3d(x, Q, GRID, h=h, p=2, kernel="epanechnikov", positive_weights_only=True,
                    vce="hc0")
    good = fit_r3d(x, Q, GRID, h=h, p=2, kernel="epanechnikov", vce="hc0")
    w = good.plus.weights
    neg = (w < 0)
    assert neg.any()
    assert np.all(good.plus.score[neg] != 0) and np.all(quirk.plus.score[neg] == 0)
    # dropping a quarter of the weight mass understates the variance
    assert np.all(good.se > quirk.se)


def test_recentred_gini_test_rejects_large_effect(sharp):
    """Deviation: the functional tests are recentred (the reference p-value stays ~0.5)."""
    x, Q = sharp
    r = fit_r3d(x, Q * np.where(x >= 0, 2.0, 1.0)[:, None], GRID, h=0.6, p=2,
                kernel="epanechnikov")
    xi = np.random.default_rng(0).standard_normal((500, x.size))
    Dp, Dm = draws(r.plus.score, xi), draws(r.minus.score, xi)
    out = {f["functional"]: f for f in functional_effects(r.plus.m, r.minus.m, Dp, Dm, GRID)}
    assert out["mean"]["p_value"] < 0.01
    # the not-recentred statistic of the reference compares |G*| with |G_hat| and is ~0.5
    est = out["gini"]["estimate"]
    naive = gini(r.plus.m + Dp, GRID) - gini(r.minus.m + Dm, GRID)
    assert 0.2 < np.mean(np.abs(naive) >= abs(est)) < 0.8


def test_density_and_pilot_bandwidth(sharp):
    x, Q = sharp
    dens = _csv("ref_density_all.csv").set_index("kernel")
    for k in ("triangular", "epanechnikov", "uniform"):
        f, h = density_at_cutoff(x, k)
        assert f == pytest.approx(dens.loc[k, "f_X_hat"], abs=1e-12)
        assert h == pytest.approx(dens.loc[k, "h_bw"], abs=1e-12)
    # pilot step (triangular kernel, where the kernel quirk is moot): the reference computes
    # the kernel constants by a 1,000-point Riemann sum, we by exact quadrature -> 1e-3 rel.
    for name, common in (("sharp", False), ("frechet", True)):
        ref = _csv(f"ref_bwselect_{name}.csv")
        bw = select_bandwidth(x, Q, s=1, kernel="triangular", common=common)
        np.testing.assert_allclose(bw.pilot, ref.pilot_h_num, rtol=1e-3)


def test_pilot_uses_the_chosen_kernel(sharp):
    """Deviation: the reference's pilot always uses the triangular kernel."""
    x, Q = sharp
    tri = select_bandwidth(x, Q, kernel="triangular")
    epa = select_bandwidth(x, Q, kernel="epanechnikov")
    assert not np.allclose(tri.pilot, epa.pilot, rtol=1e-3)


def test_uniform_band_is_constant_width_unless_studentized(sharp):
    x, Q = sharp
    r = fit_r3d(x, Q, GRID, h=0.6, kernel="epanechnikov")
    D = draws(r.score, np.random.default_rng(1).standard_normal((300, x.size)))
    lo, hi, _ = uniform_band(r.tau, r.se, D, studentize=False)
    assert np.ptp(hi - lo) < 1e-12
    lo, hi, _ = uniform_band(r.tau, r.se, D, studentize=True)
    assert np.ptp(hi - lo) > 1e-6


# --------------------------------------------------------------------------- every full fit
# (results file, data file, quantile grid, p, kernel); bandwidths are the reference's own
_FULL_FITS = [
    ("ref_results_sharp_simple_fixedbw.csv", "ref_data_sharp_simple_20.csv", GRID, 2, "epanechnikov"),
    ("ref_results_sharp_simple_epanechnikov.csv", "ref_data_sharp_simple_20.csv", GRID, 2,
     "epanechnikov"),
    ("ref_results_sharp_simple_triangular.csv", "ref_data_sharp_simple_20.csv", GRID, 2,
     "triangular"),
    ("ref_results_sharp_simple_uniform.csv", "ref_data_sharp_simple_20.csv", GRID, 2, "uniform"),
    ("ref_results_sharp_simple_p1.csv", "ref_data_sharp_simple_20.csv", GRID, 1, "epanechnikov"),
    ("ref_results_sharp_simple_p3.csv", "ref_data_sharp_simple_20.csv", GRID, 3, "epanechnikov"),
    ("ref_results_sharp_simple_20.csv", "ref_data_sharp_simple_20.csv", GRID, 2, "epanechnikov"),
    ("ref_results_coverage.csv", "ref_data_sharp_simple_20.csv", GRID, 2, "epanechnikov"),
    ("ref_results_bootstrap_sharp.csv", "ref_data_sharp_simple_20.csv", GRID, 2, "epanechnikov"),
    ("ref_results_sharp_simple_99.csv", "ref_data_sharp_simple_99.csv", np.arange(1, 100) / 100,
     2, "triangular"),
    ("ref_results_large_nq.csv", "ref_data_large_nq.csv", np.arange(1, 201) / 201, 2,
     "epanechnikov"),
    ("ref_results_small_sample.csv", "ref_data_small_sample.csv", np.arange(1, 6) / 6, 2,
     "epanechnikov"),
    ("ref_results_dgp1.csv", "ref_data_dgp1.csv", np.array([.1, .25, .5, .75, .9]), 2,
     "epanechnikov"),
    ("ref_results_dgp2.csv", "ref_data_dgp2.csv", np.array([.1, .25, .5, .75, .9]), 2,
     "epanechnikov"),
]


_SORT_GAP = {"ref_results_small_sample.csv": 0.16}


@pytest.mark.parametrize("results,data,grid,p,kernel", _FULL_FITS,
                         ids=[f[0][12:-4] for f in _FULL_FITS])
def test_every_simple_fit_matches_with_the_reference_rearrangement(results, data, grid, p, kernel):
    """rearrangement="interpolate" reproduces every full "simple" fit of the reference to 1e-10.

    The default exact sort agrees wherever the raw curve is monotone (the sort leaves it alone)
    and stays within 5e-3 of the reference on these sharp fits (the fine-grid interpolation
    of the reference moves values by up to ~3e-3 on the 99-quantile grid), except on the
    5-quantile small sample, whose raw curve crosses itself (gap 0.155: the sort swaps the
    two values, the reference spreads them over a fifth of the grid).
    """
    ref, d = _csv(results), _csv(data)
    x, Q = d.X.to_numpy(), d.iloc[:, 1:].to_numpy()
    assert Q.shape[1] == grid.size
    np.testing.assert_allclose(ref.q, grid, atol=1e-12)
    r = fit_r3d(x, Q, grid, h=ref.bw_num.to_numpy(), p=p, kernel=kernel,
                rearrangement="interpolate")
    np.testing.assert_allclose(r.tau, ref.tau, atol=1e-10)
    np.testing.assert_allclose(r.plus.m, ref.int_plus, atol=1e-10)
    np.testing.assert_allclose(r.minus.m, ref.int_minus, atol=1e-10)
    s = fit_r3d(x, Q, grid, h=ref.bw_num.to_numpy(), p=p, kernel=kernel)
    np.testing.assert_allclose(s.tau, ref.tau, atol=_SORT_GAP.get(results, 5e-3))
    for side in ("plus", "minus"):
        raw = getattr(s, side).raw
        if np.all(np.diff(raw) >= 0):
            np.testing.assert_array_equal(getattr(s, side).m, raw)


def test_fuzzy_simple_matches_with_the_reference_rearrangement():
    """Item: the fuzzy "simple" fit departs by 0.111 with the exact sort (a large violation of
    monotonicity at q = 6/21 that the reference spreads over its neighbours); with the
    reference's rearrangement it matches to 1e-10."""
    d = _csv("ref_data_fuzzy_simple_20.csv")
    ref = _csv("ref_results_fuzzy_simple_20.csv")
    x, Q, T = d.X.to_numpy(), d.iloc[:, 2:].to_numpy(), d.T_treat.to_numpy()
    kw = dict(T=T, h=ref.bw_num.to_numpy(), h_den=ref.bw_den[0], p=2, kernel="epanechnikov")
    r = fit_r3d(x, Q, GRID, rearrangement="interpolate", **kw)
    np.testing.assert_allclose(r.tau, ref.tau, atol=1e-10)
    np.testing.assert_allclose(r.plus.m, ref.int_plus, atol=1e-10)
    np.testing.assert_allclose(r.minus.m, ref.int_minus, atol=1e-10)
    s = fit_r3d(x, Q, GRID, **kw)
    gap = np.abs(s.tau - ref.tau).max()
    assert 0.05 < gap < 0.12                     # the documented deviation of the exact sort
    np.testing.assert_allclose(s.plus.raw, r.plus.raw, atol=1e-12)    # same raw limits


def test_interpolated_rearrangement_scores_follow_the_map():
    """The scores of the interpolated rearrangement are the raw scores mapped by the same
    matrix, so the value of every draw is linear in the raw draw."""
    d = _csv("ref_data_fuzzy_simple_20.csv")
    x, Q = d.X.to_numpy(), d.iloc[:, 2:].to_numpy()
    h = _csv("ref_results_fuzzy_simple_20.csv").bw_num.to_numpy()
    r = fit_r3d(x, Q, GRID, h=h, p=2, kernel="epanechnikov", rearrangement="interpolate",
                vce="hc0")
    raw = fit_r3d(x, Q, GRID, h=h, p=2, kernel="epanechnikov", method="simple", vce="hc0")
    mix = r.plus.mix
    assert mix is not None and not np.allclose(mix, np.eye(GRID.size))
    unsorted = np.zeros_like(raw.plus.score)
    unsorted[:, raw.plus.order] = raw.plus.score            # undo the sort's permutation
    np.testing.assert_allclose(r.plus.score, unsorted @ mix.T, atol=1e-12)
    np.testing.assert_allclose(mix @ (r.plus.weights * Q).sum(0), r.plus.m, atol=1e-10)


@pytest.mark.parametrize("kernel", ["triangular", "epanechnikov", "uniform"])
def test_estimator_coefficients(kernel):
    """ref_est_alpha_*: the full estimator's coefficients at its automatic bandwidths."""
    d = _csv("ref_data_sharp_simple_20.csv")
    x, Q = d.X.to_numpy(), d.iloc[:, 1:].to_numpy()
    h = _csv(f"ref_results_sharp_simple_{kernel}.csv").bw_num.to_numpy()
    r = fit_r3d(x, Q, GRID, h=h, p=2, kernel=kernel)
    for side in ("plus", "minus"):
        alpha = _csv(f"ref_est_alpha_{side}_sharp_simple_{kernel}.csv").to_numpy()
        np.testing.assert_allclose(getattr(r, side).fit.coef, alpha, atol=1e-10)


def test_density_summary():
    d = _csv("ref_data_sharp_simple_20.csv")
    x = d.X.to_numpy()
    ref = _csv("ref_density.csv")
    f, h = density_at_cutoff(x, "triangular")
    assert f == pytest.approx(ref.f_X_hat_tri[0], abs=1e-12)
    assert h == pytest.approx(ref.h_bw[0], abs=1e-12)
    assert np.std(x, ddof=1) == pytest.approx(ref.sigma_X[0], abs=1e-12)


def test_selected_bandwidths_against_the_reference():
    """R3D's selected h* against ref_bwselect_* (triangular kernel, s = 1).

    - the pilots (fuzzy: outcome and first stage) match to 1e-3 (quadrature vs Riemann sum);
    - the common (IMSE) h* of the "frechet" estimator matches to 3% without regularisation
      (the remaining gap is the reference's second-step bias term, a documented quirk);
    - per-quantile h* deviate by design (the same quirk, and rdrobust-type regularisation by
      default): within a factor of 7 of the reference's, never equal.
    """
    d = _csv("ref_data_fuzzy_simple_20.csv")
    x, Q, T = d.X.to_numpy(), d.iloc[:, 2:].to_numpy(), d.T_treat.to_numpy()
    ref = _csv("ref_bwselect_fuzzy.csv")
    bw = select_bandwidth(x, Q, s=1, kernel="triangular")
    np.testing.assert_allclose(bw.pilot, ref.pilot_h_num, rtol=1e-3)
    bt = select_bandwidth(x, T, s=1, kernel="triangular")
    assert bt.pilot[0] == pytest.approx(ref.pilot_h_den[0], rel=1e-3)
    assert bw.f_x == pytest.approx(ref.f_X_hat[0], abs=1e-12)
    s = _csv("ref_data_sharp_simple_20.csv")
    xs, Qs = s.X.to_numpy(), s.iloc[:, 1:].to_numpy()
    fr = select_bandwidth(xs, Qs, s=1, kernel="triangular", common=True, regularize=False)
    np.testing.assert_allclose(fr.h, _csv("ref_bwselect_frechet.csv").h_star_num, rtol=0.03)
    sh = select_bandwidth(xs, Qs, s=1, kernel="triangular")
    ratio = sh.h / _csv("ref_bwselect_sharp.csv").h_star_num.to_numpy()
    assert np.all((ratio > 1 / 7) & (ratio < 7)) and not np.allclose(ratio, 1.0, rtol=0.05)


def test_stochastic_bootstrap_roughly(sharp):
    """ref_results_bootstrap_sharp / ref_pvalues_bootstrap_sharp: a stochastic run of the
    reference (its quirk: positive weights only). Band widths agree to Monte Carlo error of
    the critical value, the nullity test rejects, the homogeneity p-value is near 0.064."""
    x, Q = sharp
    ref = _csv("ref_results_bootstrap_sharp.csv")
    pv = _csv("ref_pvalues_bootstrap_sharp.csv")
    r = fit_r3d(x, Q, GRID, h=ref.bw_num.to_numpy(), p=2, kernel="epanechnikov",
                positive_weights_only=True, vce="hc0", rearrangement="interpolate")
    D = draws(r.score, np.random.default_rng(7).standard_normal((4000, x.size)))
    lo, hi, _ = uniform_band(r.tau, r.se, D, 0.05, studentize=False)
    width_ref = float(np.mean(ref.cb_upper - ref.cb_lower))
    assert float(np.mean(hi - lo)) == pytest.approx(width_ref, rel=0.15)
    # the reference labels its range [0.05, 0.95] but tests every quantile of the grid (its
    # deterministic nullity statistic is |tau| at q = 1/21 < 0.05)
    t = {d["test"]: d for d in curve_tests(r.tau, r.se, D, GRID, ("nullity", "homogeneity"))}
    assert t["nullity"]["p_value"] == pv.p_value[0] == 0
    # the reference's p-value comes from a few hundred draws: 0.064 with sd ~0.02
    assert 0.0 < t["homogeneity"]["p_value"] < 0.25
