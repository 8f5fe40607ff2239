"""Sensitivity to omitted confounders: how strong a confounder the data missed would have to be.

Two families of bounds, both stored as light arrays with the :class:`~geocausal.results.estimate.Estimate`
(never fitted models) and read by ``est.sensitivity(...)``:

**Omitted-variable-bias bounds for debiased machine learning** (Chernozhukov, Cinelli, Newey,
Sharma and Syrgkanis, "Long story short", 2022), for ``gc.aipw`` (ATE, ATT) and
``gc.dml_panel`` (partially linear). With ``sigma2 = E[(Y - g(D, X))^2]`` and
``nu2 = E[alpha(D, X)^2]`` (the Riesz representer of the target), a confounder that explains a
share ``cf_y`` of the residual variation of the outcome and raises the variation of the Riesz
representer by a factor ``1 / (1 - cf_d)`` moves the estimate by at most::

    |bias| <= |rho| * sqrt(cf_y * cf_d / (1 - cf_d)) * sqrt(sigma2 * nu2)

The bound ``theta +- |rho| C S`` (``S = sqrt(sigma2 nu2)``) has influence function
``phi_theta +- |rho| C phi_S`` with ``phi_S = (sigma2 phi_nu2 + nu2 phi_sigma2) / (2 S)``, and
its confidence bound is ``theta_lower - z_level se_lower`` (one-sided at ``level``, as
DoubleML). ``RV`` is the ``cf_y = cf_d`` that brings the bound to the null; ``RVa`` the one that
brings the confidence bound to it. The sensitivity elements are DoubleML's
(``DoubleMLIRM._sensitivity_element_est`` and ``DoubleMLPLR``'s), so the bounds on ``theta``
equal DoubleML's ``sensitivity_analysis``.

*Note on DoubleML's standard errors of the bounds.* DoubleML 0.11 forms the bound's score as
``scaled_psi -+ C psi_max_bias`` with ``scaled_psi = psi / J``; since ``J < 0`` for its scores
``scaled_psi = -phi_theta``, so the standard error it reports for the lower bound is that of
the upper bound and conversely. ``se_rule="delta"`` (default) uses the delta-method influence
function of each bound; ``se_rule="doubleml"`` reproduces DoubleML's numbers exactly. The two
agree on the bounds of ``theta`` and on ``RV``; they differ in the confidence bounds and
``RVa`` by the asymmetry of ``phi_theta +- C phi_S``.

*Panels.* ``gc.dml_panel`` stores the PLR elements of the transformed panel (the residuals
of its approach, after any demeaning), per repetition, and aggregates the bounds with
DoubleML's median rule; with the ``"pooled"`` approach and ``vcov="hetero"`` they equal
``DoubleMLPLR``'s. DoubleML 0.11's ``DoubleMLPLPR`` does not implement sensitivity analysis
(its ``_sensitivity_element_est`` is empty), so there is no peer for the other approaches;
the bounds' standard errors follow the estimate's (cluster-robust by unit by default).

**Partial R^2 bounds for linear regressions** (Cinelli and Hazlett 2020), for ``gc.fe``: with
``R2_dz`` the partial R^2 of the confounder with the treatment and ``R2_yz`` with the outcome,
``|bias| = se * sqrt(R2_yz R2_dz / (1 - R2_dz)) * sqrt(dof)``, the adjusted standard error is
``se * sqrt((1 - R2_yz) / (1 - R2_dz) * dof / (dof - 1))`` and the robustness values are
``RV_q = (sqrt(f^4 + 4 f^2) - f^2) / 2`` with ``f = q |t| / sqrt(dof)`` (``RV_{q,alpha}``
subtracts the critical ``f``). These use the classical OLS standard error and the residual
degrees of freedom (fixed effects counted), as sensemakr does; they equal PySensemakr's.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0); n = 500
>>> x = rng.normal(size=n); e = 1 / (1 + np.exp(-x)); d = rng.binomial(1, e)
>>> y = d + x + rng.normal(size=n)
>>> el = irm_elements("d", y, d, e, x, 1 + x, "ATE", influence=None)
>>> res = ovb_sensitivity(el, cf_y=0.03, cf_d=0.03)
>>> row = res.tidy().iloc[0]
>>> bool(row.theta_lower < row.estimate < row.theta_upper)
True
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError, DesignError, DiagnosticWarning
from geocausal.inference.variance import VarianceRule, variance_from_rule

Z975 = 1.96  # DoubleML's critical value when aggregating repetitions
SE_RULES = ("delta", "doubleml")


# ----------------------------------------------------------------------------- validation
def check_cf(value: Any, name: str) -> float:
    """A sensitivity parameter in ``[0, 1)``, or a :class:`DataError` naming it.

    Examples
    --------
    >>> check_cf(0.03, "cf_y")
    0.03
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be a number in [0, 1), got {value!r}") from None
    if not (np.isfinite(v) and 0.0 <= v < 1.0):
        raise DataError(f"{name} must be in [0, 1) (a share of residual variation), got {value!r}")
    return v


def check_rho(value: Any) -> float:
    """``rho`` in ``[-1, 1]``, or a :class:`DataError`.

    Examples
    --------
    >>> check_rho(-0.5)
    -0.5
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DataError(f"rho must be a number in [-1, 1], got {value!r}") from None
    if not (np.isfinite(v) and -1.0 <= v <= 1.0):
        raise DataError(f"rho must be in [-1, 1] (a correlation), got {value!r}")
    return v


def check_level(value: Any) -> float:
    """A confidence level in ``(0, 1)``, or a :class:`DataError`."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DataError(f"level must be a number in (0, 1), got {value!r}") from None
    if not (np.isfinite(v) and 0.0 < v < 1.0):
        raise DataError(f"level must be in (0, 1), e.g. 0.95, got {value!r}")
    return v


# ----------------------------------------------------------------------------- elements
@dataclass(frozen=True)
class SensitivityElements:
    """What the omitted-variable-bias bounds of one debiased estimate need (light arrays).

    Attributes
    ----------
    term : str
        The treatment.
    score : str
        ``"irm-ATE"``, ``"irm-ATT"`` or ``"plr"``.
    theta : numpy.ndarray
        ``(R,)`` estimate of each cross-fitting repetition.
    influence : numpy.ndarray
        ``(R, n)`` influence functions (``theta_hat - theta ~ mean``).
    sigma2, nu2 : numpy.ndarray
        ``(R,)`` outcome residual variance and second moment of the Riesz representer.
    psi_sigma2, psi_nu2 : numpy.ndarray
        ``(R, n)`` their influence functions.
    var_y : float
        Variance of the outcome (for benchmarks: ``R^2 = 1 - sigma2 / var_y``).
    vcov : Any
        The variance specification of the estimate (its standard errors of the bounds follow it).
    notes : tuple of str
        Re-estimations (a non-positive ``nu2``), etc.
    """

    term: str
    score: str
    theta: np.ndarray
    influence: np.ndarray
    sigma2: np.ndarray
    nu2: np.ndarray
    psi_sigma2: np.ndarray
    psi_nu2: np.ndarray
    var_y: float
    vcov: Any = "hetero"
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("theta", "sigma2", "nu2"):
            a = np.atleast_1d(np.asarray(getattr(self, name), dtype=float))
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        for name in ("influence", "psi_sigma2", "psi_nu2"):
            a = np.atleast_2d(np.asarray(getattr(self, name), dtype=float))
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        r = self.theta.size
        if not (self.influence.shape[0] == self.psi_sigma2.shape[0] == self.psi_nu2.shape[0]
                == self.sigma2.size == self.nu2.size == r):
            raise DataError("sensitivity elements have inconsistent numbers of repetitions")

    @property
    def max_bias(self) -> np.ndarray:
        """``S = sqrt(sigma2 nu2)`` per repetition."""
        return np.sqrt(self.sigma2 * self.nu2)

    @property
    def psi_max_bias(self) -> np.ndarray:
        """Influence function of ``S`` per repetition, ``(R, n)``."""
        s = self.max_bias[:, None]
        return (self.sigma2[:, None] * self.psi_nu2 + self.nu2[:, None] * self.psi_sigma2) / (2 * s)


def _positive_nu2(nu2: float, psi_nu2: np.ndarray, riesz: np.ndarray, term: str
                  ) -> tuple[float, np.ndarray, str | None]:
    """DoubleML's rule: a non-positive orthogonal ``nu2`` is re-estimated as ``mean(alpha^2)``."""
    if nu2 > 0:
        return nu2, psi_nu2, None
    note = (f"the estimated nu2 of '{term}' ({nu2:.4g}) is not positive; re-estimated as the "
            "mean squared Riesz representer (not orthogonal)")
    sq = riesz ** 2
    return float(sq.mean()), sq, note


def irm_elements(term: str, y, d, e, mu0, mu1, estimand: str = "ATE", *,
                 influence: np.ndarray | None, vcov: Any = "hetero") -> SensitivityElements:
    """Sensitivity elements of the AIPW (interactive regression) ATE or ATT.

    ``sigma2 = mean((y - d mu1 - (1 - d) mu0)^2)``; the Riesz representer is
    ``d / e - (1 - d) / (1 - e)`` (ATE) or ``d / p - (1 - d) e / ((1 - e) p)`` (ATT) and
    ``nu2 = mean(2 m(alpha) - alpha^2)`` with ``m(alpha) = 1 / e + 1 / (1 - e)`` (ATE) or
    ``d / (p^2 (1 - e))`` (ATT), as in DoubleML.

    Parameters
    ----------
    term
        The treatment's name.
    y, d, e, mu0, mu1
        Outcome, binary treatment, propensity, outcome regressions of the control and treated
        arms (both needed, also for the ATT: ``sigma2`` uses the treated units' residuals).
    estimand
        ``"ATE"`` or ``"ATT"``.
    influence
        The estimate's influence function; None recomputes it from the score.
    vcov
        The estimate's variance specification.

    Examples
    --------
    >>> import numpy as np
    >>> el = irm_elements("d", [1., 2, 3, 4], [0, 1, 0, 1], [.5] * 4, [1., 2, 3, 4],
    ...                   [1., 2, 3, 4], influence=None)
    >>> float(el.sigma2[0]), float(el.nu2[0])
    (0.0, 4.0)
    """
    y, d, e, mu0 = (np.asarray(a, dtype=float) for a in (y, d, e, mu0))
    if mu1 is None:
        raise DesignError(f"the sensitivity bounds of '{term}' need the treated-arm outcome "
                          "regression mu1 (sigma2 uses every unit's residual); pass "
                          "predictions={'mu0': ..., 'mu1': ...} or let gc.aipw fit them")
    mu1 = np.asarray(mu1, dtype=float)
    if estimand == "ATE":
        m_alpha = 1.0 / e + 1.0 / (1.0 - e)
        riesz = d / e - (1.0 - d) / (1.0 - e)
        score = mu1 - mu0 + d * (y - mu1) / e - (1 - d) * (y - mu0) / (1 - e)
        theta = float(score.mean())
        phi = score - theta
    elif estimand == "ATT":
        p = d.mean()
        m_alpha = d / (p ** 2 * (1.0 - e))
        riesz = d / p - (1.0 - d) * e / ((1.0 - e) * p)
        b = d * (y - mu0) - e * (1 - d) * (y - mu0) / (1 - e)
        theta = float(b.mean() / p)
        phi = (b - d * theta) / p
    else:
        raise DataError(f"estimand '{estimand}' is not 'ATE' or 'ATT'")
    if influence is not None:
        phi = np.asarray(influence, dtype=float).reshape(-1)
    s2e = (y - d * mu1 - (1.0 - d) * mu0) ** 2
    sigma2 = float(s2e.mean())
    nu2e = 2.0 * m_alpha - riesz ** 2
    nu2 = float(nu2e.mean())
    nu2, psi_nu2, note = _positive_nu2(nu2, nu2e - nu2, riesz, term)
    return SensitivityElements(term, f"irm-{estimand}", np.array([theta]), phi[None, :],
                               np.array([sigma2]), np.array([nu2]), (s2e - sigma2)[None, :],
                               psi_nu2[None, :], float(np.var(y)), vcov,
                               () if note is None else (note,))


def plr_elements(term: str, u: Sequence[np.ndarray], v: Sequence[np.ndarray],
                 thetas: Sequence[float] | np.ndarray, influences: Sequence[np.ndarray],
                 var_y: float,
                 vcov: Any = "hetero") -> SensitivityElements:
    """Sensitivity elements of the partially linear model, one set per repetition.

    With ``u = y - l(X)`` and ``v = d - m(X)`` (partialling-out residuals of a repetition):
    ``sigma2 = mean((u - theta v)^2)``, ``nu2 = 1 / mean(v^2)`` and
    ``psi_nu2 = nu2 - v^2 nu2^2``, the Riesz representer ``v nu2`` (DoubleML's PLR).

    Examples
    --------
    >>> import numpy as np
    >>> v = np.array([1., -1, 2, -2]); u = 2 * v + np.array([.1, -.1, .1, -.1])
    >>> el = plr_elements("d", [u], [v], [2.0], [np.zeros(4)], 1.0)
    >>> round(float(el.nu2[0]), 3), round(float(el.sigma2[0]), 3)
    (0.4, 0.01)
    """
    s2, n2, ps2, pn2, notes = [], [], [], [], []
    for ur, vr, th in zip(u, v, thetas):
        ur, vr = np.asarray(ur, float), np.asarray(vr, float)
        s2e = (ur - th * vr) ** 2
        sigma2 = float(s2e.mean())
        nu2 = 1.0 / float(np.mean(vr ** 2))
        psi_nu2 = nu2 - vr ** 2 * nu2 ** 2
        nu2, psi_nu2, note = _positive_nu2(nu2, psi_nu2, vr * nu2, term)
        s2.append(sigma2)
        n2.append(nu2)
        ps2.append(s2e - sigma2)
        pn2.append(psi_nu2)
        if note:
            notes.append(note)
    return SensitivityElements(term, "plr", np.asarray(thetas, float),
                               np.vstack([np.asarray(i, float).reshape(-1) for i in influences]),
                               np.asarray(s2), np.asarray(n2), np.vstack(ps2), np.vstack(pn2),
                               float(var_y), vcov, tuple(notes))


# ----------------------------------------------------------------------------- bounds
def confounding_strength(cf_y: float, cf_d: float, rho: float) -> float:
    """``|rho| sqrt(cf_y cf_d / (1 - cf_d))``.

    Examples
    --------
    >>> round(confounding_strength(0.1, 0.1, 1.0), 6)
    0.105409
    """
    return abs(rho) * float(np.sqrt(cf_y * cf_d / (1.0 - cf_d)))


def _se(psi: np.ndarray, vcov: Any, cluster_data: Mapping[str, Any] | None) -> tuple[float, Any]:
    res = variance_from_rule(VarianceRule(), psi[:, None], vcov, cluster_data, warn=False)
    return float(np.sqrt(max(res.matrix[0, 0], 0.0))), res.dof


def _crit(level: float, dof: int | None) -> float:
    from scipy import stats

    return float((stats.t(dof) if dof else stats.norm()).ppf(level))


def _bounds_at(el: SensitivityElements, c: float, level: float, se_rule: str,
               cluster_data: Mapping[str, Any] | None) -> dict[str, float]:
    """Bounds of theta and of the confidence interval at confounding strength ``c``."""
    s, psi_s = el.max_bias, el.psi_max_bias
    lo_t, up_t, lo_se, up_se, lo_ci, up_ci = [], [], [], [], [], []
    for r in range(el.theta.size):
        th, phi = el.theta[r], el.influence[r]
        base = -phi if se_rule == "doubleml" else phi
        se_lo, dof = _se(base - c * psi_s[r], el.vcov, cluster_data)
        se_up, _ = _se(base + c * psi_s[r], el.vcov, cluster_data)
        q = _crit(level, dof)
        lo_t.append(th - c * s[r])
        up_t.append(th + c * s[r])
        lo_se.append(se_lo)
        up_se.append(se_up)
        lo_ci.append(lo_t[-1] - q * se_lo)
        up_ci.append(up_t[-1] + q * se_up)
    lo_t_a, up_t_a = np.asarray(lo_t), np.asarray(up_t)
    th_lo, th_up = float(np.median(lo_t_a)), float(np.median(up_t_a))
    # DoubleML's aggregation over repetitions: median, SE backed out of median(theta + 1.96 se)
    se_lo_agg = float((np.median(lo_t_a + Z975 * np.asarray(lo_se)) - th_lo) / Z975)
    se_up_agg = float((np.median(up_t_a + Z975 * np.asarray(up_se)) - th_up) / Z975)
    return {"theta_lower": th_lo, "theta_upper": th_up, "se_lower": se_lo_agg,
            "se_upper": se_up_agg, "ci_lower": float(np.median(lo_ci)),
            "ci_upper": float(np.median(up_ci))}


def _solve_rv(f, lo: float = 0.0, hi: float = 1.0 - 1e-12) -> float:
    """Smallest root of ``f`` on ``[lo, hi)`` (``f(lo) > 0`` means not yet crossed)."""
    from scipy.optimize import brentq

    if f(lo) <= 0:
        return 0.0
    grid = np.concatenate([np.linspace(0, 0.99, 100)[1:], 1 - np.logspace(-2.5, -12, 20)])
    prev = lo
    for g in grid:
        if f(g) <= 0:
            return float(brentq(f, prev, g, xtol=1e-14, rtol=1e-14, maxiter=500))
        prev = g
    return 1.0


def robustness_values(el: SensitivityElements, rho: float = 1.0, level: float = 0.95,
                      null: float = 0.0, se_rule: str = "delta",
                      cluster_data: Mapping[str, Any] | None = None) -> tuple[float, float]:
    """``(RV, RVa)``: the ``cf_y = cf_d`` at which the bound, and its confidence bound, reach
    ``null``.

    The side is the lower bound when the estimate is above ``null``, else the upper (as
    DoubleML). ``RV`` solves ``|theta - null| = |rho| sqrt(c^2 / (1 - c)) S`` in closed form;
    ``RVa`` is found by root bracketing to 1e-14 (DoubleML minimises the squared gap with a
    bounded Brent search stopped at ``xatol = 1e-5``). With ``rho = 0`` no confounder moves
    the bounds and both are 1.

    Examples
    --------
    >>> import numpy as np
    >>> z = np.zeros((1, 4))
    >>> el = SensitivityElements("d", "plr", [1.0], z, [1.0], [1.0], z, z, var_y=1.0)
    >>> rv, rva = robustness_values(el)
    >>> round(rv, 6), round(rv, 6) == round(rva, 6)
    (0.618034, True)
    """
    theta = float(np.median(el.theta))
    if rho == 0:
        return 1.0, 1.0
    side = "upper" if null > theta else "lower"
    sgn = 1.0 if side == "lower" else -1.0

    def gap(c: float, key: str) -> float:
        cs = confounding_strength(c, c, rho)
        b = _bounds_at(el, cs, level, se_rule, cluster_data)[f"{key}_{side}"]
        return sgn * (b - null)

    if el.theta.size == 1:
        a = ((theta - null) / (abs(rho) * float(el.max_bias[0]))) ** 2
        rv = float((-a + np.sqrt(a * a + 4 * a)) / 2) if sgn * (theta - null) > 0 else 0.0
    else:
        rv = _solve_rv(lambda c: gap(c, "theta"))
    rva = _solve_rv(lambda c: gap(c, "ci"))
    return rv, rva


def ovb_sensitivity(el: SensitivityElements, cf_y: float = 0.03, cf_d: float = 0.03,
                    rho: float = 1.0, level: float = 0.95, null: float = 0.0, *,
                    se_rule: str = "delta", cluster_data: Mapping[str, Any] | None = None,
                    benchmarks: pd.DataFrame | None = None, design: str = "") -> SensitivityResult:
    """Omitted-variable-bias bounds and robustness values of a debiased estimate.

    Parameters
    ----------
    el
        The estimate's :class:`SensitivityElements`.
    cf_y
        Share of the residual variation of the outcome explained by the omitted confounder,
        in ``[0, 1)``.
    cf_d
        Share of the variation of the Riesz representer it explains (for a binary treatment:
        how much it improves the prediction of the treatment), in ``[0, 1)``.
    rho
        Correlation of the confounding in the outcome and in the representer, in ``[-1, 1]``;
        ``1`` is the worst case.
    level
        One-sided level of the confidence bounds (DoubleML's ``norm.ppf(level)``; t with
        clusters).
    null
        The value the robustness values refer to.
    se_rule
        ``"delta"`` (default, the delta-method influence function of each bound) or
        ``"doubleml"`` (DoubleML 0.11's numbers, see the module notes).
    cluster_data
        Label arrays the estimate's clustered variance needs.
    benchmarks
        A table from :func:`geocausal.api.sensitivity.sensitivity_benchmark` (columns
        ``group, cf_y, cf_d, rho, ...``) to mark in the plot and the summary.

    Examples
    --------
    >>> import numpy as np
    >>> z = np.zeros((1, 4))
    >>> el = SensitivityElements("d", "plr", [1.0], z, [1.0], [1.0], z, z, var_y=1.0)
    >>> r = ovb_sensitivity(el, 0.1, 0.1)
    >>> round(float(r.tidy().theta_lower[0]), 4)
    0.8946
    """
    cf_y, cf_d, rho, level = check_cf(cf_y, "cf_y"), check_cf(cf_d, "cf_d"), check_rho(rho), \
        check_level(level)
    if se_rule not in SE_RULES:
        raise DataError(f"se_rule '{se_rule}' is not one of {SE_RULES}")
    try:
        null = float(null)
    except (TypeError, ValueError):
        raise DataError(f"null must be a number, got {null!r}") from None
    for note in el.notes:  # warned when the bounds are used, not at fit time
        warnings.warn(note, DiagnosticWarning, stacklevel=3)
    cs = confounding_strength(cf_y, cf_d, rho)
    b = _bounds_at(el, cs, level, se_rule, cluster_data)
    rv, rva = robustness_values(el, rho, level, null, se_rule, cluster_data)
    row = {"term": el.term, "estimate": float(np.median(el.theta)), "cf_y": cf_y, "cf_d": cf_d,
           "rho": rho, "level": level, "null": null, **b, "rv": rv, "rva": rva}
    for k in ("theta_lower", "theta_upper", "ci_lower", "ci_upper", "rv", "rva"):
        if not np.isfinite(row[k]):
            raise DesignError(f"the sensitivity bound {k} of '{el.term}' is not finite; check "
                              "the propensities (overlap) and the outcome regressions")

    def grid(cy: np.ndarray, cd: np.ndarray) -> np.ndarray:
        s = float(np.median(el.max_bias))
        return (float(np.median(el.theta)) - np.sign(np.median(el.theta) - null) * abs(rho)
                * np.sqrt(cy * cd / (1.0 - cd)) * s)

    return SensitivityResult(kind="ovb", table=pd.DataFrame([row]), design=design,
                             benchmarks=benchmarks, notes=el.notes, grid_fn=grid,
                             labels=("cf_y", "cf_d"))


# ----------------------------------------------------------------------------- linear
@dataclass(frozen=True)
class LinearSensitivityElements:
    """What Cinelli-Hazlett bounds of a linear regression need.

    ``estimate``, ``se`` (classical OLS) and ``dof`` (residual, fixed effects counted) of the
    treatment; ``yt`` and ``Xt`` the outcome and regressors after absorbing the fixed effects
    (first column the treatment), with their column names, for benchmarking a group of
    covariates by its partial R^2.
    """

    term: str
    estimate: float
    se: float
    dof: int
    yt: np.ndarray = field(repr=False)
    Xt: np.ndarray = field(repr=False)
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("yt", "Xt"):
            a = np.asarray(getattr(self, name), dtype=float)
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        if self.dof <= 1:
            raise DesignError(f"Cinelli-Hazlett bounds need more than 1 residual degree of "
                              f"freedom, got {self.dof}")

    @property
    def t(self) -> float:
        """The t statistic, ``estimate / se``."""
        return self.estimate / self.se


def partial_r2(t: float | np.ndarray, dof: int) -> float | np.ndarray:
    """Partial R^2 from a t statistic: ``t^2 / (t^2 + dof)``.

    Examples
    --------
    >>> partial_r2(2.0, 96)
    0.04
    """
    t = np.asarray(t, dtype=float)
    out = t ** 2 / (t ** 2 + dof)
    return float(out) if out.ndim == 0 else out


def linear_rv(t: float, dof: int, q: float = 1.0, alpha: float | None = None) -> float:
    """Cinelli-Hazlett robustness value ``RV_q`` (``alpha=None``) or ``RV_{q,alpha}``.

    Examples
    --------
    >>> round(linear_rv(4.0, 100), 4)
    0.3279
    """
    from scipy import stats

    fq = q * abs(t) / np.sqrt(dof)
    f_crit = 0.0 if alpha is None else abs(stats.t.ppf(alpha / 2, dof - 1)) / np.sqrt(dof - 1)
    fqa = fq - f_crit
    if fqa < 0:
        return 0.0
    if alpha is not None and fq > 1 / f_crit:
        return float((fq ** 2 - f_crit ** 2) / (1 + fq ** 2))
    return float(0.5 * (np.sqrt(fqa ** 4 + 4 * fqa ** 2) - fqa ** 2))


def _rss(y: np.ndarray, X: np.ndarray) -> float:
    if X.shape[1] == 0:
        return float(y @ y)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    r = y - X @ beta
    return float(r @ r)


def group_partial_r2(el: LinearSensitivityElements, cols: Sequence[str]) -> tuple[float, float]:
    """``(R2_dxj, R2_yxj)``: partial R^2 of a group of covariates with the treatment (given the
    other covariates) and with the outcome (given the treatment and the others).

    Equal to ``t^2 / (t^2 + dof)`` of each regression for one covariate (sensemakr's
    ``partial_r2``) and to its F-statistic form for a group (``group_partial_r2``).
    """
    names = list(el.names)
    unknown = [c for c in cols if c not in names[1:]]
    if unknown or not cols:
        raise DataError(f"benchmark covariates {unknown or list(cols)} are not controls of the "
                        f"model; controls are {names[1:]}")
    idx = [names.index(c) for c in cols]
    rest = [j for j in range(1, len(names)) if j not in idx]
    d, X = el.Xt[:, 0], el.Xt
    r2d = 1 - _rss(d, X[:, idx + rest]) / _rss(d, X[:, rest])
    r2y = 1 - _rss(el.yt, X) / _rss(el.yt, X[:, [0] + rest])
    return float(r2d), float(r2y)


def linear_bounds_from_benchmark(r2dxj: float, r2yxj: float, kd: float = 1.0,
                                 ky: float | None = None) -> tuple[float, float]:
    """``(R2_dz, R2_yz)`` of a confounder ``kd`` (``ky``) times as strong as a benchmark.

    Examples
    --------
    >>> [round(v, 4) for v in linear_bounds_from_benchmark(0.1, 0.2)]
    [0.1111, 0.3125]
    """
    ky = kd if ky is None else ky
    r2dz = kd * r2dxj / (1 - r2dxj)
    if r2dz >= 1:
        raise DesignError(f"kd={kd} implies a partial R^2 of the confounder with the treatment "
                          f"of {r2dz:.3f} >= 1; use a smaller kd")
    r2zxj = kd * r2dxj ** 2 / ((1 - kd * r2dxj) * (1 - r2dxj))
    if r2zxj >= 1:
        raise DesignError(f"kd={kd} is impossible for this benchmark; use a smaller kd")
    r2yz = ((np.sqrt(ky) + np.sqrt(r2zxj)) / np.sqrt(1 - r2zxj)) ** 2 * r2yxj / (1 - r2yxj)
    if r2yz > 1:
        warnings.warn(f"the benchmark implies a partial R^2 with the outcome of {r2yz:.3f} > 1 "
                      f"(kd={kd}, ky={ky}); set to 1", DiagnosticWarning, stacklevel=3)
        r2yz = 1.0
    return float(r2dz), float(r2yz)


def linear_adjusted(el: LinearSensitivityElements, r2dz: float, r2yz: float, level: float = 0.95
                    ) -> dict[str, float]:
    """Bias-adjusted bounds of the estimate and the CI for partial R^2 values (two-sided)."""
    from scipy import stats

    bias = el.se * np.sqrt(r2yz * r2dz / (1 - r2dz)) * np.sqrt(el.dof)
    se_adj = el.se * np.sqrt((1 - r2yz) / (1 - r2dz)) * np.sqrt(el.dof / (el.dof - 1))
    q = abs(stats.t.ppf((1 - level) / 2, el.dof))
    lo, up = el.estimate - bias, el.estimate + bias
    return {"theta_lower": float(lo), "theta_upper": float(up), "se_lower": float(se_adj),
            "se_upper": float(se_adj), "ci_lower": float(lo - q * se_adj),
            "ci_upper": float(up + q * se_adj), "bias": float(bias)}


def linear_sensitivity(el: LinearSensitivityElements, r2yz: float = 0.03, r2dz: float = 0.03,
                       level: float = 0.95, q: float = 1.0,
                       benchmark: str | Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                       kd: float | Sequence[float] = 1.0, ky: float | Sequence[float] | None = None,
                       design: str = "") -> SensitivityResult:
    """Cinelli-Hazlett sensitivity of a linear regression coefficient.

    Parameters
    ----------
    el
        The estimate's :class:`LinearSensitivityElements`.
    r2yz, r2dz
        Partial R^2 of the confounder with the outcome and with the treatment, in ``[0, 1)``
        (the linear analogues of ``cf_y`` and ``cf_d``).
    level
        Confidence level (two-sided, t with the residual dof, as sensemakr).
    q
        Share of the estimate the robustness value refers to (``q=1``: to zero).
    benchmark
        A control, a list of controls (each benchmarked alone) or ``{label: [controls]}``
        (groups); their bounds at ``kd`` times their strength go in ``benchmarks``.
    kd, ky
        Strength multiples of the benchmarks.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0); n = 200
    >>> X = rng.normal(size=(n, 2)); y = X @ [1.0, 0.5] + rng.normal(size=n)
    >>> res = fit_linear_elements("d", y, X, ["d", "x"])
    >>> round(float(res.estimate), 2) == round(float(np.linalg.lstsq(X, y, rcond=None)[0][0]), 2)
    True
    """
    r2yz, r2dz, level = check_cf(r2yz, "r2yz (cf_y)"), check_cf(r2dz, "r2dz (cf_d)"), \
        check_level(level)
    adj = linear_adjusted(el, r2dz, r2yz, level)
    row = {"term": el.term, "estimate": el.estimate, "cf_y": r2yz, "cf_d": r2dz, "rho": 1.0,
           "level": level, "null": el.estimate * (1 - q),
           **{k: v for k, v in adj.items() if k != "bias"},
           "rv": linear_rv(el.t, el.dof, q), "rva": linear_rv(el.t, el.dof, q, 1 - level),
           "r2yd_x": partial_r2(el.t, el.dof), "dof": el.dof}
    bench = None
    if benchmark is not None:
        if isinstance(benchmark, str):
            groups = {benchmark: [benchmark]}
        elif isinstance(benchmark, Mapping):
            groups = {str(k): list(v) for k, v in benchmark.items()}
        else:
            groups = {str(b): [b] for b in benchmark}
        kds = np.atleast_1d(np.asarray(kd, dtype=float))
        kys = kds if ky is None else np.atleast_1d(np.asarray(ky, dtype=float))
        if kds.shape != kys.shape:
            raise DataError(f"kd and ky have different lengths ({kds.size} and {kys.size})")
        rows = []
        for label, cols in groups.items():
            r2dxj, r2yxj = group_partial_r2(el, cols)
            for kdv, kyv in zip(kds, kys):
                r2dz_b, r2yz_b = linear_bounds_from_benchmark(r2dxj, r2yxj, kdv, kyv)
                a = linear_adjusted(el, r2dz_b, r2yz_b, level)
                rows.append({"group": label, "kd": kdv, "ky": kyv, "r2dxj_x": r2dxj,
                             "r2yxj_dx": r2yxj, "cf_d": r2dz_b, "cf_y": r2yz_b, "rho": 1.0,
                             **{k: v for k, v in a.items() if k != "bias"}})
        bench = pd.DataFrame(rows)

    def grid(cy: np.ndarray, cd: np.ndarray) -> np.ndarray:
        bias = el.se * np.sqrt(cy * cd / (1 - cd)) * np.sqrt(el.dof)
        return el.estimate - np.sign(el.estimate - row["null"]) * bias

    return SensitivityResult(kind="linear", table=pd.DataFrame([row]), design=design,
                             benchmarks=bench, grid_fn=grid, labels=("R2_yz", "R2_dz"))


def fit_linear_elements(term: str, yt, Xt, names: Sequence[str], dof: int | None = None
                        ) -> LinearSensitivityElements | str:
    """Linear elements from a (demeaned) outcome and design whose first column is the treatment.

    ``dof`` defaults to ``n - k``; pass ``n - k - absorbed levels`` after fixed effects.
    With ``dof <= 1`` it returns the reason there are no bounds (a string).
    """
    yt, Xt = np.asarray(yt, float), np.asarray(Xt, float)
    n, k = Xt.shape
    dof = n - k if dof is None else int(dof)
    if dof <= 1:
        return (f"Cinelli-Hazlett bounds need more than 1 residual degree of freedom, this "
                f"fit has {dof}")
    XtXi = np.linalg.inv(Xt.T @ Xt)
    beta = XtXi @ Xt.T @ yt
    e = yt - Xt @ beta
    se = float(np.sqrt(XtXi[0, 0] * float(e @ e) / dof))
    return LinearSensitivityElements(term, float(beta[0]), se, dof, yt, Xt, tuple(names))


# ----------------------------------------------------------------------------- result
@dataclass(frozen=True)
class SensitivityResult:
    """Bounds on an estimate and its confidence interval under an omitted confounder.

    ``table`` has one row: term, estimate, cf_y, cf_d, rho, level, null, theta_lower,
    theta_upper, se_lower, se_upper, ci_lower, ci_upper, rv, rva (for linear models also
    ``r2yd_x`` and ``dof``; ``cf_y`` and ``cf_d`` are then the partial R^2 of the confounder
    with the outcome and the treatment). ``benchmarks`` holds the strength implied by observed
    covariate groups. ``est.sensitivity(...)`` returns it as a
    :class:`geocausal.results.sensitivity.SensitivityReport`, which adds ``plot()``.
    """

    kind: str
    table: pd.DataFrame
    design: str = ""
    benchmarks: pd.DataFrame | None = None
    notes: tuple[str, ...] = ()
    grid_fn: Any = field(default=None, repr=False, compare=False)
    labels: tuple[str, str] = ("cf_y", "cf_d")

    def __post_init__(self) -> None:
        object.__setattr__(self, "table", self.table.copy())
        if self.benchmarks is not None:
            object.__setattr__(self, "benchmarks", self.benchmarks.copy())

    def tidy(self) -> pd.DataFrame:
        """The bounds and robustness values as a table (a copy)."""
        return self.table.copy()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the row, the benchmarks and notes."""
        return {"kind": self.kind, "design": self.design,
                "sensitivity": self.table.to_dict(orient="records")[0],
                "benchmarks": None if self.benchmarks is None
                else self.benchmarks.to_dict(orient="records"), "notes": list(self.notes)}

    def summary(self) -> str:
        """The result in plain words."""
        r = self.table.iloc[0]
        side = "lower" if r.estimate >= r["null"] else "upper"
        what = ("the outcome and the treatment (its Riesz representer)" if self.kind == "ovb"
                else "the outcome and the treatment")
        lines = [
            f"Sensitivity of '{r.term}' ({self.design or self.kind}) to an omitted confounder",
            f"  estimate {r.estimate:.4g}; with a confounder explaining {100 * r.cf_y:.3g}% of "
            f"the outcome's residual variation and {100 * r.cf_d:.3g}% of the treatment's"
            + (f" (rho = {r.rho:g})" if self.kind == "ovb" else "") + ":",
            f"    the estimate lies in [{r.theta_lower:.4g}, {r.theta_upper:.4g}]; the "
            f"{'one-sided ' if self.kind == 'ovb' else ''}{100 * r.level:g}% confidence bounds "
            f"are [{r.ci_lower:.4g}, {r.ci_upper:.4g}].",
            f"  Robustness value RV = {100 * r.rv:.3g}%: a confounder that explains {100 * r.rv:.3g}% "
            f"of the residual variation of both {what} would bring the {side} bound to "
            f"{r['null']:.4g}.",
            f"  RVa = {100 * r.rva:.3g}%: one that explains {100 * r.rva:.3g}% of both would bring "
            f"the {side} confidence bound to {r['null']:.4g}"
            + (" (the interval already contains it)." if r.rva == 0 else "."),
        ]
        if self.benchmarks is not None and len(self.benchmarks):
            lines.append("  Benchmarks (confounders as strong as observed covariate groups):")
            for _, b in self.benchmarks.iterrows():
                k = f" x{b.kd:g}" if "kd" in b and b.kd != 1 else ""
                more = (f", bounds [{b.theta_lower:.4g}, {b.theta_upper:.4g}]"
                        if "theta_lower" in b and np.isfinite(b.theta_lower) else "")
                lines.append(f"    {b.group}{k}: cf_y = {100 * b.cf_y:.3g}%, cf_d = "
                             f"{100 * b.cf_d:.3g}%{more}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def bound_grid(self, cf_y: np.ndarray, cf_d: np.ndarray) -> np.ndarray:
        """The bound nearest the null on a grid: rows follow ``cf_d``, columns ``cf_y``."""
        cy, cd = np.meshgrid(np.asarray(cf_y, float), np.asarray(cf_d, float), indexing="xy")
        return self.grid_fn(cy, cd)



def validate_elements(obj: Any, design: str) -> None:
    """A :class:`DesignError` saying the bounds are not derived for ``design``."""
    if isinstance(obj, str):
        raise DesignError(f"no sensitivity analysis for this {design or 'estimate'}: {obj}")
    if obj is None:
        raise DesignError(
            f"sensitivity bounds are not derived for the design '{design or 'unknown'}': they "
            "exist for gc.aipw (ATE, ATT; the doubly robust score), gc.dml_panel (one treatment, "
            "partialling out) and linear gc.fe; refit with one of those")

def estimate_sensitivity(est: Any, cf_y: float = 0.03, cf_d: float = 0.03, rho: float = 1.0,
                         level: float = 0.95, *, null: float = 0.0, se_rule: str = "delta",
                         benchmarks: pd.DataFrame | None = None,
                         benchmark: str | Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                         kd: float | Sequence[float] = 1.0,
                         ky: float | Sequence[float] | None = None,
                         q: float = 1.0) -> SensitivityResult:
    """The sensitivity analysis of an :class:`~geocausal.results.estimate.Estimate`.

    Parameters
    ----------
    est
        An estimate of ``gc.aipw``, ``gc.dml_panel`` (OVB bounds) or ``gc.fe`` (linear).
    cf_y, cf_d, rho, level, null, se_rule
        See :func:`ovb_sensitivity`. For ``gc.fe``, ``cf_y`` and ``cf_d`` are the partial
        R^2 of the confounder with the outcome and the treatment (``rho`` must be 1: the
        linear bounds are worst-case) and ``level`` is two-sided, as in sensemakr.
    benchmarks
        OVB designs: a table from :func:`geocausal.sensitivity_benchmark` to mark.
    benchmark, kd, ky, q
        ``gc.fe``: covariates (or ``{label: [covariates]}``) to benchmark by their partial
        R^2, the strength multiples and the share ``q`` of the estimate the RV refers to.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import geocausal as gc
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"unit": np.repeat(np.arange(50), 4), "t": np.tile(np.arange(4), 50)})
    >>> df["x"] = rng.normal(size=200); df["d"] = df.x + rng.normal(size=200)
    >>> df["y"] = df.d + 0.2 * df.x + rng.normal(size=200)
    >>> s = gc.fe("y ~ d + x | unit + t", df).sensitivity(0.05, 0.05, benchmark="x")
    >>> list(s.tidy().columns[:4])
    ['term', 'estimate', 'cf_y', 'cf_d']
    """
    el = getattr(est, "sensitivity_elements", None)
    validate_elements(el, getattr(est, "design", ""))
    if isinstance(el, LinearSensitivityElements):
        if check_rho(rho) != 1.0:
            raise DataError(f"rho={rho}: the Cinelli-Hazlett bounds of a linear model are "
                            "worst-case (rho = 1); leave rho at 1")
        if benchmarks is not None:
            raise DataError("benchmarks= is for the OVB designs; for gc.fe pass benchmark= "
                            "(covariate names) and kd=")
        return linear_sensitivity(el, r2yz=cf_y, r2dz=cf_d, level=level, q=q,
                                  benchmark=benchmark, kd=kd, ky=ky, design=est.design)
    if benchmark is not None:
        raise DataError("benchmark= (covariate names) is for gc.fe; for this design compute "
                        "the benchmarks by refitting: gc.sensitivity_benchmark(...), then pass "
                        "benchmarks=")
    if benchmarks is not None:
        need = {"group", "cf_y", "cf_d"}
        if not isinstance(benchmarks, pd.DataFrame) or not need <= set(benchmarks.columns):
            raise DataError(f"benchmarks must be a DataFrame with columns {sorted(need)} (the "
                            "output of gc.sensitivity_benchmark)")
    return ovb_sensitivity(el, cf_y, cf_d, rho, level, null, se_rule=se_rule,
                           cluster_data=est.cluster_data, benchmarks=benchmarks,
                           design=est.design)


def gain_statistics(long: SensitivityElements, short: SensitivityElements,
                    group: str = "") -> dict[str, Any]:
    """Benchmark ``cf_y``, ``cf_d``, ``rho`` implied by the covariates left out of ``short``.

    ``R2_y = 1 - sigma2 / var(y)`` of each model: ``cf_y = (R2_y,long - R2_y,short) /
    (1 - R2_y,long)``; ``cf_d = (1 - nu2_short / nu2_long) / (nu2_short / nu2_long)``; both
    clipped to ``[0, 1]``; ``rho = sign(dtheta) min(|dtheta| / sqrt(dsigma2 dnu2), 1)``;
    medians over repetitions (DoubleML's ``gain_statistics``).

    Examples
    --------
    >>> import numpy as np
    >>> z = np.zeros((1, 3))
    >>> lo = SensitivityElements("d", "plr", [1.0], z, [1.0], [2.0], z, z, var_y=4.0)
    >>> sh = SensitivityElements("d", "plr", [1.2], z, [1.25], [1.6], z, z, var_y=4.0)
    >>> g = gain_statistics(lo, sh)
    >>> round(g["cf_y"], 4), round(g["cf_d"], 4), round(g["rho"], 4)
    (0.25, 0.25, 0.6325)
    """
    if long.theta.size != short.theta.size:
        raise DataError("the long and short fits have different numbers of repetitions")
    r2_long = 1.0 - long.sigma2 / long.var_y
    r2_short = 1.0 - short.sigma2 / long.var_y
    r2_riesz = short.nu2 / long.nu2
    cf_y = np.clip((r2_long - r2_short) / (1.0 - r2_long), 0, 1)
    cf_d = np.clip((1.0 - r2_riesz) / r2_riesz, 0, 1)
    dtheta = short.theta - long.theta
    var_g = short.sigma2 - long.sigma2
    var_r = long.nu2 - short.nu2
    ok = (var_g > 0) & (var_r > 0)
    denom = np.where(ok, np.sqrt(np.where(ok, var_g * var_r, 1.0)), 0.0)
    rho_v = np.clip(np.divide(np.abs(dtheta), denom, out=np.ones_like(dtheta), where=denom != 0),
                    0.0, 1.0)
    return {"group": group, "cf_y": float(np.median(cf_y)), "cf_d": float(np.median(cf_d)),
            "rho": float(np.median(rho_v * np.sign(dtheta))),
            "delta_theta": float(np.median(dtheta)),
            "theta_long": float(np.median(long.theta)),
            "theta_short": float(np.median(short.theta))}
