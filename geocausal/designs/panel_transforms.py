"""Panel transformations for double machine learning with unit heterogeneity.

Each approach turns a panel ``(y, d, x, unit, time)`` into the rows, targets and features
that the nuisance learners see, plus a post-processing rule for the residuals:

- ``pooled``: features ``x``.
- ``cre`` (Mundlak; Fuhr and Papies eq. 6): features ``x``, unit means of the time-varying
  ``x`` and unit means of the treatments; with ``time_effects`` also period means of both.
- ``cre_cp`` (Clarke and Polselli's general CRE): features ``x`` and their unit means; the
  treatment predictions are re-centred, ``m* = m + dbar_i - mean_i(m)``.
- ``fd``: first differences of ``y`` and ``d`` on features ``[x_t, x_{t-1}]``; rows without
  the previous period (first periods, gaps) are dropped and counted.
- ``within`` ("early" demeaning): ``y``, ``d`` and ``x`` demeaned by unit (two-way with
  ``time_effects``), the grand mean added back.
- ``late``: pooled features; the residuals are demeaned by unit before the final regression.
- ``dummies``: features ``x`` plus one-hot unit indicators (and period indicators with
  ``time_effects``).

Examples
--------
>>> import numpy as np
>>> unit = np.repeat([0, 1], 3); time = np.tile([0, 1, 2], 2)
>>> x = np.arange(6.0)[:, None]; y = x[:, 0] ** 2; d = x.copy()
>>> tr = transform_panel("fd", y, d, x, unit, time)
>>> tr.y.tolist(), tr.features.shape
([1.0, 3.0, 7.0, 9.0], (4, 2))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from geocausal.errors import DataError, DesignError

APPROACHES = ("pooled", "cre", "cre_cp", "fd", "within", "late", "dummies")

#: Fewer units than this with within-unit treatment variation (once unit effects are absorbed)
#: trigger a :class:`~geocausal.errors.FewSwitchersWarning` in ``gc.fe`` and ``gc.dml_panel``:
#: the estimate then rests on those few units and its clustered variance on fewer still.
MIN_SWITCHERS = 5


def units_with_variation(values: np.ndarray, unit: np.ndarray, tol: float = 1e-12) -> int:
    """How many units show any variation of ``values`` (a column, or rows of a matrix).

    Examples
    --------
    >>> units_with_variation(np.array([0, 1, 1, 1, 0, 0.0]), np.array([0, 0, 1, 1, 2, 2]))
    1
    """
    a = np.asarray(values, dtype=float)
    a2 = a[:, None] if a.ndim == 1 else a
    moved = np.any(np.abs(a2 - group_means(a2, unit)) > tol * max(1.0, float(np.abs(a2).max(
        initial=0.0))), axis=1)
    return int(np.unique(np.asarray(unit)[moved]).size)


def _natural_key(text: str) -> tuple:
    """Sort key that orders the digit runs of ``text`` as numbers ("t8" < "t9" < "t10")."""
    import re

    parts = re.split(r"(\d+)", text)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p != "")


def period_codes(values: Any, name: str = "time") -> np.ndarray:
    """Integer codes ``0..T-1`` of periods in their order, never text order.

    Ordered pandas Categoricals keep their declared order; numbers, dates and text that parses
    as numbers sort numerically; other text sorts naturally (``"t8" < "t9" < "t10"``,
    ``"2020-Q4" < "2021-Q1"``). Mixed labels whose natural keys tie raise a :class:`DataError`.

    Examples
    --------
    >>> period_codes(["t10", "t8", "t9", "t8"]).tolist()
    [2, 0, 1, 0]
    >>> period_codes(["10", "9", "8.5"]).tolist()
    [2, 1, 0]
    """
    import pandas as pd

    ser = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    if ser.isna().any():
        raise DataError(f"{name} column has {int(ser.isna().sum())} missing values")
    if isinstance(ser.dtype, pd.CategoricalDtype):
        if ser.cat.ordered:
            used = ser.cat.remove_unused_categories()
            return used.cat.codes.to_numpy().astype(np.int64)
        ser = ser.astype(ser.cat.categories.dtype)
    if pd.api.types.is_numeric_dtype(ser) or pd.api.types.is_datetime64_any_dtype(ser):
        return np.unique(ser.to_numpy(), return_inverse=True)[1].ravel().astype(np.int64)
    text = ser.astype(str)
    num = pd.to_numeric(text, errors="coerce")
    if not num.isna().any():
        return np.unique(num.to_numpy(dtype=float), return_inverse=True)[1].ravel().astype(np.int64)
    labels = sorted(set(text))
    keys = [_natural_key(v) for v in labels]
    order = sorted(range(len(labels)), key=lambda i: keys[i])
    ranked = [labels[i] for i in order]
    for a, b in zip(ranked, ranked[1:]):
        if _natural_key(a) == _natural_key(b):
            raise DataError(f"{name} labels '{a}' and '{b}' cannot be ordered; use numbers, "
                            "dates or an ordered pandas Categorical for the periods")
    rank = {v: i for i, v in enumerate(ranked)}
    return text.map(rank).to_numpy().astype(np.int64)


@dataclass(frozen=True)
class PanelTransform:
    """The transformed panel that the nuisance learners see.

    Attributes
    ----------
    y : numpy.ndarray
        ``(m,)`` transformed outcome.
    d : numpy.ndarray
        ``(m, k)`` transformed treatments.
    features : numpy.ndarray
        ``(m, p)`` features of the outcome (and treatment) learners.
    feature_names : tuple of str
    rows : numpy.ndarray
        ``(m,)`` positions of the kept rows in the input arrays.
    unit, time : numpy.ndarray
        ``(m,)`` integer unit and period codes of the kept rows.
    recentre : numpy.ndarray or None
        ``(m, k)`` unit means of the treatments for the ``cre_cp`` re-centring.
    demean_residuals : bool
        Demean the residuals by unit before the final regression (``late``).
    notes : Mapping
        Counts of dropped rows and columns, with reasons.
    """

    y: np.ndarray
    d: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...]
    rows: np.ndarray
    unit: np.ndarray
    time: np.ndarray
    recentre: np.ndarray | None = None
    demean_residuals: bool = False
    notes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "notes", MappingProxyType(dict(self.notes)))


def group_means(a: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Means of the rows of ``a`` within each group, broadcast back to the rows.

    Examples
    --------
    >>> group_means(np.array([1.0, 3.0, 5.0]), np.array([0, 0, 1])).tolist()
    [2.0, 2.0, 5.0]
    """
    a = np.asarray(a, dtype=float)
    flat = a.ndim == 1
    a2 = a[:, None] if flat else a
    _, inv = np.unique(codes, return_inverse=True)
    cnt = np.bincount(inv).astype(float)
    sums = np.zeros((cnt.size, a2.shape[1]))
    np.add.at(sums, inv, a2)
    out = (sums / cnt[:, None])[inv]
    return out[:, 0] if flat else out


def demean(a: np.ndarray, unit: np.ndarray, time: np.ndarray | None = None,
           tol: float = 1e-10, max_iter: int = 1000) -> np.ndarray:
    """Unit demeaning, or two-way demeaning by alternating projections when ``time`` is given.

    Examples
    --------
    >>> demean(np.array([1.0, 3.0, 5.0, 9.0]), np.array([0, 0, 1, 1])).tolist()
    [-1.0, 1.0, -2.0, 2.0]
    """
    out = np.asarray(a, dtype=float) - group_means(a, unit)
    if time is None:
        return out
    for _ in range(max_iter):
        prev = out
        out = out - group_means(out, time)
        out = out - group_means(out, unit)
        if np.max(np.abs(out - prev)) < tol:
            break
    return out


def _varies_within(a: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Per column: does any unit show variation over time."""
    a2 = a[:, None] if a.ndim == 1 else a
    return np.any(np.abs(a2 - group_means(a2, unit)) > 1e-12, axis=0)


def _one_hot(codes: np.ndarray, prefix: str) -> tuple[np.ndarray, list[str]]:
    levels, inv = np.unique(codes, return_inverse=True)
    out = np.zeros((codes.size, levels.size))
    out[np.arange(codes.size), inv] = 1.0
    return out, [f"{prefix}[{v}]" for v in levels]


def _drop_singletons(unit: np.ndarray) -> np.ndarray:
    _, inv, cnt = np.unique(unit, return_inverse=True, return_counts=True)
    return cnt[inv] > 1


def transform_panel(
    approach: str,
    y: np.ndarray,
    d: np.ndarray,
    x: np.ndarray,
    unit: np.ndarray,
    time: np.ndarray,
    *,
    x_names: Sequence[str] | None = None,
    d_names: Sequence[str] | None = None,
    time_effects: bool = False,
) -> PanelTransform:
    """Transform a panel for one of :data:`APPROACHES`.

    Parameters
    ----------
    approach
        One of :data:`APPROACHES`.
    y, d, x
        Outcome ``(n,)``, treatments ``(n, k)`` and covariates ``(n, p)``.
    unit, time
        Integer codes; ``time`` codes are consecutive integers on the global period grid, so
        ``time - 1`` is the previous period.
    x_names, d_names
        Column names used for the feature names.
    time_effects
        Two-way effects: period means (``cre``), two-way demeaning (``within``), period
        dummies (``dummies``).

    Returns
    -------
    PanelTransform

    Raises
    ------
    DesignError
        When nothing identifies the effect (e.g. no row survives first differencing).
    """
    if approach not in APPROACHES:
        raise DataError(f"approach '{approach}' is not one of {APPROACHES}")
    y = np.asarray(y, dtype=float)
    d = np.asarray(d, dtype=float)
    d = d[:, None] if d.ndim == 1 else d
    x = np.asarray(x, dtype=float).reshape(y.size, -1)
    unit = np.asarray(unit)
    time = np.asarray(time)
    x_names = list(x_names) if x_names is not None else [f"x{j}" for j in range(x.shape[1])]
    d_names = list(d_names) if d_names is not None else [f"d{j}" for j in range(d.shape[1])]
    order = np.lexsort((time, unit))
    rows = order
    y, d, x, unit, time = y[order], d[order], x[order], unit[order], time[order]
    if np.any((unit[1:] == unit[:-1]) & (time[1:] == time[:-1])):
        raise DataError("the panel has duplicated (unit, time) rows; keep one row per unit and period")
    notes: dict[str, Any] = {"rows_in": int(y.size)}
    if approach != "pooled":
        keep = _drop_singletons(unit)
        notes["singletons_dropped"] = int((~keep).sum())
        if not keep.all():
            rows, y, d, x, unit, time = (a[keep] for a in (rows, y, d, x, unit, time))
    if y.size == 0:
        raise DesignError(f"no rows left for approach '{approach}': every unit is a singleton")
    recentre = None
    demean_res = False
    if approach in ("pooled", "late"):
        feats, names = x, list(x_names)
        demean_res = approach == "late"
    elif approach in ("cre", "cre_cp"):
        tv = _varies_within(x, unit)
        xbar = group_means(x[:, tv], unit)
        feats = np.column_stack([x, xbar])
        names = list(x_names) + [f"mean_unit({n})" for n, v in zip(x_names, tv) if v]
        notes["time_invariant_controls"] = [n for n, v in zip(x_names, tv) if not v]
        dbar = group_means(d, unit)
        if approach == "cre":
            feats = np.column_stack([feats, dbar])
            names += [f"mean_unit({n})" for n in d_names]
            if time_effects:
                feats = np.column_stack([feats, group_means(x, time), group_means(d, time)])
                names += [f"mean_time({n})" for n in (*x_names, *d_names)]
        else:
            recentre = dbar
    elif approach == "fd":
        prev = np.zeros(y.size, dtype=bool)
        prev[1:] = (unit[1:] == unit[:-1]) & (time[1:] == time[:-1] + 1)
        first = np.ones(y.size, dtype=bool)
        first[1:] = unit[1:] != unit[:-1]
        notes["fd_dropped_first_period"] = int(first.sum())
        notes["fd_dropped_after_gap"] = int((~prev & ~first).sum())
        idx = np.flatnonzero(prev)
        if idx.size == 0:
            raise DesignError("first differences need consecutive periods; no unit has two")
        feats = np.column_stack([x[idx], x[idx - 1]])
        names = list(x_names) + [f"lag({n})" for n in x_names]
        y_new, d_new = y[idx] - y[idx - 1], d[idx] - d[idx - 1]
        return PanelTransform(y_new, d_new, feats, tuple(names), rows[idx], unit[idx], time[idx],
                              notes=notes)
    elif approach == "within":
        t_arg = time if time_effects else None
        grand = lambda a: a.mean(axis=0)  # noqa: E731 - the grand mean added back
        y = demean(y, unit, t_arg) + grand(y)
        d = demean(d, unit, t_arg) + grand(d)
        tv = _varies_within(x, unit) if x.shape[1] else np.zeros(0, bool)
        notes["time_invariant_controls"] = [n for n, v in zip(x_names, tv) if not v]
        feats = demean(x[:, tv], unit, t_arg) + grand(x[:, tv])
        names = [n for n, v in zip(x_names, tv) if v]
    else:  # dummies
        dummies, dnames = _one_hot(unit, "unit")
        feats, names = np.column_stack([x, dummies]), list(x_names) + dnames
        if time_effects:
            tdum, tnames = _one_hot(time, "time")
            feats, names = np.column_stack([feats, tdum]), names + tnames
    return PanelTransform(y, d, np.asarray(feats, dtype=float), tuple(names), rows, unit, time,
                          recentre=recentre, demean_residuals=demean_res, notes=notes)
