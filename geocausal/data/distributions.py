"""Pixel distributions per unit: the values of a band or an index within a polygon or buffer.

Each unit's region (its polygon, or a buffer of ``buffer_m`` metres around its point or
polygon) is laid over the raster grid; a pixel's weight is the exact fraction of it the region
covers, computed by `exactextract` (:func:`geocausal.data.zonal.zone_samples`; a pixel whose
centre is outside but whose corner is inside gets its partial weight). Masked pixels (nodata,
non-finite, cloud-mask values outside ``clear_values``) are left out. The result holds
the weighted samples and/or a matrix of weighted quantiles on a grid: the input that
distribution-valued regression discontinuity needs from rasters.

Weighted quantile: ``Q(q) = min{x : F(x) >= q}`` with ``F`` the weighted empirical CDF:
``numpy.quantile(x, q, weights=w, method="inverted_cdf")``
(:func:`geocausal.data.zonal.weighted_quantiles`, the data layer's one definition).

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
from geocausal.data.rasters import TileInfo, close_rasters, open_raster, tile_infos
from geocausal.data.units import load_units
from geocausal.data.zonal import weighted_quantiles, zone_geometries, zone_samples
from geocausal.errors import DataError, EmptyZoneWarning, OverlappingZonesWarning

__all__ = ["PixelDistributions", "distribution_columns", "overlap_groups", "pixel_distributions",
           "weighted_quantiles"]


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


def _regions(units: Any, buffer_m: float | None, polygon: bool) -> Any:
    """Each unit's region (GeoSeries, in the units' CRS)."""
    polys = units.geometry.geom_type.isin(["Polygon", "MultiPolygon"])
    if not polygon or not bool(polys.all()):
        if buffer_m is None:
            raise DataError("point units need 'buffer_m' (the radius, in metres, of the region "
                            "whose pixels are collected)")
        if not polygon:
            from geocausal.data.units import unit_points

            units = units.set_geometry(unit_points(units).values)
        return zone_geometries(units, kind="buffer", radius_m=buffer_m)
    return zone_geometries(units, kind="polygon", radius_m=buffer_m)


def _roles(manifest: Manifest | None, names: list[str], index: Any) -> Any:
    if index is None or callable(index):
        return None
    if manifest is not None and (manifest.band_roles or manifest.band_preset):
        return manifest.resolved_band_roles()
    from geocausal.features.roles import resolve_band_roles

    mask = {manifest.rasters[0].cloud_mask.band} if manifest is not None and \
        manifest.rasters and manifest.rasters[0].cloud_mask else set()
    return resolve_band_roles([b for b in names if b not in mask], where="band roles")


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
                        bands: Sequence[str] | None = None,
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
        A spyndex index name (``"NDVI"``, ``"EVI"``...; bands found by the manifest's band roles,
        or by band names that are role names) or a callable ``f(dict name -> array) -> array``;
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
    variable, band = _variable(names, band, index)
    roles = _roles(manifest, names, index)
    ids = np.asarray(units[id_col]) if id_col else np.asarray(units.index)
    values, weights = _run_chunks(tiles, names, units, band, index, roles, buffer_m, polygon,
                                  workers, scheduler, chunk_units)
    total = np.array([w.sum() for w in weights])
    empty = int((total == 0).sum())
    if empty:
        warnings.warn(f"{empty} units have no valid pixel in their region (ids "
                      f"{ids[total == 0][:5].tolist()}); their quantiles are NaN",
                      EmptyZoneWarning, stacklevel=2)
    qmat = None
    if grid is not None:
        qmat = np.vstack([weighted_quantiles(v, w, grid) for v, w in zip(values, weights)]) \
            if len(values) else np.empty((0, len(grid)))
    return PixelDistributions(unit_ids=ids, variable=variable, period=period,
                              values=tuple(values) if samples else None,
                              weights=tuple(weights) if samples else None, grid=grid,
                              quantiles=qmat, total_weight=total)


def _run_chunks(tiles: list[TileInfo], names: list[str], units: Any, band: str | None,
                index: Any, roles: Any, buffer_m: float | None, polygon: bool,
                workers: int | None, scheduler: str | None, chunk_units: int
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Collect samples serially or, with ``workers``/``scheduler``, as Dask tasks of units."""
    from geocausal.parallel import dask_client

    values: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    starts = range(0, len(units), max(1, chunk_units))
    args = (tiles, names, band, index, roles, buffer_m, polygon)
    with dask_client(address=scheduler, workers=workers) as client:
        if client is None:
            parts = [_collect(units.iloc[a:a + chunk_units], *args) for a in starts]
        else:
            futures = [client.submit(_collect, units.iloc[a:a + chunk_units], *args, pure=False)
                       for a in starts]
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


def _variable(names: list[str], band: Any, index: Any) -> tuple[str, str | None]:
    """The variable's name, and the band name when it is a band."""
    if band is not None:
        if isinstance(band, int):
            if not 1 <= band <= len(names):
                raise DataError(f"band {band} out of range 1..{len(names)}")
            band = names[band - 1]
        if band not in names:
            raise DataError(f"band '{band}' not in the raster's bands {names}")
        return str(band), str(band)
    if isinstance(index, str):
        from geocausal.data.zonal import _index_key

        return _index_key(index), None
    return str(getattr(index, "__name__", "index")), None


def _collect(units: Any, tiles: list[TileInfo], names: list[str], band: str | None, index: Any,
             roles: Any, buffer_m: float | None, polygon: bool
             ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per unit, the valid pixel values in its region and their exact coverage weights."""
    if not len(units):
        return [], []
    return zone_samples(tiles, _regions(units, buffer_m, polygon), band=band, index=index,
                        band_names=names, roles=roles)


# --------------------------------------------------------------------------- manifests

def _boundary_of(m: Manifest, spec: Any, units: Any) -> Any:
    """The :class:`~geocausal.data.joins.SidedBoundary` that clips ``spec``'s zones, or None."""
    from geocausal.data.joins import _read_layer, sided_boundary

    k = m.distribution_boundary(spec)
    if k is None:
        return None
    join = m.joins[k]
    where = f"{m.file or m.name}: field 'joins.{k}'"
    layer = _read_layer(m, join, where)
    return sided_boundary(units, layer, treated=join.treated, side_column=join.side_column,
                          treated_side=join.treated_side, what=f"'{join.path}' (joins.{k})",
                          where=where)


def overlap_groups(zones: Any, tile: TileInfo) -> np.ndarray:
    """Groups of zones that share pixels: connected components of the zone overlap graph.

    Two zones are linked when they come within one pixel diagonal of each other on ``tile``'s
    grid (so every pair that shares a pixel, even a boundary pixel with small coverage
    fractions, is linked); a group is a connected component of these links. Units whose zones
    share pixels have correlated pixel distributions. In the border study's Monte Carlo
    (``benchmarks/rdd_manifest_mc.md``) clustering on these groups did not restore coverage
    (the correlation runs along chains of neighbours); non-overlapping zones did.

    Parameters
    ----------
    zones
        GeoSeries of zones, with a CRS.
    tile
        A raster tile of the grid the pixels come from.

    Returns
    -------
    numpy.ndarray
        Group label (1, 2, ... in order of first appearance) per zone.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import Point
    >>> from geocausal.data.rasters import TileInfo
    >>> tile = TileInfo(0, "x.tif", "EPSG:32632", (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), 100, 100,
    ...                 (1,), None, (), None, 1.0, 0.0)
    >>> z = gpd.GeoSeries([Point(0, 0).buffer(30), Point(50, 0).buffer(30),
    ...                    Point(500, 0).buffer(30), Point(105, 0).buffer(30)], crs="EPSG:32632")
    >>> overlap_groups(z, tile).tolist()
    [1, 1, 2, 1]
    """
    import shapely
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(zones)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    a, b, _, d, e, _ = tile.transform
    half = 0.5 * float(np.hypot(abs(a) + abs(b), abs(d) + abs(e)))
    geoms = zones.to_crs(tile.crs).buffer(half).to_numpy()
    i, j = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    graph = coo_matrix((np.ones(i.size, dtype=np.int8), (i, j)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    _, first, inverse = np.unique(comp, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # label components by their first zone
    return order[inverse].astype(np.int64) + 1


def _unit_samples(m: Manifest, spec: Any, where: str, uniq: Any, tiles: list[TileInfo],
                  period: Any, boundary: Any) -> tuple[list[np.ndarray], list[np.ndarray],
                                                       np.ndarray]:
    """Per unique unit, the pixel values of ``spec`` in its (clipped) zone, their weights,
    and the zone's overlap group (:func:`overlap_groups`).
    """
    from geocausal.data.rasters import chip_size_px
    from geocausal.data.units import unit_points
    from geocausal.data.zonal import zone_geometries

    k = m.ordered_periods.index(period)
    ptiles = [t for t in tiles if t.period_index == k]
    zones = zone_geometries(uniq, kind=spec.zone, radius_m=spec.radius_m,
                            chip_px=chip_size_px(m) if spec.zone == "chip" else None,
                            tile=ptiles[0])
    if boundary is not None:
        zones, _ = boundary.clip(zones, unit_points(uniq))
    roles = m.resolved_band_roles() if spec.index is not None else None
    try:
        vals, wts = zone_samples(ptiles, zones, band=spec.band, index=spec.index,
                                 band_names=list(m.rasters_for(period)[0].bands), roles=roles)
    except DataError as exc:
        raise DataError(f"{where} (period {period}): {exc}") from None
    return vals, wts, overlap_groups(zones, ptiles[0])


def distribution_columns(manifest: Manifest, units: Any, table: Any) -> tuple[Any, np.ndarray]:
    """The manifest's ``distributions`` as columns aligned with ``table``'s rows.

    For each entry, column ``<name>`` holds each row's valid pixel values in its unit's zone
    (clipped to the unit's own side of the boundary of a ``distance`` join, unless
    ``clip_to_side: false``) and ``<name>_weight`` their exact coverage fractions; column
    ``<name>_overlap_group`` labels groups of units whose zones share pixels (connected
    components of the overlap graph, :func:`overlap_groups`, of the first period's zones).
    Zones that share pixels give correlated distributions, and the unit-level standard errors
    of a design then run low: an :class:`~geocausal.errors.OverlappingZonesWarning` counts the
    units concerned (use a smaller radius so zones do not overlap). Samples are
    computed once per unit id and period and matched to rows by id (and by the row's period,
    as for zonal statistics: :func:`geocausal.data.zonal.row_periods`); with several periods
    and no per-row period the columns get the suffix ``_<period>``.

    Returns
    -------
    (pandas.DataFrame, numpy.ndarray)
        The columns (index of ``table``), and a boolean mask of the rows whose every
        distribution has at least one valid pixel. Rows without one are counted in an
        :class:`~geocausal.errors.EmptyZoneWarning` naming the field; the caller drops them.

    Raises
    ------
    DataError
        A boundary layer without CRS, an unknown side label (naming the field ``joins.<i>``
        and the file), an unknown band, a column collision (naming ``distributions.<i>``).

    Examples
    --------
    >>> import tempfile
    >>> from geocausal.data.manifest import manifest_from_dict
    >>> from geocausal.data.rasters import write_example_study
    >>> from geocausal.data.units import load_units
    >>> m = write_example_study(tempfile.mkdtemp())
    >>> m2 = manifest_from_dict({**m.model_dump(mode="json", exclude_defaults=True),
    ...     "distributions": [{"name": "red_px", "band": "red", "radius_m": 25.0,
    ...                        "period": 2020}]},
    ...     base_dir=m.base_dir)
    >>> units = load_units(m2)
    >>> cols, keep = distribution_columns(m2, units, units.drop(columns="geometry"))
    >>> list(cols.columns), bool(keep.all()), bool((cols["red_px_weight"][0] > 0).all())
    (['red_px', 'red_px_weight', 'red_px_overlap_group'], True, True)
    """
    import pandas as pd

    from geocausal.data.joins import check_collisions
    from geocausal.data.zonal import unit_grid

    m = manifest
    keep = np.ones(len(table), dtype=bool)
    if not m.distributions:
        return pd.DataFrame(index=table.index), keep
    id_col = m.units.id
    grid = unit_grid(m, units, table)
    uniq, periods, tiles, per_row = grid.units, grid.periods, grid.tiles, grid.per_row
    keys = table[id_col].to_numpy()
    out: dict[str, np.ndarray] = {}
    for i, spec in enumerate(m.distributions):
        where = f"{m.file or m.name}: field 'distributions.{i}'"
        boundary = _boundary_of(m, spec, uniq)
        todo = [spec.period] if spec.period is not None else periods
        pos = {u: j for j, u in enumerate(uniq[id_col].tolist())}
        rows = np.array([pos[u] for u in keys.tolist()], dtype=np.int64)
        samples = {p: _unit_samples(m, spec, where, uniq, tiles, p, boundary) for p in todo}
        new: dict[str, np.ndarray] = {}
        empty = np.zeros(len(table), dtype=bool)

        def column(vals: list[np.ndarray], at: np.ndarray) -> np.ndarray:
            col = np.empty(len(at), dtype=object)
            for r, j in enumerate(at):
                col[r] = vals[j]
            return col

        if spec.period is not None or len(periods) == 1 or per_row is not None:
            vcol = np.empty(len(table), dtype=object)
            wcol = np.empty(len(table), dtype=object)
            if spec.period is not None or len(periods) == 1:
                hit_of = {todo[0]: np.ones(len(table), dtype=bool)}
            else:
                rp = per_row.to_numpy()
                hit_of = {p: np.array([q is not None and q == p for q in rp], dtype=bool)
                          for p in periods}
            unmatched = np.ones(len(table), dtype=bool)
            for p, hit in hit_of.items():
                v, w, _ = samples[p]
                vcol[hit] = column(v, rows[hit])
                wcol[hit] = column(w, rows[hit])
                unmatched &= ~hit
            for r in np.flatnonzero(unmatched):  # rows of no imagery period (align_time)
                vcol[r], wcol[r] = np.empty(0), np.empty(0)
            new[spec.name], new[spec.weight_column] = vcol, wcol
            empty |= np.array([len(w) == 0 for w in wcol], dtype=bool)
        else:
            for p in todo:
                v, w, _ = samples[p]
                new[f"{spec.name}_{p}"] = column(v, rows)
                new[f"{spec.weight_column}_{p}"] = wcol = column(w, rows)
                empty |= np.array([len(x) == 0 for x in wcol], dtype=bool)
        groups = samples[todo[0]][2][rows]
        new[f"{spec.name}_overlap_group"] = groups
        _, inv, sizes = np.unique(groups, return_inverse=True, return_counts=True)
        shared = int((sizes[inv] > 1).sum())
        if shared:
            warnings.warn(
                f"{where} ('{spec.name}'): {shared} of {len(table)} rows have zones that share "
                "pixels with another unit's zone; their pixel distributions are correlated and "
                "unit-level standard errors run low (10-30% below the Monte Carlo SD in "
                "benchmarks/rdd_manifest_mc.md, uniform coverage 0.88 instead of 0.95); use a "
                "radius below half the spacing of the units", OverlappingZonesWarning,
                stacklevel=3)
        check_collisions([*table.columns, *out], list(new), where)
        out.update(new)
        if empty.any():
            warnings.warn(f"{where} ('{spec.name}'): {int(empty.sum())} of {len(table)} rows "
                          f"have no valid pixel in their unit's zone (unit ids "
                          f"{pd.unique(keys[empty])[:5].tolist()}); they are dropped from the "
                          "study table", EmptyZoneWarning, stacklevel=3)
            keep &= ~empty
    return pd.DataFrame(out, index=table.index), keep
