"""The distributional RD from arrays to a result: fit, bootstrap, diagnostics.

:func:`fit_rdd` is what :func:`geocausal.rdd` calls once the formula, the roles and the options
are resolved: the running variable minus the cutoff, the per-unit quantile matrix, the take-up
(fuzzy designs), the cluster labels, and the three option objects of
:mod:`geocausal.designs.rdd.options`. It applies the donut, fits the quantile effects
(:func:`~geocausal.designs.rdd.estimator.fit_r3d`), runs the multiplier bootstrap
(:mod:`geocausal.designs.rdd.effects`) and the checks (:mod:`geocausal.designs.rdd.diagnostics`),
and returns a frozen :class:`RDFit` that the face wraps in an Estimate.

Examples
--------
>>> import numpy as np
>>> from geocausal.designs.rdd.options import Inference
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(-1, 1, 400)
>>> Q = np.sort(1 + x[:, None] + 2 * (x[:, None] >= 0) + rng.normal(size=(400, 3)), axis=1)
>>> fit = fit_rdd(x, Q, np.array([.25, .5, .75]), "quantiles", inference=Inference(n_boot=99))
>>> list(fit.params.index), fit.curve.shape
(['mean', 'variance', 'gini'], (3, 7))
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from geocausal.designs.rdd import diagnostics as rd_diag
from geocausal.designs.rdd.effects import (
    bands,
    conventional,
    kind_defaults,
    multiplier_matrix,
    params_influence,
    small_sample_df,
)
from geocausal.designs.rdd.estimator import WEAK_FIRST_STAGE_F, fit_r3d, weak_first_stage
from geocausal.designs.rdd.options import METHODS, Bandwidth, Checks, Inference, check_choice
from geocausal.designs.rdd.outcomes import warn_mass_points
from geocausal.errors import DesignError, DiagnosticWarning, WeakInstrumentWarning


@dataclass(frozen=True)
class RDFit:
    """A fitted RD, arrays and tables only (the face wraps it in an Estimate).

    Attributes
    ----------
    params : pandas.Series
        Effects on the mean (and the variance and Gini in sharp designs; rdrobust's
        conventional row for a bias-corrected point mass).
    influence : numpy.ndarray
        ``(n, k)`` influence columns of ``params`` over the units kept (after the donut).
    curve : pandas.DataFrame
        Quantile effects with pointwise and uniform bands.
    diagnostics : dict
        Bandwidths, tests, functionals, first stage, checks.
    estimand : str
        ``"QTE"`` or ``"LQTE (fuzzy)"``.
    dof : int or None
        Degrees of freedom of the t tests of ``params``.
    n_draws : int
        Bootstrap draws used.
    keep : numpy.ndarray
        Units kept (``False`` inside the donut).
    tables : dict
        ``"functionals"`` (sharp designs with a grid): effects on the mean, variance and Gini
        with bootstrap ``std_error``, ``ci_low``, ``ci_high`` and ``p_value`` (the package's
        table convention: key column, then estimate, std_error, ci_low, ci_high).
    """

    params: pd.Series
    influence: np.ndarray
    curve: pd.DataFrame
    diagnostics: dict[str, Any] = field(repr=False)
    estimand: str
    dof: int | None
    n_draws: int
    keep: np.ndarray = field(repr=False)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)


def fit_rdd(x: np.ndarray, Q: np.ndarray, g: np.ndarray, kind: str, *,
            T: np.ndarray | None = None, clusters: np.ndarray | None = None,
            cutoff: float = 0.0, method: str = "simple", bandwidth: Bandwidth | None = None,
            inference: Inference | None = None, checks: Checks | None = None,
            seed: int = 0) -> RDFit:
    """Fit a (distributional) RD on arrays.

    Parameters
    ----------
    x
        Running variable minus the cutoff, ``(n,)``.
    Q
        Per-unit quantiles on the grid ``g``, ``(n, K)``.
    g
        Quantile levels.
    kind
        ``"scalar"`` (point masses: rdrobust's defaults), ``"samples"`` or ``"quantiles"``.
    T
        Take-up of a fuzzy design, or None (sharp).
    clusters
        Cluster labels (one multiplier per cluster), or None.
    cutoff
        The cutoff, to report the running variable and the placebo cutoffs on its scale.
    method
        ``"simple"`` or ``"frechet"``.
    bandwidth, inference, checks
        The option objects (defaults when None).
    seed
        Seed of the multipliers.

    Returns
    -------
    RDFit
    """
    bw = bandwidth or Bandwidth()
    inf = inference or Inference()
    chk = checks or Checks()
    method = check_choice(method, "method", METHODS)
    p, bias_correction, vce, selector = kind_defaults(
        kind == "scalar", bw.p, bw.bias_correction, inf.residuals, bw.selector, bw.per_side)
    n = x.size
    keep = np.abs(x) >= bw.donut if bw.donut > 0 else np.ones(n, bool)
    if bw.donut > 0:
        warnings.warn(f"donut of radius {bw.donut}: dropped {int((~keep).sum())} units near "
                      "the cutoff", DiagnosticWarning, stacklevel=4)
        x, Q = x[keep], Q[keep]
        T = None if T is None else T[keep]
        clusters = None if clusters is None else clusters[keep]
    if (x >= 0).sum() == 0 or (x < 0).sum() == 0:
        raise DesignError(f"no units on the {'right' if (x >= 0).sum() == 0 else 'left'} side "
                          f"of the cutoff {cutoff}; check running= and cutoff=")
    warn_mass_points(x, stacklevel=5)    # fit_rdd <- face <- rdd <- caller
    fit_kw = dict(method=method, p=p, s=bw.s, kernel=bw.kernel, h=bw.h, h_den=bw.h_den, b=bw.b,
                  bandwidth=selector, per_side=bw.per_side, bias_correction=bias_correction,
                  positive_weights_only=inf.reference_quirks, vce=vce,
                  rearrangement=bw.rearrangement)
    res = fit_r3d(x, Q, g, T=T, **fit_kw)
    rows = res.support                    # units with a non-zero score
    G = rows.size if clusters is None else np.unique(clusters[rows]).size
    xi = multiplier_matrix(inf.xi, inf.multiplier, inf.n_boot, seed, x.size, rows, G,
                           clusters is not None)
    small = inf.small_sample or ("none" if kind == "scalar" else "bell-mccaffrey")
    df = small_sample_df(res, small, clusters, rows)
    summ = bands(res, xi, clusters, inf.alpha, inf.studentize, inf.tests, inf.test_range,
                 inf.functionals, rows, df)
    n_draws = xi[1] if isinstance(xi, tuple) else int(xi.shape[0])
    params, infl = params_influence(res, inf.functionals)
    conv = conventional(res)
    if conv is not None:
        params = pd.concat([params, pd.Series({"mean (conventional)": conv[0]})])
        infl = np.column_stack([infl, conv[1]])
    diag: dict[str, Any] = {
        "method": method, "kernel": res.kernel, "p": p, "s": bw.s, "cutoff": float(cutoff),
        "bias_correction": bias_correction, "n_boot": n_draws,
        "outcome_kind": kind, "n_quantiles": int(g.size),
        "n_left": int((x < 0).sum()), "n_right": int((x >= 0).sum()),
        "n_bootstrap_units": int(rows.size),
        "h_median": float(np.median(np.r_[res.plus.h, res.minus.h])),
        "uniform_critical_value": summ["crit"], "studentized": bool(inf.studentize),
        "small_sample": small,
        "df": None if df is None else pd.Series(df, index=g, name="df"),
        "bandwidths": pd.DataFrame({
            "quantile": g, "h_plus": res.plus.h, "h_minus": res.minus.h,
            "m_plus": res.plus.m, "m_minus": res.minus.m,
            "n_plus": res.plus.fit.n_eff, "n_minus": res.minus.fit.n_eff}),
        "tests": summ["tests"],
    }
    rdbw = res.extra.get("rd_bandwidths")
    if rdbw is not None:
        diag.update({k: v for k, v in rdbw.as_dict().items() if k not in ("p", "pilot")})
    if kind == "scalar":                  # effective N per side at h, as rdrobust reports
        diag["n_h_left"] = int(res.minus.fit.n_eff[0])
        diag["n_h_right"] = int(res.plus.fit.n_eff[0])
    if conv is not None:
        diag["inference"] = (f"mean: robust bias-corrected (order {p} at h, bias from order "
                             f"{p + 1} at b); mean (conventional): order {p} at h, plain SE")
    for name, pv in zip(summ["tests"]["test"], summ["tests"]["p_value"]):
        diag[f"p_{name}"] = float(pv)
    tables: dict[str, pd.DataFrame] = {}
    if summ["functionals"] is not None:
        ft = summ["functionals"]
        tables["functionals"] = ft.rename(columns={
            "boot_se": "std_error", "conf_low": "ci_low", "conf_high": "ci_high"})[
            ["functional", "estimate", "std_error", "ci_low", "ci_high", "p_value"]]
        for name, pv in zip(ft["functional"], ft["p_value"]):
            diag[f"p_{name}_boot"] = float(pv)
    fs = res.first_stage
    if fs is not None:
        diag.update({"first_stage_jump": fs["jump"], "first_stage_se": fs["se"],
                     "first_stage_t": fs["t"], "first_stage_F": fs["F"], "h_den": fs["h"],
                     "weak_first_stage": fs["F"] < WEAK_FIRST_STAGE_F})
        weak = weak_first_stage(fs)
        if weak is not None:
            warnings.warn(weak, WeakInstrumentWarning, stacklevel=4)
    if chk.density_test:
        try:
            diag["density_test"] = rd_diag.density_test(x)
            diag["p_density"] = diag["density_test"]["p_value"]
        except DesignError as exc:
            diag["density_test"] = {"error": str(exc)}
    if x.size * g.size <= 200_000:
        diag["points"] = pd.DataFrame(np.column_stack([x + float(cutoff), Q]),
                                      columns=["running", *[f"q{v:g}" for v in g]])
    boot = (seed, inf.n_boot, inf.multiplier)
    if chk.placebo is not None:
        diag["placebo"] = rd_diag.placebo_cutoffs(x, Q, g, chk.placebo, cutoff, fit_kw, boot, T)
    if chk.sensitivity is not None:
        diag["sensitivity"] = rd_diag.bandwidth_sensitivity(x, Q, g, T, res, chk.sensitivity,
                                                            fit_kw, boot)
    if chk.donuts is not None:
        diag["donut"] = rd_diag.donut_sensitivity(x, Q, g, T, chk.donuts, fit_kw, boot)
    # t tests of the params with the smallest per-quantile df (conservative for averages);
    # with clusters the rule uses G - 1
    dof = None if df is None or not np.isfinite(df).any() else \
        max(int(np.floor(np.nanmin(np.where(np.isfinite(df), df, np.nan)))), 1)
    return RDFit(params=params, influence=infl, curve=summ["curve"], diagnostics=diag,
                 estimand="LQTE (fuzzy)" if res.fuzzy else "QTE", dof=dof, n_draws=n_draws,
                 keep=keep, tables=tables)
