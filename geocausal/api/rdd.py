"""``gc.rdd``: regression discontinuity with distribution-valued (or scalar) outcomes.

Each unit's outcome is a distribution (pixels in a district, wages in a firm) or a scalar
(a point mass). The estimand is the local quantile treatment effect ``tau(q)`` at the cutoff,
estimated on a quantile grid by the "simple" (per-quantile local polynomial + rearrangement)
or "frechet" (common bandwidth + isotonic projection) estimator of Van Dijcke (2025), with
pointwise and uniform bands from a multiplier bootstrap, sup tests, and effects on
functionals (mean, variance, Gini). Point-mass outcomes follow rdrobust's conventions.

This module is the face: it resolves the formula, the roles, ``vcov=``, ``by=`` and the
three option objects (:class:`~geocausal.designs.rdd.options.Bandwidth`,
:class:`~geocausal.designs.rdd.options.Inference`,
:class:`~geocausal.designs.rdd.options.Checks`) into arrays and calls
:func:`geocausal.designs.rdd.fit.fit_rdd`. ``Estimate.with_vcov`` refuses (the bands come from
the bootstrap): refit with the ``vcov`` you need.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(-1, 1, 400)
>>> samples = [rng.normal(1 + xi + 2 * (xi >= 0), 1, 30) for xi in x]
>>> est = rdd(outcome=samples, running=x, q_grid=[.25, .5, .75], inference={"n_boot": 200},
...           seed=1)
>>> list(est.curve.columns)
['quantile', 'estimate', 'std_error', 'conf_low', 'conf_high', 'uniform_low', 'uniform_high']
>>> bool(abs(est.params["mean"] - 2) < 0.6)
True
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from geocausal.api._by import fit_by, subset
from geocausal.api._correction import apply_correction
from geocausal.designs.common import check_values
from geocausal.designs.rdd.fit import fit_rdd
from geocausal.designs.rdd.options import (
    METHODS,
    VCES,
    Bandwidth,
    Checks,
    Inference,
    Method,
    check_choice,
    check_cutoff,
    resolve_options,
)
from geocausal.designs.rdd.outcomes import is_sample_column, outcome_quantiles
from geocausal.errors import DataError, OptionError
from geocausal.formula import parse_formula
from geocausal.inference.variance import VarianceRule, cluster_data_from, parse_vcov
from geocausal.results.estimate import Estimate, EstimateSet, make_provenance
from geocausal.vocabulary import DEFAULTS, check_count

__all__ = ["rdd", "outcome_quantiles", "Bandwidth", "Inference", "Checks"]


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
    method: Method = "simple",
    bandwidth: Bandwidth | dict | str | None = None,
    inference: Inference | dict | None = None,
    checks: Checks | dict | None = None,
    vcov: Any = "hetero",
    seed: int = DEFAULTS.seed,
    outcome_correction: Any = None,
    by: str | Sequence[str] | None = None,
    **deprecated: Any,
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
        Outcome when no formula is given: a list of per-unit arrays, a dict ``{"values":,
        "weights":}``, an ``(n, K)`` quantile matrix (with ``q_grid``), or a distributions
        object (:func:`geocausal.designs.rdd.outcomes.outcome_quantiles`).
    treatment
        Take-up column or array for the fuzzy design (alternative to ``"y ~ d"``).
    weights
        Within-unit weights: a column of per-row arrays, or a list of arrays.
    q_grid
        Quantile levels; default ``0.01..0.99`` (the median only for scalar outcomes).
    method
        ``"simple"`` or ``"frechet"``.
    bandwidth
        :class:`~geocausal.designs.rdd.options.Bandwidth` (selector, p, s, kernel, h, h_den, b,
        per_side, bias_correction, rearrangement, donut), a dict of its fields, or a selector
        name (``"mse"``, ``"cer"``, rdrobust's ``"mserd"``, ...).
    inference
        :class:`~geocausal.designs.rdd.options.Inference` (n_boot, alpha, residuals,
        small_sample, studentize, multiplier, xi, tests, test_range, functionals) or a dict.
    checks
        :class:`~geocausal.designs.rdd.options.Checks` (density_test, placebo, sensitivity,
        donuts) or a dict.
    vcov
        ``"hetero"`` or ``{"cluster": column}`` (one multiplier per cluster, ``G / (G - 1)``
        and t(G - 1) critical values). ``"iid"`` is refused: the scores have no homoskedastic
        variance. rdrobust's ``vce`` names (``"nn"``, ``"hc0"``, ..., ``"hc3"``) are refused
        here with a pointer: they are ``Inference(residuals=)``.
    seed
        Seed of the multipliers.
    outcome_correction
        A fitted corrector applied to scalar outcomes or to every draw of a sample.
    by
        Column(s) defining subgroups: one estimate per group, an EstimateSet
        (:func:`geocausal.api._by.fit_by`).
    **deprecated
        The old flat keywords (``p``, ``s``, ``kernel``, ``h``, ``h_den``, ``b``, ``per_side``,
        ``bias_correction``, ``rearrangement``, ``donut``; ``n_boot``, ``alpha``, ``vce``,
        ``small_sample``, ``studentize``, ``multiplier``, ``xi``, ``tests``, ``test_range``,
        ``functionals``, ``reference_quirks``; ``density_test``, ``placebo``,
        ``sensitivity``, ``donuts``) still work, with a ``FutureWarning`` naming the option
        object and field that replace them.

    Returns
    -------
    Estimate
        ``curve`` holds the quantile effects with pointwise and uniform bands; ``params`` the
        effects on the mean (and variance and Gini in sharp designs);
        ``tables["functionals"]`` their bootstrap intervals; ``diagnostics`` the bandwidths,
        tests and checks.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, 500)
    >>> y = 1 + x + 2 * (x >= 0) + rng.normal(0, .5, 500)
    >>> est = rdd(outcome=y, running=x, bandwidth=Bandwidth(kernel="uniform"),
    ...           inference=Inference(n_boot=199), checks={"density_test": False})
    >>> bool(abs(est.params["mean"] - 2) < 5 * est.std_errors["mean"])
    True
    """
    bw, inf, chk = resolve_options(bandwidth, inference, checks, deprecated)
    cutoff, seed = check_cutoff(cutoff), check_count("seed", seed)
    kw = dict(formula=formula, running=running, cutoff=cutoff, outcome=outcome,
              treatment=treatment, weights=weights, q_grid=q_grid,
              method=check_choice(method, "method", METHODS),
              options=(bw, inf, chk), vcov=vcov, seed=seed, correction=outcome_correction)
    if by is None:
        return _rdd_one(data=data, **kw)
    if data is None or outcome is not None:
        raise DataError("by= needs data= and the outcome given by the formula (a column of "
                        "data)")

    def one(sub: pd.DataFrame, mask: np.ndarray, _name: str) -> Estimate:
        rows = {k: subset(kw[k], mask) for k in ("running", "treatment")}
        if weights is not None and not isinstance(weights, str):   # a list of per-unit arrays
            rows["weights"] = [w for w, m in zip(weights, mask) if m]
        return _rdd_one(data=sub, **{**kw, **rows})

    return fit_by(one, data, by, stacklevel=4)


# the public signature: the deprecated flat keywords are documented, not advertised
_params = [p for p in inspect.signature(rdd).parameters.values()
           if p.kind is not inspect.Parameter.VAR_KEYWORD]
rdd.__signature__ = inspect.signature(rdd).replace(parameters=_params)  # type: ignore[attr-defined]


def _rdd_one(*, formula, data, running, cutoff, outcome, treatment, weights, q_grid, method,
             options, vcov, seed, correction) -> Estimate:
    Q, g, kind, formula, treatment = _outcome(formula, data, outcome, treatment, weights,
                                              q_grid, correction)
    n = Q.shape[0]
    x = _numeric(data, running, "running variable", n) - cutoff
    T = None if treatment is None else _numeric(data, treatment, "treatment", n)
    if isinstance(vcov, str) and vcov.lower() in VCES:    # rdrobust's vce, not a vcov
        raise OptionError(f"rdd: vcov={vcov!r} is rdrobust's vce (the residuals of the scores); "
                          f"pass inference=gc.Inference(residuals={vcov.lower()!r}) and vcov="
                          "'hetero' or {'cluster': column}")
    req = parse_vcov(vcov, n, cluster_data_from(data) or None)
    if req.kind == "iid":
        raise OptionError("rdd: vcov='iid' is refused: the local-polynomial scores have no "
                          "homoskedastic variance; use 'hetero' or {'cluster': column} (the "
                          "residuals of the scores are Inference(residuals=...))")
    if req.kind == "cluster" and len(req.clusters) > 1:
        raise OptionError("the rdd bootstrap takes one cluster variable; pass {'cluster': name}")
    clusters = req.clusters[0] if req.kind == "cluster" else None
    bw, inf, chk = options
    fit = fit_rdd(x, Q, g, kind, T=T, clusters=clusters, cutoff=cutoff, method=method,
                  bandwidth=bw, inference=inf, checks=chk, seed=seed)
    cluster_data = {} if clusters is None else {req.names[0]: clusters[fit.keep]}
    prov = make_provenance(formula if isinstance(formula, str) else None, seed, method=method,
                           n_boot=fit.n_draws, alpha=inf.alpha)
    # Estimate.with_vcov refuses (the curve's bands come from the bootstrap): refit instead
    return Estimate.from_influence(
        fit.params, fit.influence, vcov="hetero" if clusters is None else
        {"cluster": req.names[0]}, estimand=fit.estimand, design="rdd", curve=fit.curve,
        diagnostics=fit.diagnostics, provenance=prov, cluster_data=cluster_data,
        variance_rule=VarianceRule(base_dof=fit.dof), tables=fit.tables)


def _outcome(formula, data, outcome, treatment, weights, q_grid, correction):
    """``(Q, q_grid, kind, formula, treatment)`` from a formula on ``data`` or ``outcome=``."""
    if isinstance(outcome, str) and formula is None:
        formula, outcome = outcome, None
    if formula is None:
        if outcome is None:
            raise DataError("give a formula such as 'y ~ 1' or an outcome= (samples or "
                            "quantiles)")
        return (*outcome_quantiles(outcome, q_grid, weights=weights), formula, treatment)
    if "~" not in formula:
        formula = f"{formula} ~ 1"
    rhs = formula.split("~", 1)[1].split("|")[0].strip()
    pf = parse_formula(formula, data, treatment=rhs not in ("", "1", "0"))
    if pf.outcome not in data.columns:
        raise DataError(f"outcome column '{pf.outcome}' is not in the data")
    treatment = pf.treatment if treatment is None else treatment
    ycol = data[pf.outcome]
    if isinstance(weights, str):
        weights = list(data[weights])
    if is_sample_column(ycol):
        raw = [apply_correction(correction, np.asarray(v, float)) for v in ycol]
        return (*outcome_quantiles(raw, q_grid, weights=weights), formula, treatment)
    yv = _numeric(data, pf.outcome, "outcome column")
    return (*outcome_quantiles(apply_correction(correction, yv), q_grid), formula, treatment)


def _numeric(data, value, name: str, n: int | None = None) -> np.ndarray:
    """A finite numeric role: a column of ``data`` (by name) or an array of ``n`` values."""
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
