"""Cross-fitted selection and stacking (super learner) of nuisance candidates.

A *candidate* is a feature matrix for the nuisance models (tabular controls alone, tabular plus
band summaries, plus engineered image statistics, plus learned embeddings...). For each
candidate the propensity ``e(x)`` and the arm-specific outcome regressions ``mu0(x)``,
``mu1(x)`` are cross-fitted on the same folds, so every prediction is out-of-fold. The
candidates are then compared by their out-of-fold loss (log-loss for the propensity, squared
error on the observed arm for the outcomes) and combined:

- ``combine="stack"`` (default): a convex combination of the candidates' out-of-fold
  predictions (the super learner of van der Laan, Polley and Hubbard 2007). The weights used
  for the units of fold ``k`` are fitted on the out-of-fold predictions of the *other* folds
  only, so no unit's final nuisance depends on its own outcome or treatment.
- ``combine="select"``: the candidate with the lowest out-of-fold loss (per nuisance, a discrete
  super learner).
- ``combine="select_propensity"``: the propensity selected as by ``"select"``, the outcomes
  stacked as by ``"stack"``. A convex mix of candidate propensities is less extreme than the
  best one alone (averaging probabilities shrinks them towards the middle), and the influence
  function of AIPW sees the milder weights but not the variance they hide.

A candidate other than the baseline that raises or predicts non-finite numbers in any fold is
dropped with a :class:`~geocausal.errors.CandidateFailedWarning`; when every image candidate
loses to the tabular baseline for a nuisance a
:class:`~geocausal.errors.ImageFeaturesWorseWarning` says so. :func:`nuisance_quality` gives
the out-of-fold R², log-loss, Brier score, AUC and calibration of each candidate.

Examples
--------
>>> import numpy as np
>>> from sklearn.linear_model import LinearRegression, LogisticRegression
>>> rng = np.random.default_rng(0); n = 400
>>> x = rng.normal(size=(n, 2)); d = rng.binomial(1, 1 / (1 + np.exp(-x[:, 0])))
>>> y = d + x[:, 0] + x[:, 1] + rng.normal(size=n)
>>> folds = np.arange(n) % 5
>>> res = stack_nuisances({"tabular": x[:, 1:], "both": x}, y, d, folds,
...                       LogisticRegression(), LinearRegression())
>>> res.winner["e"], res.winner["mu0"], res.e.shape
('both', 'both', (400,))
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import (
    CandidateFailedWarning,
    DataError,
    ImageFeaturesWorseWarning,
)
from geocausal.nuisance.crossfit import crossfit_predict

__all__ = ["COMBINE", "DEFAULT_COMBINE", "OutcomeAdaptive", "OutcomeFits", "PooledArms",
           "StackResult", "convex_weights", "nuisance_quality", "outcome_fit_influence",
           "quality_lines", "stack_nuisances"]

#: ``combine`` -> the rule (``"stack"`` or ``"select"``) of the propensity and of the outcomes
_RULES: dict[str, tuple[str, str]] = {"stack": ("stack", "stack"),
                                      "select": ("select", "select"),
                                      "select_propensity": ("select", "stack")}
#: how :func:`stack_nuisances` combines the candidates; the first is the default
COMBINE = tuple(_RULES)
DEFAULT_COMBINE = COMBINE[0]
_EPS = 1e-6


@dataclass(frozen=True, eq=False)
class OutcomeFits:
    """The fold fits of one outcome learner on one candidate: the candidate's feature matrix
    ``X``, the treatment ``d``, ``pooled`` (None for a fit on one arm; else the treatment value
    at which a fit on both arms, :class:`PooledArms`, predicts) and ``folds``, per fold
    ``(train rows, held-out rows, fitted model)``.
    """

    X: np.ndarray
    d: np.ndarray
    pooled: float | None
    folds: tuple

    def design(self, rows: np.ndarray, held_out: bool) -> np.ndarray:
        """The matrix the fit saw at ``rows``: training (``held_out=False``) or prediction."""
        if self.pooled is None:
            return self.X[rows]
        t = np.full(len(rows), self.pooled) if held_out else self.d[rows].astype(float)
        return np.column_stack([t, self.X[rows]])


@dataclass(frozen=True, eq=False)
class StackResult:
    """Stacked out-of-fold nuisances and the record of how they were chosen.

    ``e``, ``mu0``, ``mu1``: the combined out-of-fold predictions (``mu0``/``mu1`` None when
    not requested). ``candidates``: per candidate, its out-of-fold ``e``/``mu0``/``mu1``.
    ``weights``: nuisance -> candidate -> weight fitted on all units (shown to the user; the
    estimates use the fold-wise weights). ``winner``: nuisance -> the candidate with the lowest
    out-of-fold loss. ``quality``: :func:`nuisance_quality` of every candidate and the stack.
    ``dropped``: candidate -> why it was dropped. With learner libraries (mappings of learners),
    the stacked columns are candidate x learner, labelled ``candidate/learner``: ``weights`` and
    ``winner`` name these labels, ``library`` holds their out-of-fold predictions (nuisance ->
    label -> array), and ``candidates`` holds, per candidate, the combination of its own
    learners (with the same fold-wise rule). ``fold_weights``: nuisance -> fold -> weights of the
    ``library`` columns (in their order) that predict that fold; ``outcome_fits``: nuisance ->
    label -> :class:`OutcomeFits` (for :func:`outcome_fit_influence`).
    """

    e: np.ndarray
    mu0: np.ndarray | None
    mu1: np.ndarray | None
    candidates: dict[str, dict[str, np.ndarray]]
    weights: dict[str, dict[str, float]]
    winner: dict[str, str]
    quality: pd.DataFrame
    combine: str
    dropped: dict[str, str] = field(default_factory=dict)
    library: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    fold_weights: dict[str, dict[Any, np.ndarray]] = field(default_factory=dict)
    outcome_fits: dict[str, dict[str, OutcomeFits]] = field(default_factory=dict)


def _loss_fn(kind: str, target: np.ndarray, P: np.ndarray):
    if kind == "logloss":
        def f(w):
            p = np.clip(P @ w, _EPS, 1 - _EPS)
            return -np.mean(target * np.log(p) + (1 - target) * np.log1p(-p))
    else:
        def f(w):
            return np.mean((target - P @ w) ** 2)
    return f


def convex_weights(P: np.ndarray, target: np.ndarray, kind: str) -> np.ndarray:
    """Convex weights (non-negative, summing to one) of the columns of ``P`` that minimise the
    log-loss (``kind="logloss"``, ``P`` holds probabilities) or the squared error (``"mse"``).

    Examples
    --------
    >>> P = np.column_stack([np.zeros(4), np.arange(4.0)])
    >>> convex_weights(P, np.arange(4.0), "mse").round(3).tolist()
    [0.0, 1.0]
    """
    from scipy.optimize import minimize

    P = np.asarray(P, float)
    if kind not in ("logloss", "mse"):
        raise DataError(f"kind={kind!r} must be 'logloss' or 'mse'")
    k = P.shape[1]
    if k == 1:
        return np.ones(1)
    t = np.asarray(target, float)
    f = _loss_fn(kind, t, P)
    m = len(t)

    def grad(w):
        if kind == "mse":
            return -2.0 / m * P.T @ (t - P @ w)
        p = np.clip(P @ w, _EPS, 1 - _EPS)
        return P.T @ (-(t / p - (1 - t) / (1 - p)) / m)

    best = min(range(k), key=lambda j: f(np.eye(k)[j]))
    start = 0.5 * np.eye(k)[best] + 0.5 / k
    # convex weights: minimise on the simplex (sequential quadratic programming)
    res = minimize(f, start, jac=grad, method="SLSQP", bounds=[(0.0, 1.0)] * k,
                   constraints=({"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                 "jac": lambda w: np.ones(k)},),
                   options={"maxiter": 500, "ftol": 1e-12})
    w = np.clip(np.asarray(res.x, float), 0.0, None)
    w = w / w.sum() if w.sum() > 0 else np.eye(k)[best]
    if not np.isfinite(f(w)) or f(w) > f(np.eye(k)[best]):  # never worse than the best one
        w = np.eye(k)[best]
    w[w < 1e-4] = 0.0
    return w / w.sum()


def _library(learner: Any) -> list[tuple[str | None, Any]]:
    """``[(name, learner), ...]`` of a learner library (a mapping), or ``[(None, learner)]``."""
    if isinstance(learner, Mapping):
        if not learner:
            raise DataError("a learner library (a mapping name -> learner) must not be empty")
        bad = [k for k in learner if not isinstance(k, str) or not k or "/" in k]
        if bad:
            raise DataError(f"learner library names {bad} must be non-empty strings without '/'")
        return list(learner.items())
    return [(None, learner)]


class PooledArms:
    """An outcome learner fitted once on both arms, with the treatment as its first feature,
    and predicted with the treatment set to 0 and to 1 (an "S-learner"): it borrows strength
    across the arms where the arm-specific fits (the default for every other learner) see only
    half of the units. Use it as an entry of an outcome library of :func:`stack_nuisances`.

    Parameters
    ----------
    estimator
        A scikit-learn compatible regressor (cloned per fold).

    Examples
    --------
    >>> from sklearn.linear_model import LinearRegression
    >>> PooledArms(LinearRegression())
    PooledArms(LinearRegression())
    """

    def __init__(self, estimator: Any) -> None:
        if not hasattr(estimator, "fit") or not hasattr(estimator, "predict"):
            raise DataError(f"PooledArms needs a regressor with fit/predict, got "
                            f"{type(estimator).__name__}")
        self.estimator = estimator

    def __repr__(self) -> str:
        return f"PooledArms({self.estimator!r})"


def _training_folds(fold_ids: np.ndarray, d: np.ndarray):
    """``(fold, test mask, train mask)`` per fold; a training part with one arm is an error."""
    for f in np.unique(fold_ids):
        test = fold_ids == f
        if len(np.unique(d[~test])) < 2:
            raise DataError(f"cross-fitting fold {f!r}: the other folds hold one arm only")
        yield f, test, ~test


def _crossfit_pooled(est: Any, X: np.ndarray, y: np.ndarray, d: np.ndarray,
                     fold_ids: np.ndarray, selections: dict | None = None,
                     fits: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold ``(mu0, mu1)`` of one fit on both arms per fold; a fit that sets
    ``selected_`` leaves it in ``selections[(fold, repr(est))]``; ``fits`` receives
    ``(train rows, held-out rows, fit)`` per fold.
    """
    from sklearn.base import clone

    n = len(y)
    m0, m1 = np.empty(n), np.empty(n)
    dd = d.astype(float)
    for f, test, train in _training_folds(fold_ids, d):
        fit = clone(est).fit(np.column_stack([dd[train], X[train]]), y[train])
        if fits is not None:
            fits.append((np.flatnonzero(train), np.flatnonzero(test), fit))
        if selections is not None and hasattr(fit, "selected_"):
            selections[(f, repr(est))] = fit.selected_
        m0[test] = fit.predict(np.column_stack([np.zeros(test.sum()), X[test]]))
        m1[test] = fit.predict(np.column_stack([np.ones(test.sum()), X[test]]))
    return m0, m1


class OutcomeAdaptive:
    """A propensity learner fitted only on the columns that predict the outcome.

    In each fold a selector (by default :class:`~geocausal.nuisance.sparse.PostLassoRegressor`,
    the lasso at its BIC point) is fitted to the outcome on the treatment and the features of
    both arms; the propensity learner is then fitted on the features it keeps (the
    outcome-adaptive selection of Shortreed and Ertefaie 2017). A column that moves the
    treatment but not the outcome adds variance to a weighting estimator and no bias
    reduction, and a column that moves the outcome is a confounder only if it moves the
    treatment too, which the propensity learner then finds among far fewer columns (so its
    penalty shrinks the confounders less). When the selector keeps no feature, the propensity
    is the treated share of the training fold. Use it as an entry of a propensity library of
    :func:`stack_nuisances`.

    Parameters
    ----------
    estimator
        A scikit-learn compatible classifier with ``predict_proba`` (cloned per fold).
    selector
        A regressor that sets ``selected_`` (column indices) when fitted; ``None``:
        ``PostLassoRegressor()``.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> OutcomeAdaptive(LogisticRegression())
    OutcomeAdaptive(LogisticRegression())
    """

    def __init__(self, estimator: Any, selector: Any = None) -> None:
        if not hasattr(estimator, "fit") or not hasattr(estimator, "predict_proba"):
            raise DataError(f"OutcomeAdaptive needs a classifier with fit/predict_proba, got "
                            f"{type(estimator).__name__}")
        if selector is not None and not hasattr(selector, "fit"):
            raise DataError(f"OutcomeAdaptive's selector needs fit, got "
                            f"{type(selector).__name__}")
        self.estimator = estimator
        self.selector = selector

    def __repr__(self) -> str:
        return f"OutcomeAdaptive({self.estimator!r})"

    def selector_(self) -> Any:
        """A fresh copy of the selector (``PostLassoRegressor()`` when none was given)."""
        from sklearn.base import clone

        from geocausal.nuisance.sparse import PostLassoRegressor

        return PostLassoRegressor() if self.selector is None else clone(self.selector)

    def selected(self, X: np.ndarray, y: np.ndarray, d: np.ndarray,
                 fitted: np.ndarray | None = None) -> np.ndarray:
        """Feature columns (of ``X``) that the selector keeps for ``y`` on ``[d, X]``
        (``fitted``: the ``selected_`` of that very fit, when it was made already).
        """
        if fitted is None:
            fit = self.selector_().fit(np.column_stack([np.asarray(d, float), X]), y)
            if not hasattr(fit, "selected_"):
                raise DataError(f"OutcomeAdaptive's selector {type(fit).__name__} sets no "
                                "selected_ when fitted")
            fitted = fit.selected_
        keep = np.asarray(fitted, int)
        return np.sort(keep[keep > 0] - 1)


def _crossfit_adaptive(lrn: OutcomeAdaptive, X: np.ndarray, y: np.ndarray, d: np.ndarray,
                       fold_ids: np.ndarray, pooled: Mapping[tuple, np.ndarray] | None = None
                       ) -> np.ndarray:
    """Out-of-fold propensities of ``lrn``; ``pooled``: ``selected_`` of the pooled outcome
    fits of this candidate by (fold, repr of the estimator), reused when the selector is
    one of them (the same fit on the same rows).
    """
    from sklearn.base import clone

    out = np.empty(len(d))
    key = repr(lrn.selector_())
    for f, test, train in _training_folds(fold_ids, d):
        cols = lrn.selected(X[train], y[train], d[train], (pooled or {}).get((f, key)))
        if cols.size == 0:
            out[test] = d[train].mean()
            continue
        fit = clone(lrn.estimator).fit(X[train][:, cols], d[train].astype(int))
        out[test] = fit.predict_proba(X[test][:, cols])[:, 1]
    return out


def _label(candidate: str, learner: str | None) -> str:
    return candidate if learner is None else f"{candidate}/{learner}"


def _crossfit_candidate(name, X, y, d, fold_ids, propensity_lib, outcome_lib, need_mu1,
                        kept: dict | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Nuisance -> column label (candidate or candidate/learner) -> out-of-fold prediction;
    ``kept`` receives nuisance -> label -> :class:`OutcomeFits` of the outcome learners.
    """
    out: dict[str, dict[str, np.ndarray]] = {"e": {}}
    selections: dict[tuple, np.ndarray] = {}  # pooled outcome selections, for OutcomeAdaptive
    if outcome_lib is not None:
        arms = [("mu0", d == 0)] + ([("mu1", d == 1)] if need_mu1 else [])
        for k, _ in arms:
            out[k] = {}
        for lname, lrn in outcome_lib:
            lab = _label(name, lname)
            if isinstance(lrn, PooledArms):
                folds: list = []
                both = _crossfit_pooled(lrn.estimator, X, y, d, fold_ids, selections, folds)
                for k, _ in arms:
                    out[k][lab] = both[k == "mu1"]
                    if kept is not None:
                        kept.setdefault(k, {})[lab] = OutcomeFits(X, d, float(k == "mu1"),
                                                                  tuple(folds))
            else:
                for k, arm in arms:
                    folds = []
                    out[k][lab] = crossfit_predict(lrn, X, y, fold_ids, train_mask=arm,
                                                   fits=folds)
                    if kept is not None:
                        kept.setdefault(k, {})[lab] = OutcomeFits(X, d, None, tuple(folds))
    for lname, lrn in propensity_lib:
        out["e"][_label(name, lname)] = (
            _crossfit_adaptive(lrn, X, y, d, fold_ids, selections)
            if isinstance(lrn, OutcomeAdaptive)
            else crossfit_predict(lrn, X, d.astype(int), fold_ids, method="predict_proba"))
    bad = [lab for v in out.values() for lab, p in v.items() if not np.all(np.isfinite(p))]
    if bad:
        raise DataError(f"non-finite out-of-fold predictions of {bad}")
    return out


def _combine(P: np.ndarray, rows: np.ndarray, target: np.ndarray, kind: str,
             fold_ids: np.ndarray, combine: str, by_fold: dict | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Fold-wise combination of the columns of ``P`` (weights of fold j fitted on the other
    folds' scored rows) and the weights fitted on all scored rows; ``by_fold`` receives the
    weights of each fold.
    """
    n, k = P.shape
    out = np.empty(n)
    for f in np.unique(fold_ids):
        other = rows & (fold_ids != f)
        if combine == "select":
            best = min(range(k), key=lambda j: _loss(kind, target[other], P[other, j]))
            w = np.eye(k)[best]
        else:
            w = convex_weights(P[other], target[other], kind)
        out[fold_ids == f] = P[fold_ids == f] @ w
        if by_fold is not None:
            by_fold[f] = w
    if combine == "select":
        w_all = np.eye(k)[min(range(k), key=lambda j: _loss(kind, target[rows], P[rows, j]))]
    else:
        w_all = convex_weights(P[rows], target[rows], kind)
    return out, w_all


def _targets(y, d) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """Nuisance -> (rows where it is scored, target, loss kind)."""
    n = len(d)
    return {"e": (np.ones(n, bool), d.astype(float), "logloss"),
            "mu0": (d == 0, y, "mse"), "mu1": (d == 1, y, "mse")}


def _loss(kind: str, target: np.ndarray, p: np.ndarray) -> float:
    return float(_loss_fn(kind, target, p[:, None])(np.ones(1)))


def stack_nuisances(candidates: Mapping[str, np.ndarray], y: np.ndarray, d: np.ndarray,
                    fold_ids: np.ndarray, propensity_learner: Any, outcome_learner: Any = None,
                    *, need_mu1: bool = True, combine: str = DEFAULT_COMBINE,
                    baseline: str | None = None, image_candidates: tuple[str, ...] | None = None,
                    stacklevel: int = 2) -> StackResult:
    """Cross-fit every candidate's nuisances on the same folds and combine them.

    Parameters
    ----------
    candidates
        Name -> ``(n, p)`` feature matrix, in order (a callable returning the matrix is also
        accepted: it is called once, and a failure drops the candidate like a failed fit).
    y, d
        Outcome and binary treatment.
    fold_ids
        Integer fold of each unit (the same folds for every candidate).
    propensity_learner, outcome_learner
        scikit-learn compatible classifier and regressor, cloned per candidate and fold, or
        libraries of them (mappings name -> learner: every candidate x learner pair is
        cross-fitted and stacked, labelled ``candidate/name``); ``outcome_learner=None`` fits
        the propensity only.
    need_mu1
        Fit the treated-arm outcome regression.
    combine
        ``"stack"`` (convex super learner, weights fitted fold-wise), ``"select"`` or
        ``"select_propensity"`` (the propensity selected, the outcomes stacked).
    baseline
        The candidate whose failure is an error (default: the first); the others are dropped
        with a :class:`~geocausal.errors.CandidateFailedWarning` when they fail.
    image_candidates
        Candidates that use images (default: all but the baseline); when every one of them has
        a higher out-of-fold loss than the baseline for a nuisance, an
        :class:`~geocausal.errors.ImageFeaturesWorseWarning` is emitted.
    stacklevel
        Of the warnings.

    Returns
    -------
    StackResult
    """
    if combine not in COMBINE:
        raise DataError(f"combine={combine!r} is not one of {COMBINE}")
    if not candidates:
        raise DataError("stack_nuisances needs at least one candidate")
    y = np.asarray(y, float)
    d = np.asarray(d)
    fold_ids = np.asarray(fold_ids)
    n = len(d)
    if y.shape != (n,) or fold_ids.shape != (n,):
        raise DataError(f"y {y.shape}, d {d.shape} and fold_ids {fold_ids.shape} must all be "
                        f"({n},)")
    names = list(candidates)
    baseline = names[0] if baseline is None else baseline
    if baseline not in candidates:
        raise DataError(f"baseline={baseline!r} is not a candidate ({names})")
    image_candidates = tuple(c for c in names if c != baseline) if image_candidates is None \
        else tuple(image_candidates)
    prop_lib = _library(propensity_learner)
    out_lib = None if outcome_learner is None else _library(outcome_learner)
    fits: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    outcome_fits: dict[str, dict[str, OutcomeFits]] = {}
    dropped: dict[str, str] = {}
    for name in names:
        try:
            X = candidates[name]
            X = np.asarray(X() if callable(X) else X, float)
            if X.ndim != 2 or X.shape[0] != n:
                raise DataError(f"candidate {name!r} has shape {X.shape}, expected ({n}, p)")
            if not np.all(np.isfinite(X)):
                raise DataError(f"candidate {name!r} has {int((~np.isfinite(X)).sum())} "
                                "non-finite features")
            kept_fits: dict[str, dict[str, OutcomeFits]] = {}
            fits[name] = _crossfit_candidate(name, X, y, d, fold_ids, prop_lib, out_lib,
                                             need_mu1, kept_fits)
            for k, v in kept_fits.items():
                outcome_fits.setdefault(k, {}).update(v)
        except Exception as exc:  # a failing image candidate never stops the estimate
            if name == baseline:
                raise
            dropped[name] = f"{type(exc).__name__}: {exc}"
        if name in dropped:
            warnings.warn(f"nuisance candidate {name!r} failed and was dropped from the stack "
                          f"({dropped[name]}); {len(names) - len(dropped)} of {len(names)} "
                          "candidates remain", CandidateFailedWarning, stacklevel=stacklevel)
    kept = [c for c in names if c in fits]
    targets = _targets(y, d)
    nuis = [k for k in ("e", "mu0", "mu1") if k in fits[baseline]]
    combined: dict[str, np.ndarray] = {}
    weights: dict[str, dict[str, float]] = {}
    winner: dict[str, str] = {}
    per_cand: dict[str, dict[str, np.ndarray]] = {c: {} for c in kept}
    library: dict[str, dict[str, np.ndarray]] = {}
    cand_weights: dict[str, dict[str, float]] = {}
    fold_weights: dict[str, dict[Any, np.ndarray]] = {}
    for k in nuis:
        rows, target, kind = targets[k]
        rule = _RULES[combine][k != "e"]
        library[k] = {lab: p for c in kept for lab, p in fits[c][k].items()}
        labels = list(library[k])
        P = np.column_stack([library[k][lab] for lab in labels])
        losses = {lab: _loss(kind, target[rows], library[k][lab][rows]) for lab in labels}
        winner[k] = min(labels, key=lambda lab: losses[lab])
        fold_weights[k] = {}
        out, w_all = _combine(P, rows, target, kind, fold_ids, rule, fold_weights[k])
        combined[k] = out
        weights[k] = {lab: float(w) for lab, w in zip(labels, w_all, strict=True)}
        for c in kept:  # each candidate on its own: the combination of its learners
            own = list(fits[c][k])
            per_cand[c][k] = (fits[c][k][own[0]] if len(own) == 1 else _combine(
                np.column_stack([fits[c][k][lab] for lab in own]), rows, target, kind,
                fold_ids, rule)[0])
        cand_weights[k] = {c: float(sum(weights[k][lab] for lab in fits[c][k])) for c in kept}
        c_loss = {c: _loss(kind, target[rows], per_cand[c][k][rows]) for c in kept}
        img = [c for c in image_candidates if c in kept]
        if img and all(c_loss[c] > c_loss[baseline] for c in img):
            label = {"e": "propensity", "mu0": "outcome (controls)",
                     "mu1": "outcome (treated)"}[k]
            best_img = min(img, key=lambda c: c_loss[c])
            warnings.warn(f"image features made the out-of-fold {label} loss worse than the "
                          f"tabular controls alone ({baseline!r} {c_loss[baseline]:.4f} vs best "
                          f"image candidate {best_img!r} {c_loss[best_img]:.4f}, over "
                          f"{int(rows.sum())} units); the stack weights the tabular candidate "
                          "accordingly: check the images or pass representation='summary'",
                          ImageFeaturesWorseWarning, stacklevel=stacklevel)
    multi = len(prop_lib) > 1 or (out_lib is not None and len(out_lib) > 1)
    rows_q: dict[str, dict[str, np.ndarray]] = dict(per_cand)
    w_q = {k: dict(cand_weights[k]) for k in nuis}
    if multi:  # every candidate x learner column too, when a library has several learners
        for k in nuis:
            if len(fits[baseline][k]) > 1:
                for lab, p in library[k].items():
                    rows_q.setdefault(lab, {})[k] = p
                    w_q[k][lab] = weights[k][lab]
    quality = nuisance_quality({**rows_q, combine: combined}, y, d, weights=w_q)
    return StackResult(e=combined["e"], mu0=combined.get("mu0"), mu1=combined.get("mu1"),
                       candidates=per_cand, weights=weights, winner=winner,
                       quality=quality, combine=combine, dropped=dropped, library=library,
                       fold_weights=fold_weights, outcome_fits=outcome_fits)


def _auc(d: np.ndarray, e: np.ndarray) -> float:
    from scipy.stats import rankdata

    pos = d == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(e)
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _calibration_slope(d: np.ndarray, e: np.ndarray) -> float:
    """Slope of the logistic recalibration ``logit P(d=1) = a + b logit(e)`` (1 = calibrated),
    by Newton-Raphson; NaN when it has no finite maximum (separation) or ``e`` is constant.
    """
    lo = np.log(np.clip(e, _EPS, 1 - _EPS) / np.clip(1 - e, _EPS, 1))
    if np.ptp(lo) < 1e-12:
        return float("nan")
    Z = np.column_stack([np.ones_like(lo), lo])
    t = d.astype(float)
    beta = np.zeros(2)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(Z @ beta)))
        H = (Z * (p * (1 - p))[:, None]).T @ Z
        try:
            step = np.linalg.solve(H + 1e-12 * np.eye(2), Z.T @ (t - p))
        except np.linalg.LinAlgError:
            return float("nan")
        beta = beta + step
        if not np.all(np.isfinite(beta)) or abs(beta[1]) > 1e6:
            return float("nan")
        if np.max(np.abs(step)) < 1e-10:
            return float(beta[1])
    return float("nan")


def nuisance_quality(preds: Mapping[str, Mapping[str, np.ndarray]], y: np.ndarray,
                     d: np.ndarray, *, weights: Mapping[str, Mapping[str, float]] | None = None
                     ) -> pd.DataFrame:
    """Out-of-fold quality of each candidate's nuisances: one row per nuisance and candidate.

    Columns: ``nuisance`` (``propensity``, ``outcome0``, ``outcome1``), ``candidate``,
    ``n_scored`` (units the loss is computed on: all for the propensity, the arm for an
    outcome), ``loss`` (log-loss or mean squared error), ``r2`` (outcome: 1 - MSE / variance
    of the arm's outcome), ``brier``, ``auc``, ``calibration_slope`` (logistic recalibration
    slope, 1 when calibrated), ``calibration_in_large`` (mean treatment minus mean propensity)
    for the propensity, and ``weight`` in the stack when ``weights`` are given.

    Examples
    --------
    >>> d = np.array([0, 1, 0, 1]); y = np.array([0.0, 1.0, 0.5, 2.0])
    >>> q = nuisance_quality({"a": {"e": np.array([0.2, 0.8, 0.4, 0.6])}}, y, d)
    >>> float(q.loc[0, "auc"])
    1.0
    """
    y = np.asarray(y, float)
    d = np.asarray(d).astype(int)
    label = {"e": "propensity", "mu0": "outcome0", "mu1": "outcome1"}
    targets = _targets(y, d)
    rows = []
    for cand, p in preds.items():
        for k in ("e", "mu0", "mu1"):
            if k not in p or p[k] is None:
                continue
            sel, target, kind = targets[k]
            pk = np.asarray(p[k], float)
            row: dict[str, Any] = {"nuisance": label[k], "candidate": cand,
                                   "n_scored": int(sel.sum()),
                                   "loss": _loss(kind, target[sel], pk[sel])}
            if k == "e":
                row.update(brier=float(np.mean((d - pk) ** 2)), auc=_auc(d, pk),
                           calibration_slope=_calibration_slope(d, pk),
                           calibration_in_large=float(d.mean() - pk.mean()), r2=np.nan)
            else:
                var = float(np.var(target[sel])) if sel.sum() > 1 else float("nan")
                row.update(r2=1.0 - row["loss"] / var if var and var > 0 else float("nan"),
                           brier=np.nan, auc=np.nan, calibration_slope=np.nan,
                           calibration_in_large=np.nan)
            if weights is not None:
                row["weight"] = weights.get(k, {}).get(cand, np.nan)
            rows.append(row)
    cols = ["nuisance", "candidate", "n_scored", "loss", "r2", "brier", "auc",
            "calibration_slope", "calibration_in_large"] + (["weight"] if weights else [])
    return pd.DataFrame(rows)[cols]


def quality_lines(quality: pd.DataFrame, combined: str) -> dict[str, Any]:
    """Scalar out-of-fold quality of the nuisances used (the lines ``summary()`` shows).

    Parameters
    ----------
    quality
        :func:`nuisance_quality` of the candidates.
    combined
        The candidate whose nuisances were used (the combine rule, or ``"model"``).

    Examples
    --------
    >>> d = np.array([0, 1, 0, 1]); y = np.array([0.0, 1.0, 0.5, 2.0])
    >>> q = nuisance_quality({"model": {"e": np.array([0.2, 0.8, 0.4, 0.6])}}, y, d)
    >>> quality_lines(q, "model")["propensity_oof_auc"]
    1.0
    """
    out: dict[str, Any] = {}
    row = quality[(quality.candidate == combined) & (quality.nuisance == "propensity")]
    if len(row):
        r = row.iloc[0]
        out.update(propensity_oof_logloss=float(r.loss), propensity_oof_auc=float(r.auc),
                   propensity_calibration_slope=float(r.calibration_slope))
    for k in ("outcome0", "outcome1"):
        row = quality[(quality.candidate == combined) & (quality.nuisance == k)]
        if len(row):
            out[f"{k}_oof_r2"] = float(row.iloc[0].r2)
    return out


def outcome_fit_influence(stack: StackResult, fold_ids: np.ndarray,
                          gradient: Mapping[str, np.ndarray], residual: np.ndarray
                          ) -> tuple[np.ndarray, float]:
    """The outcome fits' first-order term in the influence function of an estimator that is
    linear in the stacked outcome predictions (AIPW).

    An AIPW estimate moves with the out-of-fold outcome predictions by
    ``sum(gradient[k] * (mu_hat_k - mu_k))``. With a propensity that is not the true one (a
    penalised fit shrinks it), the gradient (``(1 - d / e) / n`` for the treated arm of the ATE)
    does not average to zero, and the outcome fits' own sampling error then moves the estimate
    at the same order as the units' scores: an influence function that holds the fits fixed
    misses it. For each fold, each stacked learner that is a linear smoother
    (:func:`geocausal.nuisance.smoothers.smoother_adjoint`: ridge, least squares, post-lasso)
    passes the gradient of its held-out units back to the units it was trained on, times the
    fold's stack weight; a training unit's term is that sum times its residual. Tuning, lasso
    selections and stack weights are held fixed; learners that are not linear smoothers
    (gradient boosting) are held fixed, and their share of the stack weight is returned.

    Parameters
    ----------
    stack
        :func:`stack_nuisances` result.
    fold_ids
        The folds it was cross-fitted on.
    gradient
        Nuisance (``"mu0"``, ``"mu1"``) -> ``(n,)`` derivative of the estimate with respect to
        each unit's out-of-fold prediction.
    residual
        ``(n,)`` outcome minus its prediction in the unit's own arm.

    Returns
    -------
    tuple
        ``(term, fixed_share)``: ``(n,)`` term to add to the estimate's influence function
        (in units of the estimate: its sum of squares is the added variance) and the share of
        the weighted held-out predictions made by fits held fixed.

    Examples
    --------
    >>> from sklearn.linear_model import LinearRegression, LogisticRegression
    >>> rng = np.random.default_rng(0); n = 200
    >>> x = rng.normal(size=(n, 2)); d = (rng.uniform(size=n) < 0.5).astype(int)
    >>> y = x[:, 0] + d + rng.normal(size=n); folds = np.arange(n) % 2
    >>> res = stack_nuisances({"x": x}, y, d, folds, LogisticRegression(), LinearRegression())
    >>> g = {"mu1": (1 - d / res.e) / n, "mu0": -(1 - (1 - d) / (1 - res.e)) / n}
    >>> term, fixed = outcome_fit_influence(res, folds, g, y - np.where(d, res.mu1, res.mu0))
    >>> term.shape, fixed
    ((200,), 0.0)
    """
    from geocausal.nuisance.smoothers import smoother_adjoint

    fold_ids = np.asarray(fold_ids)
    residual = np.asarray(residual, float)
    H = np.zeros(len(residual))
    fixed = total = 0.0
    for k, gk in gradient.items():
        gk = np.asarray(gk, float)
        for j, lab in enumerate(stack.library.get(k, {})):
            of = stack.outcome_fits.get(k, {}).get(lab)
            if of is None:
                continue
            for tr, te, model in of.folds:
                w = float(stack.fold_weights[k][fold_ids[te[0]]][j])
                if w <= 0:
                    continue
                mass = w * float(np.abs(gk[te]).sum())
                total += mass
                h = smoother_adjoint(model, of.design(tr, False), of.design(te, True), gk[te])
                if h is None:
                    fixed += mass
                else:
                    H[tr] += w * h
    return H * residual, (fixed / total if total > 0 else 0.0)
