"""Read-only pandas containers for the fields of a frozen :class:`~geocausal.results.Estimate`.

A :class:`ReadOnlySeries` or :class:`ReadOnlyFrame` owns a private copy of its values in a
NumPy array whose ``writeable`` flag is off, and refuses every way of changing it in place:
item, slice and indexer assignment (``[]``, ``.loc``, ``.iloc``, ``.at``, ``.iat``), deletion,
``insert``/``pop``, ``inplace=True`` methods, augmented assignment and setting ``index``,
``columns`` or ``name``. Each refusal is a :class:`~geocausal.errors.DataError` that says to
take a ``.copy()`` (a :class:`ReadOnlyError`, which is also a :class:`TypeError`); methods that write straight into the buffer (``update``, ``fillna(...,
inplace=True)``) stop at NumPy's own "read-only" ``ValueError``. Every method that returns a new
object (arithmetic, ``copy``, ``reindex``, ``round``, ...) returns an ordinary, writable pandas
object, so analysis code keeps working. Pickling rebuilds the read-only form.

Examples
--------
>>> s = readonly_series([1.0, 2.0], index=["d", "x"])
>>> s["d"] = 9.0
Traceback (most recent call last):
...
geocausal.results.readonly.ReadOnlyError: this Series is read-only (a field of a frozen \
geocausal result); take a writable copy with .copy()
>>> c = s.copy()
>>> c["d"] = 9.0
>>> float(s["d"]), float(c["d"]), type(c).__name__
(1.0, 9.0, 'Series')
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError

__all__ = ["ReadOnlyError", "ReadOnlyFrame", "ReadOnlySeries", "readonly_frame",
           "readonly_series"]

_LOCK = "_geocausal_locked"


class ReadOnlyError(DataError, TypeError):
    """An attempt to change a field of a frozen result in place. A
    :class:`~geocausal.errors.DataError`, and a :class:`TypeError` as Python raises for other
    immutable objects.
    """


def _refuse(kind: str) -> ReadOnlyError:
    return ReadOnlyError(f"this {kind} is read-only (a field of a frozen geocausal result); "
                         "take a writable copy with .copy()")


class _ReadOnlyIndexer:
    """Wraps ``.loc``/``.iloc``/``.at``/``.iat``: reads pass through, assignment is refused."""

    __slots__ = ("_inner", "_kind")

    def __init__(self, inner: Any, kind: str) -> None:
        self._inner = inner
        self._kind = kind

    def __getitem__(self, key: Any) -> Any:
        return self._inner[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        raise _refuse(self._kind)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _ReadOnlyIndexer(self._inner(*args, **kwargs), self._kind)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _ReadOnlyMixin:
    """What :class:`ReadOnlySeries` and :class:`ReadOnlyFrame` share."""

    _ro_kind = "object"
    _geocausal_locked = False

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, _LOCK, False):
            raise _refuse(self._ro_kind)
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if getattr(self, _LOCK, False):
            raise _refuse(self._ro_kind)
        super().__delattr__(name)

    def __setitem__(self, key: Any, value: Any) -> None:
        raise _refuse(self._ro_kind)

    def __delitem__(self, key: Any) -> None:
        raise _refuse(self._ro_kind)

    def pop(self, *args: Any, **kwargs: Any) -> Any:
        raise _refuse(self._ro_kind)

    def _update_inplace(self, *args: Any, **kwargs: Any) -> None:
        raise _refuse(self._ro_kind)

    def _set_value(self, *args: Any, **kwargs: Any) -> None:
        raise _refuse(self._ro_kind)

    def __iadd__(self, other: Any) -> Any:
        raise _refuse(self._ro_kind)

    __isub__ = __imul__ = __itruediv__ = __ifloordiv__ = __imod__ = __ipow__ = __iadd__
    __iand__ = __ior__ = __ixor__ = __iadd__

    # the indexers come from the pandas class this mixin is combined with; mypy sees only the
    # mixin's own base (object), hence the targeted ignores on the four super() look-ups below
    @property
    def loc(self) -> Any:
        return _ReadOnlyIndexer(super().loc, self._ro_kind)  # type: ignore[misc]

    @property
    def iloc(self) -> Any:
        return _ReadOnlyIndexer(super().iloc, self._ro_kind)  # type: ignore[misc]

    @property
    def at(self) -> Any:
        return _ReadOnlyIndexer(super().at, self._ro_kind)  # type: ignore[misc]

    @property
    def iat(self) -> Any:
        return _ReadOnlyIndexer(super().iat, self._ro_kind)  # type: ignore[misc]


class ReadOnlySeries(_ReadOnlyMixin, pd.Series):
    """A :class:`pandas.Series` that cannot be changed in place; build it with
    :func:`readonly_series`. Derived objects are ordinary Series.
    """

    _ro_kind = "Series"

    @property
    def _constructor(self):  # derived results are ordinary, writable Series
        return pd.Series

    @property
    def _constructor_expanddim(self):
        return pd.DataFrame

    def __reduce__(self):
        return (readonly_series, (np.array(self.to_numpy()), self.index, self.name))


class ReadOnlyFrame(_ReadOnlyMixin, pd.DataFrame):
    """A :class:`pandas.DataFrame` that cannot be changed in place; build it with
    :func:`readonly_frame`. Derived objects are ordinary DataFrames.
    """

    _ro_kind = "DataFrame"

    @property
    def _constructor(self):
        return pd.DataFrame

    @property
    def _constructor_sliced(self):
        return pd.Series

    def insert(self, *args: Any, **kwargs: Any) -> None:
        """Refused: a read-only frame cannot gain columns (raises)."""
        raise _refuse(self._ro_kind)

    def __reduce__(self):
        return (readonly_frame, (pd.DataFrame(self).copy(),))


def _frozen_array(values: Any, dtype: Any = None) -> np.ndarray:
    arr = np.array(values, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


def readonly_series(values: Any, index: Sequence[Hashable] | pd.Index | None = None,
                    name: Hashable | None = None, dtype: Any = None) -> ReadOnlySeries:
    """A :class:`ReadOnlySeries` holding a private, non-writable copy of ``values``.

    Parameters
    ----------
    values
        Array-like of values (copied), or a Series (its values are copied; its index is used
        when ``index`` is None, else it is aligned to ``index`` by label).
    index
        Labels; defaults to the Series' index or a range.
    name
        The Series name.
    dtype
        NumPy dtype of the copy (default: inferred).

    Returns
    -------
    ReadOnlySeries

    Examples
    --------
    >>> s = readonly_series([0.5], index=["d"])
    >>> s.loc["d"] = 1.0
    Traceback (most recent call last):
    ...
    geocausal.results.readonly.ReadOnlyError: this Series is read-only (a field of a \
frozen geocausal result); take a writable copy with .copy()
    >>> float((s + 1).iloc[0])
    1.5
    """
    if isinstance(values, pd.Series):
        if index is not None and not values.index.equals(pd.Index(index)):
            missing = pd.Index(index).difference(values.index)
            if len(missing) or not values.index.is_unique:
                raise DataError(f"readonly_series: the values have no entry for labels "
                                f"{list(missing)[:5]} (or repeat labels); align them first")
            values = values.reindex(index)  # by label, never by position
        if index is None:
            index = values.index
        if name is None:
            name = values.name
        values = values.to_numpy(dtype=dtype) if dtype is not None else values.to_numpy()
    arr = _frozen_array(values, dtype)
    if arr.ndim != 1:
        raise DataError(f"readonly_series takes one-dimensional values, got shape {arr.shape}")
    out = ReadOnlySeries(arr, index=index, name=name, copy=False)
    object.__setattr__(out, _LOCK, True)
    return out


def readonly_frame(frame: pd.DataFrame | Any) -> ReadOnlyFrame:
    """A :class:`ReadOnlyFrame`: a copy of ``frame`` whose columns are non-writable arrays.

    Columns keep their dtypes (numeric, boolean, string, categorical, ...); every numeric
    column is backed by a read-only NumPy array.

    Parameters
    ----------
    frame
        A DataFrame (copied), or anything :class:`pandas.DataFrame` accepts.

    Returns
    -------
    ReadOnlyFrame

    Examples
    --------
    >>> import pandas as pd
    >>> f = readonly_frame(pd.DataFrame({"q": [0.25, 0.5], "estimate": [1.0, 2.0]}))
    >>> f["estimate"] = 0.0
    Traceback (most recent call last):
    ...
    geocausal.results.readonly.ReadOnlyError: this DataFrame is read-only (a field of a \
frozen geocausal result); take a writable copy with .copy()
    >>> f["estimate"].to_numpy().flags.writeable
    False
    """
    df = pd.DataFrame(frame).copy(deep=True)
    cols = {}
    for j in range(df.shape[1]):
        col = df.iloc[:, j]
        if isinstance(col.dtype, np.dtype) and not col.dtype.hasobject:
            cols[j] = _frozen_array(col.to_numpy())
        else:
            cols[j] = col.array.copy()
    out = ReadOnlyFrame({j: cols[j] for j in range(df.shape[1])}, index=df.index, copy=False)
    # assigning columns after construction keeps duplicate or non-string column labels intact
    object.__setattr__(out, _LOCK, False)
    out.columns = df.columns
    object.__setattr__(out, _LOCK, True)
    return out
