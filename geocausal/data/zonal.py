"""Zonal aggregates per unit: statistics of bands and spectral indices over each unit's zone.

A **zone** is a unit's polygon, a buffer of ``radius_m`` metres around its point (or polygon), or
the footprint of its chip (the same pixel window :func:`geocausal.data.chips.extract` cuts).
Every pixel is weighted by the exact fraction of it that the zone covers, computed by
`exactextract <https://isciences.github.io/exactextract/>`_; masked pixels (nodata, non-finite,
cloud-mask values outside ``clear_values``) are left out. With ``w`` the coverage fractions of the
valid pixels ``x`` of a zone:

- ``count`` = ``sum(w)``: the valid covered area, in pixels;
- ``sum`` = ``sum(w x)``; ``mean`` = ``sum(w x) / sum(w)``;
- ``sd`` = ``sqrt(sum(w (x - mean)^2) / sum(w))`` (population form);
- ``min``, ``max``: over pixels with ``w > 0``;
- ``majority``: the value with the largest covered area, ties to the largest value
  (categorical bands);
- quantile ``q``: ``numpy.quantile(x, q, weights=w, method="inverted_cdf")``, i.e.
  ``min{x : F(x) >= q}`` with ``F`` the coverage-weighted CDF (the one definition of a weighted
  quantile in geocausal's data layer, see :func:`weighted_quantiles`);
- class fractions: for each class value ``k``, ``sum(w [x == k]) / sum(w)``.

A zone without a valid pixel gets ``count`` 0 and NaN for every other statistic, with one
:class:`~geocausal.errors.EmptyZoneWarning` that says how many zones and which ids.

Spectral indices are computed per pixel from the band roles (see
:mod:`geocausal.features.roles`) by :func:`geocausal.features.indices.spectral_indices`
(spyndex's formulas), through :func:`index_pixels`.

Examples
--------
>>> import tempfile
>>> from geocausal.data.rasters import write_example_study
>>> from geocausal.data.units import load_units
>>> m = write_example_study(tempfile.mkdtemp())
>>> zones = zone_geometries(load_units(m), kind="buffer", radius_m=15.0)
>>> path = m.resolve(m.rasters[0].paths[0])
>>> z = zonal_stats(path, zones, bands=["red", "nir"], stats=["mean", "count"],
...                 band_names=["red", "nir"], ids=load_units(m)["unit"], indices=["NDVI"])
>>> list(z.columns)
['red_mean', 'red_count', 'nir_mean', 'nir_count', 'NDVI_mean', 'NDVI_count']
>>> bool((z["red_count"] > 6.9).all() and (z["red_count"] < 7.2).all())
True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geocausal.data.rasters import TileInfo, close_rasters, open_raster, valid_pixels
from geocausal.errors import DataError, EmptyZoneWarning

#: statistics a zone can report (quantiles and class fractions are asked for separately)
STATS = ("mean", "sum", "sd", "min", "max", "count", "majority")
ZONES = ("buffer", "polygon", "chip")
_EE_STAT = {"mean": "mean", "sum": "sum", "sd": "stdev", "min": "min", "max": "max",
            "count": "count", "majority": "majority"}


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, grid: Sequence[float]
                       ) -> np.ndarray:
    """Inverted-CDF weighted quantiles: ``numpy.quantile(values, grid, weights=weights,
    method="inverted_cdf")`` over the entries with positive weight (NaN when there are none).

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
    return np.asarray(np.quantile(values[keep], grid, weights=weights[keep],
                                  method="inverted_cdf"), float)


# --------------------------------------------------------------------------- spectral indices

def index_pixels(name: str | Callable, bands: Mapping[str, np.ndarray], roles: Any) -> np.ndarray:
    """Per-pixel values of a spectral index from band arrays.

    Parameters
    ----------
    name
        A spyndex index name (``"NDVI"``, ``"SAVI"``, ``"NBR"``...; spyndex's default constants),
        or a callable ``f(dict band name -> array) -> array``.
    bands
        Band name -> array (all the same shape).
    roles
        :class:`~geocausal.features.roles.BandRoles` of those band names.

    Examples
    --------
    >>> from geocausal.features.roles import resolve_band_roles
    >>> b = {"red": np.array([0.1, 0.2]), "nir": np.array([0.5, 0.2])}
    >>> index_pixels("NDVI", b, resolve_band_roles(["red", "nir"])).round(4).tolist()
    [0.6667, 0.0]
    """
    if callable(name):
        return np.asarray(name(dict(bands)), dtype=np.float64)
    from geocausal.features.indices import spectral_indices

    key = _index_key(name)
    index_bands(key, roles, roles.bands)  # names the missing roles
    first = np.asarray(next(iter(bands.values())))
    chips = np.full(first.shape + (len(roles.bands),), np.nan)
    for k, b in enumerate(roles.bands):
        if b in bands:
            chips[..., k] = bands[b]
    values, _ = spectral_indices(chips, roles, [key], warn=False)
    return values[..., 0]


def _index_key(name: str) -> str:
    import spyndex

    keys = {k.lower(): k for k in spyndex.indices}
    key = keys.get(str(name).lower())
    if key is None:
        raise DataError(f"unknown spectral index '{name}'; use a spyndex index name (e.g. NDVI, "
                        "EVI, SAVI, NBR, NDWI) or a callable")
    return key


def index_bands(name: str | Callable, roles: Any, bands: Sequence[str]) -> list[str]:
    """The band names an index reads (all ``bands`` for a callable)."""
    if callable(name):
        return list(bands)
    import spyndex

    codes = roles.spyndex_bands()
    need = [c for c in spyndex.indices[_index_key(name)].bands if c not in spyndex.constants]
    missing = [c for c in need if c not in codes]
    if missing:
        raise DataError(f"index '{name}' needs bands with spyndex codes {missing}, which no band "
                        f"has as its role; roles are {dict(roles.roles)} for bands "
                        f"{list(roles.bands)}; set 'band_roles' (or 'band_preset')")
    return [roles.bands[codes[c]] for c in need]


# --------------------------------------------------------------------------- zones

def zone_geometries(units: Any, *, kind: str = "buffer", radius_m: float | None = None,
                    chip_px: int | None = None, tile: TileInfo | None = None) -> Any:
    """Each unit's zone as a GeoSeries (in the units' CRS, or the tile's for chips).

    Parameters
    ----------
    units
        GeoDataFrame of points or polygons, with a CRS.
    kind
        ``"buffer"`` (``radius_m`` around the point, or around the polygon), ``"polygon"`` (the
        unit's polygon, grown by ``radius_m`` when given) or ``"chip"`` (the chip's pixel window
        on ``tile``'s grid, ``chip_px`` pixels a side).

    Raises
    ------
    DataError
        No CRS, a missing or negative radius, point units asked for polygons.
    """
    if kind not in ZONES:
        raise DataError(f"zone kind {kind!r} is not one of {ZONES}")
    if units.crs is None:
        raise DataError("the units have no CRS; set one (units.crs in the manifest, or "
                        "units.set_crs(...))")
    if radius_m is not None and not (np.isfinite(radius_m) and radius_m >= 0):
        raise DataError(f"'radius_m' must be a finite number >= 0, got {radius_m}")
    geom = units.geometry
    if kind == "chip":
        return _chip_zones(units, chip_px, tile)
    polys = geom.geom_type.isin(["Polygon", "MultiPolygon"])
    if kind == "polygon" and not bool(polys.all()):
        raise DataError(f"zone 'polygon' needs polygon units; {int((~polys).sum())} units are "
                        "points; use zone 'buffer' with 'radius_m'")
    if kind == "buffer":
        if radius_m is None:
            raise DataError("zone 'buffer' needs 'radius_m' (metres)")
        from geocausal.data.units import unit_points

        geom = unit_points(units) if not bool(polys.all()) else geom
    if radius_m:
        work = geom.to_crs(_metric_crs(units))
        axes = work.crs.axis_info
        factor = axes[0].unit_conversion_factor if axes else 1.0  # CRS units -> metres
        geom = work.buffer(radius_m / factor, quad_segs=32).to_crs(units.crs)
    return geom


def _metric_crs(units: Any) -> Any:
    if units.crs.is_geographic:
        return units.estimate_utm_crs()
    return units.crs


def _chip_zones(units: Any, chip_px: int | None, tile: TileInfo | None) -> Any:
    import geopandas as gpd
    from affine import Affine
    from shapely import box

    from geocausal.data.chips import _pixel_positions, _project
    from geocausal.data.units import unit_points

    if chip_px is None or tile is None or chip_px < 1:
        raise DataError("zone 'chip' needs the chip size in pixels and a raster grid")
    pts = unit_points(units)
    r, c = _pixel_positions(_project(pts, tile.crs), tile)
    r0, c0 = r - chip_px // 2, c - chip_px // 2
    t = Affine(*tile.transform)
    x0, y0 = t * (c0, r0)
    x1, y1 = t * (c0 + chip_px, r0 + chip_px)
    from pyproj import CRS

    return gpd.GeoSeries(box(np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1),
                             np.maximum(y0, y1)), crs=CRS.from_wkt(tile.crs))


# --------------------------------------------------------------------------- raster sources

class _Window:
    """Reads a window of a tile once for every band (and the mask) and keeps the last one."""

    def __init__(self, tile: TileInfo, read_idx: list[int]) -> None:
        self.tile = tile
        self.read_idx = read_idx
        self.key: tuple[int, int, int, int] | None = None
        self.vals: np.ndarray | None = None
        self.valid: np.ndarray | None = None

    def read(self, x0: int, y0: int, nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
        key = (x0, y0, nx, ny)
        if key != self.key:
            from rasterio.windows import Window

            src = open_raster(self.tile.path)
            idx = self.read_idx + ([self.tile.mask_band] if self.tile.mask_band else [])
            raw = src.read(idx, window=Window(x0, y0, nx, ny))
            self.vals, self.valid = valid_pixels(
                raw, self.tile, list(range(len(self.read_idx))),
                len(self.read_idx) if self.tile.mask_band else None)
            self.key = key
        assert self.vals is not None and self.valid is not None
        return self.vals, self.valid


def _source_class() -> type:
    from exactextract.raster import RasterSource

    class _Source(RasterSource):
        """One band, or one index computed from several, of a tile, as exactextract reads it."""

        def __init__(self, window: _Window, name: str, pick: Callable[[np.ndarray], np.ndarray]
                     ) -> None:
            super().__init__()
            self.window = window
            self.pick = pick
            self.set_name(name)
            t = window.tile
            self._res = (abs(t.transform[0]), abs(t.transform[4]))
            xs = (t.transform[2], t.transform[2] + t.transform[0] * t.width)
            ys = (t.transform[5], t.transform[5] + t.transform[4] * t.height)
            self._ext = (min(xs), min(ys), max(xs), max(ys))

        def res(self) -> tuple[float, float]:
            return self._res

        def extent(self) -> tuple[float, float, float, float]:
            return self._ext

        def srs_wkt(self) -> str:
            return self.window.tile.crs

        def nodata_value(self) -> None:
            return None

        def read_window(self, x0: int, y0: int, nx: int, ny: int) -> np.ndarray:
            vals, valid = self.window.read(x0, y0, nx, ny)
            x = np.asarray(self.pick(vals), dtype=np.float64)
            return np.ma.masked_array(x, mask=~(valid & np.isfinite(x)))

    return _Source


# --------------------------------------------------------------------------- statistics

@dataclass(frozen=True)
class _Var:
    """A variable to summarise: a band (position in the read bands) or an index."""

    name: str
    pick: Callable[[np.ndarray], np.ndarray]
    categorical: bool


def _qname(q: float) -> str:
    text = f"{100 * q:.6g}".replace(".", "_").replace("-", "m")
    return f"q{text}"


def _class_name(k: float) -> str:
    return str(int(k)) if float(k).is_integer() else str(k).replace(".", "_").replace("-", "m")


def _check_options(stats: Sequence[str], quantiles: Sequence[float]) -> None:
    bad = [s for s in stats if s not in STATS]
    if bad:
        raise DataError(f"unknown zonal statistics {bad}; use {list(STATS)} (quantiles with "
                        "'quantiles=', class fractions with 'categorical=')")
    if len(set(stats)) != len(stats):
        raise DataError(f"zonal statistics repeat: {list(stats)}")
    q = np.asarray(quantiles, float)
    if q.ndim != 1 or np.any(~np.isfinite(q)) or np.any((q < 0) | (q > 1)):
        raise DataError(f"'quantiles' must be levels in [0, 1], got {list(quantiles)}")
    if len(set(q.tolist())) != len(q):
        raise DataError(f"'quantiles' repeat: {list(quantiles)}")


def _tile_vars(tile_bands: list[str], bands: Sequence[str], categorical: Sequence[str],
               indices: Sequence[str | Callable], roles: Any) -> tuple[list[int], list[_Var]]:
    """Bands to read (1-based, in file order of ``tile_bands``) and the variables over them."""
    need: list[str] = list(dict.fromkeys([*bands, *categorical]))
    idx_bands = {}
    for ix in indices:
        if roles is None and not callable(ix):
            raise DataError(f"index '{ix}' needs band roles; give 'roles' (or set 'band_roles' "
                            "or 'band_preset' in the manifest)")
        idx_bands[ix] = index_bands(ix, roles, tile_bands)
        need += [b for b in idx_bands[ix] if b not in need]
    for b in need:
        if b not in tile_bands:
            raise DataError(f"band '{b}' is not one of the raster's bands {tile_bands}")
    pos = {b: k for k, b in enumerate(need)}
    out = []
    for b in bands:
        out.append(_Var(b, (lambda v, k=pos[b]: v[..., k]), False))
    for b in categorical:
        out.append(_Var(b, (lambda v, k=pos[b]: v[..., k]), True))
    for ix in indices:
        ks = {b: pos[b] for b in idx_bands[ix]}
        name = _index_key(ix) if isinstance(ix, str) else getattr(ix, "__name__", "index")
        out.append(_Var(str(name), (lambda v, ix=ix, ks=ks: index_pixels(
            ix, {b: v[..., k] for b, k in ks.items()}, roles)), False))
    names = [v.name for v in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"zonal variables repeat: {dup}; list each band or index once")
    return [tile_bands.index(b) + 1 for b in need], out


def zonal_stats(rasters: str | Path | TileInfo | Sequence[str | Path | TileInfo], zones: Any, *,
                bands: Sequence[str] = (), stats: Sequence[str] = ("mean",),
                quantiles: Sequence[float] = (), categorical: Sequence[str] = (),
                classes: Sequence[float] | None = None,
                indices: Sequence[str | Callable] = (), roles: Any = None,
                band_names: Sequence[str] | None = None, ids: Any = None, prefix: str = "",
                warn_empty: bool = True) -> pd.DataFrame:
    """Coverage-weighted statistics of bands and indices over each zone.

    Parameters
    ----------
    rasters
        One raster file, or the tiles of one period (files or :class:`TileInfo`; the zones'
        pixels are pooled over tiles, so a zone that straddles two tiles is whole).
    zones
        GeoSeries or GeoDataFrame of polygons (any CRS; reprojected to each tile's).
    bands
        Bands whose ``stats`` and ``quantiles`` are computed.
    stats
        Names from :data:`STATS`.
    quantiles
        Quantile levels in [0, 1] (inverted-CDF, coverage-weighted).
    categorical
        Categorical bands: their ``majority`` and class fractions ``<band>_frac_<class>``.
    classes
        Class values whose fractions are reported (default: every value seen in any zone).
    indices
        Spectral indices (spyndex names or callables on a dict of bands) summarised like bands.
    roles
        :class:`~geocausal.features.roles.BandRoles` (default: band names that are role names).
    band_names
        Band names of raster files given by path (default: the files' band descriptions).
    ids
        The zones' ids (the result's index); default ``zones.index``.
    prefix
        Prefix of every column name.
    warn_empty
        Warn (:class:`~geocausal.errors.EmptyZoneWarning`) about zones without a valid pixel.

    Returns
    -------
    pandas.DataFrame
        One row per zone (index ``ids``), columns ``<prefix><variable>_<stat>``,
        ``<prefix><variable>_q<100 q>`` and ``<prefix><band>_frac_<class>``.

    Raises
    ------
    DataError
        Unknown statistic, band or index; quantile levels outside [0, 1]; zones without CRS or
        that cannot be reprojected; repeated ids.
    """
    stats, quantiles = list(stats), [float(q) for q in quantiles]
    _check_options(stats, quantiles)
    if not (bands or categorical or indices):
        raise DataError("give at least one of 'bands', 'categorical' and 'indices'")
    tiles = _as_tiles(rasters, band_names)
    names = list(tiles[0][1])
    if roles is None and indices:
        from geocausal.features.roles import resolve_band_roles

        roles = resolve_band_roles(names, where="band roles of the raster")
    geoms = zones.geometry if hasattr(zones, "geometry") else zones
    if getattr(geoms, "crs", None) is None:
        raise DataError("the zones have no CRS; set one before computing zonal statistics")
    ids = np.asarray(zones.index if ids is None else ids)
    if len(ids) != len(geoms):
        raise DataError(f"'ids' has {len(ids)} entries for {len(geoms)} zones")
    if pd.Index(ids).has_duplicates:
        raise DataError("zone ids repeat; give each zone a unique id")
    read_idx, variables = _tile_vars(names, bands, categorical, indices, roles)
    try:
        if len(tiles) == 1:
            cols = _one_tile(tiles[0][0], geoms, read_idx, variables, stats, quantiles)
        else:
            cols = _pooled(tiles, geoms, read_idx, variables, stats, quantiles)
    finally:
        close_rasters()
    out = _assemble(cols, variables, stats, quantiles, classes, len(geoms))
    frame = pd.DataFrame(out, index=pd.Index(ids, name=getattr(zones.index, "name", None)))
    frame.columns = [f"{prefix}{c}" for c in frame.columns]
    if warn_empty:
        _warn_empty(cols, variables, ids, prefix)
    return frame


def _as_tiles(rasters: Any, band_names: Sequence[str] | None
              ) -> list[tuple[TileInfo, list[str]]]:
    items = [rasters] if isinstance(rasters, str | Path | TileInfo) else list(rasters)
    if not items:
        raise DataError("no raster given")
    out = []
    for it in items:
        if isinstance(it, TileInfo):
            if band_names is None:
                raise DataError("give 'band_names' with TileInfo rasters")
            out.append((it, list(band_names)))
            continue
        src = open_raster(it)
        if src.crs is None:
            raise DataError(f"raster '{it}' has no CRS; give the file a CRS")
        names = list(band_names) if band_names is not None else [
            d or f"band{i + 1}" for i, d in enumerate(src.descriptions)]
        if len(names) != src.count:
            raise DataError(f"raster '{it}' has {src.count} bands but {len(names)} names were "
                            f"given ({names})")
        out.append((TileInfo(period_index=0, path=str(it), crs=src.crs.to_wkt(),
                             transform=tuple(src.transform)[:6], width=src.width,
                             height=src.height, image_bands=tuple(range(1, src.count + 1)),
                             mask_band=None, clear_values=(), nodata=src.nodata, scale=1.0,
                             offset=0.0), names))
    first = out[0][1]
    for t, n in out[1:]:
        if n != first:
            raise DataError(f"raster '{t.path}' has bands {n}, the first has {first}")
    for t, _ in out:
        if not t.north_up:
            raise DataError(f"raster '{t.path}' has a rotated grid; warp it north-up first")
    return out


def _in_crs(geoms: Any, tile: TileInfo) -> Any:
    from pyproj import CRS

    crs = CRS.from_wkt(tile.crs)
    if geoms.crs.equals(crs):
        return geoms
    try:
        out = geoms.to_crs(crs)
    except Exception as exc:
        raise DataError(f"the zones (CRS {geoms.crs.to_string()}) cannot be reprojected to the "
                        f"CRS of raster '{tile.path}': {exc}") from None
    b = out.bounds.to_numpy()
    bad = ~np.isfinite(b).all(axis=1) & ~geoms.is_empty.to_numpy()
    if bad.any():
        raise DataError(f"{int(bad.sum())} zones cannot be reprojected from "
                        f"{geoms.crs.to_string()} to the CRS of raster '{tile.path}' (they lie "
                        "outside the area where that CRS is defined)")
    return out


def _frame(geoms: Any) -> Any:
    import geopandas as gpd

    return gpd.GeoDataFrame({"_gc_row": np.arange(len(geoms), dtype=np.int64)},
                            geometry=geoms.reset_index(drop=True).values, crs=geoms.crs)


def _run(tile: TileInfo, geoms: Any, read_idx: list[int], variables: list[_Var],
         ops_for: Callable[[Any, _Var], list[Any]]) -> pd.DataFrame:
    from exactextract import exact_extract

    source = _source_class()
    window = _Window(tile, read_idx)
    ops, alive = [], []  # the Python sources must outlive the call (exactextract keeps pointers)
    for k, var in enumerate(variables):
        alive.append(source(window, f"v{k}", var.pick))
        ops += ops_for(alive[-1], var, k)
    gdf = _frame(_in_crs(geoms, tile))
    df = exact_extract([], gdf, ops, include_cols=["_gc_row"], output="pandas")
    del alive
    rows = df["_gc_row"].to_numpy()
    if not np.array_equal(np.sort(rows), np.arange(len(gdf))):
        raise DataError("exactextract returned rows that do not match the zones")
    return df.set_index("_gc_row").sort_index()


def _one_tile(tile: TileInfo, geoms: Any, read_idx: list[int], variables: list[_Var],
              stats: list[str], quantiles: list[float]) -> dict[str, np.ndarray | list]:
    from exactextract import Operation

    def ops_for(src: Any, var: _Var, k: int) -> list[Any]:
        names = ["count", *[s for s in stats if s != "count"]]
        if var.categorical:
            names = ["count", "majority", "unique", "frac"]
        ops = [Operation(_EE_STAT.get(s, s), f"v{k}:{s}", src) for s in names]
        if quantiles and not var.categorical:
            ops += [Operation("values", f"v{k}:values", src),
                    Operation("coverage", f"v{k}:coverage", src)]
        return ops

    df = _run(tile, geoms, read_idx, variables, ops_for)
    cols: dict[str, Any] = {}
    for k, var in enumerate(variables):
        for s in (["count", "majority", "unique", "frac"] if var.categorical
                  else ["count", *stats]):
            cols[f"{var.name}:{s}"] = df[f"v{k}:{s}"].to_numpy()
        if quantiles and not var.categorical:
            q = np.vstack([weighted_quantiles(v, w, quantiles) for v, w in
                           zip(df[f"v{k}:values"], df[f"v{k}:coverage"])]) \
                if len(df) else np.empty((0, len(quantiles)))
            cols[f"{var.name}:quantiles"] = q
    return cols


def _pooled(tiles: list[tuple[TileInfo, list[str]]], geoms: Any, read_idx: list[int],
            variables: list[_Var], stats: list[str], quantiles: list[float]
            ) -> dict[str, np.ndarray | list]:
    """Several tiles: pool each zone's (value, coverage) pairs over tiles, then summarise."""
    from exactextract import Operation

    n = len(geoms)
    vals: list[list[list[np.ndarray]]] = [[[] for _ in range(n)] for _ in variables]
    wts: list[list[list[np.ndarray]]] = [[[] for _ in range(n)] for _ in variables]
    for tile, _ in tiles:
        df = _run(tile, geoms, read_idx, variables, lambda src, var, k: [
            Operation("values", f"v{k}:values", src), Operation("coverage", f"v{k}:coverage", src)])
        for k in range(len(variables)):
            for i, (v, w) in enumerate(zip(df[f"v{k}:values"], df[f"v{k}:coverage"])):
                vals[k][i].append(np.asarray(v, float))
                wts[k][i].append(np.asarray(w, float))
    cols: dict[str, Any] = {}
    for k, var in enumerate(variables):
        v_all = [np.concatenate(v) for v in vals[k]]
        w_all = [np.concatenate(w) for w in wts[k]]
        summ = [sample_stats(v, w, stats, quantiles, var.categorical) for v, w in
                zip(v_all, w_all)]
        names = ["count", "majority", "unique", "frac"] if var.categorical else ["count", *stats]
        for s in names:
            cols[f"{var.name}:{s}"] = np.array([d[s] for d in summ], dtype=object) \
                if s in ("unique", "frac") else np.array([d[s] for d in summ], float)
        if quantiles and not var.categorical:
            cols[f"{var.name}:quantiles"] = np.vstack([d["quantiles"] for d in summ]) \
                if n else np.empty((0, len(quantiles)))
    return cols


def sample_stats(values: np.ndarray, weights: np.ndarray, stats: Sequence[str] = STATS,
                 quantiles: Sequence[float] = (), categorical: bool = False) -> dict[str, Any]:
    """The zonal statistics of one zone from its pixel values and coverage weights.

    The definitions in the module docstring, in numpy; zones on one raster file get the same
    numbers from exactextract's own operations.

    Examples
    --------
    >>> d = sample_stats(np.array([1.0, 3.0]), np.array([0.5, 1.0]), ["mean", "sum", "count"])
    >>> round(d["mean"], 4), d["sum"], d["count"]
    (2.3333, 3.5, 1.5)
    """
    v = np.asarray(values, float)
    w = np.asarray(weights, float)
    keep = (w > 0) & np.isfinite(v)
    v, w = v[keep], w[keep]
    tot = float(w.sum())
    out: dict[str, Any] = {"count": tot}
    empty = tot == 0
    if categorical:
        uniq, inv = np.unique(v, return_inverse=True)
        area = np.bincount(inv, weights=w, minlength=len(uniq))
        out["unique"] = uniq
        out["frac"] = area / tot if tot else area
        out["majority"] = _majority(uniq, area) if not empty else math.nan
        return out
    mean = float(np.sum(w * v) / tot) if not empty else math.nan
    for s in stats:
        if s == "mean":
            out[s] = mean
        elif s == "sum":
            out[s] = float(np.sum(w * v))
        elif s == "sd":
            out[s] = math.sqrt(float(np.sum(w * (v - mean) ** 2) / tot)) if not empty else math.nan
        elif s == "min":
            out[s] = float(v.min()) if not empty else math.nan
        elif s == "max":
            out[s] = float(v.max()) if not empty else math.nan
        elif s == "majority":
            if empty:
                out[s] = math.nan
            else:
                uniq, inv = np.unique(v, return_inverse=True)
                out[s] = _majority(uniq, np.bincount(inv, weights=w))
    if quantiles:
        out["quantiles"] = weighted_quantiles(v, w, quantiles)
    return out


def _majority(uniq: np.ndarray, area: np.ndarray) -> float:
    """The value with the largest area; ties go to the largest value (as in exactextract)."""
    return float(uniq[len(uniq) - 1 - int(np.argmax(area[::-1]))])


def _assemble(cols: dict[str, Any], variables: list[_Var], stats: list[str],
              quantiles: list[float], classes: Sequence[float] | None, n: int
              ) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for var in variables:
        count = np.asarray(cols[f"{var.name}:count"], float)
        empty = ~(count > 0)
        if var.categorical:
            uniq, frac = cols[f"{var.name}:unique"], cols[f"{var.name}:frac"]
            seen = sorted({float(u) for arr in uniq for u in np.atleast_1d(arr)}) \
                if classes is None else [float(c) for c in classes]
            out[f"{var.name}_count"] = count
            out[f"{var.name}_majority"] = np.where(
                empty, np.nan, np.asarray(cols[f"{var.name}:majority"], float))
            for c in seen:
                col = np.zeros(n)
                for i in range(n):
                    u = np.atleast_1d(np.asarray(uniq[i], float))
                    f = np.atleast_1d(np.asarray(frac[i], float))
                    col[i] = float(f[u == c].sum())
                out[f"{var.name}_frac_{_class_name(c)}"] = np.where(empty, np.nan, col)
            continue
        for s in stats:
            x = count if s == "count" else np.asarray(cols[f"{var.name}:{s}"], float)
            out[f"{var.name}_{s}"] = x if s == "count" else np.where(empty, np.nan, x)
        if quantiles:
            q = np.asarray(cols[f"{var.name}:quantiles"], float).reshape(n, len(quantiles))
            for j, lev in enumerate(quantiles):
                out[f"{var.name}_{_qname(lev)}"] = np.where(empty, np.nan, q[:, j])
    return out


def _warn_empty(cols: dict[str, Any], variables: list[_Var], ids: np.ndarray, prefix: str
                ) -> None:
    for var in variables:
        count = np.asarray(cols[f"{var.name}:count"], float)
        empty = ~(count > 0)
        if empty.any():
            warnings.warn(f"{int(empty.sum())} of {len(ids)} zones cover no valid pixel of "
                          f"'{prefix}{var.name}' (ids {ids[empty][:5].tolist()}); their "
                          "statistics are NaN and their count 0", EmptyZoneWarning, stacklevel=3)


# --------------------------------------------------------------------------- manifests

@dataclass(frozen=True)
class UnitGrid:
    """What manifest-declared zonal statistics and distributions both start from: the unique
    units, the manifest's periods in order, every raster tile, and each table row's period.
    """

    units: Any
    periods: list
    tiles: list
    per_row: pd.Series | None


def unit_grid(manifest: Any, units: Any, table: pd.DataFrame) -> UnitGrid:
    """Unique units, ordered periods, raster tiles (files closed after) and row periods."""
    from geocausal.data.rasters import tile_infos
    from geocausal.data.units import unique_units

    try:
        tiles = tile_infos(manifest)
    finally:
        close_rasters()
    return UnitGrid(unique_units(units, manifest.units.id), manifest.ordered_periods, tiles,
                    row_periods(manifest, table))


def row_periods(manifest: Any, table: pd.DataFrame) -> pd.Series | None:
    """Each row's imagery period: the ``align_time`` column, or a ``time`` column whose values
    are the manifest's periods; None when rows have no period of their own.
    """
    periods = manifest.ordered_periods
    if manifest.align_time is not None and manifest.align_time.name in table.columns:
        return table[manifest.align_time.name]
    labels = {str(p): p for p in periods}
    for col in manifest.role("time"):
        if col in table.columns:
            vals = table[col].astype(str)
            if vals.isin(list(labels)).all():
                return vals.map(labels)
    return None


def zonal_columns(manifest: Any, units: Any, table: pd.DataFrame) -> pd.DataFrame:
    """The manifest's ``zonal`` statistics as columns aligned with ``table``'s rows.

    Statistics are computed once per unit id and period, then matched to the rows by the
    manifest's id column (and the row's period, when rows have one: see :func:`row_periods`).

    Raises
    ------
    DataError
        An unknown band or period (naming the field ``zonal.<i>``), a column collision.
    """
    from geocausal.data.joins import check_collisions
    from geocausal.data.rasters import chip_size_px

    m = manifest
    if not m.zonal:
        return pd.DataFrame(index=table.index)
    base = f"{m.file or m.name}: field"
    if not m.rasters:
        raise DataError(f"{base} 'zonal': the manifest has no rasters to summarise")
    id_col = m.units.id
    grid = unit_grid(m, units, table)
    uniq, periods, tiles, per_row = grid.units, grid.periods, grid.tiles, grid.per_row
    roles = m.resolved_band_roles() if any(s.indices for s in m.zonal) else None
    out: dict[str, np.ndarray] = {}
    for i, spec in enumerate(m.zonal):
        where = f"{base} 'zonal.{i}'"
        if spec.period is not None and spec.period not in periods:
            raise DataError(f"{where}.period: {spec.period!r} is not one of the periods {periods}")
        todo = [spec.period] if spec.period is not None else periods
        frames = {}
        for p in todo:
            k = periods.index(p)
            ptiles = [t for t in tiles if t.period_index == k]
            names = list(m.rasters_for(p)[0].bands)
            zones = zone_geometries(uniq, kind=spec.zone, radius_m=spec.radius_m,
                                    chip_px=chip_size_px(m) if spec.zone == "chip" else None,
                                    tile=ptiles[0])
            try:
                frames[p] = zonal_stats(ptiles, zones, bands=spec.bands, stats=spec.stats,
                                        quantiles=spec.quantiles, categorical=spec.categorical,
                                        classes=spec.classes, indices=spec.indices, roles=roles,
                                        band_names=names, ids=uniq[id_col].to_numpy(),
                                        prefix=f"{spec.name}_")
            except DataError as exc:
                raise DataError(f"{where} (period {p}): {exc}") from None
        keys = table[id_col].to_numpy()
        new: dict[str, np.ndarray] = {}
        if spec.period is not None or len(periods) == 1:
            f = frames[todo[0]]
            for c in f.columns:
                new[c] = f[c].reindex(keys).to_numpy()
        elif per_row is not None:
            rp = per_row.to_numpy()
            for c in frames[periods[0]].columns:
                col = np.full(len(table), np.nan)
                for p, f in frames.items():
                    hit = np.array([q is not None and q == p for q in rp], dtype=bool)
                    col[hit] = f[c].reindex(keys[hit]).to_numpy(float)
                new[c] = col
        else:
            for p, f in frames.items():
                for c in f.columns:
                    new[f"{c}_{p}"] = f[c].reindex(keys).to_numpy()
        check_collisions([*table.columns, *out], list(new), where)
        out.update(new)
    return pd.DataFrame(out, index=table.index)


def zone_samples(rasters: Any, zones: Any, *, band: str | None = None,
                 index: str | Callable | None = None, band_names: Sequence[str] | None = None,
                 roles: Any = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per zone, the valid pixel values of a band or index and their exact coverage fractions
    (pooled over the tiles of ``rasters``), as :func:`zonal_stats` sees them.

    Examples
    --------
    >>> import tempfile
    >>> from geocausal.data.rasters import write_example_study
    >>> from geocausal.data.units import load_units
    >>> m = write_example_study(tempfile.mkdtemp())
    >>> zones = zone_geometries(load_units(m), kind="buffer", radius_m=15.0)
    >>> v, w = zone_samples(m.resolve(m.rasters[0].paths[0]), zones, band="red",
    ...                     band_names=["red", "nir"])
    >>> len(v), round(float(w[0].sum()), 2)
    (6, 7.07)
    """
    if (band is None) == (index is None):
        raise DataError("give exactly one of 'band' and 'index'")
    tiles = _as_tiles(rasters, band_names)
    names = list(tiles[0][1])
    if roles is None and index is not None and not callable(index):
        from geocausal.features.roles import resolve_band_roles

        roles = resolve_band_roles(names, where="band roles of the raster")
    geoms = zones.geometry if hasattr(zones, "geometry") else zones
    if getattr(geoms, "crs", None) is None:
        raise DataError("the zones have no CRS; set one")
    read_idx, variables = _tile_vars(names, [band] if band is not None else [], [],
                                     [index] if index is not None else [], roles)
    from exactextract import Operation

    n = len(geoms)
    vals: list[list[np.ndarray]] = [[] for _ in range(n)]
    wts: list[list[np.ndarray]] = [[] for _ in range(n)]
    try:
        for tile, _ in tiles:
            df = _run(tile, geoms, read_idx, variables, lambda src, var, k: [
                Operation("values", "values", src), Operation("coverage", "coverage", src)])
            for i, (v, w) in enumerate(zip(df["values"], df["coverage"])):
                v, w = np.asarray(v, float), np.asarray(w, float)
                keep = (w > 0) & np.isfinite(v)
                vals[i].append(v[keep])
                wts[i].append(w[keep])
    finally:
        close_rasters()
    return ([np.concatenate(v) if v else np.empty(0) for v in vals],
            [np.concatenate(w) if w else np.empty(0) for w in wts])
