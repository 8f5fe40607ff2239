"""Fold specifications: one way to say how units are split for cross-fitting, in every design.

A leaf module (it imports only numpy, pandas, scikit-learn and :mod:`geocausal.errors`), so data,
encoders, nuisance learners and designs can all build folds without reaching up the layers.

Every design's ``folds=`` takes the same three things:

- an integer ``k``: ``k`` random folds (stratified by treatment where the design has a binary
  treatment);
- a :class:`Folds` specification: random, grouped (``Folds.group("village")``), spatial blocks
  (``Folds.spatial(("lon", "lat"), block_size=0.5)``) or time blocks (``Folds.time("year")``,
  optionally leaving ``gap`` neighbouring periods out of training);
- an array of fold ids, one per row of the data.

:func:`resolve_folds` turns any of them into integer fold ids (``fold_ids[i]`` is the fold in
which row ``i`` is predicted), so the same folds can be handed to peers (DoubleML, econml).

Examples
--------
>>> import numpy as np, pandas as pd
>>> df = pd.DataFrame({"village": np.repeat(np.arange(10), 3)})
>>> f = resolve_folds(Folds.group("village", k=5), df, seed=0)
>>> bool(all(len(set(f[df.village == v])) == 1 for v in range(10)))
True
>>> resolve_folds(4, n=8, seed=0).tolist()
[2, 1, 0, 2, 3, 3, 0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

from geocausal.errors import DataError, DesignError

FoldKind = Literal["random", "group", "spatial", "time"]

#: the kinds of :class:`Folds`
FOLD_KINDS: tuple[str, ...] = ("random", "group", "spatial", "time")


@dataclass(frozen=True)
class Folds:
    """How to split units into cross-fitting folds.

    Parameters
    ----------
    k : int
        Number of folds (>= 2).
    kind : {"random", "group", "spatial", "time"}
        ``random``: shuffled folds (stratified by a binary treatment where the design has one);
        ``group``: every group of ``by`` in one fold; ``spatial``: square blocks of side
        ``block_size`` on the coordinates ``by``, blocks assigned to folds at random; ``time``:
        contiguous blocks of the periods of ``by``.
    by : str, sequence of str, or array, optional
        ``group``: a column name or one label per row; ``spatial``: two coordinate columns
        ``(x, y)`` or an ``(n, 2)`` array; ``time``: a time column or one label per row.
    block_size : float, optional
        Side of the spatial blocks (default: the extent divided by ``2 k``).
    gap : int
        ``time`` only: periods within ``gap`` of a held-out block are left out of its
        training part (serially correlated panels).

    Examples
    --------
    >>> Folds.spatial(("x", "y"), k=4, block_size=1.0)
    Folds(k=4, kind='spatial', by=('x', 'y'), block_size=1.0, gap=0)
    >>> Folds(k=1)
    Traceback (most recent call last):
    ...
    geocausal.errors.DataError: folds must be at least 2, got 1
    """

    k: int = 5
    kind: FoldKind = "random"
    by: Any = None
    block_size: float | None = None
    gap: int = 0

    def __post_init__(self) -> None:
        _check_k(self.k)
        if self.kind not in FOLD_KINDS:
            raise DataError(f"Folds kind {self.kind!r} is not one of {FOLD_KINDS}")
        if self.kind == "random" and self.by is not None:
            raise DataError("Folds(kind='random') takes no by=; use Folds.group(by) to keep "
                            "groups together")
        if self.kind != "random" and self.by is None:
            raise DataError(f"Folds(kind={self.kind!r}) needs by= (the "
                            f"{'coordinate columns' if self.kind == 'spatial' else 'column'})")
        if self.block_size is not None and (self.kind != "spatial" or not self.block_size > 0):
            raise DataError("block_size is for spatial folds and must be positive, got "
                            f"{self.block_size!r}")
        if isinstance(self.gap, bool) or not isinstance(self.gap, int | np.integer) or self.gap < 0:
            raise DataError(f"gap must be a non-negative integer, got {self.gap!r}")
        if self.gap and self.kind != "time":
            raise DataError("gap= is for time-block folds (Folds.time)")
        if isinstance(self.by, list):
            object.__setattr__(self, "by", tuple(self.by))

    @classmethod
    def random(cls, k: int = 5) -> Folds:
        """``k`` shuffled folds."""
        return cls(k=k)

    @classmethod
    def group(cls, by: Any, k: int = 5) -> Folds:
        """``k`` folds that keep every group of ``by`` (a column or labels) together."""
        return cls(k=k, kind="group", by=by)

    @classmethod
    def spatial(cls, by: Any, k: int = 5, block_size: float | None = None) -> Folds:
        """``k`` folds of square blocks on the coordinates ``by`` (two columns or ``(n, 2)``)."""
        return cls(k=k, kind="spatial", by=by, block_size=block_size)

    @classmethod
    def time(cls, by: Any, k: int = 5, gap: int = 0) -> Folds:
        """``k`` folds of contiguous periods of ``by``; ``gap`` neighbouring periods left out."""
        return cls(k=k, kind="time", by=by, gap=gap)


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise DataError(f"folds must be an integer number of folds, got {k!r}")
    if k < 2:
        raise DataError(f"folds must be at least 2, got {k}")
    return int(k)


def names_columns(by: Any) -> bool:
    """Whether a ``Folds.by`` names data columns (a name or a tuple of names), not labels.

    Examples
    --------
    >>> names_columns(("lon", "lat")), names_columns(np.array([1, 2]))
    (True, False)
    """
    return isinstance(by, str) or (isinstance(by, tuple) and all(isinstance(b, str) for b in by))


def _labels(by: Any, data: Any, n: int, what: str) -> np.ndarray:
    """Column(s) of ``data`` or an array of ``n`` labels."""
    if names_columns(by):
        cols = [by] if isinstance(by, str) else list(by)
        if data is None:
            raise DataError(f"fold {what} {by!r} names columns but no data frame was given")
        missing = [c for c in cols if c not in data.columns]
        if missing:
            raise DataError(f"fold {what} columns {missing} are not in the data")
        arr = data[cols[0]].to_numpy() if isinstance(by, str) else data[cols].to_numpy()
    else:
        arr = np.asarray(by)
    if arr.shape[0] != n:
        raise DataError(f"fold {what} has {arr.shape[0]} labels, expected {n} (one per row)")
    if pd.isna(arr).any():
        raise DataError(f"fold {what} has missing values; fill or drop those rows first")
    return arr


def resolve_folds(
    folds: int | Folds | Sequence[int] | np.ndarray,
    data: Any = None,
    *,
    n: int | None = None,
    seed: int = 0,
    stratify: np.ndarray | None = None,
) -> np.ndarray:
    """Fold ids for every row from the ``folds=`` argument every design takes.

    Parameters
    ----------
    folds
        An integer number of random folds, a :class:`Folds` specification, or an array of
        fold ids (one per row, at least two distinct values).
    data : pandas.DataFrame, optional
        The rows to split; needed when ``Folds.by`` names columns.
    n : int, optional
        The number of rows when ``data`` is not given.
    seed
        Seed of the shuffling (random folds, the order of groups and blocks).
    stratify
        Labels (a binary treatment) balanced across random folds.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` integer fold ids in ``0..k-1``.

    Raises
    ------
    DataError
        Malformed specification, labels of the wrong length or with missing values.
    DesignError
        Fewer rows, groups, blocks or periods than folds.

    Examples
    --------
    >>> import numpy as np
    >>> resolve_folds(np.array([0, 0, 1, 1]), n=4).tolist()
    [0, 0, 1, 1]
    >>> resolve_folds(Folds.time(np.repeat([2001, 2002, 2003, 2004], 2), k=2), n=8).tolist()
    [0, 0, 0, 0, 1, 1, 1, 1]
    """
    if n is None:
        if data is None:
            raise DataError("resolve_folds needs data= or n=")
        n = len(data)
    if isinstance(folds, Folds):
        spec = folds
    elif isinstance(folds, bool):
        raise DataError(f"folds must be an integer, a Folds specification or fold ids, got {folds!r}")
    elif isinstance(folds, int | np.integer):
        spec = Folds(k=int(folds))
    elif isinstance(folds, str):
        raise DataError(f"folds={folds!r}: use an integer, Folds.group({folds!r}), "
                        f"Folds.time({folds!r}) or Folds.spatial(...)")
    else:
        ids = np.asarray(folds)
        if ids.ndim != 1 or ids.shape[0] != n:
            raise DataError(f"folds array has shape {ids.shape}, expected one fold id per row ({n})")
        if pd.isna(ids).any():
            raise DataError("folds array has missing fold ids")
        uniq, inv = np.unique(ids, return_inverse=True)
        if uniq.size < 2:
            raise DataError("folds array holds a single fold; cross-fitting needs at least two")
        return inv.astype(np.int64)
    if spec.kind == "random":
        return make_folds(n, spec.k, seed, stratify=stratify)
    labels = _labels(spec.by, data, n, {"group": "groups", "spatial": "coordinates",
                                        "time": "periods"}[spec.kind])
    if spec.kind == "group":
        return make_folds(n, spec.k, seed, groups=labels)
    if spec.kind == "spatial":
        return make_folds(n, spec.k, seed, coords=labels, block_size=spec.block_size)
    return make_folds(n, spec.k, seed, time=labels)


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


def fold_blocks(folds: Any, data: Any = None, *, n: int | None = None) -> np.ndarray | None:
    """Labels of the units a ``folds=`` argument keeps together, or None when it keeps none.

    Groups of ``Folds.group``, spatial blocks of ``Folds.spatial`` (the same squares
    :func:`resolve_folds` assigns to folds) and periods of ``Folds.time``; None for random
    folds (an integer or ``Folds(k)``) and for given fold ids. Designs that resample units
    (the CATE's RATE bootstrap, repeated sample splits) use them as clusters, so that
    resampling respects the dependence the folds were built around.

    Examples
    --------
    >>> import numpy as np
    >>> fold_blocks(Folds.group(np.array(["a", "a", "b"]), k=2), n=3).tolist()
    ['a', 'a', 'b']
    >>> fold_blocks(5, n=3) is None
    True
    """
    if not isinstance(folds, Folds) or folds.kind == "random":
        return None
    if n is None:
        if data is None:
            raise DataError("fold_blocks needs data= or n=")
        n = len(data)
    labels = _labels(folds.by, data, n, {"group": "groups", "spatial": "coordinates",
                                         "time": "periods"}[folds.kind])
    if folds.kind == "spatial":
        return _spatial_blocks(np.asarray(labels, dtype=float), folds.k, folds.block_size)
    return labels
