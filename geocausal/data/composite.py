"""Composites: one image per period from many scenes, reduced per pixel over clear observations.

A raster entry of the manifest with ``composite`` turns the period's scenes (files, scene
folders with one file per band, or STAC items) into one chip per unit: for every pixel, the
reducer (median by default; mean, min, max or a quantile) of the scenes' **clear
observations** - pixels that are finite, not nodata and whose cloud-mask value (Landsat Fmask,
Sentinel-2 SCL, or any ``clear_values``) is clear. The chip gets one more band, the number of
clear observations (``n_clear`` unless ``count_band`` says otherwise). A pixel without any clear
observation is masked; a unit whose chip has none in a period is reported with the all-nodata
units (``empty_ids``) and counted in a :class:`~geocausal.errors.NoClearObservationWarning`.

All scenes of a composite period must lie on one pixel grid (same CRS and pixel size, origins
a whole number of pixels apart); scenes may cover different extents.

Examples
--------
>>> import numpy as np
>>> stack = np.array([[1.0, np.nan], [3.0, np.nan], [np.nan, np.nan]])  # 3 scenes x 2 pixels
>>> values, count = reduce_scenes(stack, "median")
>>> values.tolist(), count.tolist()
([2.0, 0.0], [2, 0])
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from geocausal.data.rasters import TileInfo, read_window, valid_pixels
from geocausal.errors import DataError

#: memory (bytes) one window of a composite may take across all its scenes
MAX_STACK_BYTES = 256 * 2**20
REDUCERS = ("median", "mean", "min", "max", "quantile")


def reduce_scenes(stack: np.ndarray, reducer: str = "median", quantile: float | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Reduce ``stack`` (scenes on axis 0, NaN where a scene has no clear observation).

    Parameters
    ----------
    stack
        ``(S, ...)`` float array; NaN marks a missing (cloudy, nodata) observation.
    reducer
        ``median``, ``mean``, ``min``, ``max`` or ``quantile`` (then give ``quantile``, numpy's
        default linear interpolation).
    quantile
        In (0, 1), for ``reducer='quantile'``.

    Returns
    -------
    values, count
        The reduced values (0 where no observation is clear) and the number of clear
        observations per element (int).

    Raises
    ------
    DataError
        An unknown reducer or a missing/out-of-range quantile.

    Examples
    --------
    >>> v, n = reduce_scenes(np.array([[1.0], [5.0], [9.0]]), "quantile", 0.25)
    >>> float(v[0]), int(n[0])
    (3.0, 3)
    """
    if reducer not in REDUCERS:
        raise DataError(f"composite reducer '{reducer}' is not one of {list(REDUCERS)}")
    if (reducer == "quantile") != (quantile is not None):
        raise DataError("composite: give 'quantile' exactly when the reducer is 'quantile'")
    if quantile is not None and not 0 < quantile < 1:
        raise DataError(f"composite quantile {quantile} must lie strictly between 0 and 1")
    stack = np.asarray(stack, dtype=np.float32)
    count = (~np.isnan(stack)).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: handled below
        if reducer == "median":
            out = np.nanmedian(stack, axis=0)
        elif reducer == "mean":
            out = np.nanmean(stack, axis=0)
        elif reducer == "min":
            out = np.nanmin(stack, axis=0) if len(stack) else np.zeros(stack.shape[1:])
        elif reducer == "max":
            out = np.nanmax(stack, axis=0) if len(stack) else np.zeros(stack.shape[1:])
        else:
            out = np.nanquantile(stack, quantile, axis=0)
    out = np.where(count > 0, out, 0.0).astype(np.float32)
    return out, count


def _offset(a: TileInfo, b: TileInfo) -> tuple[int, int] | None:
    from geocausal.data.chips import _alignment

    return _alignment(a, b)


def _groups(r0: np.ndarray, c0: np.ndarray, chip: int, max_px: int) -> list[np.ndarray]:
    """Split chips into groups whose bounding window has at most ``max_px`` pixels (or one chip)."""
    out, stack = [], [np.arange(len(r0))]
    while stack:
        ids = stack.pop()
        hr = int(r0[ids].max() - r0[ids].min()) + chip
        wc = int(c0[ids].max() - c0[ids].min()) + chip
        if len(ids) == 1 or (hr * wc <= max_px and hr * wc <= 4 * len(ids) * chip * chip):
            out.append(ids)
            continue
        key = r0[ids] if hr >= wc else c0[ids]
        order = np.argsort(key, kind="stable")
        half = len(ids) // 2
        stack += [ids[order[:half]], ids[order[half:]]]
    return out


def composite_chips(tiles: Sequence[TileInfo], t: int, home: np.ndarray, row0: np.ndarray,
                    col0: np.ndarray, chip: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite chips of period ``t`` for a batch of units.

    Parameters
    ----------
    tiles
        Every tile of the study (those of period ``t`` are the scenes reduced).
    t
        Period index.
    home, row0, col0
        ``(n,)``: each unit's home tile index in ``tiles`` (-1: outside every scene) and its
        chip's top-left pixel in that tile.
    chip
        Chip side in pixels.

    Returns
    -------
    chips, mask
        ``(n, chip, chip, C + 1)`` float32 (the reduced image bands, then the count of clear
        observations) and ``(n, chip, chip)`` bool (at least one clear observation).

    Raises
    ------
    DataError
        Scenes of the period that do not share one pixel grid.
    """
    scenes = [k for k, tile in enumerate(tiles) if tile.period_index == t]
    ref = tiles[scenes[0]]
    comp = ref.composite
    n_img = len(ref.image_bands)
    n = len(home)
    chips = np.zeros((n, chip, chip, n_img + 1), dtype=np.float32)
    mask = np.zeros((n, chip, chip), dtype=bool)
    # every scene's origin in the reference scene's grid
    origin = {}
    for k in scenes:
        off = _offset(tiles[k], ref)
        if off is None:
            raise DataError(f"composite period {t}: scene '{tiles[k].scene}' is not on the pixel "
                            f"grid of scene '{ref.scene}' (CRS, pixel size or a fractional "
                            "offset); resample the scenes to one grid")
        if len(tiles[k].image_bands) != n_img:
            raise DataError(f"composite period {t}: scene '{tiles[k].scene}' has "
                            f"{len(tiles[k].image_bands)} image bands, '{ref.scene}' {n_img}")
        origin[k] = off
    inside = np.nonzero(home >= 0)[0]
    if not len(inside):
        return chips, mask
    r_ref = np.array([row0[i] + origin[home[i]][0] for i in inside], dtype=np.int64)
    c_ref = np.array([col0[i] + origin[home[i]][1] for i in inside], dtype=np.int64)
    max_px = max(chip * chip, MAX_STACK_BYTES // (4 * len(scenes) * (n_img + 1)))
    from rasterio.windows import Window

    for group in _groups(r_ref, c_ref, chip, max_px):
        wr0, wc0 = int(r_ref[group].min()), int(c_ref[group].min())
        wr1, wc1 = int(r_ref[group].max()) + chip, int(c_ref[group].max()) + chip
        stack = []
        for k in scenes:
            tile = tiles[k]
            orow, ocol = origin[k]
            ra, rb = max(wr0, orow), min(wr1, orow + tile.height)
            ca, cb = max(wc0, ocol), min(wc1, ocol + tile.width)
            if ra >= rb or ca >= cb:
                continue
            raw = read_window(tile, Window(ca - ocol, ra - orow, cb - ca, rb - ra))
            vals, valid = valid_pixels(raw, tile, list(range(n_img)),
                                       n_img if tile.mask_band else None)
            layer = np.full((wr1 - wr0, wc1 - wc0, n_img), np.nan, dtype=np.float32)
            layer[ra - wr0:rb - wr0, ca - wc0:cb - wc0] = np.where(valid[..., None], vals, np.nan)
            stack.append(layer)
        if not stack:
            continue
        values, count = reduce_scenes(np.stack(stack), comp.reducer, comp.quantile)
        count = count[..., 0]
        for g in group:
            i = inside[g]
            a, b = r_ref[g] - wr0, c_ref[g] - wc0
            chips[i, :, :, :n_img] = values[a:a + chip, b:b + chip]
            chips[i, :, :, n_img] = count[a:a + chip, b:b + chip]
            mask[i] = count[a:a + chip, b:b + chip] > 0
    return chips, mask


def composite_summary(tiles: Sequence[TileInfo]) -> dict[str, Any]:
    """Scenes per composite period (for the cache's attributes)."""
    out: dict[str, Any] = {}
    for tile in tiles:
        if tile.composite is not None:
            out[str(tile.period_index)] = out.get(str(tile.period_index), 0) + 1
    return out
