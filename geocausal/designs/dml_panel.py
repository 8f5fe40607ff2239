"""Double machine learning for partially linear panel models (arrays in, arrays out).

The model is ``y_it = d_it' theta + g(x_it, c_i) + e_it`` with unit heterogeneity ``c_i``.
:mod:`geocausal.designs.panel_transforms` turns the panel into the rows and features of one
approach; this module cross-fits the nuisances, solves the orthogonal score, repeats the
sample splitting and aggregates, and computes the diagnostics that say when the nominal
coverage should not be trusted.

Scores (per repetition, ``V = D - m(X)``):

- partialling out: ``theta = (V'V)^{-1} V'(y - l(X))``,
- IV-type: ``theta = (V'D)^{-1} V'(y - g(X))`` with ``g`` fitted to ``y - D theta_0`` and
  ``theta_0`` the partialling-out estimate (as DoubleML does).

Several treatments are partialled out jointly. The influence function is
``A^{-1} V_i (r_i - ...)`` with ``A`` the score's Jacobian, so ``theta_hat - theta ~ mean``.

Repetitions (``n_rep``) are aggregated by DoubleML's rule: the median estimate, and the
standard error backed out of the median of ``theta_r + 1.96 se_r``.

Examples
--------
>>> import numpy as np
>>> from sklearn.linear_model import LinearRegression
>>> from geocausal.designs.panel_transforms import transform_panel
>>> from geocausal.folds import Folds, resolve_folds
>>> rng = np.random.default_rng(0)
>>> unit = np.repeat(np.arange(40), 5); time = np.tile(np.arange(5), 40)
>>> x = rng.normal(size=(200, 1)); d = x[:, 0] + rng.normal(size=200)
>>> y = 2 * d + x[:, 0] + rng.normal(size=200)
>>> tr = transform_panel("pooled", y, d, x, unit, time)
>>> fit = fit_panel_dml(tr, {"marginal": LinearRegression(), "propensity": LinearRegression()},
...                     [resolve_folds(Folds.group(tr.unit, k=4), n=tr.y.size, seed=0)])
>>> bool(abs(fit.theta[0] - 2) < 0.2)
True
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier

from geocausal._progress import progress as _progress
from geocausal.designs.panel_transforms import (
    MIN_SWITCHERS,
    PanelTransform,
    demean,
    group_means,
    transform_panel,
)
from geocausal.errors import (
    DataError,
    DesignError,
    DiagnosticWarning,
    FewSwitchersWarning,
    FormulaError,
    GeocausalWarning,
    OptionError,
)
from geocausal.folds import Folds, resolve_folds
from geocausal.inference.bootstrap import multiplier_bootstrap, sup_t_critical
from geocausal.inference.sensitivity import plr_elements
from geocausal.inference.variance import (
    VarianceRule,
    VcovRequest,
    parse_vcov,
    variance_from_rule,
    vcov_from_influence,
)
from geocausal.nuisance.crossfit import crossfit_predict
from geocausal.vocabulary import (
    DEFAULTS,
    check_count,
    check_probability,
    coerce_options,
    resolve_learners,
)

SCORES = ("partialling out", "IV-type")
Z975 = 1.96  # DoubleML's critical value in the repetition aggregation


@dataclass(frozen=True)
class PanelDMLFit:
    """Result of :func:`fit_panel_dml`.

    Attributes
    ----------
    theta : numpy.ndarray
        ``(k,)`` aggregated (median) estimates.
    se : numpy.ndarray
        ``(k,)`` aggregated standard errors (DoubleML's rule; equal to the single
        repetition's when ``n_rep = 1``).
    influence : numpy.ndarray
        ``(m, k)`` influence functions averaged over repetitions.
    thetas, ses : numpy.ndarray
        ``(R, k)`` per-repetition estimates and standard errors.
    thetas_alt : numpy.ndarray or None
        ``(R, k)`` estimates of the other orthogonal score (the bias check).
    influences : numpy.ndarray or None
        ``(R, m, k)`` influence functions of each repetition (for the median variance rule).
    nuisance_r2 : Mapping
        Out-of-fold R-squared of each nuisance, averaged over repetitions.
    residuals : tuple of numpy.ndarray or None
        ``(u, v)``, ``(R, m)`` and ``(R, m, k)``: the partialling-out residuals ``y - l(X)`` and
        ``D - m(X)`` (after the design's demeaning) of each repetition, for the sensitivity
        elements.
    """

    theta: np.ndarray
    se: np.ndarray
    influence: np.ndarray
    thetas: np.ndarray
    ses: np.ndarray
    thetas_alt: np.ndarray | None = None
    influences: np.ndarray | None = None
    nuisance_r2: Mapping[str, Any] = field(default_factory=dict)
    residuals: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nuisance_r2", MappingProxyType(dict(self.nuisance_r2)))


def make_splits(fold_ids: np.ndarray, time: np.ndarray | None = None, gap: int = 0
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(train, test), ...]``; with ``gap > 0`` training drops periods within ``gap`` of the
    held-out periods (neighbours left out).

    Examples
    --------
    >>> f = np.array([0, 0, 1, 1, 2, 2]); t = np.array([0, 1, 2, 3, 4, 5])
    >>> [tr.tolist() for tr, _ in make_splits(f, t, gap=1)]
    [[3, 4, 5], [0, 5], [0, 1, 2]]
    """
    fold_ids = np.asarray(fold_ids)
    out = []
    for k in np.unique(fold_ids):
        test = np.flatnonzero(fold_ids == k)
        train_mask = fold_ids != k
        if gap > 0 and time is not None:
            held = np.unique(time[test])
            near = np.zeros(time.shape, dtype=bool)
            for s in range(1, gap + 1):
                near |= np.isin(time, held + s) | np.isin(time, held - s)
            train_mask &= ~near
        train = np.flatnonzero(train_mask)
        if train.size == 0:
            raise DesignError(f"fold {k} has no training rows; use fewer folds or a smaller gap")
        out.append((train, test))
    return out


def _oof(learner, X: np.ndarray, target: np.ndarray, splits, slot: str) -> np.ndarray:
    """Out-of-fold predictions through :func:`~geocausal.nuisance.crossfit.crossfit_predict`
    (in-sample ones when ``splits`` is None); classifiers predict the probability of class 1.
    """
    proba = is_classifier(learner)
    if proba and not np.all(np.isin(target, (0.0, 1.0))):
        raise DataError(f"a classifier ({type(learner).__name__}) was given for a non-binary "
                        f"target; pass a regressor as the {slot!r} learner")
    if splits is None:
        every = np.arange(X.shape[0])
        splits = [(every, every)]
    out = crossfit_predict(learner, X, target, None, splits=splits,
                           method="predict_proba" if proba else "predict")
    if not np.all(np.isfinite(out)):
        raise DesignError(f"{type(learner).__name__} returned non-finite predictions")
    return out


def _r2(target: np.ndarray, pred: np.ndarray) -> float:
    ss = float(np.sum((target - target.mean()) ** 2))
    return float(1 - np.sum((target - pred) ** 2) / ss) if ss > 0 else float("nan")


def _solve(a: np.ndarray, b: np.ndarray, what: str) -> np.ndarray:
    if np.linalg.cond(a) > 1e12:
        raise DesignError(f"the {what} matrix is singular: the treatment residuals have no "
                          "variation left; check for a treatment that is time-invariant or "
                          "predicted exactly by the features")
    return np.linalg.solve(a, b)


def _score(v: np.ndarray, d: np.ndarray, resid: np.ndarray, iv: bool, what: str):
    """The estimate theta and its influence for residuals ``v`` (m, k), target residual ``resid`` (m,)."""
    m = v.shape[0]
    a = (v.T @ (d if iv else v)) / m
    theta = _solve(a, v.T @ resid / m, what)
    psi = v * (resid - (d if iv else v) @ theta)[:, None]
    return theta, psi @ np.linalg.inv(a).T


def _one_rep(tr: PanelTransform, learners: Mapping[str, Any], splits, score: str,
             bias_check: bool, time_effects: bool):
    X = tr.features
    y, d = tr.y, tr.d
    k = d.shape[1]
    l_hat = _oof(learners["marginal"], X, y, splits, "marginal")
    m_hat = np.column_stack([_oof(learners["propensity"], X, d[:, j], splits, "propensity")
                             for j in range(k)])
    if tr.recentre is not None:
        m_hat = m_hat + tr.recentre - group_means(m_hat, tr.unit)
    v = d - m_hat
    post = (lambda a: demean(a, tr.unit, tr.time if time_effects else None)) \
        if tr.demean_residuals else (lambda a: a)
    v = post(v)
    u = post(y - l_hat)
    theta_po, infl_po = _score(v, d, u, False, "partialling-out")
    r2 = {"marginal": _r2(y, l_hat),
          **{f"propensity[{j}]": _r2(d[:, j], m_hat[:, j]) for j in range(k)}}
    need_g = score == "IV-type" or bias_check
    theta_iv = infl_iv = None
    if need_g:
        g_hat = _oof(learners["structural"], X, y - d @ theta_po, splits, "structural")
        theta_iv, infl_iv = _score(v, d, post(y - g_hat), True, "IV-type")
        r2["structural"] = _r2(y - d @ theta_po, g_hat)
    if score == "IV-type":
        return theta_iv, infl_iv, theta_po, r2, (u, v)
    return theta_po, infl_po, theta_iv, r2, (u, v)


def fit_panel_dml(
    tr: PanelTransform,
    learners: Mapping[str, Any],
    fold_ids: Sequence[np.ndarray | None],
    *,
    score: str = "partialling out",
    vcov: VcovRequest | None = None,
    gap: int = 0,
    bias_check: bool = False,
    time_effects: bool = False,
    progress: bool = True,
) -> PanelDMLFit:
    """Cross-fit, solve the score and aggregate over repetitions.

    Parameters
    ----------
    tr
        The transformed panel.
    learners
        ``{"marginal": E[y|X], "propensity": E[d|X], "structural": E[y - d theta|X]}``
        (DoubleML's ``ml_l``, ``ml_m``, ``ml_g`` are aliases); ``structural`` is needed for the
        IV-type score and for the bias check.
    fold_ids
        One fold-id array per repetition (``None`` for no cross-fitting: fit and predict on
        all rows).
    score
        ``"partialling out"`` or ``"IV-type"``.
    vcov
        Variance request for the per-repetition standard errors (default: cluster by unit).
    gap
        Neighbours left out: periods within ``gap`` of the held-out ones leave training.
    bias_check
        Also compute the other orthogonal score's estimate (its distance from the main one
        estimates the second-order bias).
    time_effects
        Two-way demeaning of the residuals for the ``late`` approach.
    progress
        A progress bar over the repetitions (shown only in a terminal or notebook).

    Returns
    -------
    PanelDMLFit
    """
    if score not in SCORES:
        raise DataError(f"score '{score}' is not one of {SCORES}")
    learners = resolve_learners("dml_panel", learners)
    missing = [s for s in ("marginal", "propensity") if s not in learners]
    if (score == "IV-type" or bias_check) and "structural" not in learners:
        missing.append("structural")
    if missing:
        raise DataError(f"learners is missing the slots {missing}")
    req = vcov or VcovRequest("cluster", (tr.unit,), ("unit",))
    thetas, ses, alts, infls, r2s, resid = [], [], [], [], [], []
    for f in _progress(fold_ids, desc="dml repetitions", enabled=progress,
                       min_total=2):
        splits = None if f is None else make_splits(f, tr.time, gap)
        theta, infl, alt, r2, uv = _one_rep(tr, learners, splits, score, bias_check,
                                            time_effects)
        resid.append(uv)
        thetas.append(theta)
        ses.append(np.sqrt(np.diag(vcov_from_influence(infl, req))))
        alts.append(alt)
        infls.append(infl)
        r2s.append(r2)
    thetas_a, ses_a = np.asarray(thetas), np.asarray(ses)
    theta = np.median(thetas_a, axis=0)
    se = (np.median(thetas_a + Z975 * ses_a, axis=0) - theta) / Z975
    r2_mean = {key: float(np.mean([r[key] for r in r2s])) for key in r2s[0]}
    return PanelDMLFit(
        theta=theta, se=se, influence=np.mean(infls, axis=0), thetas=thetas_a, ses=ses_a,
        thetas_alt=None if alts[0] is None else np.asarray(alts), nuisance_r2=r2_mean,
        influences=np.asarray(infls),
        residuals=(np.asarray([u for u, _ in resid]), np.asarray([v for _, v in resid])))


# ----------------------------------------------------------------------------- options
FLAG_RATIO = 0.5  # |bias| or repetition spread above half an SE: coverage below about 92%
# Share of a treatment's variance left after partialling out below which the estimate rests
# on a small residual: in the Fuhr-Papies Monte Carlo (paper/dml_panel/MONTECARLO.md, u-shaped
# structure C, 250 replications) flagged CRE fits covered the truth 38-46% of the time,
# unflagged spline ones 90%.
RESIDUAL_SHARE_MIN = 0.2
BLIND_TOL = 1e-8  # two scores this close (relative to the SE) coincide: a linear smoother


@dataclass(frozen=True)
class PanelOptions:
    """Options of ``gc.dml_panel`` beyond the shared ones (``gc.PanelOptions``).

    Parameters
    ----------
    treatments : int, sequence of str or None
        ``None`` (the first right-hand term), a number of leading terms, or term names.
    time_effects : bool
        Two-way effects (period means, two-way demeaning, period dummies).
    crossfit : bool
        ``False`` fits and predicts on all rows (same as ``folds=1``).
    bias_check : bool
        Compute the other orthogonal score too and report the gap as a bias estimate.
    n_rep : int
        Repetitions of the sample splitting (median aggregation).
    n_boot : int
        Clustered multiplier-bootstrap draws for the joint sup-t intervals (0 to skip; shared
        default 999).
    alpha : float
        Level of the joint and bias-aware intervals (shared default 0.05).

    Examples
    --------
    >>> PanelOptions.coerce({"n_rep": 3}).n_rep
    3
    >>> PanelOptions(n_boot=0).n_boot, PanelOptions().alpha
    (0, 0.05)
    >>> PanelOptions(n_rep=0)
    Traceback (most recent call last):
    ...
    geocausal.errors.OptionError: n_rep must be an integer >= 1, got 0
    """

    treatments: int | tuple[str, ...] | None = None
    time_effects: bool = False
    crossfit: bool = True
    bias_check: bool = True
    n_rep: int = 1
    n_boot: int = DEFAULTS.n_boot
    alpha: float = DEFAULTS.alpha

    def __post_init__(self) -> None:
        for name in ("time_effects", "crossfit", "bias_check"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"dml_panel: {name} must be True or False, got "
                                  f"{getattr(self, name)!r}")
        object.__setattr__(self, "n_rep", check_count("n_rep", self.n_rep, minimum=1))
        object.__setattr__(self, "n_boot", check_count("n_boot", self.n_boot))
        object.__setattr__(self, "alpha", check_probability("alpha", self.alpha))
        t = self.treatments
        if isinstance(t, bool) or (isinstance(t, int | np.integer) and t < 1):
            raise OptionError(f"treatments must be a positive number of leading terms or a "
                              f"list of term names, got {t!r}")
        if isinstance(t, str):
            object.__setattr__(self, "treatments", (t,))
        elif t is not None and not isinstance(t, int | np.integer):
            if not all(isinstance(v, str) for v in t):
                raise OptionError(f"treatments must name formula terms, got {t!r}")
            object.__setattr__(self, "treatments", tuple(t))

    @classmethod
    def coerce(cls, value: PanelOptions | Mapping[str, Any] | None) -> PanelOptions:
        """The options from a :class:`PanelOptions`, a dict of its fields, or None."""
        return coerce_options(cls, value)


def select_treatments(rhs: Sequence[str], treatments: Any, formula: str
                      ) -> tuple[list[str], tuple[str, ...]]:
    """Treatment names and the remaining controls among the right-hand terms ``rhs``.

    Examples
    --------
    >>> select_treatments(["d1", "d2", "x"], 2, "y ~ d1 + d2 + x")
    (['d1', 'd2'], ('x',))
    """
    rhs = list(rhs)
    if treatments is None:
        names = rhs[:1]
    elif isinstance(treatments, int | np.integer):
        if not 1 <= treatments <= len(rhs):
            raise FormulaError(f"treatments={treatments} but the formula has {len(rhs)} terms")
        names = rhs[:int(treatments)]
    else:
        names = list(treatments)
        bad = [t for t in names if t not in rhs]
        if bad:
            raise FormulaError(f"treatments {bad} are not right-hand terms of '{formula}'")
    return names, tuple(t for t in rhs if t not in names)


# ----------------------------------------------------------------------------- folds
@dataclass(frozen=True)
class FoldPlan:
    """Fold ids per repetition (``[None]``: no cross-fitting), the periods left out around a
    held-out time block (``gap``) and a label of the kind of folds.
    """

    ids: tuple[np.ndarray | None, ...]
    gap: int = 0
    kind: str = "none (no cross-fitting)"


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.column_stack([np.unique(a, return_inverse=True)[1].ravel(),
                                       np.unique(b, return_inverse=True)[1].ravel()]), axis=0)
    return pairs.shape[0] == np.unique(a).size == np.unique(b).size


def fold_plan(folds: Any, tr: PanelTransform, *, approach: str, n_rep: int = 1, seed: int = 0,
              crossfit: bool = True, n_rows: int | None = None) -> FoldPlan:
    """Fold ids on the rows of a transformed panel, one array per repetition.

    Parameters
    ----------
    folds
        An integer (unit folds, random folds for ``approach="dummies"``; ``1`` for none), a
        :class:`~geocausal.folds.Folds` whose ``by`` holds one label per input row (or per
        transformed row), or fold ids per input row (one array, or a list, one per repetition).
    tr
        The transformed panel (``tr.rows`` maps its rows to the input rows).
    approach
        The panel approach.
    n_rep, seed
        Repetitions (seeds ``seed + r``) of an integer or :class:`Folds` split.
    crossfit
        ``False``: no cross-fitting.
    n_rows
        Rows of the input panel (default: ``tr.rows.max() + 1``).

    Examples
    --------
    >>> from geocausal.designs.panel_transforms import transform_panel
    >>> u = np.repeat(np.arange(6), 2); t = np.tile([0, 1], 6)
    >>> tr = transform_panel("pooled", np.zeros(12), np.zeros(12), np.zeros((12, 1)), u, t)
    >>> plan = fold_plan(3, tr, approach="pooled")
    >>> plan.kind, bool(all(len(set(plan.ids[0][u == g])) == 1 for g in range(6)))
    ('unit', True)
    """
    m = tr.y.size
    n_rows = int(tr.rows.max()) + 1 if n_rows is None else n_rows
    if not crossfit or (isinstance(folds, int | np.integer) and not isinstance(folds, bool)
                        and folds == 1):
        return FoldPlan((None,))
    if isinstance(folds, int | np.integer) and not isinstance(folds, bool):
        folds = Folds(k=int(folds)) if approach == "dummies" else Folds.group(tr.unit,
                                                                              k=int(folds))
    if isinstance(folds, Folds):
        spec = folds
        if spec.by is not None:
            by = np.asarray(spec.by)
            if by.shape[0] == n_rows:
                by = by[tr.rows]
            elif by.shape[0] != m:
                raise DataError(f"folds: Folds.by has {by.shape[0]} labels, expected one per "
                                f"data row ({n_rows})")
            spec = replace(spec, by=by)
        ids = tuple(resolve_folds(spec, n=m, seed=seed + r) for r in range(n_rep))
        kind: str = spec.kind
        if kind == "group" and _same_partition(np.asarray(spec.by), tr.unit):
            kind = "unit"
        elif kind == "time" and spec.gap:
            kind = "neighbours"
        return FoldPlan(ids, gap=int(spec.gap), kind=kind)
    if isinstance(folds, bool) or isinstance(folds, str) or folds is None:
        raise OptionError(f"folds must be an integer, a Folds specification or fold ids, got "
                          f"{folds!r}")
    arrs = [np.asarray(folds)] if np.ndim(folds) == 1 else [np.asarray(f) for f in folds]
    out = []
    for a in arrs:
        if a.shape[0] != n_rows:
            raise DataError(f"folds array has length {a.shape[0]}, expected one id per data row "
                            f"({n_rows})")
        out.append(a[tr.rows])
    return FoldPlan(tuple(out), kind="given")


def units_nested(fold_ids: np.ndarray, unit: np.ndarray) -> bool:
    """Whether every unit sits in a single fold (unit-grouped folds).

    Examples
    --------
    >>> units_nested(np.array([0, 0, 1, 1]), np.array([5, 5, 6, 6]))
    True
    """
    fold_ids, unit = np.asarray(fold_ids), np.asarray(unit)
    _, fu = np.unique(np.column_stack([np.unique(unit, return_inverse=True)[1].ravel(),
                                       np.unique(fold_ids, return_inverse=True)[1].ravel()]),
                      axis=0, return_inverse=True)
    return bool(np.unique(fu).size == np.unique(unit).size)


# ----------------------------------------------------------------------------- checks
def check_treatment_variation(tr: PanelTransform, d_names: Sequence[str], approach: str, *,
                              stacklevel: int = 3) -> dict[str, int]:
    """Units with within-unit variation of each treatment; a DesignError when none (the
    approach removes the unit means), a counted :class:`FewSwitchersWarning` when few.

    Examples
    --------
    >>> from geocausal.designs.panel_transforms import transform_panel
    >>> u = np.repeat(np.arange(6), 2); t = np.tile([0, 1], 6)
    >>> d = np.tile([0.0, 1.0], 6)
    >>> tr = transform_panel("pooled", np.zeros(12), d, np.zeros((12, 1)), u, t)
    >>> check_treatment_variation(tr, ["d"], "pooled")
    {'d': 6}
    """
    counts = {}
    for j, name in enumerate(d_names):
        dj = tr.d[:, j]
        if approach == "fd":
            moved = np.abs(dj) > 1e-12
        else:
            moved = np.abs(dj - group_means(dj, tr.unit)) > 1e-12
        n_var = int(np.unique(tr.unit[moved]).size)
        counts[name] = n_var
        if approach == "pooled":
            continue
        if n_var == 0:
            raise DesignError(f"treatment '{name}' is time-invariant within every unit, so "
                              f"approach '{approach}' cannot identify its effect; use "
                              "approach='pooled' (between variation) or a time-varying treatment")
        if n_var < MIN_SWITCHERS:
            warnings.warn(f"treatment '{name}' varies within only {n_var} units (fewer than "
                          f"{MIN_SWITCHERS}); the estimate rests on very few units",
                          FewSwitchersWarning, stacklevel=stacklevel)
    return counts


def dropped_rows(tr: PanelTransform, n_rows: int, approach: str, unit: np.ndarray,
                 time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the input rows the approach dropped and the reason for each.

    Examples
    --------
    >>> from geocausal.designs.panel_transforms import transform_panel
    >>> u = np.repeat([0, 1], 2); t = np.tile([0, 1], 2)
    >>> tr = transform_panel("fd", np.arange(4.0), np.arange(4.0), np.zeros((4, 1)), u, t)
    >>> dropped_rows(tr, 4, "fd", u, t)[0].tolist()
    [0, 2]
    """
    kept = np.zeros(n_rows, dtype=bool)
    kept[tr.rows] = True
    gone = np.flatnonzero(~kept)
    if approach == "fd":
        first = group_min(np.asarray(time), np.asarray(unit))
        reason = np.where(np.asarray(time)[gone] == first[gone], "first period of the unit",
                          "previous period missing")
    else:
        reason = np.full(gone.size, "singleton unit")
    return gone, reason


def group_min(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The minimum of ``values`` within each group, broadcast back to the rows."""
    _, inv = np.unique(groups, return_inverse=True)
    inv = inv.ravel()
    mins = np.full(inv.max() + 1, np.inf)
    np.minimum.at(mins, inv, np.asarray(values, dtype=float))
    return mins[inv]


def warn_transform(notes: Mapping[str, Any], approach: str, n_dropped: int, *,
                   stacklevel: int = 3) -> None:
    """Counted warnings for rows and controls an approach dropped."""
    if notes.get("singletons_dropped"):
        warnings.warn(f"dropped {notes['singletons_dropped']} rows of units observed once "
                      f"(singletons carry no within-unit information for '{approach}')",
                      GeocausalWarning, stacklevel=stacklevel)
    if notes.get("fd_dropped_after_gap"):
        warnings.warn(f"first differences dropped {n_dropped} rows: "
                      f"{notes['fd_dropped_first_period']} first periods of units and "
                      f"{notes['fd_dropped_after_gap']} rows whose previous period is missing "
                      "(gaps); see diagnostics['dropped']", GeocausalWarning,
                      stacklevel=stacklevel)
    if approach == "within" and notes.get("time_invariant_controls"):
        warnings.warn(f"controls {notes['time_invariant_controls']} are time-invariant and "
                      "vanish under within demeaning", GeocausalWarning, stacklevel=stacklevel)


def coverage_verdict(
    ratio: float,
    residual_share: np.ndarray,
    d_names: Sequence[str],
    *,
    alpha: float = 0.05,
    bias_checked: bool = True,
    blind: bool = False,
    n_rep: int = 1,
    n_units: int | None = None,
    n_rows: int | None = None,
) -> tuple[bool, str, bool]:
    """Whether the nominal interval can be trusted, in plain words.

    Two signals, both calibrated on the Fuhr-Papies Monte Carlo
    (``paper/dml_panel/montecarlo.py``, table in ``paper/dml_panel/MONTECARLO.md``):

    - ``ratio``: the gap between the two orthogonal scores (a second-order bias estimate) or
      the spread across repetitions, in standard errors; above ``FLAG_RATIO`` the interval
      under-covers.
    - ``residual_share``: the share of each treatment's variance left after partialling out
      the features (``1 - R^2`` of ``ml_m``); below ``RESIDUAL_SHARE_MIN`` the estimate rests
      on a small residual and small errors of the nuisance fits become a bias of the order of
      the standard error (strong nonlinear confounding; flagged CRE fits covered the truth
      38-46% of the time there, unflagged spline fits 90%; 250 replications).

    When neither check could run (``bias_check=False`` and ``n_rep=1``) or the bias check is
    blind (both scores coincide exactly, as they do for linear smoothers: least squares,
    splines with ridge), the note says that coverage is unverified instead of "no sign of bias".

    Parameters
    ----------
    ratio
        The largest of ``|bias| / se`` and ``rep_sd / se`` over treatments.
    residual_share
        ``(k,)`` share of each treatment's variance left in its residual (NaN when unknown).
    d_names
        Treatment names.
    alpha
        Level of the nominal interval.
    bias_checked
        Whether the other orthogonal score was computed.
    blind
        Whether the two scores coincide to rounding (the bias check saw nothing).
    n_rep
        Repetitions of the sample splitting.
    n_units, n_rows
        Size of the sample, for the message.

    Returns
    -------
    flag : bool
        True when the nominal level should not be trusted (a ``DiagnosticWarning`` follows).
    note : str
        What was found and what to do.
    checked : bool
        Whether any check that can see bias or split noise ran.

    Examples
    --------
    >>> flag, note, checked = coverage_verdict(0.1, np.array([0.05]), ["d"])
    >>> flag, note.split(":")[0]
    (True, "only 5% of the variance of treatment 'd' is left after partialling out")
    >>> coverage_verdict(0.0, np.array([0.6]), ["d"], bias_checked=False)[1][:32]
    'nominal coverage is unverified: '
    """
    level = f"{100 * (1 - alpha):.0f}%"
    size = (f" ({n_units} units, {n_rows} rows)" if n_units is not None and n_rows is not None
            else "")
    reasons = []
    share = np.asarray(residual_share, dtype=float)
    for name, s in zip(d_names, share):
        if np.isfinite(s) and s < RESIDUAL_SHARE_MIN:
            reasons.append(
                f"only {max(s, 0.0):.0%} of the variance of treatment '{name}' is left after "
                f"partialling out: the estimate rests on a small residual (threshold "
                f"{RESIDUAL_SHARE_MIN:.0%}), so small errors of the nuisance fits turn into a "
                "bias of the order of the standard error (strong, nonlinear confounding)")
    if ratio > FLAG_RATIO:
        reasons.append(
            f"the gap between orthogonal scores or the spread across repetitions is "
            f"{ratio:.2f} standard errors (threshold {FLAG_RATIO})")
    if reasons:
        note = ("; ".join(reasons) + f". The nominal {level} interval{size} cannot be "
                "trusted and may badly under-cover: report diagnostics['bias_aware_ci'], "
                "compare approaches ('cre_cp', 'fd') and learners, and increase n_rep")
        return True, note, True
    if not bias_checked and n_rep == 1:
        return False, ("nominal coverage is unverified: no bias check (bias_check=False) "
                       "and one sample split (n_rep=1); set bias_check=True with a nonlinear "
                       "learner or n_rep > 1 to check it"), False
    if blind and n_rep == 1:
        return False, ("nominal coverage is unverified: the two orthogonal scores coincide "
                       "exactly, as they do for linear-smoother learners (least squares, "
                       "splines with ridge), so the bias check cannot see bias; check with a "
                       "nonlinear learner (e.g. boosting) or compare approaches"), False
    return False, (f"no sign of bias or repetition spread; the residual keeps at least "
                   f"{np.nanmin(share) if np.isfinite(share).any() else float('nan'):.0%} "
                   "of each treatment's variance"), True


def panel_diagnostics(fit: PanelDMLFit, se: np.ndarray, d_names: Sequence[str], *,
                      alpha: float = 0.05, tr: PanelTransform | None = None) -> dict[str, Any]:
    """Coverage diagnostics of a panel DML fit: per-repetition estimates, the bias check, the
    repetition spread, residual shares, :func:`coverage_verdict` and the bias-aware interval.

    Examples
    --------
    >>> fit = PanelDMLFit(theta=np.array([1.0]), se=np.array([0.1]),
    ...                   influence=np.zeros((10, 1)), thetas=np.array([[1.0]]),
    ...                   ses=np.array([[0.1]]), thetas_alt=np.array([[1.2]]),
    ...                   nuisance_r2={"propensity[0]": 0.5})
    >>> panel_diagnostics(fit, np.array([0.1]), ["d"])["coverage_flag"]
    True
    """
    from scipy import stats


    z = float(stats.norm.ppf(1 - alpha / 2))
    se = np.asarray(se, dtype=float)
    diag: dict[str, Any] = {"thetas": fit.thetas.tolist(), "ses": fit.ses.tolist()}
    ratios = []
    spread = np.zeros(len(d_names))
    if fit.thetas.shape[0] > 1:
        spread = fit.thetas.std(axis=0, ddof=1)
        diag["rep_sd_over_se"] = dict(zip(d_names, (spread / se).tolist()))
        ratios.append(spread / se)
    bias = np.zeros(len(d_names))
    if fit.thetas_alt is not None:
        bias = np.median(fit.thetas_alt - fit.thetas, axis=0)
        diag["bias_estimate"] = dict(zip(d_names, bias.tolist()))
        diag["bias_over_se"] = dict(zip(d_names, (np.abs(bias) / se).tolist()))
        ratios.append(np.abs(bias) / se)
    worst = float(np.max(ratios)) if ratios else 0.0
    diag["coverage_ratio"] = worst
    share = np.array([1 - float(fit.nuisance_r2.get(f"propensity[{j}]", np.nan))
                      for j in range(len(d_names))])
    diag["residual_share"] = dict(zip(d_names, share.tolist()))
    blind = fit.thetas_alt is not None and bool(
        np.all(np.abs(fit.thetas_alt - fit.thetas) <= BLIND_TOL * np.maximum(se, 1e-300)))
    diag["coverage_flag"], diag["coverage_note"], diag["coverage_checked"] = coverage_verdict(
        worst, share, d_names, alpha=alpha, bias_checked=fit.thetas_alt is not None,
        blind=blind, n_rep=int(fit.thetas.shape[0]),
        n_units=int(np.unique(tr.unit).size) if tr is not None else None,
        n_rows=int(tr.y.size) if tr is not None else None)
    half = z * np.sqrt(se**2 + spread**2) + np.abs(bias)
    diag["bias_aware_ci"] = pd.DataFrame({"term": d_names, "estimate": fit.theta,
                                          "conf_low": fit.theta - half,
                                          "conf_high": fit.theta + half})
    return diag


def joint_bands(fit: PanelDMLFit, se: np.ndarray, d_names: Sequence[str], req: VcovRequest, *,
                alpha: float = 0.05, n_boot: int = 999, seed: int = 0
                ) -> tuple[float, pd.DataFrame]:
    """The sup-t critical value of a clustered multiplier bootstrap and the joint table.

    The table (``Estimate.tables["joint"]``) has ``term``, ``estimate``, ``std_error``,
    ``ci_low``, ``ci_high`` (pointwise) and ``ucb_low``, ``ucb_high`` (joint over treatments).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> fit = PanelDMLFit(theta=np.array([1.0, 2.0]), se=np.array([0.1, 0.1]),
    ...                   influence=rng.normal(size=(200, 2)), thetas=np.ones((1, 2)),
    ...                   ses=np.ones((1, 2)))
    >>> crit, tab = joint_bands(fit, np.array([0.07, 0.07]), ["a", "b"],
    ...                         VcovRequest("hetero", (), ()), n_boot=499)
    >>> list(tab.columns)[:3], 1.9 < crit < 2.6
    (['term', 'estimate', 'std_error'], True)
    """
    from scipy import stats

    z = float(stats.norm.ppf(1 - alpha / 2))
    se = np.asarray(se, dtype=float)
    clusters = req.clusters[0] if req.kind == "cluster" else None
    draws = multiplier_bootstrap(fit.influence, n_boot=n_boot, seed=seed, clusters=clusters)
    crit = float(sup_t_critical(draws, se, alpha))
    table = pd.DataFrame({
        "term": list(d_names), "estimate": fit.theta, "std_error": se,
        "ci_low": fit.theta - z * se, "ci_high": fit.theta + z * se,
        "ucb_low": fit.theta - crit * se, "ucb_high": fit.theta + crit * se})
    return crit, table


def sensitivity_elements(fit: PanelDMLFit, tr: PanelTransform, d_names: Sequence[str],
                         score: str, req: VcovRequest) -> Any:
    """PLR sensitivity elements (one treatment, partialling out), or why there are none."""
    if score != "partialling out":
        return ("the sensitivity elements are computed for the partialling-out score; refit "
                "with score='partialling out'")
    if len(d_names) != 1:
        return (f"the bounds are derived for one treatment; this fit has {len(d_names)} "
                f"({', '.join(d_names)}): refit with one")
    if fit.residuals is None or fit.influences is None:
        return ("the fit kept no partialling-out residuals or influence functions; refit with "
                "score='partialling out'")
    u, v = fit.residuals
    return plr_elements(d_names[0], list(u), [vr[:, 0] for vr in v], fit.thetas[:, 0],
                        [i[:, 0] for i in fit.influences], float(np.var(tr.y)), req)


# ----------------------------------------------------------------------------- estimation
@dataclass(frozen=True)
class PanelDMLResult:
    """What :func:`estimate_panel_dml` hands to the face: the estimate and its variance, the
    diagnostics, the joint table, the transformed panel and the rows it dropped.
    """

    fit: PanelDMLFit
    variance: Any
    rule: VarianceRule
    request: VcovRequest
    diagnostics: Mapping[str, Any]
    tables: Mapping[str, pd.DataFrame]
    sensitivity: Any
    cluster_data: Mapping[str, np.ndarray]
    transform: PanelTransform
    dropped: tuple[np.ndarray, np.ndarray]


def estimate_panel_dml(
    y: np.ndarray,
    d: np.ndarray,
    x: np.ndarray,
    unit: np.ndarray,
    time: np.ndarray,
    *,
    approach: str,
    learners: Mapping[str, Any],
    folds: Any,
    vcov: Any,
    cluster_data: Mapping[str, np.ndarray],
    score: str = "partialling out",
    options: PanelOptions | None = None,
    x_names: Sequence[str] = (),
    d_names: Sequence[str] = (),
    seed: int = 0,
    progress: bool = True,
    stacklevel: int = 3,
) -> PanelDMLResult:
    """Panel double ML from arrays: transform, check, split, cross-fit, variance, diagnostics.

    Parameters
    ----------
    y, d, x
        Outcome ``(n,)``, treatments ``(n, k)`` and features ``(n, p)``.
    unit, time
        Integer unit and period codes (periods in time order).
    approach
        One of :data:`~geocausal.designs.panel_transforms.APPROACHES`.
    learners
        ``{"marginal", "propensity", "structural"}`` learners (canonical slots).
    folds
        See :func:`fold_plan`.
    vcov, cluster_data
        The ``vcov=`` spec and label arrays (one per input row) it may name.
    score, options, x_names, d_names, seed, progress
        As in ``gc.dml_panel`` (``options.n_boot`` and ``options.alpha`` set the joint
        intervals).
    stacklevel
        Of the warnings issued here (3: the caller of the face that calls this).

    Returns
    -------
    PanelDMLResult

    Examples
    --------
    >>> from sklearn.linear_model import LinearRegression
    >>> rng = np.random.default_rng(0)
    >>> u = np.repeat(np.arange(40), 4); t = np.tile(np.arange(4), 40)
    >>> x = rng.normal(size=(160, 1)); d = x[:, 0] + rng.normal(size=160)
    >>> y = 2 * d + x[:, 0] + rng.normal(size=160)
    >>> lin = {"marginal": LinearRegression(), "propensity": LinearRegression(),
    ...        "structural": LinearRegression()}
    >>> res = estimate_panel_dml(y, d, x, u, t, approach="pooled", learners=lin, folds=4,
    ...                          vcov={"cluster": "u"}, cluster_data={"u": u},
    ...                          options=PanelOptions(n_boot=0))
    >>> bool(abs(res.fit.theta[0] - 2) < 0.2), res.variance.label
    (True, 'cluster(u)')
    """
    opts = options or PanelOptions()
    n_boot, alpha = opts.n_boot, opts.alpha
    n_rows = int(np.asarray(y).size)
    d = np.asarray(d, dtype=float)
    d = d[:, None] if d.ndim == 1 else d
    d_names = list(d_names) or [f"d{j}" for j in range(d.shape[1])]
    tr = transform_panel(approach, y, d, x, unit, time, x_names=list(x_names) or None,
                         d_names=d_names, time_effects=opts.time_effects)
    if tr.features.shape[1] == 0:
        raise DesignError(f"approach '{approach}' leaves no features: every control is "
                          "time-invariant within units")
    gone = dropped_rows(tr, n_rows, approach, unit, time)
    warn_transform(tr.notes, approach, gone[0].size, stacklevel=stacklevel + 1)
    within = check_treatment_variation(tr, d_names, approach, stacklevel=stacklevel + 1)
    sub = {str(k): np.asarray(v)[tr.rows] for k, v in cluster_data.items()}
    req = parse_vcov(vcov, tr.y.size, sub)
    plan = fold_plan(folds, tr, approach=approach, n_rep=opts.n_rep, seed=seed,
                     crossfit=opts.crossfit, n_rows=n_rows)
    if approach == "dummies" and plan.ids[0] is not None and units_nested(plan.ids[0], tr.unit):
        warnings.warn("unit dummies with unit folds: a held-out unit's indicator is never seen "
                      "in training, so its effect is not learned and the unit heterogeneity is "
                      "not removed; use random folds (folds=Folds(k)) or time blocks "
                      "(folds=Folds.time(time))", DiagnosticWarning, stacklevel=stacklevel)
    fit = fit_panel_dml(tr, learners, list(plan.ids), score=score, vcov=req, gap=plan.gap,
                        bias_check=opts.bias_check, time_effects=opts.time_effects,
                        progress=progress)
    rule = VarianceRule() if len(plan.ids) == 1 else VarianceRule(
        method="median", rep_thetas=fit.thetas, rep_influence=fit.influences)
    var = variance_from_rule(rule, fit.influence, req, stacklevel=stacklevel + 2)
    se = np.sqrt(np.diag(var.matrix))
    diag = panel_diagnostics(fit, se, d_names, alpha=alpha, tr=tr)
    tables: dict[str, pd.DataFrame] = {}
    if n_boot:
        diag["sup_t_critical"], tables["joint"] = joint_bands(fit, se, d_names, req,
                                                             alpha=alpha, n_boot=n_boot,
                                                             seed=seed)
    rule = replace(rule, vcov_dependent=tuple(k for k in diag if k != "thetas"))
    if diag["coverage_flag"]:
        warnings.warn(diag["coverage_note"], DiagnosticWarning, stacklevel=stacklevel)
    diag.update({
        "approach": approach, "score": score, "fold_type": plan.kind,
        "folds": int(len(np.unique(plan.ids[0]))) if plan.ids[0] is not None else 1,
        "n_rep": len(plan.ids), "n_units": int(np.unique(tr.unit).size),
        "n_periods": int(np.unique(tr.time).size),
        "balanced": bool(n_rows == np.unique(unit).size * np.unique(time).size),
        "rows_dropped": int(gone[0].size), "notes": dict(tr.notes),
        "units_with_within_variation": within, "features": list(tr.feature_names),
        "nuisance_r2": dict(fit.nuisance_r2),
    })
    return PanelDMLResult(fit=fit, variance=var, rule=rule, request=req, diagnostics=diag,
                          tables=tables,
                          sensitivity=sensitivity_elements(fit, tr, d_names, score, req),
                          cluster_data=sub, transform=tr, dropped=gone)
