"""``gc.rdd``: regression discontinuity with distribution-valued (or scalar) outcomes.

Each unit's outcome is a distribution (pixels in a district, wages in a firm) or a scalar
(a point mass). The estimand is the local quantile treatment effect ``tau(q)`` at the cutoff,
estimated on a quantile grid by the "simple" (per-quantile local polynomial + rearrangement)
or "frechet" (common bandwidth + isotonic projection) estimator of Van Dijcke (2025), with
pointwise and uniform bands from a multiplier bootstrap (for distributions, with t critical
values at the Bell-McCaffrey degrees of freedom of each quantile: ``small_sample=``), sup tests,
and effects on functionals (mean, variance, Gini). Every option is validated
(:mod:`geocausal.designs.rdd.options`); a weak fuzzy first stage (F < 10) warns with
:class:`~geocausal.errors.WeakInstrumentWarning`. ``Estimate.with_vcov`` refuses (the bands
come from the bootstrap): refit with the ``vcov`` you need.

Outcome forms
-------------
- a formula ``"y ~ 1"`` (sharp) or ``"y ~ d"`` (fuzzy, ``d`` the take-up), where column ``y``
  holds scalars (point masses) or one array of draws per row;
- ``outcome=``: a list of per-unit arrays; a dict ``{"values": [...], "weights": [...]}``;
  an ``(n, K)`` quantile matrix (with ``q_grid``); or any object with ``quantiles`` and
  ``q_grid`` attributes, or ``values`` (and ``weights``) attributes, such as the per-unit
  pixel distributions of :mod:`geocausal.data.distributions`.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(-1, 1, 400)
>>> samples = [rng.normal(1 + xi + 2 * (xi >= 0), 1, 30) for xi in x]
>>> est = rdd(outcome=samples, running=x, q_grid=[.25, .5, .75], n_boot=200, seed=1)
>>> list(est.curve.columns)
['quantile', 'estimate', 'std_error', 'conf_low', 'conf_high', 'uniform_low', 'uniform_high']
>>> bool(abs(est.params["mean"] - 2) < 0.6)
True
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from geocausal.api._correction import apply_correction
from geocausal.designs.common import check_values
from geocausal.designs.rdd.bootstrap import (
    cluster_scores,
    curve_tests,
    draws,
    functional_effects,
    functional_gradient,
    gaussian_draws,
    uniform_band,
)
from geocausal.designs.rdd.diagnostics import density_test as _density_test
from geocausal.designs.rdd.estimator import (
    WEAK_FIRST_STAGE_F,
    R3DResult,
    fit_r3d,
    weak_first_stage,
)
from geocausal.designs.rdd.options import validate_rdd_options
from geocausal.designs.rdd.quantiles import (
    DEFAULT_GRID,
    FUNCTIONALS,
    check_grid,
    mean_functional,
    unit_quantiles,
)
from geocausal.designs.rdd.smallsample import normal_equivalent, t_critical
from geocausal.errors import DataError, DesignError, DiagnosticWarning, WeakInstrumentWarning
from geocausal.formula import parse_formula
from geocausal.inference.bootstrap import multipliers as _multipliers
from geocausal.inference.variance import VarianceRule, cluster_data_from, parse_vcov
from geocausal.results.estimate import Estimate, EstimateSet, make_provenance

__all__ = ["rdd", "outcome_quantiles"]

_OPTION_NAMES = ("method", "p", "s", "kernel", "h", "h_den", "b", "per_side", "bias_correction",
                 "vce", "small_sample", "rearrangement", "donut", "n_boot", "alpha", "studentize",
                 "multiplier", "tests", "test_range", "functionals", "density_test", "placebo", "sensitivity", "donuts",
                 "seed", "cutoff", "reference_quirks")


# --------------------------------------------------------------------------- outcome handling
def _is_sample_column(col: pd.Series) -> bool:
    return col.dtype == object and len(col) > 0 and all(
        isinstance(v, np.ndarray | list | tuple) for v in col)


def outcome_quantiles(outcome: Any, q_grid: Sequence[float] | None, n: int | None = None,
                      weights: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Turn any supported outcome form into ``(Q, q_grid, kind)``.

    ``kind`` is ``"scalar"``, ``"samples"`` or ``"quantiles"``. Scalars become point masses
    (every quantile equals the value); their default grid is the median only.

    Examples
    --------
    >>> import numpy as np
    >>> Q, g, kind = outcome_quantiles(np.array([1.0, 2.0]), None)
    >>> Q.tolist(), g.tolist(), kind
    ([[1.0], [2.0]], [0.5], 'scalar')
    """
    # a per-unit distributions object: samples when kept (any grid), else its quantile matrix
    obj_grid = getattr(outcome, "q_grid", getattr(outcome, "grid", None))
    obj_q = getattr(outcome, "quantiles", None)
    obj_v = getattr(outcome, "values", None) if not isinstance(
        outcome, pd.Series | pd.DataFrame | np.ndarray | dict | list | tuple) else None
    if obj_q is not None and obj_grid is not None and (obj_v is None or q_grid is None):
        g = check_grid(obj_grid)
        return _check_matrix(np.asarray(obj_q, dtype=float), g), g, "quantiles"
    if obj_v is not None:
        weights = getattr(outcome, "weights", None) if weights is None else weights
        outcome = list(obj_v)
    if isinstance(outcome, Mapping):
        if "values" not in outcome:
            raise DataError("an outcome dict needs a 'values' entry (one array per unit)")
        weights = outcome.get("weights", weights)
        outcome = list(outcome["values"])
    if isinstance(outcome, pd.Series):
        outcome = list(outcome) if _is_sample_column(outcome) else outcome.to_numpy()
    if isinstance(outcome, np.ndarray) and outcome.dtype != object:
        arr = np.asarray(outcome, dtype=float)
        if arr.ndim == 1:
            if np.any(~np.isfinite(arr)):
                raise DataError(f"the outcome has {int((~np.isfinite(arr)).sum())} NaN or "
                                "infinite values; drop those units")
            g = check_grid([0.5] if q_grid is None else q_grid)
            return np.repeat(arr[:, None], g.size, axis=1), g, "scalar"
        if arr.ndim == 2:
            K = arr.shape[1]
            g = check_grid(np.arange(1, K + 1) / (K + 1) if q_grid is None else q_grid)
            if g.size != K:
                raise DataError(f"the quantile matrix has {K} columns but q_grid has {g.size} levels")
            return _check_matrix(arr, g), g, "quantiles"
        raise DataError(f"an outcome array must be 1-D (scalars) or 2-D (quantiles), got {arr.ndim}-D")
    if isinstance(outcome, Sequence) or (isinstance(outcome, np.ndarray) and outcome.dtype == object):
        samples = [np.asarray(v, dtype=float).ravel() for v in outcome]
        g = check_grid(DEFAULT_GRID if q_grid is None else q_grid)
        Qm = unit_quantiles(samples, g, weights=weights)
        sizes = np.array([s.size for s in samples])
        const = np.array([s.size > 1 and np.ptp(s) == 0 for s in samples])
        if const.any():
            warnings.warn(f"{int(const.sum())} of {len(samples)} units have a constant outcome "
                          "sample (a point mass); check for masked or filled pixels",
                          DiagnosticWarning, stacklevel=3)
        if np.all(sizes == 1):
            return Qm, g, "scalar"
        return Qm, g, "samples"
    raise DataError(f"unsupported outcome of type {type(outcome).__name__}; pass a formula, a "
                    "list of per-unit arrays, a quantile matrix or a distributions object")


def _check_matrix(Q: np.ndarray, g: np.ndarray) -> np.ndarray:
    if Q.ndim != 2 or Q.shape[1] != g.size:
        raise DataError(f"quantile matrix of shape {Q.shape} does not match a grid of {g.size}")
    bad = ~np.isfinite(Q)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(f"the quantile matrix has NaN or infinite values in {rows.size} units "
                        f"(first: row {rows[0]}); drop them or fill their distributions")
    return Q


def _column_or_array(data, value, name: str, n: int | None = None) -> np.ndarray:
    if isinstance(value, str):
        if data is None or value not in data.columns:
            raise DataError(f"{name} column '{value}' is not in the data")
        arr = pd.to_numeric(data[value], errors="coerce").to_numpy(dtype=float)
    else:
        arr = np.asarray(value, dtype=float).ravel()
    if n is not None and arr.size != n:
        raise DataError(f"{name} has {arr.size} values but there are {n} units")
    check_values(arr[~np.isnan(arr)], value if isinstance(value, str) else name,
                 column=isinstance(value, str))
    bad = int(np.sum(~np.isfinite(arr)))
    if bad:
        raise DataError(f"{name} '{value if isinstance(value, str) else ''}' has {bad} missing "
                        "or non-numeric values; drop those units")
    return arr


def _mass_points(x: np.ndarray) -> None:
    n_unique = np.unique(x).size
    if n_unique < x.size:
        warnings.warn(f"the running variable has mass points: {x.size} units share "
                      f"{n_unique} distinct values; local polynomial fits assume a continuous "
                      "running variable (consider clustering on the running variable)",
                      DiagnosticWarning, stacklevel=3)


# --------------------------------------------------------------------------- inference helpers
def _cluster_factor(G: int) -> float:
    return G / (G - 1) if G > 1 else 1.0


def _summarise(res: R3DResult, xi: np.ndarray, clusters, alpha: float, studentize: bool,
               tests, test_range, functionals, rows: np.ndarray,
               df: np.ndarray | None = None) -> dict[str, Any]:
    """Bands, tests and functionals from the bootstrap over the units in ``rows``.

    ``rows`` are the units with a non-zero score (every other unit adds exactly zero to each
    draw), so multipliers are drawn for them only. With degrees of freedom ``df`` (one per
    quantile) every normal critical value becomes the t critical value of the same level
    (:func:`geocausal.designs.rdd.smallsample.t_critical`) and the tests compare the
    t statistics' normal equivalents with the Gaussian draws.
    """
    K = res.q_grid.size
    sides = not res.fuzzy and bool(functionals) and K > 1
    gaussian = isinstance(xi, tuple)      # ("gaussian", n_boot, seed): draw from the exact law
    if clusters is None and sides:
        # the two sides' scores live on disjoint units: draw each side from its own window
        Sp = res.plus.score_window[res.plus.support]
        Sm = res.minus.score_window[res.minus.support]
        se = np.sqrt(np.sum(Sp**2, axis=0) + np.sum(Sm**2, axis=0))
        if gaussian:
            D_all = gaussian_draws([Sp, Sm], xi[1], xi[2], disjoint=True)
        else:
            cols = [np.searchsorted(rows, s.rows[s.support]) for s in (res.plus, res.minus)]
            D_all = np.hstack([draws(Sp, xi[:, cols[0]]), draws(Sm, xi[:, cols[1]])])
    else:
        cl = None if clusters is None else clusters[rows]
        S = cluster_scores(res.score[rows], cl)
        fac = _cluster_factor(S.shape[0]) if clusters is not None else 1.0
        se = np.sqrt(fac * np.sum(S**2, axis=0))
        blocks = [cluster_scores(res.plus.score[rows], cl),
                  cluster_scores(res.minus.score[rows], cl)] if sides else [S]
        # the small-cluster factor G / (G - 1) of the variance applies to the draws too
        blocks = [np.sqrt(fac) * blk for blk in blocks]
        if gaussian:
            D_all = gaussian_draws(blocks, xi[1], xi[2])
        else:
            D_all = np.hstack([draws(b, xi) for b in blocks])
    if sides:
        Dp, Dm = D_all[:, :K], D_all[:, K:]
        D = Dp - Dm                       # the score of tau is plus minus minus
    else:
        Dp = Dm = None
        D = D_all
    from scipy import stats as _st

    z = _st.norm.ppf(1 - alpha / 2)
    ulo, uhi, crit = uniform_band(res.tau, se, D, alpha, studentize)
    tau_test = res.tau
    if df is not None:
        z = np.where(np.isfinite(df), _st.t.ppf(1 - alpha / 2, np.where(np.isfinite(df), df, 1)),
                     z)
        pos = se > 0
        half = uhi - res.tau
        half[pos] = se[pos] * t_critical(half[pos] / se[pos], df[pos])
        ulo, uhi = res.tau - half, res.tau + half
        tau_test = res.tau.copy()
        tau_test[pos] = np.sign(res.tau[pos]) * se[pos] * normal_equivalent(
            res.tau[pos] / se[pos], df[pos])
    curve = pd.DataFrame({"quantile": res.q_grid, "estimate": res.tau, "std_error": se,
                          "conf_low": res.tau - z * se, "conf_high": res.tau + z * se,
                          "uniform_low": ulo, "uniform_high": uhi})
    tt = pd.DataFrame(curve_tests(tau_test, se, D, res.q_grid, tests, test_range, studentize)) \
        if tests and res.q_grid.size > 1 else pd.DataFrame(columns=["test", "range", "statistic",
                                                                    "p_value"])
    ft = None
    if functionals and not res.fuzzy and res.q_grid.size > 1:
        ft = pd.DataFrame(functional_effects(res.plus.m, res.minus.m, Dp, Dm, res.q_grid,
                                             functionals, alpha))
    return {"curve": curve, "tests": tt, "functionals": ft, "crit": crit, "draws": D}


def _small_sample_df(res: R3DResult, small_sample: str, clusters, rows) -> np.ndarray | None:
    """Degrees of freedom per quantile: Bell-McCaffrey, or ``G - 1`` with clusters."""
    if small_sample != "bell-mccaffrey":
        return None
    if clusters is not None:
        G = np.unique(clusters[rows]).size
        return np.full(res.q_grid.size, float(max(G - 1, 1)))
    return res.df


def _side_column(res: R3DResult, vp: np.ndarray, vm: np.ndarray) -> np.ndarray:
    """``n (S_+ vp - S_- vm)`` per unit, from the two sides' windows (disjoint units)."""
    n = res.plus.n
    col = np.zeros(n)
    col[res.plus.rows] = res.plus.score_window @ vp
    col[res.minus.rows] = -(res.minus.score_window @ vm)
    return n * col


def _conventional(res: R3DResult) -> tuple[float, np.ndarray] | None:
    """The conventional (order-p, uncorrected) effect and its influence column, or ``None``.

    Only for one quantile of an explicitly bias-corrected fit (a point-mass RD): rdrobust's
    "Conventional" row beside the robust bias-corrected one.
    """
    if res.q_grid.size != 1 or res.plus.m_conventional is None:
        return None
    n = res.plus.n

    def score(side):
        out = np.zeros(n)
        out[side.rows] = side.score_conventional_window[:, 0]
        return out

    delta = float(res.plus.m_conventional[0] - res.minus.m_conventional[0])
    s = score(res.plus) - score(res.minus)
    if not res.fuzzy:
        return delta, n * s
    tp, tm = res.first_stage["plus"], res.first_stage["minus"]
    jump = float(tp.m_conventional[0] - tm.m_conventional[0])
    sT = score(tp) - score(tm)
    return delta / jump, n * (s / jump - sT * delta / jump**2)


def _kind_defaults(point: bool, p, bias_correction, vce, bandwidth, per_side):
    """Defaults by outcome kind: rdrobust's for point masses, the R3D paper's for distributions."""
    if point:
        return (1 if p is None else p, bias_correction or "explicit", vce or "nn",
                bandwidth or ("msetwo" if per_side else "mserd"))
    return (2 if p is None else p, bias_correction or "implicit", vce or "hc2", bandwidth or "mse")


def _params_influence(res: R3DResult, functionals) -> tuple[pd.Series, np.ndarray]:
    n = res.plus.n
    g = res.q_grid
    if g.size == 1:
        return pd.Series({"mean": float(res.tau[0])}), n * res.score[:, :1]
    wmean = functional_gradient(mean_functional, res.tau, g)
    mean_col = n * res.score @ wmean if res.fuzzy else _side_column(res, wmean, wmean)
    names, vals, cols = ["mean"], [float(mean_functional(res.tau, g))], [mean_col]
    if not res.fuzzy:
        for name in functionals or ():
            if name == "mean":
                continue
            F = FUNCTIONALS[name]
            gp = functional_gradient(F, res.plus.m, g)
            gm = functional_gradient(F, res.minus.m, g)
            names.append(name)
            vals.append(float(F(res.plus.m, g) - F(res.minus.m, g)))
            cols.append(_side_column(res, gp, gm))
    return pd.Series(dict(zip(names, vals))), np.column_stack(cols)


# --------------------------------------------------------------------------- main entry point
def rdd(
    formula: str | None = None,
    data: pd.DataFrame | None = None,
    *,
    running: str | np.ndarray,
    cutoff: float = 0.0,
    outcome: Any = None,
    treatment: str | np.ndarray | None = None,
    weights: Any = None,
    q_grid: Sequence[float] | None = None,
    method: str = "simple",
    p: int | None = None,
    s: int = 1,
    kernel: str = "triangular",
    h: Any = None,
    h_den: float | None = None,
    b: Any = None,
    bandwidth: str | None = None,
    per_side: bool = False,
    bias_correction: str | None = None,
    vce: str | None = None,
    small_sample: str | None = None,
    rearrangement: str = "sort",
    donut: float = 0.0,
    n_boot: int = 2000,
    alpha: float = 0.05,
    studentize: bool = True,
    multiplier: str = "normal",
    xi: np.ndarray | None = None,
    tests: Sequence[str] = ("nullity", "homogeneity", "dominance"),
    test_range: Sequence[float] | None = None,
    functionals: Sequence[str] = ("mean", "variance", "gini"),
    density_test: bool = True,
    placebo: Sequence[float] | None = None,
    sensitivity: Sequence[float] | None = None,
    donuts: Sequence[float] | None = None,
    vcov: Any = "hetero",
    seed: int = 0,
    outcome_correction: Any = None,
    by: str | None = None,
    reference_quirks: bool = False,
) -> Estimate | EstimateSet:
    """Distributional (or scalar) regression discontinuity at ``cutoff``.

    Parameters
    ----------
    formula
        ``"y ~ 1"`` (sharp) or ``"y ~ d"`` (fuzzy with take-up ``d``); ``y`` holds scalars or
        per-row arrays of draws. Alternatively a column name, or ``None`` with ``outcome=``.
    data
        The unit table.
    running
        Running-variable column (or array), e.g. a signed distance from
        :func:`geocausal.api.rdd_geo.signed_distance`.
    cutoff
        Cutoff of the running variable; units with ``running >= cutoff`` are on the right.
    outcome
        Outcome when no formula is given (see the module docstring for the forms).
    treatment
        Take-up column or array for the fuzzy design (alternative to ``"y ~ d"``).
    weights
        Within-unit weights: a column of per-row arrays, or a list of arrays.
    q_grid
        Quantile levels; default ``0.01..0.99`` (the median only for scalar outcomes).
    method
        ``"simple"`` or ``"frechet"``.
    p, s, kernel
        Estimation order (default: 1 for point-mass outcomes, as rdrobust; 2 for
        distributions, the R3D paper's implicit bias correction), bandwidth-pilot order of the
        "mse"/"cer" rules and kernel. Explicit bias correction uses ``q = p + 1``.
    h, h_den, b
        User bandwidths (outcome: scalar, per quantile or ``{"plus":, "minus":}``; first
        stage; bias bandwidth of the explicit correction).
    bandwidth
        ``"mse"`` (MSE-optimal per quantile / IMSE common) or ``"cer"`` (coverage-error rule)
        (default for distributions); for point-mass outcomes also rdrobust's selectors
        ``"mserd"`` (default; ``"msetwo"`` with ``per_side=True``), ``"msetwo"``, ``"msesum"``,
        ``"msecomb1"``, ``"msecomb2"``, ``"cerrd"``, ``"certwo"``, ``"cersum"``, ``"cercomb1"``,
        ``"cercomb2"`` (:mod:`geocausal.designs.rdd.bwselect`; equal to ``rdbwselect``).
    per_side
        Separate selected bandwidths on each side.
    bias_correction
        ``"implicit"`` (p = s + 1 with the order-s bandwidth; default for distributions) or
        ``"explicit"`` (CCT; default for point masses). With a point-mass outcome and
        ``"explicit"``, ``params`` has two rows as rdrobust: ``"mean"``, the robust
        bias-corrected effect and SE, and ``"mean (conventional)"``, the order-``p`` effect
        with its conventional SE (not valid for inference at an MSE-optimal ``h``).
    vce
        Residuals of the scores: ``"nn"`` (nearest neighbours, rdrobust's default; default for
        point masses), ``"hc0"`` (matches rdrobust's ``vce="hc0"``), ``"hc1"``, ``"hc2"``
        (default for distributions) or ``"hc3"``. With the defaults, a point-mass outcome
        gives rdrobust's default estimate, standard errors and intervals.
    small_sample
        ``"bell-mccaffrey"`` (default for distributions): pointwise and uniform critical
        values use t tails with the Bell-McCaffrey degrees of freedom of each quantile's
        variance (``G - 1`` with clusters; Imbens and Kolesar 2016), which brings the uniform
        coverage at n = 200 from 0.89 to 0.95 (``paper/r3d/coverage_mc.md``); ``"none"``
        (default for point masses, as rdrobust): normal critical values.
    rearrangement
        Monotonisation of the "simple" side limits: ``"sort"`` (default, exact on the grid) or
        ``"interpolate"`` (the reference implementation's fine-grid rearrangement).
    donut
        Drop units with ``|running - cutoff| < donut``.
    n_boot, alpha, studentize, multiplier, xi
        Bootstrap draws, level, studentized (variable-width) bands, multiplier law
        (``"normal"``, ``"rademacher"``, ``"mammen"``), or a fixed ``(n or G, B)`` multiplier
        matrix ``xi``.
    tests, test_range
        Curve tests (``"nullity"``, ``"homogeneity"``, ``"dominance"``) on a quantile range.
    functionals
        Functionals whose effects are reported (``"mean"``, ``"variance"``, ``"gini"``).
    density_test, placebo, sensitivity, donuts
        Diagnostics: McCrary density test; placebo cutoffs (values of the running variable);
        bandwidth multipliers; donut radii.
    vcov
        ``"hetero"`` or ``{"cluster": column}``; clusters also get one bootstrap multiplier each.
    seed
        Seed of the multipliers.
    outcome_correction
        A fitted corrector applied to scalar outcomes or to every draw of a sample.
    by
        Column defining subgroups: one estimate per group, returned as an EstimateSet.
    reference_quirks
        Reproduce the reference implementation's bootstrap (positive weights only); for
        comparisons with its published outputs only.

    Returns
    -------
    Estimate
        ``curve`` holds the quantile effects with pointwise and uniform bands; ``params`` the
        effects on the mean (and variance and Gini in sharp designs); ``diagnostics`` the
        bandwidths, tests and checks.
    """
    args = {k: v for k, v in locals().items() if k != "by"}
    opts = {k: args[k] for k in _OPTION_NAMES}
    # None means "the default of the outcome's kind" (_kind_defaults); any default is valid
    opts.update({k: d for k, d in (("p", 2), ("bias_correction", "implicit"), ("vce", "hc2"))
                 if opts[k] is None})
    validate_rdd_options(**opts)
    if by is None:
        return _rdd_one(**args)
    if data is None or by not in data.columns:
        raise DataError(f"by column '{by}' is not in the data")
    if not isinstance(running, str) or outcome is not None:
        raise DataError("by= needs running= and the outcome given as columns of data")
    names, ests = [], []
    for gval in pd.unique(data[by]):
        ests.append(_rdd_one(**{**args, "data": data[data[by] == gval].reset_index(drop=True)}))
        names.append(str(gval))
    return EstimateSet(tuple(ests), tuple(names), diagnostics={"by": by})


def _rdd_one(formula, data, *, running, cutoff, outcome, treatment, weights, q_grid, method, p,
             s, kernel, h, h_den, b, bandwidth, per_side, bias_correction, vce, small_sample,
             rearrangement,
             donut, n_boot, alpha,
             studentize, multiplier, xi, tests, test_range, functionals, density_test, placebo,
             sensitivity, donuts, vcov, seed, outcome_correction, reference_quirks) -> Estimate:
    # ---- outcome and take-up
    if isinstance(outcome, str) and formula is None:
        formula, outcome = outcome, None
    if formula is not None:
        if isinstance(formula, str) and "~" not in formula:
            formula = f"{formula} ~ 1"
        pf = parse_formula(formula, data, treatment=True) if _has_rhs(formula) else \
            parse_formula(formula, data, treatment=False)
        if pf.outcome not in data.columns:
            raise DataError(f"outcome column '{pf.outcome}' is not in the data")
        ycol = data[pf.outcome]
        if pf.treatment is not None and treatment is None:
            treatment = pf.treatment
        if isinstance(weights, str):
            weights = list(data[weights])
        if _is_sample_column(ycol):
            raw = [apply_correction(outcome_correction, np.asarray(v, float)) for v in ycol]
            Q, g, kind = outcome_quantiles(raw, q_grid, weights=weights)
        else:
            yv = pd.to_numeric(ycol, errors="coerce").to_numpy(dtype=float)
            check_values(yv[~np.isnan(yv)], pf.outcome)
            bad = int(np.sum(~np.isfinite(yv)))
            if bad:
                raise DataError(f"outcome column '{pf.outcome}' has {bad} missing or "
                                "non-numeric values; drop those units")
            Q, g, kind = outcome_quantiles(apply_correction(outcome_correction, yv), q_grid)
    elif outcome is not None:
        Q, g, kind = outcome_quantiles(outcome, q_grid, weights=weights)
    else:
        raise DataError("give a formula such as 'y ~ 1' or an outcome= (samples or quantiles)")
    n = Q.shape[0]
    p, bias_correction, vce, bandwidth = _kind_defaults(kind == "scalar", p, bias_correction,
                                                        vce, bandwidth, per_side)
    x = _column_or_array(data, running, "running variable", n) - float(cutoff)
    T = None if treatment is None else _column_or_array(data, treatment, "treatment", n)
    req = parse_vcov(vcov, n, cluster_data_from(data) or None)
    if req.kind == "cluster" and len(req.clusters) > 1:
        raise DataError("the rdd bootstrap takes one cluster variable; pass {'cluster': name}")
    clusters = req.clusters[0] if req.kind == "cluster" else None
    keep = np.abs(x) >= donut if donut > 0 else np.ones(n, bool)
    if donut > 0:
        warnings.warn(f"donut of radius {donut}: dropped {int((~keep).sum())} units near the cutoff",
                      DiagnosticWarning, stacklevel=3)
        x, Q = x[keep], Q[keep]
        T = None if T is None else T[keep]
        clusters = None if clusters is None else clusters[keep]
    if (x >= 0).sum() == 0 or (x < 0).sum() == 0:
        raise DesignError(f"no units on the {'right' if (x >= 0).sum() == 0 else 'left'} side "
                          f"of the cutoff {cutoff}; check running= and cutoff=")
    _mass_points(x)
    fit_kw = dict(method=method, p=p, s=s, kernel=kernel, h=h, h_den=h_den, b=b,
                  bandwidth=bandwidth, per_side=per_side, bias_correction=bias_correction,
                  positive_weights_only=reference_quirks, vce=vce,
                  rearrangement=rearrangement)
    res = fit_r3d(x, Q, g, T=T, **fit_kw)
    rows = res.support                    # units with a non-zero score
    G = rows.size if clusters is None else np.unique(clusters[rows]).size
    if xi is None and multiplier == "normal":
        # Gaussian multipliers: draws from their exact law N(0, S'S) (see gaussian_draws)
        xi_m = ("gaussian", int(n_boot), int(seed))
    elif xi is None:
        xi_m = _multipliers(G, n_boot, seed, multiplier)
    else:
        xi_m = np.asarray(xi, dtype=float)
        if clusters is None and x.size in xi_m.shape and G not in xi_m.shape:
            xi_m = xi_m[rows] if xi_m.shape[0] == x.size else xi_m[:, rows]
        xi_m = xi_m.T if xi_m.shape[0] == G and xi_m.shape[1] != G else xi_m
        if xi_m.shape[1] != G:
            raise DataError(f"xi must have one row per unit (or cluster) with a non-zero weight "
                            f"({G}) or per unit ({x.size}); got {xi_m.shape}")
    if small_sample is None:
        small_sample = "none" if kind == "scalar" else "bell-mccaffrey"
    df = _small_sample_df(res, small_sample, clusters, rows)
    summ = _summarise(res, xi_m, clusters, alpha, studentize, tests, test_range, functionals,
                      rows, df)
    n_draws = xi_m[1] if isinstance(xi_m, tuple) else int(xi_m.shape[0])
    params, infl = _params_influence(res, functionals)
    conv = _conventional(res)
    if conv is not None:
        params = pd.concat([params, pd.Series({"mean (conventional)": conv[0]})])
        infl = np.column_stack([infl, conv[1]])
    # ---- diagnostics
    diag: dict[str, Any] = {
        "method": method, "kernel": res.kernel, "p": p, "s": s, "cutoff": float(cutoff),
        "bias_correction": bias_correction, "n_boot": n_draws,
        "outcome_kind": kind, "n_quantiles": int(g.size),
        "n_left": int((x < 0).sum()), "n_right": int((x >= 0).sum()),
        "n_bootstrap_units": int(rows.size),
        "h_median": float(np.median(np.r_[res.plus.h, res.minus.h])),
        "uniform_critical_value": summ["crit"], "studentized": bool(studentize),
        "small_sample": small_sample,
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
    if summ["functionals"] is not None:
        diag["functionals"] = summ["functionals"]
        for name, pv in zip(summ["functionals"]["functional"], summ["functionals"]["p_value"]):
            diag[f"p_{name}_boot"] = float(pv)
    if res.fuzzy:
        fs = res.first_stage
        diag.update({"first_stage_jump": fs["jump"], "first_stage_se": fs["se"],
                     "first_stage_t": fs["t"], "first_stage_F": fs["F"], "h_den": fs["h"],
                     "weak_first_stage": fs["F"] < WEAK_FIRST_STAGE_F})
        weak = weak_first_stage(fs)
        if weak is not None:
            warnings.warn(weak, WeakInstrumentWarning, stacklevel=3)
    if density_test:
        try:
            diag["density_test"] = _density_test(x)
            diag["p_density"] = diag["density_test"]["p_value"]
        except DesignError as exc:
            diag["density_test"] = {"error": str(exc)}
    if x.size * g.size <= 200_000:
        diag["points"] = pd.DataFrame(np.column_stack([x + float(cutoff), Q]),
                                      columns=["running", *[f"q{v:g}" for v in g]])
    if placebo is not None:
        diag["placebo"] = _placebo(x, Q, g, placebo, cutoff, fit_kw, seed, n_boot,
                                   multiplier, T)
    if sensitivity is not None:
        diag["sensitivity"] = _sensitivity(x, Q, g, T, res, sensitivity, fit_kw,
                                           (seed, n_boot, multiplier))
    if donuts is not None:
        diag["donut"] = _donuts(x, Q, g, T, donuts, fit_kw, seed, n_boot, multiplier)
    cname = req.names[0] if clusters is not None else None
    cluster_data = {} if clusters is None else {cname: clusters}
    vspec = "hetero" if clusters is None else {"cluster": cname}
    prov = make_provenance(formula if isinstance(formula, str) else None, seed, method=method,
                           n_boot=n_draws, alpha=alpha)
    estimand = "QTE" if not res.fuzzy else "LQTE (fuzzy)"
    # t tests of the params with the smallest per-quantile df (conservative for averages);
    # with clusters the rule uses G - 1. The curve's bands come from the bootstrap, so
    # Estimate.with_vcov refuses (the rule does not cover the curve): refit instead.
    dof = None if df is None or not np.isfinite(df).any() else \
        max(int(np.floor(np.nanmin(np.where(np.isfinite(df), df, np.nan)))), 1)
    return Estimate.from_influence(params, infl, vcov=vspec, estimand=estimand, design="rdd",
                                   curve=summ["curve"], diagnostics=diag, provenance=prov,
                                   cluster_data=cluster_data,
                                   variance_rule=VarianceRule(base_dof=dof))


def _has_rhs(formula: str) -> bool:
    rhs = formula.split("~", 1)[1].split("|")[0].strip()
    return rhs not in ("", "1", "0")


def _quick(x, Q, g, T, fit_kw, boot):
    """Mean effect, its standard error and the nullity p-value of one refit."""
    res = fit_r3d(x, Q, g, T=T, **fit_kw)
    params, infl = _params_influence(res, ("mean",))
    se = float(np.sqrt(np.sum(infl[:, 0] ** 2)) / x.size)
    seed, n_boot, multiplier = boot
    if multiplier == "normal":
        D = gaussian_draws(res.score, n_boot, seed)
    else:
        D = draws(res.score, _multipliers(x.size, n_boot, seed, multiplier))
    if g.size > 1:
        p = curve_tests(res.tau, res.se, D, g, ("nullity",))[0]["p_value"]
    else:
        p = float(np.mean(np.abs(D[:, 0]) >= abs(res.tau[0])))
    return float(params["mean"]), se, p, res


def _placebo(x, Q, g, cutoffs, cutoff, fit_kw, seed, n_boot, multiplier, T):
    rows = []
    for c in cutoffs:
        shift = float(c) - float(cutoff)
        side = (x < 0) if shift < 0 else (x >= 0)
        xs = x[side] - shift
        try:
            if T is not None:
                raise DesignError("placebo cutoffs are computed for sharp designs")
            eff, se, p, _ = _quick(xs, Q[side], g, None, fit_kw, (seed, n_boot, multiplier))
            rows.append({"cutoff": float(c), "mean_effect": eff, "std_error": se,
                         "nullity_p": p, "error": ""})
        except DesignError as exc:
            rows.append({"cutoff": float(c), "mean_effect": np.nan, "std_error": np.nan,
                         "nullity_p": np.nan, "error": str(exc)})
    return pd.DataFrame(rows)


def _sensitivity(x, Q, g, T, res, factors, fit_kw, boot):
    rows = []
    for f in factors:
        hk = {"plus": res.plus.h * f, "minus": res.minus.h * f}
        kw = dict(fit_kw, h=hk)
        if fit_kw["method"] == "frechet":
            kw["h"] = {"plus": float(res.plus.h[0] * f), "minus": float(res.minus.h[0] * f)}
        if T is not None:
            kw["h_den"] = res.first_stage["h"]
        try:
            eff, se, p, _ = _quick(x, Q, g, T, kw, boot)
        except DesignError:
            eff, se, p = np.nan, np.nan, np.nan
        rows.append({"factor": float(f), "h_median": float(np.median(res.plus.h) * f),
                     "mean_effect": eff, "std_error": se, "nullity_p": p})
    return pd.DataFrame(rows)


def _donuts(x, Q, g, T, radii, fit_kw, seed, n_boot, multiplier):
    rows = []
    for r in radii:
        keep = np.abs(x) >= r
        try:
            eff, se, p, _ = _quick(x[keep], Q[keep], g, None if T is None else T[keep], fit_kw,
                                   (seed, n_boot, multiplier))
        except DesignError:
            eff, se, p = np.nan, np.nan, np.nan
        rows.append({"radius": float(r), "n_dropped": int((~keep).sum()), "mean_effect": eff,
                     "std_error": se, "nullity_p": p})
    return pd.DataFrame(rows)
