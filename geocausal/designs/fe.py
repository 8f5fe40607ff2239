"""Fixed-effects panel regression by exact demeaning (alternating projections).

Every fixed effect is swept out of the outcome and the regressors by repeated group
demeaning until the largest change is below ``tol`` (one sweep is exact for a single effect
or a balanced two-way panel), then OLS on the demeaned data.

Cluster-robust variance, with linearmodels' ``PanelOLS(...).fit(cov_type="clustered")``
conventions (its defaults ``debiased=True``, ``group_debias=False``, effects counted)::

    V = (X'X)^-1 [sum_g (X_g' e_g)(X_g' e_g)'] (X'X)^-1 * n / (n - k - d)

with ``d`` the number of absorbed effect levels, ``levels_1 + sum_{j>1} (levels_j - 1)``
(no constant). ``group_debias=True`` multiplies by
``G / (G - 1) * (n - 1) / n`` (linearmodels' option; Stata's ``xtreg`` uses it with
``debiased=True``).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> unit = np.repeat(np.arange(50), 4); t = np.tile(np.arange(4), 50)
>>> x = rng.normal(size=200) + unit * 0.1
>>> y = 2 * x + unit + t + rng.normal(size=200)
>>> res = fe_ols(y, x[:, None], [unit, t], clusters=unit)
>>> bool(abs(res.params[0] - 2) < 0.2)
True
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geocausal.designs.panel_transforms import MIN_SWITCHERS, units_with_variation
from geocausal.errors import ConvergenceWarning, DataError, DesignError, FewSwitchersWarning
from geocausal.inference.sensitivity import fit_linear_elements
from geocausal.inference.variance import (
    VarianceRule,
    VcovRequest,
    variance_from_rule,
    vcov_from_influence,
)


def _codes(labels) -> np.ndarray:
    return np.unique(np.asarray(labels), return_inverse=True)[1].ravel()


def demean(Z: np.ndarray, effects: Sequence[np.ndarray], tol: float = 1e-13,
           max_iter: int = 10_000) -> np.ndarray:
    """Sweep group means of every effect out of the columns of ``Z`` (alternating projections).

    Examples
    --------
    >>> import numpy as np
    >>> g = np.array([0, 0, 1, 1]); z = np.array([[1.0], [3.0], [5.0], [9.0]])
    >>> demean(z, [g]).ravel().tolist()
    [-1.0, 1.0, -2.0, 2.0]
    """
    Z = np.array(Z, dtype=float, copy=True)
    if Z.ndim == 1:
        Z = Z[:, None]
    codes = [_codes(e) for e in effects]
    counts = [np.bincount(c) for c in codes]
    scale = max(float(np.abs(Z).max()), 1.0)
    for it in range(max_iter):
        delta = 0.0
        for c, cnt in zip(codes, counts):
            means = np.zeros((cnt.size, Z.shape[1]))
            np.add.at(means, c, Z)
            means /= cnt[:, None]
            Z -= means[c]
            delta = max(delta, float(np.abs(means).max()))
        if len(codes) == 1 or delta < tol * scale:
            return Z
        if it == max_iter - 1:
            warnings.warn(f"fixed-effect demeaning stopped after {max_iter} sweeps "
                          f"(last change {delta:.2e})", ConvergenceWarning, stacklevel=2)
    return Z


@dataclass(frozen=True)
class FEResult:
    """Coefficients, covariance, influence functions and residual degrees of freedom.

    ``vcov_iid`` is the homoskedastic covariance and ``scale`` the factor ``n / (n - k - d)``
    (``n / (n - d)`` without ``debiased``) of the sandwich variances: with ``psi`` the influence
    functions, hetero is ``scale * psi' psi / n^2``. ``yt`` and ``Xt`` are the outcome and
    regressors with the effects absorbed (for Cinelli-Hazlett sensitivity bounds).
    """

    params: np.ndarray
    vcov: np.ndarray
    influence: np.ndarray
    residuals: np.ndarray
    n_effects: int
    df_resid: int
    r2_within: float
    vcov_iid: np.ndarray | None = None
    scale: float = 1.0
    yt: np.ndarray | None = None
    Xt: np.ndarray | None = None


def fe_ols(
    y: np.ndarray,
    X: np.ndarray,
    effects: Sequence[np.ndarray],
    *,
    clusters: np.ndarray | Sequence[np.ndarray] | None = None,
    vcov: str = "cluster",
    debiased: bool = True,
    group_debias: bool = False,
    tol: float = 1e-13,
) -> FEResult:
    """OLS of ``y`` on ``X`` absorbing ``effects``; cluster, hetero or iid covariance.

    Parameters
    ----------
    y, X
        Outcome ``(n,)`` and regressors ``(n, k)``.
    effects
        Label arrays of the fixed effects (e.g. ``[unit, time]``).
    clusters
        One or two label arrays for ``vcov="cluster"`` (two-way: Cameron-Gelbach-Miller).
    vcov
        ``"cluster"``, ``"hetero"`` or ``"iid"``.
    debiased, group_debias
        Small-sample scalings as in linearmodels (see the module docstring).
    """
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    n, k = X.shape
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(X))):
        raise DataError("outcome or regressors have missing values; drop those rows first")
    Z = demean(np.column_stack([y, X]), effects, tol=tol)
    yt, Xt = Z[:, 0], Z[:, 1:]
    XtX = Xt.T @ Xt
    rank = np.linalg.matrix_rank(Xt)
    if rank < k:
        raise DesignError(f"regressors are collinear with the fixed effects (rank {rank} < {k}); "
                          "drop regressors that do not vary within units and periods")
    XtXi = np.linalg.inv(XtX)
    beta = XtXi @ Xt.T @ yt
    e = yt - Xt @ beta
    levels = [np.unique(np.asarray(f)).size for f in effects]
    n_eff = levels[0] + sum(lv - 1 for lv in levels[1:]) if levels else 0
    df_resid = n - k - n_eff
    if df_resid <= 0:
        raise DesignError(f"no residual degrees of freedom: {n} rows, {k} regressors, "
                          f"{n_eff} absorbed effect levels")
    scale = n / (n - n_eff - (k if debiased else 0))
    xe = Xt * e[:, None]
    psi = n * xe @ XtXi  # influence: beta_hat - beta ~ mean(psi)
    V_iid = XtXi * float(e @ e) / (n - n_eff - (k if debiased else 0))
    if vcov == "iid":
        V = V_iid
    elif vcov == "hetero":
        V = XtXi @ (xe.T @ xe) @ XtXi * scale
    elif vcov == "cluster":
        if clusters is None:
            raise DataError("vcov='cluster' needs cluster labels")
        cl = [clusters] if isinstance(clusters, np.ndarray) and clusters.ndim == 1 else list(clusters)
        if len(cl) > 2:
            raise DataError(f"vcov='cluster' takes one or two cluster label arrays, got {len(cl)}")
        req = VcovRequest("cluster", tuple(np.asarray(c) for c in cl),
                          tuple(f"cluster{j}" for j in range(len(cl))))
        # the one cluster rule (inference.variance): cluster sums of the influence functions,
        # Cameron-Gelbach-Miller for two ways, linearmodels' scalings
        V = vcov_from_influence(psi, req, cluster_adjust="group_debias" if group_debias
                                else "none", scale=scale, psd=False)
    else:
        raise DataError(f"vcov '{vcov}' is not 'cluster', 'hetero' or 'iid'")
    tss = float(yt @ yt)
    r2 = 1.0 - float(e @ e) / tss if tss > 0 else float("nan")
    return FEResult(beta, (V + V.T) / 2, psi, e, n_eff, df_resid, r2, (V_iid + V_iid.T) / 2,
                    scale, yt, Xt)


def check_within_variation(d: np.ndarray, name: str, groups: np.ndarray, group: str, *,
                           stacklevel: int = 3) -> int:
    """Units (groups of the first effect) within which the treatment varies: a DesignError
    when none (the effects absorb it), a counted :class:`FewSwitchersWarning` when few.

    Examples
    --------
    >>> check_within_variation(np.array([0., 0, 1, 1]), "d", np.array([0, 0, 1, 1]), "unit")
    Traceback (most recent call last):
    ...
    geocausal.errors.DesignError: treatment 'd' does not vary within any 'unit', so the 'unit' effects absorb it; use a treatment that changes over time
    """
    n_var = units_with_variation(d, groups)
    if n_var == 0:
        raise DesignError(f"treatment '{name}' does not vary within any '{group}', so the "
                          f"'{group}' effects absorb it; use a treatment that changes over time")
    if n_var < MIN_SWITCHERS:
        warnings.warn(f"treatment '{name}' varies within only {n_var} of "
                      f"{np.unique(groups).size} '{group}' groups (fewer than {MIN_SWITCHERS}); "
                      "the estimate and its standard error rest on those units alone",
                      FewSwitchersWarning, stacklevel=stacklevel)
    return n_var


@dataclass(frozen=True)
class FEFit:
    """What :func:`estimate_fe` hands to ``gc.fe``: the fit, its variance for the requested
    ``vcov`` (and the rule that recomputes it), and the Cinelli-Hazlett sensitivity elements.
    """

    result: FEResult
    variance: Any
    rule: VarianceRule
    sensitivity: Any


def estimate_fe(y: np.ndarray, X: np.ndarray, effects: Sequence[np.ndarray],
                names: Sequence[str], *, vcov: Any = "hetero",
                cluster_data: Any = None, debiased: bool = True, group_debias: bool = False,
                group: tuple[str, np.ndarray] | None = None, stacklevel: int = 3) -> FEFit:
    """Fixed-effects OLS with the variance of the one covariance registry.

    ``vcov`` is any spec of :func:`geocausal.inference.variance.parse_vcov` (``"iid"``
    included: OLS has a homoskedastic variance); clusters follow linearmodels' ``PanelOLS``
    conventions (``n / (n - k - d)``, no ``G / (G - 1)`` unless ``group_debias``). The first
    regressor is the treatment: it must vary within the units ``group = (name, labels)``
    (default: the first effect).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> unit = np.repeat(np.arange(30), 4); t = np.tile(np.arange(4), 30)
    >>> x = rng.normal(size=120); y = 2 * x + unit + rng.normal(size=120)
    >>> fit = estimate_fe(y, x[:, None], [unit, t], ["x"], vcov={"cluster": "unit"},
    ...                   cluster_data={"unit": unit})
    >>> fit.variance.label, fit.variance.dof
    ('cluster(unit)', 29)
    """
    name, labels = group if group is not None else ("unit", effects[0])
    check_within_variation(np.asarray(X)[:, 0], str(names[0]), labels, name,
                           stacklevel=stacklevel + 1)
    res = fe_ols(y, X, effects, vcov="hetero", debiased=debiased, group_debias=group_debias)
    rule = VarianceRule(scale=res.scale, psd=False, base_dof=res.df_resid,
                        cluster_adjust="group_debias" if group_debias else "none",
                        named=(("iid", "iid", res.vcov_iid),))
    var = variance_from_rule(rule, res.influence, vcov, cluster_data,
                             stacklevel=stacklevel + 2)
    sens = fit_linear_elements(str(names[0]), res.yt, res.Xt, [str(c) for c in names],
                               dof=res.df_resid)
    return FEFit(res, var, rule, sens)
