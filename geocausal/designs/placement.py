"""How predictable is treatment placement? Cross-validated AUCs with DeLong (or paired
bootstrap) covariances, so that AUCs of several feature sets on the same units can be compared.

DeLong, DeLong and Clarke-Pearson (1988), computed with the midrank algorithm of Sun and Xu
(2014). The structural components also give an influence function per unit, used for
cluster-robust variances.

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 0, 1, 1, 0, 1]); s = np.array([[.1, .4, .35, .8, .2, .9]])
>>> auc, cov, psi = delong(s, y)
>>> round(float(auc[0]), 4)
0.8889
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from geocausal.errors import DataError, DesignError
from geocausal.features.align import ChipsView
from geocausal.inference.variance import VarianceRule
from geocausal.nuisance.crossfit import crossfit_predict
from geocausal.vocabulary import DEFAULTS, check_count, is_image_learner


def delong(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs of ``k`` score vectors on the same units, their DeLong covariance and influence.

    Parameters
    ----------
    scores
        ``(k, n)`` scores (higher = more likely treated).
    labels
        ``(n,)`` binary labels.

    Returns
    -------
    aucs : (k,) array
    cov : (k, k) DeLong covariance
    influence : (n, k) array with ``cov ~ influence' influence / n^2`` (up to (m-1)/m factors)
    """
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    lab = np.asarray(labels).astype(bool)
    m, n = int(lab.sum()), int((~lab).sum())
    if m < 2 or n < 2:
        raise DesignError(f"an AUC needs at least 2 treated and 2 control units, got {m} and {n}")
    pos, neg = s[:, lab], s[:, ~lab]
    tx = np.apply_along_axis(rankdata, 1, pos)
    ty = np.apply_along_axis(rankdata, 1, neg)
    tz = np.apply_along_axis(rankdata, 1, np.concatenate([pos, neg], axis=1))
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v01 = (tz[:, :m] - tx) / n
    v10 = 1.0 - (tz[:, m:] - ty) / m
    cov = np.atleast_2d(np.cov(v01)) / m + np.atleast_2d(np.cov(v10)) / n
    N = m + n
    psi = np.empty((N, s.shape[0]))
    idx_pos, idx_neg = np.flatnonzero(lab), np.flatnonzero(~lab)
    psi[idx_pos] = ((v01 - aucs[:, None]) * N / m).T
    psi[idx_neg] = ((v10 - aucs[:, None]) * N / n).T
    return aucs, cov, psi


def bootstrap_auc(scores: np.ndarray, labels: np.ndarray, n_boot: int = 500,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their paired, arm-stratified bootstrap covariance.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0); y = rng.integers(0, 2, 200)
    >>> s = np.vstack([y + rng.normal(size=200), rng.normal(size=200)])
    >>> a, c = bootstrap_auc(s, y, n_boot=100)
    >>> a.shape, c.shape
    ((2,), (2, 2))
    """
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    lab = np.asarray(labels).astype(int)
    aucs = _auc(s, lab)
    rng = np.random.default_rng(seed)
    ip, ineg = np.flatnonzero(lab == 1), np.flatnonzero(lab == 0)
    draws = np.empty((n_boot, s.shape[0]))
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(ip, ip.size), rng.choice(ineg, ineg.size)])
        draws[b] = _auc(s[:, idx], lab[idx])
    return aucs, np.atleast_2d(np.cov(draws, rowvar=False))


def _auc(s: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of each row of ``s`` (ties count one half)."""
    pos = lab.astype(bool)
    m, n = int(pos.sum()), int((~pos).sum())
    r = rankdata(s, axis=1)
    return (r[:, pos].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)


#: The AUC of a score unrelated to treatment (chance): the null value of every AUC test.
AUC_CHANCE = 0.5


def placement_nulls(terms: list[str]) -> dict[str, float]:
    """Null values of placement terms: chance (0.5) for ``auc_*``, 0 for AUC differences.

    Examples
    --------
    >>> placement_nulls(["auc_image", "image_minus_tabular"])
    {'auc_image': 0.5, 'image_minus_tabular': 0.0}
    """
    return {t: AUC_CHANCE if t.startswith("auc_") else 0.0 for t in terms}


def contrast_matrix(k: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Rows: identity for the ``k`` AUCs, then ``e_a - e_b`` for each pair ``(a, b)``.

    Examples
    --------
    >>> contrast_matrix(2, [(1, 0)]).tolist()
    [[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0]]
    """
    L = [np.eye(k)]
    for a, b in pairs:
        r = np.zeros(k)
        r[a], r[b] = 1.0, -1.0
        L.append(r[None])
    return np.vstack(L)


#: ``vcov=`` names of placement computed other than from the influence function
PLACEMENT_VCOV = ("delong", "bootstrap")


@dataclass(frozen=True, eq=False)
class PlacementFit:
    """What :func:`fit_placement` returns.

    ``params``: AUCs of the feature sets then the differences; ``influence``: ``(n, k)``
    DeLong structural components of ``params``; ``rule``: the variance rule (``"delong"``
    always, ``"bootstrap"`` when it was drawn); ``scores``: out-of-fold propensities per set;
    ``learners``: set -> repr of its classifier.
    """

    params: pd.Series
    influence: np.ndarray
    rule: VarianceRule
    scores: pd.DataFrame
    learners: dict[str, str]


def fit_placement(d: np.ndarray, X_tab: np.ndarray, fold_ids: np.ndarray, propensity_learner: Any,
                  *, F_img: np.ndarray | None = None, chips: np.ndarray | ChipsView | None = None,
                  image_learner: Any = None, bootstrap: bool = False,
                  n_boot: int = DEFAULTS.n_boot, seed: int = DEFAULTS.seed) -> PlacementFit:
    """Cross-validated AUCs of image-only, tabular-only and combined propensity models.

    Parameters
    ----------
    d
        ``(n,)`` binary treatment.
    X_tab
        ``(n, p)`` tabular controls (``p`` may be 0: no tabular set).
    fold_ids
        Cross-validation fold of every unit.
    propensity_learner
        Classifier of the tabular and combined sets (and of the image set unless
        ``image_learner`` is given).
    F_img, chips
        Image features and raw chips (an image learner gets the chips).
    image_learner
        Classifier of the image-only set (the ``image_propensity`` slot).
    bootstrap
        Also draw the paired, arm-stratified bootstrap covariance (``vcov="bootstrap"``).
    n_boot, seed
        Bootstrap draws and their seed.

    Returns
    -------
    PlacementFit

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0); x = rng.normal(size=(300, 1))
    >>> d = rng.binomial(1, 1 / (1 + np.exp(-2 * x[:, 0])))
    >>> fit = fit_placement(d, x, np.arange(300) % 3, LogisticRegression())
    >>> list(fit.params.index), bool(fit.params["auc_tabular"] > 0.7)
    (['auc_tabular'], True)
    """
    d = np.asarray(d).astype(int)
    img_clf = propensity_learner if image_learner is None else image_learner
    sets: dict[str, tuple[Any, Any]] = {}
    if F_img is not None or chips is not None:
        img_X = chips if is_image_learner(img_clf) else F_img
        if isinstance(chips, ChipsView) and is_image_learner(img_clf):  # streamed by folds
            from geocausal.designs.ipw import prepare_learner

            img_clf, img_X = prepare_learner(img_clf, np.zeros((len(d), 0)), chips)
        if img_X is None:
            raise DataError("the image propensity learner needs features; pass images= as an "
                            "embeddings frame or chips")
        sets["image"] = (img_clf, img_X)
    if X_tab.shape[1]:
        sets["tabular"] = (propensity_learner, X_tab)
    if "image" in sets and "tabular" in sets and F_img is not None:
        sets["both"] = (propensity_learner, np.column_stack([X_tab, F_img]))
    if not sets:
        raise DataError("placement needs tabular controls in the formula and/or images=")
    keys = list(sets)
    scores = np.vstack([crossfit_predict(lr, Xs, d, fold_ids, method="predict_proba")
                        for lr, Xs in sets.values()])
    aucs, cov, psi = delong(scores, d)
    named = [("delong", "delong", cov)]
    if bootstrap:
        aucs_b, cov_b = bootstrap_auc(scores, d, check_count("n_boot", n_boot, minimum=2), seed)
        named = [("bootstrap", "bootstrap", cov_b), *named]
    pairs = [(keys.index(a), keys.index(b)) for a, b in (("both", "tabular"), ("image", "tabular"))
             if a in keys and b in keys]
    L = contrast_matrix(len(keys), pairs)
    names = [f"auc_{k}" for k in keys] + [f"{keys[a]}_minus_{keys[b]}" for a, b in pairs]
    rule = VarianceRule(named=tuple((s, lab, L @ c @ L.T) for s, lab, c in named),
                        vcov_dependent=("p_vs_chance",))
    return PlacementFit(pd.Series(L @ aucs, index=names), psi @ L.T, rule,
                        pd.DataFrame(scores.T, columns=keys),
                        {k: repr(v[0]) for k, v in sets.items()})
