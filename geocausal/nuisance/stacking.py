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

__all__ = ["COMBINE", "StackResult", "convex_weights", "nuisance_quality", "quality_lines",
           "stack_nuisances"]

#: how :func:`stack_nuisances` combines the candidates
COMBINE = ("stack", "select")
_EPS = 1e-6


@dataclass(frozen=True, eq=False)
class StackResult:
    """Stacked out-of-fold nuisances and the record of how they were chosen.

    ``e``, ``mu0``, ``mu1``: the combined out-of-fold predictions (``mu0``/``mu1`` None when
    not requested). ``candidates``: per candidate, its out-of-fold ``e``/``mu0``/``mu1``.
    ``weights``: nuisance -> candidate -> weight fitted on all units (shown to the user; the
    estimates use the fold-wise weights). ``winner``: nuisance -> the candidate with the lowest
    out-of-fold loss. ``quality``: :func:`nuisance_quality` of every candidate and the stack.
    ``dropped``: candidate -> why it was dropped.
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


def _softmax(a: np.ndarray) -> np.ndarray:
    z = np.exp(a - a.max())
    return z / z.sum()


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
    f = _loss_fn(kind, np.asarray(target, float), P)
    best = min(range(k), key=lambda j: f(np.eye(k)[j]))
    start = np.full(k, -2.0)
    start[best] = 2.0
    res = minimize(lambda a: f(_softmax(a)), start, method="Nelder-Mead",
                   options={"xatol": 1e-6, "fatol": 1e-10, "maxiter": 400 * k})
    w = _softmax(res.x)
    if f(w) > f(np.eye(k)[best]):  # the optimiser never does worse than the best candidate
        w = np.eye(k)[best]
    w[w < 1e-4] = 0.0
    return w / w.sum()


def _crossfit_candidate(X, y, d, fold_ids, propensity_learner, outcome_learner, need_mu1
                        ) -> dict[str, np.ndarray]:
    out = {"e": crossfit_predict(propensity_learner, X, d.astype(int), fold_ids,
                                 method="predict_proba")}
    if outcome_learner is not None:
        out["mu0"] = crossfit_predict(outcome_learner, X, y, fold_ids, train_mask=d == 0)
        if need_mu1:
            out["mu1"] = crossfit_predict(outcome_learner, X, y, fold_ids, train_mask=d == 1)
    bad = [k for k, v in out.items() if not np.all(np.isfinite(v))]
    if bad:
        raise DataError(f"non-finite out-of-fold predictions of {bad}")
    return out


def _targets(y, d) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """nuisance -> (rows where it is scored, target, loss kind)."""
    n = len(d)
    return {"e": (np.ones(n, bool), d.astype(float), "logloss"),
            "mu0": (d == 0, y, "mse"), "mu1": (d == 1, y, "mse")}


def _loss(kind: str, target: np.ndarray, p: np.ndarray) -> float:
    return float(_loss_fn(kind, target, p[:, None])(np.ones(1)))


def stack_nuisances(candidates: Mapping[str, np.ndarray], y: np.ndarray, d: np.ndarray,
                    fold_ids: np.ndarray, propensity_learner: Any, outcome_learner: Any = None,
                    *, need_mu1: bool = True, combine: str = "stack",
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
        scikit-learn compatible classifier and regressor, cloned per candidate and fold;
        ``outcome_learner=None`` fits the propensity only.
    need_mu1
        Fit the treated-arm outcome regression.
    combine
        ``"stack"`` (convex super learner, weights fitted fold-wise) or ``"select"``.
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
    fits: dict[str, dict[str, np.ndarray]] = {}
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
            fits[name] = _crossfit_candidate(X, y, d, fold_ids, propensity_learner,
                                             outcome_learner, need_mu1)
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
    for k in nuis:
        rows, target, kind = targets[k]
        P = np.column_stack([fits[c][k] for c in kept])
        losses = {c: _loss(kind, target[rows], fits[c][k][rows]) for c in kept}
        winner[k] = min(kept, key=lambda c: losses[c])
        if combine == "select":
            # the choice itself is cross-fitted: fold j uses the winner on the other folds
            out = np.empty(n)
            for f in np.unique(fold_ids):
                other = rows & (fold_ids != f)
                best = min(kept, key=lambda c: _loss(kind, target[other], fits[c][k][other]))
                out[fold_ids == f] = fits[best][k][fold_ids == f]
            w_all = np.array([1.0 if c == winner[k] else 0.0 for c in kept])
        else:
            out = np.empty(n)
            for f in np.unique(fold_ids):
                other = rows & (fold_ids != f)
                w = convex_weights(P[other], target[other], kind)
                out[fold_ids == f] = P[fold_ids == f] @ w
            w_all = convex_weights(P[rows], target[rows], kind)
        combined[k] = out
        weights[k] = {c: float(w) for c, w in zip(kept, w_all, strict=True)}
        img = [c for c in image_candidates if c in kept]
        if img and all(losses[c] > losses[baseline] for c in img):
            label = {"e": "propensity", "mu0": "outcome (controls)",
                     "mu1": "outcome (treated)"}[k]
            best_img = min(img, key=lambda c: losses[c])
            warnings.warn(f"image features made the out-of-fold {label} loss worse than the "
                          f"tabular controls alone ({baseline!r} {losses[baseline]:.4f} vs best "
                          f"image candidate {best_img!r} {losses[best_img]:.4f}, over "
                          f"{int(rows.sum())} units); the stack weights the tabular candidate "
                          "accordingly: check the images or pass representation='summary'",
                          ImageFeaturesWorseWarning, stacklevel=stacklevel)
    quality = nuisance_quality({**{c: fits[c] for c in kept}, combine: combined}, y, d,
                               weights=weights)
    return StackResult(e=combined["e"], mu0=combined.get("mu0"), mu1=combined.get("mu1"),
                       candidates={c: fits[c] for c in kept}, weights=weights, winner=winner,
                       quality=quality, combine=combine, dropped=dropped)


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
    by Newton-Raphson; NaN when it has no finite maximum (separation) or ``e`` is constant."""
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
