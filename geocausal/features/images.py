"""Image features without learning from any ``images=`` input, aligned with the data rows.

Two steps, in this order, for every design (the api faces call them; so does
:mod:`geocausal.data.study`):

1. :func:`~geocausal.features.align.align_images` matches image rows to data rows by unit id
   (the data's index or the design's ``unit=`` column; the ids of a chips cache or
   ``ChipsResult``; the index or ``unit_id`` column of an embeddings frame; the long Parquet of
   ``geocausal embed``). Only raw arrays without ids are matched by position, and only when
   their length equals the data's. Units without a usable image follow ``missing_images=``
   (``"drop"``, ``"impute"`` or ``"error"``).
2. :func:`image_features` turns the aligned images into a feature matrix: chips become per-band
   summary features (:func:`summary_features`: mean and standard deviation per band and
   period, ignoring masked pixels) unless ``representation="engineered"`` asks for statistics
   of bands and spectral indices (:func:`engineered_matrix`) or ``"learned"`` the encoders'
   embeddings.

Examples
--------
>>> import numpy as np
>>> chips = np.random.default_rng(0).normal(size=(4, 2, 8, 8, 3)).astype("float32")
>>> image_features(chips, 4).shape
(4, 12)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError
from geocausal.features.align import MISSING_IMAGES, AlignedImages, ChipsView, align_images

__all__ = ["MISSING_IMAGES", "REPRESENTATIONS", "AlignedImages", "align_images",
           "cache_features", "check_learned_fits", "chip_rows", "engineered_matrix",
           "image_features", "learned_multiscale", "summary_features"]

#: representations :func:`image_features` makes of chips
REPRESENTATIONS = ("summary", "engineered", "learned")
#: float64 copies of a block the engineered statistics hold at once (measured: 256 units of
#: 4 x 64 x 64 x 6 took about 1.8 GB above the process's baseline)
ENGINEERED_COPIES = 10


def summary_features(chips: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-band mean and standard deviation per period: ``(N, T * C * 2)``.

    Parameters
    ----------
    chips
        ``(N, T, H, W, C)`` or ``(N, H, W, C)`` pixel values, or a
        :class:`~geocausal.features.align.ChipsView` of a chips cache (read by blocks).
    mask
        Same leading shape as ``chips`` without the band axis, True = valid; masked and
        non-finite pixels are left out. A statistic without any valid pixel gets its column's
        mean over the other units.

    Returns
    -------
    numpy.ndarray
        Means of every period and band, then their standard deviations.

    Examples
    --------
    >>> x = np.arange(8, dtype=float).reshape(2, 2, 2, 1)
    >>> summary_features(x).tolist()
    [[1.5, 1.118033988749895], [5.5, 1.118033988749895]]
    """
    if isinstance(chips, ChipsView):  # a chips cache aligned to the rows: by blocks
        _own_mask(mask)
        return chips.summary_features()
    x = np.asarray(chips, dtype=np.float64)
    if x.ndim == 4:
        x = x[:, None]
        mask = None if mask is None else np.asarray(mask)[:, None]
    if x.ndim != 5:
        raise DataError(f"chips must be (N, T, H, W, C) or (N, H, W, C), got shape {x.shape}")
    return _impute_columns(_summary_raw(x, mask))


def cache_features(cache: Any, representation: str = "summary", seed: int = 0,
                   **kwargs: Any) -> np.ndarray:
    """Learned or summary features of a chips cache, read block by block (never whole).

    Parameters
    ----------
    cache
        A chips cache (:func:`geocausal.data.chips.open_cache`) or ``ChipsResult``.
    representation
        ``"summary"`` (:func:`summary_features`, streamed) or ``"learned"``
        (:func:`geocausal.encoders.embed.learned_features`).
    seed
        Seed of the learned representation.
    **kwargs
        ``block_units`` and ``memory_budget`` for streaming; options of ``learned_features``.

    Returns
    -------
    numpy.ndarray
        One row per unit of the cache, in its unit order.

    Examples
    --------
    A stand-in for a cache (anything with ``chips``, ``mask`` and ``unit_ids``), read in
    blocks of two units, gives the in-memory summary features:

    >>> from types import SimpleNamespace
    >>> x = np.random.default_rng(0).normal(size=(5, 2, 4, 4, 3))
    >>> cache = SimpleNamespace(chips=x, mask=None, unit_ids=np.arange(5))
    >>> np.allclose(cache_features(cache, block_units=2), summary_features(x))
    True
    """
    if representation == "learned":
        from geocausal.encoders.embed import learned_features

        return learned_features(cache, seed=seed, **kwargs)
    from geocausal.encoders.stream import ChipSource

    src = ChipSource.of(cache, block_units=kwargs.get("block_units"),
                        budget=kwargs.get("memory_budget"))
    feats = None
    for units, x, m in src.blocks():
        # in pieces: the float64 temporaries of the statistics stay near 64 MB per piece
        step = max(1, 64 * 1024**2 // max(1, int(np.prod(x.shape[1:])) * 8))
        for a in range(0, len(units), step):
            f = _summary_raw(x[a:a + step], None if m is None else m[a:a + step])
            if feats is None:
                feats = np.empty((src.n, f.shape[1]))
            feats[units[a:a + step]] = f
    return _impute_columns(feats)


def _summary_raw(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Per-band mean and SD per period ``(N, T * C * 2)``, NaN where no pixel is valid."""
    x = np.asarray(x, dtype=np.float64)
    valid = np.isfinite(x)
    if mask is not None:
        valid &= np.asarray(mask, bool)[..., None]
    w = valid.astype(np.float64)
    x0 = np.where(valid, x, 0.0)
    cnt = w.sum(axis=(2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x0.sum(axis=(2, 3)) / cnt
        var = (w * (x0 - mean[:, :, None, None, :]) ** 2).sum(axis=(2, 3)) / cnt
    return np.concatenate([mean, np.sqrt(var)], axis=-1).reshape(x.shape[0], -1)


def _impute_columns(feats: np.ndarray) -> np.ndarray:
    """Non-finite entries get their column's mean over the finite ones."""
    col_mean = np.nanmean(np.where(np.isfinite(feats), feats, np.nan), axis=0)
    bad = ~np.isfinite(feats)
    if bad.any():
        feats[bad] = np.take(np.nan_to_num(col_mean), np.nonzero(bad)[1])
    return feats


def engineered_matrix(chips: Any, mask: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
    """Engineered features (:func:`~geocausal.features.engineered.engineered_features`) as a
    matrix; a statistic without valid pixels (a centre under a cloud) gets the other units'
    mean, with a counted :class:`~geocausal.errors.MissingImagesWarning`.

    Parameters
    ----------
    chips
        ``(N, [T,] H, W, C)`` pixel values, or a chips cache or a
        :class:`~geocausal.features.align.ChipsView` of one (streamed in blocks; each unit of
        a view read once when its rows repeat).
    mask
        True = valid pixel, the leading shape of ``chips`` without the band axis.
    **kwargs
        Options of :func:`~geocausal.features.engineered.engineered_features` (``bands``,
        ``roles``, ``indices``, ...).

    Returns
    -------
    numpy.ndarray
        ``(N, p)`` finite features.

    Raises
    ------
    DataError
        When a feature has no valid pixel in any chip.

    Examples
    --------
    >>> chips = np.random.default_rng(0).uniform(0.05, 0.5, size=(5, 8, 8, 2))
    >>> engineered_matrix(chips, bands=["red", "nir"], indices=["NDVI"]).shape
    (5, 33)
    """
    import warnings

    from geocausal.errors import MissingImagesWarning
    from geocausal.features.engineered import engineered_features

    if isinstance(chips, ChipsView):  # by blocks of the view's distinct units
        _own_mask(mask)
        once, inv = chips.distinct()
        if "block" not in kwargs:  # the float64 temporaries of a block fit the view's budget
            from geocausal.encoders.stream import plan_block_units

            unit = int(np.prod(once.shape[1:])) * 8
            kwargs["block"] = min(256, plan_block_units(
                unit, budget=once.memory_budget, copies=ENGINEERED_COPIES,
                what="engineered statistics (float64)"))
        feats = engineered_matrix(_view_rows(once), None, **kwargs)
        return feats if inv is None else feats[inv]
    feats = np.array(engineered_features(chips, mask, **kwargs).to_numpy(dtype=float))
    bad = ~np.isfinite(feats)
    if bad.any():
        rows = bad.any(axis=1)
        col = np.nanmean(np.where(bad, np.nan, feats), axis=0)
        if not np.isfinite(col).all():
            raise DataError(f"{int((~np.isfinite(col)).sum())} engineered features have no "
                            "valid pixel in any chip (e.g. a centre, ring or window masked "
                            "on every chip); pass fewer rings, windows or stats")
        feats[bad] = np.take(col, np.nonzero(bad)[1])
        warnings.warn(f"engineered features: {int(rows.sum())} units have statistics without "
                      f"any valid pixel ({int(bad.sum())} values, e.g. a chip centre under "
                      "cloud); imputed the other units' means", MissingImagesWarning,
                      stacklevel=4)
    return feats


def image_features(images: Any, n: int, *, representation: str = "summary", seed: int = 0,
                   **kwargs: Any) -> np.ndarray | None:
    """Feature matrix ``(n, p)`` from whatever the user passed as ``images=``.

    Parameters
    ----------
    images
        Images already aligned with the data rows by :func:`align_images` (a chips cache path
        or object is read in its own unit order).
    n
        Number of data rows the features must align with.
    representation
        ``"summary"`` (per-band mean and SD), ``"engineered"`` (statistics of bands and spectral
        indices: quantiles, centre versus rings, texture; see
        :func:`~geocausal.features.engineered.engineered_features`, whose options ``roles``,
        ``bands``, ``indices``, ... pass through ``kwargs``) or ``"learned"`` (self-supervised
        encoder embeddings, see :mod:`geocausal.encoders`).
    seed
        Seed for learned representations.

    Examples
    --------
    >>> chips = np.random.default_rng(0).uniform(0.05, 0.5, size=(5, 8, 8, 2))
    >>> image_features(chips, 5, representation="engineered", bands=["red", "nir"],
    ...                indices=["NDVI"]).shape
    (5, 33)
    """
    if representation not in REPRESENTATIONS:
        raise DataError(f"representation={representation!r} is not one of {REPRESENTATIONS}")
    if images is None:
        return None
    if isinstance(images, ChipsView):  # a chips cache aligned to the rows (align_images lazy)
        return _view_features(images, n, representation, seed, **kwargs)
    if isinstance(images, str | Path):
        from geocausal.data.chips import open_cache

        images = open_cache(images)
    if hasattr(images, "chips") and hasattr(images, "unit_ids"):  # a chips cache or result
        if representation == "engineered":  # streamed in blocks; band names from the cache
            feats = engineered_matrix(images, None, **kwargs)
            if feats.shape[0] != n:
                raise DataError(f"images have {feats.shape[0]} rows but the data have {n}")
            return feats
        if representation in ("learned", "summary"):  # streamed in blocks of units
            feats = cache_features(images, representation, seed, **kwargs)
            if feats.shape[0] != n:
                raise DataError(f"images have {feats.shape[0]} rows but the data have {n}")
            return feats
        from geocausal.encoders.stream import check_fits

        check_fits(int(np.prod(images.chips.shape)) * 4, f"the chips cache ({images.shape})",
                   "the number of units (or use representation='summary'/'learned', which "
                   "stream)")
        images = (np.asarray(images.chips), np.asarray(images.mask))
    mask = None
    if isinstance(images, tuple):
        images, mask = images
    if isinstance(images, pd.DataFrame):
        feats = images.select_dtypes("number").to_numpy(dtype=float)
    else:
        arr = np.asarray(images)
        if arr.ndim == 2:
            feats = arr.astype(float)
        elif representation == "learned":
            from geocausal.encoders.embed import learned_features

            feats = learned_features(arr, mask=mask, seed=seed, **kwargs)
        elif representation == "engineered":
            feats = engineered_matrix(arr, mask, **kwargs)
        else:
            feats = summary_features(arr, mask)
    if feats.shape[0] != n:
        raise DataError(f"images have {feats.shape[0]} rows but the data have {n}")
    if not np.all(np.isfinite(feats)):
        raise DataError(f"image features have {int((~np.isfinite(feats)).sum())} non-finite values")
    return feats


class _ViewRows:
    """The chips of a :class:`~geocausal.features.align.ChipsView` as a lazy array that
    streaming readers slice (``x[a:b]``, a block of rows at a time); masked pixels read as NaN
    (what the readers treat as invalid), so no mask array is needed.
    """

    def __init__(self, view: ChipsView) -> None:
        self.view = view
        self.shape = view.shape
        self.ndim = len(view.shape)
        self.dtype = np.dtype("float32")

    def __len__(self) -> int:
        return len(self.view)

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise DataError("a chips cache aligned to the rows is read by slices of rows "
                            "(x[a:b]) only")
        x, m = self.view.read(np.arange(len(self.view))[key])
        if m is not None:
            x[~m] = np.nan
        return x


def _view_features(view: ChipsView, n: int, representation: str, seed: int,
                   **kwargs: Any) -> np.ndarray:
    """:func:`image_features` of a :class:`~geocausal.features.align.ChipsView` by blocks of
    units (peak memory bounded by a block, never by the cache): summary features, the
    engineered statistics (read ``block`` units at a time) or the learned embeddings (trained
    and applied streaming). Each unit is read once even when its rows repeat (a panel).
    """
    bu, budget = kwargs.pop("block_units", None), kwargs.pop("memory_budget", None)
    if bu is not None or budget is not None:
        view = ChipsView(view.cache, view.units, bu, budget)
    if representation == "summary":
        if kwargs:
            raise DataError(f"representation='summary' takes no options, got {sorted(kwargs)}")
        feats = view.summary_features()
    elif representation == "engineered":  # distinct units, blocks sized by the view's budget
        feats = engineered_matrix(view, None, **kwargs)
    else:
        from geocausal.encoders.embed import learned_features

        once, inv = view.distinct()
        feats = learned_features(_view_rows(once), seed=seed, block_units=bu,
                                 memory_budget=budget, **kwargs)
        feats = feats if inv is None else feats[inv]
    if feats.shape[0] != n:
        raise DataError(f"images have {feats.shape[0]} rows but the data have {n}")
    return feats


def _view_rows(view: ChipsView) -> Any:
    """A view as a chips cache that streaming readers take: its rows' chips as a lazy array
    (masked pixels NaN), its ids and the cache's band names.
    """
    from types import SimpleNamespace

    bands = list(getattr(view.cache, "bands", None) or []) or None
    return SimpleNamespace(chips=_ViewRows(view), mask=None, unit_ids=view.unit_ids,
                           bands=bands)


def _own_mask(mask: Any) -> None:
    if mask is not None:
        raise DataError("a chips cache aligned to the rows (ChipsView) carries its own mask; "
                        "pass mask=None")


def learned_multiscale(chips: Any, mask: np.ndarray | None = None, seed: int = 0,
                       **kwargs: Any) -> tuple[np.ndarray, Any]:
    """Position-aware self-supervised features
    (:func:`geocausal.encoders.multiscale.multiscale_features`) and the pretrained encoder, of
    arrays or of a :class:`~geocausal.features.align.ChipsView` of a chips cache.

    A view is never loaded whole: the pretraining gathers only its ``max_train`` images (a
    named :class:`~geocausal.errors.DataError` saying to lower ``max_train`` when they exceed
    the view's memory budget) and the embedding reads it block by block, each distinct unit
    once; the features equal those of the view's chips and mask as arrays for the same seed.

    Parameters
    ----------
    chips, mask
        ``(N, [T,] H, W, C)`` chips and their validity mask, or a view (``mask=None``).
    seed
        Seed of the pretraining.
    **kwargs
        Options of ``multiscale_features`` (``epochs``, ``max_train``, ``centre``, ...).

    Returns
    -------
    tuple
        ``(features (N, p), MultiscaleResult)``.

    Examples
    --------
    >>> import warnings
    >>> x = np.random.default_rng(0).normal(size=(20, 8, 8, 2)).astype("float32")
    >>> with warnings.catch_warnings():  # one epoch does not converge
    ...     warnings.simplefilter("ignore")
    ...     z, pre = learned_multiscale(x, epochs=1, embed_dim=4, widths=(4,))
    >>> z.shape, pre.epochs_run
    ((20, 12), 1)
    """
    from geocausal.encoders.multiscale import multiscale_features

    if not isinstance(chips, ChipsView):
        return multiscale_features(chips, mask, seed, return_model=True, **kwargs)
    _own_mask(mask)
    once, inv = chips.distinct()
    z, pre = multiscale_features(once.source(), None, seed, return_model=True,
                                 budget=kwargs.pop("budget", once.memory_budget), **kwargs)
    return (z if inv is None else z[inv]), pre


def check_learned_fits(chips: Any, seed: int = 0, **kwargs: Any) -> None:
    """Refuse, before any training, a view whose learned-feature training images
    (:func:`learned_multiscale` with these options) do not fit its memory budget; arrays
    pass (they are in memory already).

    Raises
    ------
    DataError
        Saying to lower ``max_train`` or raise the memory budget.

    Examples
    --------
    >>> check_learned_fits(np.zeros((3, 4, 4, 1)))  # arrays: nothing to gather
    """
    if not isinstance(chips, ChipsView):
        return
    import inspect

    from geocausal.encoders.multiscale import multiscale_features, training_items

    once = chips.distinct()[0]
    default = inspect.signature(multiscale_features).parameters["max_train"].default
    training_items(once.source(), kwargs.get("max_train", default), seed,
                   budget=kwargs.get("budget", once.memory_budget))


def chip_rows(chips: Any, mask: np.ndarray | None, rows: Any
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """Chips and mask of a few ``rows`` of arrays or of a
    :class:`~geocausal.features.align.ChipsView` (only the blocks holding them are read).

    Examples
    --------
    >>> x = np.arange(8, dtype="float32").reshape(4, 1, 2, 1)
    >>> chip_rows(x, None, [3, 1])[0].ravel().tolist()
    [6.0, 7.0, 2.0, 3.0]
    """
    if isinstance(chips, ChipsView):
        _own_mask(mask)
        return chips.read(rows)
    rows = np.asarray(rows, np.int64)
    return np.asarray(chips)[rows], None if mask is None else np.asarray(mask)[rows]
