"""Pixel distributions per unit: the values of a band or an index within a polygon or buffer.

Each unit's region (its polygon, or a buffer of ``buffer_m`` metres around its point or
polygon) is laid over the raster grid; a pixel's weight is the fraction of it the region covers,
computed by rasterizing the region on a grid ``supersample`` times finer and averaging (a pixel
whose centre is outside but whose corner is inside gets a partial weight). Masked pixels
(nodata, non-finite, cloud-mask values outside ``clear_values``) are left out. The result holds
the weighted samples and/or a matrix of weighted quantiles on a grid: the input that
distribution-valued regression discontinuity needs from rasters.

Weighted quantile: ``Q(q) = min{x : F(x) >= q}`` with ``F`` the weighted empirical CDF (the
"inverted CDF" definition, equal to ``numpy.quantile(..., method="inverted_cdf")`` when weights
are equal).

Examples
--------
>>> import tempfile
>>> from geocausal.data.rasters import write_example_study
>>> m = write_example_study(tempfile.mkdtemp())
>>> d = pixel_distributions(m, band="red", buffer_m=25.0, quantiles=[0.25, 0.5, 0.75])
>>> d.quantiles.shape, len(d.values)
((6, 3), 6)
>>> bool((d.weights[0] > 0).all() and d.weights[0].sum() > 15)
True
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geocausal.data.manifest import Manifest, load_manifest
from geocausal.data.rasters import TileInfo, close_rasters, open_raster, tile_infos, valid_pixels
from geocausal.data.units import load_units
from geocausal.errors import DataError, GeocausalWarning


@dataclass(frozen=True)
class PixelDistributions:
    """Per-unit weighted pixel samples and/or weighted quantiles.

    Attributes
    ----------
    unit_ids
        Unit ids, one per row.
    variable
        The band name or index the values are of.
    period
        The period the rasters belong to (None for rasters given directly).
    values, weights
        Per unit, the pixel values and their coverage weights in (0, 1] (None when
        ``samples=False``).
    grid
        Quantile levels (None when no quantiles were asked for).
    quantiles
        ``(n_units, len(grid))`` weighted quantiles (NaN rows for units without pixels).
    total_weight
        ``(n_units,)`` sum of weights: the covered area in pixels.
    """

    unit_ids: np.ndarray
    variable: str
    period: Any
    values: tuple[np.ndarray, ...] | None
    weights: tuple[np.ndarray, ...] | None
    grid: np.ndarray | None
    quantiles: np.ndarray | None
    total_weight: np.ndarray

    def to_frame(self) -> Any:
        """Samples as a long DataFrame with columns ``unit``, ``value``, ``weight``."""
        import pandas as pd

        if self.values is None:
            raise DataError("no samples kept; call pixel_distributions(..., samples=True)")
        lengths = [len(v) for v in self.values]
        return pd.DataFrame({"unit": np.repeat(self.unit_ids, lengths),
                             "value": np.concatenate(self.values) if lengths else [],
                             "weight": np.concatenate(self.weights) if lengths else []})


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, grid: Sequence[float]
                       ) -> np.ndarray:
    """Inverted-CDF weighted quantiles of ``values`` at levels ``grid``.

    Examples
    --------
    >>> weighted_quantiles(np.array([3.0, 1.0, 2.0]), np.array([1.0, 1.0, 2.0]), [0.25, 0.5, 1.0])
    array([1., 2., 3.])
    """
    grid = np.asarray(grid, float)
    values = np.asarray(values, float)
    weights = np.asarray(weights, float)
    keep = weights > 0
    if not keep.any():
        return np.full(grid.shape, np.nan)
    order = np.argsort(values[keep], kind="stable")
    v, w = values[keep][order], weights[keep][order]
    cdf = np.cumsum(w) / w.sum()
    idx = np.searchsorted(cdf, grid - 1e-12, side="left")
    return v[np.clip(idx, 0, len(v) - 1)]


def _coverage(geom: Any, transform: Any, shape: tuple[int, int], s: int) -> np.ndarray:
    """Fraction of each pixel of a window covered by ``geom`` (supersampled ``s`` times)."""
    from affine import Affine
    from rasterio.features import rasterize

    fine = rasterize([(geom, 1)], out_shape=(shape[0] * s, shape[1] * s),
                     transform=transform * Affine.scale(1.0 / s), fill=0, dtype="uint8")
    return fine.reshape(shape[0], s, shape[1], s).mean(axis=(1, 3))


def _regions(units: Any, crs: Any, buffer_m: float | None, polygon: bool) -> Any:
    """Each unit's region (GeoSeries) in ``crs``."""
    geom = units.geometry
    polys = geom.geom_type.isin(["Polygon", "MultiPolygon"])
    if not polygon or not bool(polys.all()):
        if buffer_m is None:
            raise DataError("point units need 'buffer_m' (the radius, in metres, of the region "
                            "whose pixels are collected)")
        if not polygon:
            from geocausal.data.units import unit_points

            geom = unit_points(units)
    if buffer_m is not None:
        work = geom.to_crs(units.estimate_utm_crs() if crs.is_geographic else crs)
        axes = work.crs.axis_info
        factor = axes[0].unit_conversion_factor if axes else 1.0  # CRS units -> metres
        geom = work.buffer(buffer_m / factor, resolution=32)
    return geom.to_crs(crs)


def _index_values(index: str | Callable, bands: dict[str, np.ndarray]) -> np.ndarray:
    if callable(index):
        return np.asarray(index(bands), dtype=np.float64)
    if str(index).lower() == "ndvi":
        lower = {k.lower(): v for k, v in bands.items()}
        if "red" not in lower or "nir" not in lower:
            raise DataError(f"index 'ndvi' needs bands named 'red' and 'nir'; bands are "
                            f"{list(bands)}")
        red, nir = lower["red"].astype(np.float64), lower["nir"].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (nir - red) / (nir + red)
    raise DataError(f"unknown index {index!r}; use 'ndvi' or a callable taking a dict of bands")


def _raster_tiles(paths: Sequence[str | Path], bands: Sequence[str] | None) -> tuple[
        list[TileInfo], list[str]]:
    tiles = []
    names: list[str] = []
    for p in paths:
        src = open_raster(p)
        if src.crs is None:
            raise DataError(f"raster '{p}' has no CRS")
        names = list(bands) if bands is not None else [
            d or f"band{i + 1}" for i, d in enumerate(src.descriptions)]
        if len(names) != src.count:
            raise DataError(f"raster '{p}' has {src.count} bands but {len(names)} names were "
                            f"given ({names})")
        tiles.append(TileInfo(period_index=0, path=str(p), crs=src.crs.to_wkt(),
                              transform=tuple(src.transform)[:6], width=src.width,
                              height=src.height, image_bands=tuple(range(1, src.count + 1)),
                              mask_band=None, clear_values=(), nodata=src.nodata, scale=1.0,
                              offset=0.0))
    return tiles, names


def pixel_distributions(manifest_or_rasters: Manifest | str | Path | Sequence[str | Path],
                        units: Any = None, *, band: str | int | None = None,
                        index: str | Callable | None = None, period: Any = None,
                        buffer_m: float | None = None, polygon: bool = True,
                        quantiles: Sequence[float] | int | None = None, samples: bool = True,
                        supersample: int = 4, bands: Sequence[str] | None = None,
                        id_col: str | None = None, workers: int | None = None,
                        scheduler: str | None = None, chunk_units: int = 2000
                        ) -> PixelDistributions:
    """The distribution of a band or index over the pixels of each unit's region.

    Parameters
    ----------
    manifest_or_rasters
        A manifest (or its YAML path), or raster file path(s) (one period, one grid or tiles).
    units
        GeoDataFrame of units (any CRS); default the manifest's units.
    band
        Band name (or 1-based index) whose values are collected.
    index
        ``"ndvi"`` (from bands named red and nir) or a callable ``f(dict name -> array) -> array``;
        give ``band`` or ``index``.
    period
        Which period of the manifest (default: the first).
    buffer_m
        Radius in metres of a buffer around each unit (required for point units; grows polygons).
    polygon
        Use polygons as regions (False: buffer around the centroid instead).
    quantiles
        Quantile levels, or an int ``q`` for the mid-point grid ``(k + 0.5) / q``.
    samples
        Keep the weighted pixel samples.
    supersample
        Sub-pixels per pixel side used to compute partial coverage.
    bands
        Band names of rasters given directly (default: the file's band descriptions).
    id_col
        Id column of ``units`` (default: the manifest's, else the row index).
    workers, scheduler
        Run chunks of ``chunk_units`` units as Dask tasks on a local cluster of ``workers``
        processes, or on the scheduler at this address.

    Returns
    -------
    PixelDistributions
    """
    if (band is None) == (index is None):
        raise DataError("give exactly one of 'band' and 'index'")
    if supersample < 1:
        raise DataError(f"'supersample' must be >= 1, got {supersample}")
    manifest = _as_manifest_or_none(manifest_or_rasters)
    try:
        if manifest is not None:
            periods = manifest.ordered_periods
            period = periods[0] if period is None else period
            if period not in periods:
                raise DataError(f"period {period!r} is not in the manifest's periods {periods}")
            tiles = [t for t in tile_infos(manifest) if t.period_index == periods.index(period)]
            names = list(manifest.rasters_for(period)[0].bands)
            units = load_units(manifest) if units is None else units
            id_col = id_col or manifest.units.id
        else:
            paths = [manifest_or_rasters] if isinstance(manifest_or_rasters, str | Path) \
                else list(manifest_or_rasters)
            tiles, names = _raster_tiles(paths, bands)
            if units is None:
                raise DataError("give 'units' (a GeoDataFrame) with rasters given directly")
    finally:
        close_rasters()
    if units.crs is None:
        raise DataError("the units have no CRS; set one (e.g. units.set_crs('EPSG:4326'))")
    if id_col is not None and id_col not in units.columns:
        raise DataError(f"id column '{id_col}' not in the units' columns {list(units.columns)}")
    grid = None
    if quantiles is not None:
        grid = (np.arange(quantiles) + 0.5) / quantiles if isinstance(quantiles, int) \
            else np.asarray(quantiles, float)
        if grid.ndim != 1 or np.any((grid < 0) | (grid > 1)):
            raise DataError(f"'quantiles' must be levels in [0, 1], got {quantiles}")
    variable, need = _variable(names, tiles, band, index)
    ids = np.asarray(units[id_col]) if id_col else np.asarray(units.index)
    values, weights = _run_chunks(tiles, names, units, need, index, buffer_m, polygon,
                                  supersample, workers, scheduler, chunk_units)
    total = np.array([w.sum() for w in weights])
    empty = int((total == 0).sum())
    if empty:
        warnings.warn(f"{empty} units have no valid pixel in their region (ids "
                      f"{ids[total == 0][:5].tolist()}); their quantiles are NaN",
                      GeocausalWarning, stacklevel=2)
    qmat = None
    if grid is not None:
        qmat = np.vstack([weighted_quantiles(v, w, grid) for v, w in zip(values, weights)]) \
            if len(values) else np.empty((0, len(grid)))
    return PixelDistributions(unit_ids=ids, variable=variable, period=period,
                              values=tuple(values) if samples else None,
                              weights=tuple(weights) if samples else None, grid=grid,
                              quantiles=qmat, total_weight=total)


def _run_chunks(tiles: list[TileInfo], names: list[str], units: Any, need: list[str],
                index: Any, buffer_m: float | None, polygon: bool, s: int,
                workers: int | None, scheduler: str | None, chunk_units: int
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Collect samples serially or, with ``workers``/``scheduler``, as Dask tasks of units."""
    from geocausal.parallel import dask_client

    values: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    starts = range(0, len(units), max(1, chunk_units))
    with dask_client(address=scheduler, workers=workers) as client:
        if client is None:
            parts = [_collect(tiles, names, units.iloc[a:a + chunk_units], need, index,
                              buffer_m, polygon, s) for a in starts]
        else:
            futures = [client.submit(_collect, tiles, names, units.iloc[a:a + chunk_units], need,
                                     index, buffer_m, polygon, s, pure=False) for a in starts]
            parts = client.gather(futures)
    for v, w in parts:
        values.extend(v)
        weights.extend(w)
    return values, weights


def _as_manifest_or_none(obj: Any) -> Manifest | None:
    if isinstance(obj, Manifest):
        return obj
    if isinstance(obj, str | Path) and Path(obj).suffix.lower() in (".yaml", ".yml"):
        return load_manifest(obj)
    return None


def _variable(names: list[str], tiles: list[TileInfo], band: Any, index: Any
              ) -> tuple[str, list[str]]:
    """The variable's name and the bands to read for it."""
    if band is not None:
        if isinstance(band, int):
            if not 1 <= band <= len(names):
                raise DataError(f"band {band} out of range 1..{len(names)}")
            band = names[band - 1]
        if band not in names:
            raise DataError(f"band '{band}' not in the raster's bands {names}")
        return str(band), [band]
    masks = {names[t.mask_band - 1] for t in tiles if t.mask_band}
    variable = index if isinstance(index, str) else getattr(index, "__name__", "index")
    return str(variable), [b for b in names if b not in masks]


def _collect(tiles: list[TileInfo], names: list[str], units: Any, need: list[str],
             index: Any, buffer_m: float | None, polygon: bool, s: int
             ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per unit, the valid pixel values in its region and their coverage weights."""
    try:
        return _collect_open(tiles, names, units, need, index, buffer_m, polygon, s)
    finally:
        close_rasters()


def _collect_open(tiles: list[TileInfo], names: list[str], units: Any, need: list[str],
                  index: Any, buffer_m: float | None, polygon: bool, s: int
                  ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from affine import Affine
    from pyproj import CRS
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    n = len(units)
    vals: list[list[np.ndarray]] = [[] for _ in range(n)]
    wts: list[list[np.ndarray]] = [[] for _ in range(n)]
    regions_by_crs: dict[str, Any] = {}
    for tile in tiles:
        crs = CRS.from_wkt(tile.crs)
        if tile.crs not in regions_by_crs:
            regions_by_crs[tile.crs] = _regions(units, crs, buffer_m, polygon)
        regions = regions_by_crs[tile.crs]
        src = open_raster(tile.path)
        read_idx = [names.index(b) + 1 for b in need]
        if tile.mask_band:
            read_idx.append(tile.mask_band)
        inv = ~Affine(*tile.transform)
        for i, geom in enumerate(regions):
            if geom is None or geom.is_empty:
                continue
            x0, y0, x1, y1 = geom.bounds
            cs, rs = zip(*[inv * (x, y) for x, y in ((x0, y0), (x0, y1), (x1, y0), (x1, y1))])
            r0, r1 = max(int(np.floor(min(rs))), 0), min(int(np.ceil(max(rs))), tile.height)
            c0, c1 = max(int(np.floor(min(cs))), 0), min(int(np.ceil(max(cs))), tile.width)
            if r0 >= r1 or c0 >= c1:
                continue
            win = Window(c0, r0, c1 - c0, r1 - r0)
            raw = src.read(read_idx, window=win)
            image_pos = list(range(len(need)))
            mask_pos = len(need) if tile.mask_band else None
            v, valid = valid_pixels(raw, tile, image_pos, mask_pos)
            cov = _coverage(geom, window_transform(win, Affine(*tile.transform)),
                            (r1 - r0, c1 - c0), s)
            if index is None:
                x = v[..., 0].astype(np.float64)
            else:
                x = _index_values(index, {b: v[..., k] for k, b in enumerate(need)})
            keep = valid & (cov > 0) & np.isfinite(x)
            vals[i].append(x[keep])
            wts[i].append(cov[keep])
    values = [np.concatenate(v) if v else np.empty(0) for v in vals]
    weights = [np.concatenate(w) if w else np.empty(0) for w in wts]
    return values, weights
