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
>>> rng = np.random.default_rng(0)
>>> unit = np.repeat(np.arange(40), 5); time = np.tile(np.arange(5), 40)
>>> x = rng.normal(size=(200, 1)); d = x[:, 0] + rng.normal(size=200)
>>> y = 2 * d + x[:, 0] + rng.normal(size=200)
>>> tr = transform_panel("pooled", y, d, x, unit, time)
>>> fit = fit_panel_dml(tr, {"ml_l": LinearRegression(), "ml_m": LinearRegression()},
...                     [make_fold_ids(tr, 4, "unit", seed=0)])
>>> bool(abs(fit.theta[0] - 2) < 0.2)
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from sklearn.base import clone, is_classifier

from geocausal._progress import progress as _progress
from geocausal.designs.panel_transforms import PanelTransform, demean, group_means
from geocausal.errors import DataError, DesignError
from geocausal.inference.variance import VcovRequest, vcov_from_influence
from geocausal.nuisance.crossfit import make_folds

SCORES = ("partialling out", "IV-type")
FOLD_TYPES = ("random", "unit", "time", "neighbours")
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


def make_fold_ids(tr: PanelTransform, folds: int, fold_type: str = "unit", seed: int = 0
                  ) -> np.ndarray:
    """Fold ids for the rows of a transformed panel.

    ``random`` splits rows; ``unit`` keeps each unit in one fold; ``time`` and ``neighbours``
    use contiguous blocks of periods (``neighbours`` also removes the periods next to the
    held-out block from training, see :func:`make_splits`).

    Examples
    --------
    >>> from geocausal.designs.panel_transforms import transform_panel
    >>> u = np.repeat(np.arange(6), 2); t = np.tile([0, 1], 6)
    >>> tr = transform_panel("pooled", np.zeros(12), np.zeros(12), np.zeros((12, 1)), u, t)
    >>> f = make_fold_ids(tr, 3, "unit")
    >>> bool(all(len(set(f[u == g])) == 1 for g in range(6)))
    True
    """
    m = tr.y.size
    if fold_type == "random":
        return make_folds(m, folds, seed)
    if fold_type == "unit":
        return make_folds(m, folds, seed, groups=tr.unit)
    if fold_type in ("time", "neighbours"):
        return make_folds(m, folds, seed, time=tr.time)
    raise DataError(f"fold_type '{fold_type}' is not one of {FOLD_TYPES}")


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


def fit_predict(learner, X: np.ndarray, target: np.ndarray,
                splits: Sequence[tuple[np.ndarray, np.ndarray]] | None) -> np.ndarray:
    """Out-of-fold predictions (or in-sample ones when ``splits`` is None).

    Classifiers predict the probability of class 1.
    """
    proba = is_classifier(learner)
    if proba and not np.all(np.isin(target, (0.0, 1.0))):
        raise DataError(f"a classifier ({type(learner).__name__}) was given for a non-binary "
                        "target; pass a regressor as ml_m")

    def _pred(model, rows):
        return model.predict_proba(X[rows])[:, 1] if proba else model.predict(X[rows])

    if splits is None:
        model = clone(learner).fit(X, target)
        return np.asarray(_pred(model, np.arange(X.shape[0])), dtype=float)
    out = np.full(X.shape[0], np.nan)
    for train, test in splits:
        model = clone(learner).fit(X[train], target[train])
        out[test] = _pred(model, test)
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
    """theta and influence for residuals ``v`` (m, k), target residual ``resid`` (m,)."""
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
    l_hat = fit_predict(learners["ml_l"], X, y, splits)
    m_hat = np.column_stack([fit_predict(learners["ml_m"], X, d[:, j], splits) for j in range(k)])
    if tr.recentre is not None:
        m_hat = m_hat + tr.recentre - group_means(m_hat, tr.unit)
    v = d - m_hat
    post = (lambda a: demean(a, tr.unit, tr.time if time_effects else None)) \
        if tr.demean_residuals else (lambda a: a)
    v = post(v)
    u = post(y - l_hat)
    theta_po, infl_po = _score(v, d, u, False, "partialling-out")
    r2 = {"ml_l": _r2(y, l_hat), **{f"ml_m[{j}]": _r2(d[:, j], m_hat[:, j]) for j in range(k)}}
    need_g = score == "IV-type" or bias_check
    theta_iv = infl_iv = None
    if need_g:
        g_hat = fit_predict(learners["ml_g"], X, y - d @ theta_po, splits)
        theta_iv, infl_iv = _score(v, d, post(y - g_hat), True, "IV-type")
        r2["ml_g"] = _r2(y - d @ theta_po, g_hat)
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
        ``{"ml_l": ..., "ml_m": ..., "ml_g": ...}``; ``ml_g`` is needed for the IV-type score
        and for the bias check.
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
    missing = [s for s in ("ml_l", "ml_m") if s not in learners]
    if (score == "IV-type" or bias_check) and "ml_g" not in learners:
        missing.append("ml_g")
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
