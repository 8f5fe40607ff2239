"""Line up the rows of an ``images=`` argument with the rows of the data, by unit id.

Every design that takes ``images=`` calls :func:`align_images` once, before anything else
touches the images. What it accepts, and how rows are matched:

- a **chips cache** (its path, a :class:`~geocausal.data.chips.ChipsCache` or the
  :class:`~geocausal.data.chips.ChipsResult` of ``extract``): matched on the unit ids stored in
  the cache;
- an **embeddings frame** (one row per unit, numeric feature columns): matched on its index, or
  on its ``unit_id`` column (the design's ``unit=`` column when it has one) if it has such a
  column;
- the **long table** ``geocausal embed`` writes (columns ``unit_id``, ``period``, ``emb_*``,
  optionally ``seq_*``), as a DataFrame or a ``.parquet`` path: pivoted to one row per unit
  (``emb_j_p<period>`` columns; the per-unit ``seq_*`` columns once) and matched on ``unit_id``;
- a **mapping** ``{scale name: any of these}`` (multi-scale chips): each value alike;
- a **raw array** without ids: chips ``(N, T, H, W, C)`` / ``(N, H, W, C)``, a ``(chips,
  mask)`` pair, or a feature matrix ``(N, p)``. Only position can match these, so they are
  accepted only when ``N`` equals the number of data rows.

The data side of the key is the data's index, or the design's ``unit=`` column when it has one
(a panel: one image row per unit serves all of its rows; a frame whose unnamed index instead
matches the data's row index is matched per row, and one that could be read both ways in
different orders is refused: name its index after the unit column). Image ids must be unique; a
data unit
without an image row is a :class:`~geocausal.errors.DataError` that names how many and a few
ids; image rows of units not in the data are ignored.

A unit whose image is unusable (a chip with no valid pixel in some period or band, as for a
chip that is all nodata or clouds; a feature row with NaN) is handled by ``missing_images``:
``"drop"`` (default) drops its data rows with a counted
:class:`~geocausal.errors.MissingImagesWarning`, ``"impute"`` keeps it (feature means of the
other units, with the same warning) and ``"error"`` raises a DataError.

Examples
--------
>>> import numpy as np, pandas as pd
>>> data = pd.DataFrame({"y": [1.0, 2.0, 3.0]}, index=["a", "b", "c"])
>>> feats = pd.DataFrame({"f": [30.0, 10.0, 20.0, 99.0]}, index=["c", "a", "b", "z"])
>>> al = align_images(feats, data)
>>> al.images[:, 0].tolist(), al.matched_by
([10.0, 20.0, 30.0], 'index')
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError, MissingImagesWarning

#: accepted values of every design's ``missing_images=`` option
MISSING_IMAGES = ("drop", "impute", "error")
#: the id column of the long table ``geocausal embed`` writes
EMBED_ID = "unit_id"
#: bytes of float64 temporaries a block statistic (summary features, usable pixels) works on
PIECE_BYTES = 64 * 1024**2


@dataclass(frozen=True)
class AlignedImages:
    """Images lined up with the kept data rows.

    Attributes
    ----------
    images
        Row ``i`` belongs to row ``i`` of ``data``: a float feature matrix ``(n, p)``, chips
        ``(n, T, H, W, C)`` / ``(n, H, W, C)``, a ``(chips, mask)`` pair of arrays, a dict of
        these (multi-scale), a :class:`ChipsView` of a chips cache (``lazy=True``), or None
        when no images were given.
    data
        The data rows kept (all of them unless ``missing_images="drop"`` dropped some).
    keep
        Boolean over the rows of the original data: kept rows.
    missing_ids
        Units (data keys) whose image is unusable: dropped or imputed.
    matched_by
        ``"index"``, ``"column '<name>'"``, ``"position"`` or ``"none"``.
    missing_images
        The policy applied.
    """

    images: Any
    data: pd.DataFrame
    keep: np.ndarray
    missing_ids: tuple = ()
    matched_by: str = "none"
    missing_images: str = "drop"

    @property
    def n_dropped(self) -> int:
        """Data rows dropped for want of a usable image."""
        return int((~self.keep).sum())

    def rows(self, value: Any) -> Any:
        """Subset a per-row argument (array, list, Series, dict of them) to the kept rows.

        Column names, scalars and None pass through unchanged, as does anything whose length
        is not the number of original data rows.

        Examples
        --------
        >>> al = AlignedImages(None, pd.DataFrame(index=[0, 2]), np.array([True, False, True]))
        >>> al.rows([0.1, 0.2, 0.3]).tolist(), al.rows("col"), al.rows(0.5)
        ([0.1, 0.3], 'col', 0.5)
        """
        n = len(self.keep)
        if self.keep.all() or value is None or isinstance(value, str | Path | bytes):
            return value
        if np.isscalar(value):
            return value
        if isinstance(value, Mapping):
            return {k: self.rows(v) for k, v in value.items()}
        if isinstance(value, pd.Series | pd.DataFrame):
            return value.iloc[self.keep] if len(value) == n else value
        if isinstance(value, list | tuple) and len(value) != n and value and all(
                hasattr(v, "__len__") and not isinstance(v, str) and len(v) == n for v in value):
            return [np.asarray(v)[self.keep] for v in value]  # one array per repetition
        arr = np.asarray(value)
        return arr[self.keep] if arr.ndim >= 1 and arr.shape[0] == n else value


@dataclass(frozen=True, eq=False)
class ChipsView:
    """A chips cache restricted and reordered to the data rows, never loaded whole.

    Row ``i`` is unit ``units[i]`` of ``cache`` (a position in the cache's unit order). Pixels
    are read only in blocks of units (:meth:`source`, :meth:`blocks`) or for a few rows
    (:meth:`read`); :func:`align_images` returns one with ``lazy=True`` so that image learners
    cross-fit from the cache (each fold a ``ChipSource.subset``).

    Attributes
    ----------
    cache
        A chips cache (:func:`geocausal.data.chips.open_cache`) or ``ChipsResult``.
    units
        Position in the cache's unit order of every row.
    block_units, memory_budget
        Streaming settings of :meth:`source` (None: the budget's default).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> x = np.arange(12, dtype="float32").reshape(3, 1, 2, 2, 1)
    >>> view = ChipsView(SimpleNamespace(chips=x, mask=None, unit_ids=np.array([7, 8, 9])),
    ...                  np.array([2, 0]))
    >>> view.shape, view.unit_ids.tolist(), view.read([0])[0].ravel().tolist()
    ((2, 1, 2, 2, 1), [9, 7], [8.0, 9.0, 10.0, 11.0])
    """

    cache: Any
    units: np.ndarray
    block_units: int | None = None
    memory_budget: Any = None

    @property
    def shape(self) -> tuple[int, ...]:
        """``(rows, [T,] H, W, C)`` as the cache's chips."""
        return (len(self.units), *tuple(self.cache.chips.shape)[1:])

    @property
    def ndim(self) -> int:
        """Dimensions of :attr:`shape`."""
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.units)

    @property
    def unit_ids(self) -> np.ndarray:
        """The cache's unit ids of the rows."""
        return np.asarray(self.cache.unit_ids)[self.units]

    def take(self, rows: Any) -> ChipsView:
        """The view of ``rows`` (positions or a boolean mask over the rows)."""
        rows = np.asarray(rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        return ChipsView(self.cache, self.units[rows], self.block_units, self.memory_budget)

    def subset_rows(self, mask: np.ndarray) -> ChipsView:
        """Rows where ``mask`` is true (the ``by=`` subgroups protocol)."""
        return self.take(np.asarray(mask, bool))

    def source(self, block_units: int | None = None, memory_budget: Any = None) -> Any:
        """A :class:`~geocausal.encoders.stream.ChipSource` over the rows, in row order.

        ``block_units``/``memory_budget`` default to the view's; a block that does not fit the
        budget is a :class:`~geocausal.errors.DataError` saying what to lower.
        """
        from geocausal.encoders.stream import ChipSource

        bu = self.block_units if block_units is None else block_units
        budget = self.memory_budget if memory_budget is None else memory_budget
        return ChipSource.of(self.cache, block_units=bu, budget=budget).subset(self.units)

    def blocks(self) -> Any:
        """``(row positions, chips (b, T, H, W, C), mask (b, T, H, W) or None)`` by blocks."""
        return self.source().blocks()

    def distinct(self) -> tuple[ChipsView, np.ndarray | None]:
        """The view of each distinct unit once and the map of every row to its row there
        (None when no unit repeats; a panel's units repeat, one row per period).

        Examples
        --------
        >>> from types import SimpleNamespace
        >>> c = SimpleNamespace(chips=np.zeros((3, 1, 1, 1, 1), "float32"), mask=None,
        ...                     unit_ids=np.array([7, 8, 9]))
        >>> v, inv = ChipsView(c, np.array([2, 0, 2])).distinct()
        >>> v.units.tolist(), inv.tolist()
        ([0, 2], [1, 0, 1])
        """
        uniq, inv = np.unique(self.units, return_inverse=True)
        if len(uniq) == len(self.units):
            return self, None
        return ChipsView(self.cache, uniq, self.block_units, self.memory_budget), inv.ravel()

    def read(self, rows: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Chips ``(k, T, H, W, C)`` (``(k, H, W, C)`` for a cache without periods) and mask
        of a few ``rows``, in the order given (only the blocks holding them are read).
        """
        rows = np.asarray(rows, np.int64)
        uniq, inv = np.unique(self.units[rows], return_inverse=True)  # each unit read once
        src = ChipsView(self.cache, uniq, self.block_units, self.memory_budget).source()
        x = np.empty((len(uniq), *src.shape[1:]), np.float32)
        m = np.ones(x.shape[:-1], bool)
        for u, xb, mb in src.blocks(prefetch=False):
            x[u] = xb
            if mb is not None:
                m[u] = mb
        inv = inv.ravel()
        x, m = x[inv], m[inv]
        if len(self.shape) == 4:
            x, m = x[:, 0], m[:, 0]
        return x, (m if getattr(self.cache, "mask", None) is not None else None)

    def _pieces(self):
        """``(rows, chips, mask)`` in pieces of a block small enough that the float64
        temporaries of a statistic (several per pixel) stay within :data:`PIECE_BYTES`.
        """
        for u, x, m in self.blocks():
            step = max(1, PIECE_BYTES // max(1, int(np.prod(x.shape[1:])) * 8))
            for a in range(0, len(u), step):
                yield u[a:a + step], x[a:a + step], None if m is None else m[a:a + step]

    def unusable(self) -> np.ndarray:
        """Rows whose chip has no valid pixel in some period and band, by blocks."""
        view, inv = self.distinct()
        if inv is not None:  # a panel: each unit checked once
            return view.unusable()[inv]
        bad = np.zeros(len(self), bool)
        for u, x, m in self._pieces():
            valid = np.isfinite(x)
            if m is not None:
                valid &= m[..., None]
            has = valid.any(axis=(2, 3))  # (b, T, C)
            bad[u] = ~has.reshape(has.shape[0], -1).all(axis=1)
        return bad

    def summary_features(self) -> np.ndarray:
        """Per-band mean and SD per period of every row (as
        :func:`geocausal.features.images.summary_features`), by blocks.
        """
        from geocausal.features.images import _impute_columns, _summary_raw

        view, inv = self.distinct()  # a panel: each unit read once, its rows share them
        feats = None
        for u, x, m in view._pieces():
            f = _summary_raw(x, m)
            if feats is None:
                feats = np.empty((len(view), f.shape[1]))
            feats[u] = f
        if feats is None:
            raise DataError("summary features of a view without rows; keep some units")
        return _impute_columns(feats if inv is None else feats[inv])

    def load(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Chips and mask of every row in memory, if they fit the memory budget.

        Raises
        ------
        DataError
            They do not fit: the message says what to lower.
        """
        from geocausal.encoders.stream import check_fits

        check_fits(int(np.prod(self.shape)) * 4, f"the chips of {len(self)} units of shape "
                   f"{self.shape[1:]}", "the number of units, or use an image learner / "
                   "representation='summary', which stream from the cache",
                   budget=self.memory_budget)
        return self.read(np.arange(len(self)))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        x = self.load()[0]
        return x if dtype is None else x.astype(dtype)


@dataclass(frozen=True)
class _Source:
    """An ``images=`` value in one of two shapes: features or chips, with ids or without."""

    ids: np.ndarray | None  # None: rows match data rows by position
    features: np.ndarray | None = None  # (m, p) float
    chips: Any = None  # (m, ...) array-like, lazily indexable
    mask: Any = None
    what: str = ""
    index_name: Any = None  # a frame keyed by its index: the index's name
    by_index: bool = False
    cache: Any = None  # the chips cache itself (a lazy view can be made of it)


def _check_policy(missing_images: str) -> None:
    if missing_images not in MISSING_IMAGES:
        raise DataError(f"missing_images={missing_images!r} is not one of {MISSING_IMAGES}: "
                        "'drop' (default) drops units without a usable image, 'impute' fills "
                        "their features with the other units' means, 'error' refuses")


def _few(values: Any, k: int = 5) -> str:
    vals = [v.item() if hasattr(v, "item") else v for v in list(values)[:k]]
    return f"{vals}{'...' if len(values) > k else ''}"


def _numeric(frame: pd.DataFrame, what: str) -> tuple[np.ndarray, list[str]]:
    bad = [c for c in frame.columns
           if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))]
    if bad:
        raise DataError(f"{what} has non-numeric columns {bad[:5]}; an image-features frame "
                        "holds numeric features only (plus an id column or index): drop them")
    if frame.shape[1] == 0:
        raise DataError(f"{what} has no feature columns")
    return frame.to_numpy(dtype=float), [str(c) for c in frame.columns]


def _from_long(frame: pd.DataFrame, key: str, what: str) -> _Source:
    """The long table of ``geocausal embed`` (one row per unit and period) as one row per unit."""
    if frame.duplicated([key, "period"]).any():
        dup = frame.loc[frame.duplicated([key, "period"], keep=False), [key, "period"]]
        raise DataError(f"{what} has {len(dup)} rows with a repeated ({key}, period) pair, e.g. "
                        f"{dup.head(3).to_numpy().tolist()}; keep one row per unit and period")
    feats = [c for c in frame.columns if c not in (key, "period")]
    seq = [c for c in feats if str(c).startswith("seq_")]
    per = [c for c in feats if c not in seq]
    parts = []
    if per:
        wide = frame.pivot(index=key, columns="period", values=per)
        wide = wide.reindex(columns=sorted(wide.columns, key=lambda c: (per.index(c[0]), c[1])))
        wide.columns = [f"{c}_p{p}" for c, p in wide.columns]
        parts.append(wide)
    if seq:  # one sequence embedding per unit, repeated on each of its periods
        parts.append(frame.groupby(key, sort=False)[seq].first())
    wide = pd.concat(parts, axis=1)
    x, _ = _numeric(wide, what)
    return _Source(ids=wide.index.to_numpy(), features=x, what=what)


def _source(images: Any, unit: str | None) -> _Source:
    if isinstance(images, str | Path):
        path = Path(images)
        if path.suffix.lower() == ".parquet" and path.is_file():
            return _source_frame(pd.read_parquet(path), unit, f"images '{path}'")
        from geocausal.data.chips import open_cache

        images = open_cache(path)
    if hasattr(images, "chips") and hasattr(images, "unit_ids"):  # a chips cache or result
        ids = np.asarray(images.unit_ids)
        if len(ids) != len(images.chips):
            raise DataError(f"the chips cache has {len(ids)} unit ids for {len(images.chips)} "
                            "chips; re-run extract")
        return _Source(ids=ids, chips=images.chips, mask=getattr(images, "mask", None),
                       what="the chips cache", cache=images)
    if isinstance(images, pd.DataFrame):
        return _source_frame(images, unit, "the images frame")
    if isinstance(images, tuple):
        if len(images) != 2:
            raise DataError(f"images= as a tuple must be (chips, mask), got {len(images)} items")
        chips, mask = np.asarray(images[0]), np.asarray(images[1], dtype=bool)
        if chips.ndim not in (4, 5) or mask.shape != chips.shape[:-1]:
            raise DataError(f"images=(chips, mask) needs chips (N, [T,] H, W, C) and a mask of "
                            f"their shape without bands; got {chips.shape} and {mask.shape}")
        return _Source(ids=None, chips=chips, mask=mask, what="the chips array")
    arr = np.asarray(images)
    if arr.ndim == 2:
        if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
            raise DataError(f"images= as a feature matrix must be numeric, got dtype {arr.dtype}")
        return _Source(ids=None, features=arr.astype(float), what="the feature matrix")
    if arr.ndim in (4, 5):
        return _Source(ids=None, chips=arr, what="the chips array")
    raise DataError(f"images= of type {type(images).__name__} and shape {arr.shape} is not "
                    "chips (N, [T,] H, W, C), a feature matrix (N, p), a chips cache, a "
                    "ChipsResult or an embeddings frame")


def _source_frame(frame: pd.DataFrame, unit: str | None, what: str) -> _Source:
    key = unit if unit is not None and unit in frame.columns else (
        EMBED_ID if EMBED_ID in frame.columns else None)
    if key is not None and "period" in frame.columns:
        return _from_long(frame, key, what)
    if key is not None:
        x, _ = _numeric(frame.drop(columns=[key]), what)
        return _Source(ids=frame[key].to_numpy(), features=x, what=f"{what} (column '{key}')")
    x, _ = _numeric(frame, what)
    return _Source(ids=frame.index.to_numpy(), features=x, what=f"{what} (index)",
                   index_name=frame.index.name, by_index=True)


def _data_keys(data: pd.DataFrame, unit: str | None) -> tuple[np.ndarray, str]:
    if unit is None:
        return data.index.to_numpy(), "index"
    if unit not in data.columns:
        raise DataError(f"unit column '{unit}' is not in the data")
    return data[unit].to_numpy(), f"column '{unit}'"


def _positions(src: _Source, keys: np.ndarray, key_name: str, n: int) -> np.ndarray:
    """Row of the image source for every data row."""
    if src.ids is None:
        m = len(src.features) if src.features is not None else len(src.chips)
        if m != n:
            raise DataError(f"images= is {src.what} of {m} rows without unit ids, so it can only "
                            f"be matched to the data by position, but the data have {n} rows. "
                            "Pass an embeddings frame indexed by unit id, a ChipsResult or a "
                            "chips cache path to match by unit id")
        return np.arange(n)
    ids = pd.Index(src.ids)
    if not ids.is_unique:
        dup = ids[ids.duplicated()].unique()
        raise DataError(f"{src.what} has {len(dup)} repeated unit ids, e.g. {_few(dup)}; keep "
                        "one image row per unit")
    pos = ids.get_indexer(pd.Index(keys))
    if (pos < 0).any():
        miss = pd.unique(keys[pos < 0])
        hint = ""
        as_text = set(map(str, ids))
        if all(str(k) in as_text for k in miss[:50]):
            hint = (f" The ids match as text: make the types agree (the data's are "
                    f"{pd.Index(keys).dtype}, the images' {ids.dtype}).")
        elif key_name == "index":
            hint = (" The data are matched on their index: set it to the unit id column "
                    "(data.set_index('<id column>')), or pass unit= where the design has it.")
        raise DataError(f"{len(miss)} of {len(pd.unique(keys))} units of the data (by "
                        f"{key_name}) have no row in {src.what}, e.g. {_few(miss)}; the images "
                        f"hold ids like {_few(ids[:3])}.{hint}")
    return pos


def _match(src: _Source, data: pd.DataFrame, keys: np.ndarray, key_name: str,
           unit: str | None) -> np.ndarray:
    """Positions; a frame keyed by an unnamed index in a design with ``unit=`` may hold one
    row per unit (matched on the unit column) or one row per data row (on the data's index).
    """
    if unit is None or not src.by_index or src.index_name == unit:
        return _positions(src, keys, key_name, len(data))
    by_unit = by_row = None
    try:
        by_unit = _positions(src, keys, key_name, len(data))
    except DataError as exc:
        err = exc
    try:
        by_row = _positions(src, data.index.to_numpy(), "index", len(data))
    except DataError:
        pass
    if by_unit is not None and by_row is not None and not np.array_equal(by_unit, by_row):
        raise DataError(f"{src.what} matches the data both on the '{unit}' column and on the "
                        "data's index, in different orders; name the frame's index "
                        f"(images.rename_axis('{unit}') for one row per unit) or give the data "
                        "and the frame the same row index")
    if by_unit is None and by_row is None:
        raise err
    return by_unit if by_unit is not None else by_row


def _take(src: _Source, pos: np.ndarray, lazy: bool = False) -> _Source:
    if src.features is not None:
        return _Source(ids=None, features=src.features[pos], what=src.what)
    if lazy and src.cache is not None:  # a row-aligned view: no pixel is read here
        return _Source(ids=None, chips=ChipsView(src.cache, np.asarray(pos, np.int64)),
                       what=src.what)
    if not isinstance(src.chips, np.ndarray):  # a chips cache: refuse to load what cannot fit
        from geocausal.encoders.stream import check_fits

        shape = tuple(src.chips.shape)
        check_fits(len(pos) * int(np.prod(shape[1:])) * 4, f"{src.what} ({len(pos)} units "
                   f"of shape {shape[1:]})", "the number of units, or embed the cache first "
                   "('geocausal embed') and pass the embeddings Parquet as images=")
    if src.ids is None and len(pos) == len(src.chips) and np.array_equal(pos, np.arange(len(pos))):
        chips = np.asarray(src.chips)
        mask = None if src.mask is None else np.asarray(src.mask, dtype=bool)
    else:
        chips = np.asarray(src.chips[pos])
        mask = None if src.mask is None else np.asarray(src.mask[pos], dtype=bool)
    return _Source(ids=None, chips=chips, mask=mask, what=src.what)


def _unusable(src: _Source) -> np.ndarray:
    """Rows whose image gives no finite feature: NaN features, or a chip period/band with no
    valid pixel.
    """
    if src.features is not None:
        return ~np.isfinite(src.features).all(axis=1)
    chips = src.chips
    if isinstance(chips, ChipsView):
        return chips.unusable()
    valid = np.isfinite(chips)
    if src.mask is not None:
        valid &= src.mask[..., None]
    space = (1, 2) if chips.ndim == 4 else (2, 3)
    has = valid.any(axis=space)  # (n, C) or (n, T, C)
    return ~has.reshape(has.shape[0], -1).all(axis=1)


def _payload(src: _Source, keep: np.ndarray, impute: np.ndarray | None) -> Any:
    if src.features is not None:
        x = src.features[keep]
        if impute is not None and impute.any():
            x = x.copy()
            col = np.nanmean(np.where(np.isfinite(x), x, np.nan)[~impute[keep]], axis=0)
            bad = ~np.isfinite(x)
            x[bad] = np.take(np.nan_to_num(col), np.nonzero(bad)[1])
        return x
    if isinstance(src.chips, ChipsView):
        return src.chips if keep.all() else src.chips.take(keep)
    chips = src.chips[keep]  # chips keep their masks; summary features impute empty periods
    return chips if src.mask is None else (chips, src.mask[keep])


def align_images(images: Any, data: pd.DataFrame, *, unit: str | None = None,
                 missing_images: str = "drop", stacklevel: int = 3,
                 lazy: bool = False) -> AlignedImages:
    """Match the rows of ``images`` to the rows of ``data`` by unit id (see the module notes).

    Parameters
    ----------
    images
        None, chips, a ``(chips, mask)`` pair, a feature matrix, an embeddings frame (wide, or
        the long table of ``geocausal embed``), a ``.parquet`` path, a chips cache (path,
        ``ChipsCache`` or ``ChipsResult``), or a mapping ``{name: any of these}``.
    data
        The design's data; its index (or ``unit`` column) holds the unit ids.
    unit
        Column of ``data`` with unit ids (designs that have ``unit=``); default the index.
    missing_images
        ``"drop"`` (default), ``"impute"`` or ``"error"``: what happens to units whose image
        is unusable (a chip with no valid pixel in some period, NaN features).
    stacklevel
        Of the :class:`~geocausal.errors.MissingImagesWarning` (points at the design's caller).
    lazy
        A chips cache (not in a mapping) becomes a :class:`ChipsView`: the cache restricted
        and reordered to the kept rows, read only in blocks of units (the unusable-image check
        too). For designs whose image learners stream (``ImageLearner``) and whose features
        are computed by blocks. Other images are unaffected.

    Returns
    -------
    AlignedImages

    Raises
    ------
    DataError
        A data unit has no image row, image ids repeat, a raw array's length differs from the
        data's, ``missing_images`` is unknown, or ``"error"`` was asked and images are missing.

    Examples
    --------
    >>> import numpy as np, pandas as pd, warnings
    >>> data = pd.DataFrame({"y": [1.0, 2.0, 3.0]})
    >>> chips = np.ones((3, 4, 4, 2)); chips[1] = np.nan   # unit 1 has no valid pixel
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     al = align_images(chips, data)
    >>> al.data.index.tolist(), al.images.shape, str(w[0].message)[:33]
    ([0, 2], (2, 4, 4, 2), 'images= has no usable image for 1')
    """
    _check_policy(missing_images)
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    n = len(data)
    if images is None:
        return AlignedImages(None, data, np.ones(n, bool), (), "none", missing_images)
    keys, key_name = _data_keys(data, unit)
    if isinstance(images, Mapping):
        if not images:
            raise DataError("images= is an empty mapping; give {scale name: chips}")
        srcs = {name: _source(v, unit) for name, v in images.items()}
    else:
        srcs = {None: _source(images, unit)}
    lazy = bool(lazy) and None in srcs
    aligned = {name: _take(s, _match(s, data, keys, key_name, unit), lazy)
               for name, s in srcs.items()}
    bad = np.zeros(n, bool)
    for s in aligned.values():
        bad |= _unusable(s)
    matched = "position" if all(s.ids is None for s in srcs.values()) else key_name
    keep = np.ones(n, bool)
    missing_ids: tuple = ()
    if bad.any():
        missing_ids = tuple(v.item() if hasattr(v, "item") else v for v in pd.unique(keys[bad]))
        what = (f"images= has no usable image for {len(missing_ids)} units ({int(bad.sum())} "
                f"data rows), e.g. {_few(missing_ids)}: a chip with no valid pixel in some "
                "period or band (all nodata, clouds or off the raster) or NaN features")
        if missing_images == "error":
            raise DataError(f"{what}. Pass missing_images='drop' to drop them or 'impute' to "
                            "give them the other units' mean features")
        if missing_images == "drop":
            if bad.all():
                raise DataError(f"{what}: that is every unit; nothing is left to estimate")
            keep = ~bad
            msg = f"{what}; dropped them (missing_images='impute' keeps them)"
        else:
            msg = f"{what}; imputed the other units' mean features (missing_images='impute')"
        warnings.warn(msg, MissingImagesWarning, stacklevel=stacklevel)
    impute = bad if missing_images == "impute" else None
    out = {name: _payload(s, keep, impute) for name, s in aligned.items()}
    kept = data if keep.all() else data.loc[keep]
    return AlignedImages(out[None] if None in out else out, kept, keep, missing_ids, matched,
                         missing_images)
