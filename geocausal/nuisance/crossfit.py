"""Cross-fitting: fold assignment (random, group, spatial block, time block) and
out-of-fold predictions for any scikit-learn compatible learner.

Fold ids are plain integer arrays (``fold_ids[i]`` is the fold in which unit ``i`` is
predicted), so the same folds can be handed to peers (DoubleML, econml) for comparisons.

Examples
--------
>>> import numpy as np
>>> from sklearn.linear_model import LinearRegression
>>> X = np.arange(20.0).reshape(-1, 1); y = 2 * X[:, 0]
>>> f = make_folds(20, folds=4, seed=0)
>>> np.allclose(crossfit_predict(LinearRegression(), X, y, f), y)
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

from geocausal.errors import DataError, DesignError


def make_folds(
    n: int,
    folds: int = 5,
    seed: int = 0,
    *,
    groups: Sequence | np.ndarray | None = None,
    coords: np.ndarray | None = None,
    block_size: float | None = None,
    time: Sequence | np.ndarray | None = None,
    stratify: Sequence | np.ndarray | None = None,
) -> np.ndarray:
    """Assign each of ``n`` units to one of ``folds`` folds.

    Parameters
    ----------
    n
        Number of units.
    folds
        Number of folds (>= 2).
    seed
        Seed of the shuffling.
    groups
        Keep each group in one fold (e.g. unit ids in a panel, villages in a cluster trial).
    coords
        ``(n, 2)`` coordinates for spatial-block folds; blocks are squares of ``block_size``
        (default: the extent divided by ``2 * folds``), assigned to folds at random.
    time
        Time labels for time-block folds: contiguous blocks of periods.
    stratify
        Labels (e.g. a binary treatment) to balance across random folds.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` integer fold ids in ``0..folds-1``.

    Raises
    ------
    DataError
        ``folds`` not an integer >= 2; labels of the wrong length; more than one of
        ``groups``, ``coords``, ``time``.
    DesignError
        Fewer units, groups, blocks or periods than folds; with ``stratify``, a stratum (e.g.
        the treated arm) with fewer units than folds, which would leave folds without it.
    """
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer):
        raise DataError(f"folds must be an integer number of folds, got {folds!r}")
    folds = int(folds)
    if folds < 2:
        raise DataError(f"folds must be at least 2, got {folds}")
    if n < folds:
        raise DesignError(f"{n} units cannot be split into {folds} folds; use folds <= {n}")
    given = sum(x is not None for x in (groups, coords, time))
    if given > 1:
        raise DataError("give at most one of groups=, coords= and time= for fold assignment")
    for label, arr in (("coords", coords), ("time", time), ("stratify", stratify)):
        if arr is not None and np.asarray(arr).shape[0] != n:
            raise DataError(f"{label} has {np.asarray(arr).shape[0]} labels, expected {n} "
                            "(one per unit)")
    if coords is not None:
        groups = _spatial_blocks(np.asarray(coords, dtype=float), folds, block_size)
    if time is not None:
        return _time_blocks(np.asarray(time), folds)
    out = np.empty(n, dtype=np.int64)
    idx = np.arange(n)
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape[0] != n:
            raise DataError(f"groups has length {groups.shape[0]}, expected {n}")
        uniq, inv = np.unique(groups, return_inverse=True)
        if len(uniq) < folds:
            raise DesignError(f"only {len(uniq)} groups for {folds} folds")
        perm = np.random.default_rng(seed).permutation(len(uniq))
        splitter = GroupKFold(n_splits=folds)
        for k, (_, test) in enumerate(splitter.split(idx, groups=perm[inv])):
            out[test] = k
        return out
    if stratify is not None:
        labels, counts = np.unique(np.asarray(stratify), return_counts=True)
        small = {_plain(v): int(c) for v, c in zip(labels, counts) if c < folds}
        if small:
            binary = set(small) <= {0, 1}
            what = ", ".join(f"{c} {'treated' if v == 1 else 'control'} units (treatment {v})"
                             if binary else f"{c} units labelled {v!r}"
                             for v, c in small.items())
            raise DesignError(f"stratified folds: {what} for {folds} folds, so some folds "
                              "would hold none; every stratum needs at least as many units as "
                              "folds: use fewer folds or more units")
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        split = splitter.split(idx, np.asarray(stratify))
    else:
        split = KFold(n_splits=folds, shuffle=True, random_state=seed).split(idx)
    for k, (_, test) in enumerate(split):
        out[test] = k
    return out


def _plain(v):
    """A label as a plain Python number (1.0 -> 1) for messages."""
    v = v.item() if hasattr(v, "item") else v
    return int(v) if isinstance(v, float) and v.is_integer() else v


def check_fold_arms(d: np.ndarray, fold_ids: np.ndarray, min_train: int = 2,
                    min_test: int = 0) -> None:
    """Every fold's training part must hold ``min_train`` treated and control units, and its
    held-out part ``min_test`` of each; raise :class:`DesignError` with the counts otherwise.

    Shared by the designs that fit arm-specific nuisances on the training folds (AIPW, CATE):
    with fewer, a nuisance model is fitted on one or no unit of an arm and the estimate is a
    number without meaning. Works for any fold ids (random, stratified, group, spatial, given).

    Examples
    --------
    >>> import numpy as np
    >>> check_fold_arms(np.array([0, 1] * 10), np.arange(20) // 10)
    >>> check_fold_arms(np.array([1, 1, 0, 0, 0, 0]), np.array([0, 0, 1, 1, 2, 2]))
    Traceback (most recent call last):
    ...
    geocausal.errors.DesignError: fold 0 has a training part with 0 treated and 4 control units; each needs at least 2: use fewer folds or more units per group
    """
    d = np.asarray(d, dtype=float)
    fold_ids = np.asarray(fold_ids)
    if fold_ids.shape[0] != d.shape[0]:
        raise DataError(f"fold ids have length {fold_ids.shape[0]}, the data {d.shape[0]}")
    for k in np.unique(fold_ids):
        for part, mask, need in (("training", fold_ids != k, min_train),
                                 ("held-out", fold_ids == k, min_test)):
            n1 = int(d[mask].sum())
            n0 = int(mask.sum()) - n1
            if min(n0, n1) < need:
                raise DesignError(
                    f"fold {_plain(k)} has a {part} part with {n1} treated and {n0} control "
                    f"units; each needs at least {need}: use fewer folds or more units per "
                    "group")


def _spatial_blocks(coords: np.ndarray, folds: int, block_size: float | None) -> np.ndarray:
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise DataError(f"coords must be (n, 2), got shape {coords.shape}")
    lo = coords.min(axis=0)
    extent = float(np.max(coords.max(axis=0) - lo)) or 1.0
    size = block_size or extent / (2 * folds)
    cells = np.floor((coords - lo) / size).astype(np.int64)
    return cells[:, 0] * (cells[:, 1].max() + 1) + cells[:, 1]


def _time_blocks(time: np.ndarray, folds: int) -> np.ndarray:
    periods, inv = np.unique(time, return_inverse=True)
    if len(periods) < folds:
        raise DesignError(f"only {len(periods)} periods for {folds} time-block folds")
    block = np.floor(np.arange(len(periods)) * folds / len(periods)).astype(np.int64)
    return block[inv]


def fold_indices(fold_ids: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(train_idx, test_idx), ...]`` from fold ids, in fold order."""
    fold_ids = np.asarray(fold_ids)
    return [(np.flatnonzero(fold_ids != k), np.flatnonzero(fold_ids == k))
            for k in np.unique(fold_ids)]


def crossfit_predict(
    learner,
    X: np.ndarray,
    y: np.ndarray,
    fold_ids: np.ndarray,
    *,
    method: str = "predict",
    train_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Out-of-fold predictions: for each fold, fit a clone on the other folds and predict it.

    Parameters
    ----------
    learner
        Any scikit-learn compatible estimator (cloned per fold).
    X, y
        Features and target.
    fold_ids
        From :func:`make_folds`.
    method
        ``"predict"`` or ``"predict_proba"`` (returns the probability of class 1).
    train_mask
        Fit only on training rows where the mask is true (e.g. the treated arm for mu1),
        but predict every row of the held-out fold.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    out = np.empty(X.shape[0], dtype=float)
    mask = np.ones(X.shape[0], dtype=bool) if train_mask is None else np.asarray(train_mask, bool)
    for train, test in fold_indices(fold_ids):
        tr = train[mask[train]]
        if tr.size == 0:
            raise DesignError(f"cross-fitting fold {_plain(np.asarray(fold_ids)[test[0]])} has no training "
                              "rows in the requested arm; use fewer folds or more units")
        model = clone(learner).fit(X[tr], y[tr])
        if method == "predict_proba":
            out[test] = model.predict_proba(X[test])[:, 1]
        else:
            out[test] = model.predict(X[test])
    return out
