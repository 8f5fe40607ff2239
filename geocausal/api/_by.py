"""The one ``by=`` helper: fit a design within each subgroup and collect an EstimateSet.

Every face with ``by=`` calls :func:`fit_by`; it resolves the grouping columns (a column, a list
of columns, or ``"a,b"`` from the command line), refuses missing labels, subsets every
per-row argument with :func:`subset`, skips (with a counted warning) subgroups the caller
declares too small, and names each estimate ``"a x b"``.

Examples
--------
>>> import pandas as pd
>>> from geocausal.results.estimate import Estimate
>>> df = pd.DataFrame({"g": ["a", "a", "b", "b"], "y": [1.0, 2.0, 3.0, 5.0]})
>>> def one(sub, rows, name):
...     return Estimate(params=pd.Series({"mean": sub.y.mean()}), vcov=[[0.0]], design="demo")
>>> es = fit_by(one, df, "g")
>>> list(es.names), [float(e.params["mean"]) for e in es.estimates]
(['a', 'b'], [1.5, 4.0])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError, DesignError, DiagnosticWarning
from geocausal.results.estimate import Estimate, EstimateSet


def group_columns(data: pd.DataFrame, by: str | Sequence[str]) -> list[str]:
    """The grouping columns of ``by=``: a column, a list, or ``"a,b"`` (command line).

    Examples
    --------
    >>> group_columns(pd.DataFrame({"a": [1], "b": [2]}), "a,b")
    ['a', 'b']
    """
    if isinstance(by, str):
        cols = [by] if by in data.columns else [c.strip() for c in by.split(",")]
    elif isinstance(by, Sequence) and all(isinstance(c, str) for c in by) and by:
        cols = list(by)
    else:
        raise DataError(f"by= must be a column name or a list of column names, got {by!r}")
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise DataError(f"by= columns {missing} are not in the data")
    return cols


def group_labels(data: pd.DataFrame, by: str | Sequence[str]) -> pd.Series:
    """One label per row, ``"a x b"`` for several columns; missing labels are refused.

    Examples
    --------
    >>> group_labels(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), ["a", "b"]).tolist()
    ['1 x x', '2 x y']
    """
    cols = group_columns(data, by)
    bad = {c: int(n) for c, n in data[cols].isna().sum().items() if n}
    if bad:
        raise DataError(f"by= columns have missing values {bad}; fill or drop those rows")
    return data[cols].astype(str).agg(" x ".join, axis=1)


def subset(value: Any, mask: np.ndarray) -> Any:
    """Rows ``mask`` of a per-row argument (array, frame, tuple or dict of them); scalars and
    strings (column names) pass through.

    Examples
    --------
    >>> subset({"p": np.array([0.1, 0.2, 0.3])}, np.array([True, False, True]))["p"].tolist()
    [0.1, 0.3]
    """
    if value is None or isinstance(value, str) or np.isscalar(value):
        return value
    if isinstance(value, pd.DataFrame | pd.Series):
        return value.loc[mask].reset_index(drop=True)
    if isinstance(value, tuple):
        return tuple(subset(v, mask) for v in value)
    if isinstance(value, Mapping):
        return {k: subset(v, mask) for k, v in value.items()}
    if hasattr(value, "subset_rows"):
        return value.subset_rows(mask)
    arr = np.asarray(value)
    if arr.ndim == 0 or arr.shape[0] != mask.shape[0]:
        return value
    return arr[mask]


def fit_by(
    fit_one: Callable[[pd.DataFrame, np.ndarray, str], Estimate],
    data: pd.DataFrame,
    by: str | Sequence[str],
    *,
    too_small: Callable[[np.ndarray], str | None] | None = None,
    stacklevel: int = 3,
) -> EstimateSet:
    """Fit ``fit_one(sub_data, rows, name)`` in every subgroup of ``by``.

    Parameters
    ----------
    fit_one
        Called with the subgroup's rows of ``data`` (index reset), the boolean row mask (to
        subset other per-row arguments with :func:`subset`) and the subgroup's name.
    data
        The full data.
    by
        Grouping column(s).
    too_small
        ``too_small(mask)`` returns a reason to skip the subgroup (e.g. "3 treated units for 5
        folds") or None; skipped subgroups give one :class:`DiagnosticWarning` each and are
        listed in ``diagnostics["skipped_groups"]``.
    stacklevel
        Of the warnings.

    Returns
    -------
    EstimateSet
        One estimate per subgroup fitted, in sorted order of the names.

    Raises
    ------
    DesignError
        Every subgroup was skipped.
    """
    labels = group_labels(data, by)
    ests, names, skipped = [], [], {}
    for g in sorted(labels.unique()):
        mask = (labels == g).to_numpy()
        reason = too_small(mask) if too_small is not None else None
        if reason:
            skipped[g] = reason
            warnings.warn(f"subgroup '{g}' skipped: {reason}", DiagnosticWarning,
                          stacklevel=stacklevel)
            continue
        ests.append(fit_one(data.loc[mask].reset_index(drop=True), mask, g))
        names.append(g)
    if not ests:
        raise DesignError(f"no subgroup of by={by!r} can be estimated: {skipped}")
    return EstimateSet(tuple(ests), tuple(names),
                       diagnostics={"skipped_groups": skipped, "by": by})
