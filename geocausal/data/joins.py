"""Joins of a study's units to other layers and tables, and of survey years to imagery periods.

Every spatial join is CRS-aware: a layer without a CRS (and none given) is refused, the layer is
reprojected to the units' CRS, and distances are measured in metres in a projected CRS (the
units' own, or their UTM zone when they are geographic). Units are represented by their points
(polygon centroids). A joined column whose name the table already has is refused.

- :func:`join_within`: attributes of the polygon that contains each unit (admin regions);
- :func:`join_nearest`: attributes of the nearest feature within ``max_distance_m``, and the
  distance as a column;
- :func:`count_within`: the number of features within ``radius_m``;
- :func:`distance_to`: the (signed) distance to a line or boundary
  (:func:`geocausal.data.boundary.signed_distance`);
- :func:`join_table`: columns of another table by a key column;
- :func:`align_periods`: the imagery period of each survey year: the nearest, or the year plus
  a given lag (negative: a lead).

Examples
--------
>>> import geopandas as gpd
>>> from shapely.geometry import Point, box
>>> units = gpd.GeoDataFrame({"id": [1, 2]}, geometry=[Point(1, 1), Point(5, 1)], crs=3857)
>>> regions = gpd.GeoDataFrame({"region": ["west", "east"]},
...                            geometry=[box(0, 0, 3, 3), box(3, 0, 9, 3)], crs=3857)
>>> join_within(units, regions, ["region"])["region"].tolist()
['west', 'east']
>>> align_periods([2011, 2014], [2010, 2013, 2016]).tolist()
[2010, 2013]
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError, UnmatchedJoinWarning

JOINS = ("within", "nearest", "count", "distance", "table")


def check_collisions(table_columns: Sequence[str], new: Sequence[str], where: str) -> None:
    """Refuse joined columns that the table already has (or that repeat).

    Raises
    ------
    DataError
        Names the colliding columns and ``where`` (the manifest field or function).
    """
    have = set(map(str, table_columns))
    clash = [c for c in new if c in have]
    dup = sorted({c for c in new if list(new).count(c) > 1})
    if clash or dup:
        raise DataError(f"{where}: joined column(s) {clash or dup} collide with "
                        f"{'existing columns of the table' if clash else 'each other'}; "
                        "rename them (a 'prefix' or other 'columns') or drop the existing ones")


def _crs_of(layer: Any, what: str) -> Any:
    if getattr(layer, "crs", None) is None:
        raise DataError(f"{what} has no CRS; give the file a CRS or set 'crs' for it")
    return layer.crs


def _to(layer: Any, crs: Any, what: str) -> Any:
    if layer.crs.equals(crs):
        return layer
    try:
        out = layer.to_crs(crs)
    except Exception as exc:
        raise DataError(f"{what} (CRS {layer.crs.to_string()}) cannot be reprojected to "
                        f"{crs.to_string()}: {exc}") from None
    b = out.geometry.bounds.to_numpy()
    bad = ~np.isfinite(b).all(axis=1) & ~layer.geometry.is_empty.to_numpy()
    if bad.any():
        raise DataError(f"{int(bad.sum())} features of {what} cannot be reprojected from "
                        f"{layer.crs.to_string()} to {crs.to_string()} (outside the area where "
                        "that CRS is defined)")
    return out


def _points(units: Any, crs: Any = None) -> Any:
    import geopandas as gpd

    from geocausal.data.units import unit_points

    _crs_of(units, "the units")
    pts = gpd.GeoDataFrame({"_gc_row": np.arange(len(units))}, geometry=unit_points(units).values,
                           crs=units.crs)
    return pts if crs is None else _to(pts, crs, "the units")


def _metric(units: Any) -> Any:
    return units.estimate_utm_crs() if units.crs.is_geographic else units.crs


def _warn(n_bad: int, n: int, ids: Any, what: str) -> None:
    if n_bad:
        warnings.warn(f"{n_bad} of {n} units {what} (first rows {list(ids)[:5]})",
                      UnmatchedJoinWarning, stacklevel=3)


def _attrs(layer: Any, columns: Sequence[str], what: str) -> list[str]:
    missing = [c for c in columns if c not in layer.columns]
    if missing:
        raise DataError(f"{what} has no column(s) {missing}; columns are "
                        f"{[c for c in layer.columns if c != layer.geometry.name]}")
    return list(columns)


def join_within(units: Any, polygons: Any, columns: Sequence[str], *, prefix: str = "",
                what: str = "the polygon layer") -> pd.DataFrame:
    """Attributes of the polygon containing each unit's point (row order of ``units``).

    Units in no polygon get missing values; units in several (overlapping polygons) get the
    first polygon in file order; both are counted in an
    :class:`~geocausal.errors.UnmatchedJoinWarning`.
    """
    import geopandas as gpd

    _crs_of(polygons, what)
    cols = _attrs(polygons, columns, what)
    pts = _points(units)
    layer = _to(polygons, units.crs, what)
    layer = gpd.GeoDataFrame(layer[cols].assign(_gc_feat=np.arange(len(layer))),
                             geometry=layer.geometry.values, crs=layer.crs)
    hit = gpd.sjoin(pts, layer, how="left", predicate="within")
    hit = hit.sort_values(["_gc_row", "_gc_feat"], na_position="last")
    several = hit["_gc_row"].duplicated(keep=False) & hit["_gc_row"].duplicated(keep="first")
    multi = hit.loc[several, "_gc_row"].unique()
    hit = hit.drop_duplicates("_gc_row", keep="first").set_index("_gc_row").sort_index()
    none = np.flatnonzero(hit["_gc_feat"].isna().to_numpy())
    _warn(len(none), len(units), none, f"lie in no polygon of {what}; their columns "
          f"{[prefix + c for c in cols]} are missing")
    _warn(len(multi), len(units), multi, f"lie in several polygons of {what}; the first was kept")
    return pd.DataFrame({prefix + c: hit[c].to_numpy() for c in cols}, index=units.index)


def join_nearest(units: Any, features: Any, columns: Sequence[str], *, max_distance_m: float,
                 distance_col: str, prefix: str = "", what: str = "the feature layer"
                 ) -> pd.DataFrame:
    """Attributes of the nearest feature within ``max_distance_m`` metres, and the distance.

    Units with no feature within the distance get missing values (counted warning); ties go to
    the first feature in file order.
    """
    import geopandas as gpd

    if not (np.isfinite(max_distance_m) and max_distance_m > 0):
        raise DataError(f"'max_distance_m' must be a positive number of metres, got "
                        f"{max_distance_m}")
    _crs_of(features, what)
    cols = _attrs(features, columns, what)
    metric = _metric(units)
    pts = _points(units, metric)
    layer = _to(features, metric, what)
    layer = gpd.GeoDataFrame(layer[cols].assign(_gc_feat=np.arange(len(layer))),
                             geometry=layer.geometry.values, crs=layer.crs)
    hit = gpd.sjoin_nearest(pts, layer, how="left", max_distance=max_distance_m,
                            distance_col="_gc_dist")
    hit = hit.sort_values(["_gc_row", "_gc_feat"]).drop_duplicates("_gc_row", keep="first")
    hit = hit.set_index("_gc_row").sort_index()
    none = np.flatnonzero(hit["_gc_feat"].isna().to_numpy())
    _warn(len(none), len(units), none, f"have no feature of {what} within {max_distance_m:g} m; "
          "their joined columns are missing")
    out = {prefix + c: hit[c].to_numpy() for c in cols}
    out[distance_col] = hit["_gc_dist"].to_numpy(float)
    return pd.DataFrame(out, index=units.index)


def count_within(units: Any, features: Any, *, radius_m: float, what: str = "the feature layer"
                 ) -> np.ndarray:
    """Number of features within ``radius_m`` metres of each unit's point."""
    import geopandas as gpd

    if not (np.isfinite(radius_m) and radius_m > 0):
        raise DataError(f"'radius_m' must be a positive number of metres, got {radius_m}")
    _crs_of(features, what)
    metric = _metric(units)
    pts = _points(units, metric)
    layer = _to(features, metric, what)
    layer = gpd.GeoDataFrame({"_gc_feat": np.arange(len(layer))}, geometry=layer.geometry.values,
                             crs=layer.crs)
    hit = gpd.sjoin(pts, layer, how="inner", predicate="dwithin", distance=radius_m)
    return np.bincount(hit["_gc_row"].to_numpy(np.int64), minlength=len(units)).astype(np.int64)


#: side labels of a boundary: polygons (inside/outside), lines (left/right of the line's
#: direction of digitisation, or a compass side)
POLYGON_SIDES = ("inside", "outside")
LINE_SIDES = ("left", "right", "north", "south", "east", "west")
SIDE_LABELS = POLYGON_SIDES + LINE_SIDES


@dataclass(frozen=True)
class SidedBoundary:
    """A boundary in a metric CRS, with the side that is treated.

    ``line`` is what distances are measured to (a line, a polygon's boundary, or the border
    shared by the treated regions and the others); ``region`` is the treated region of a
    polygon boundary (None for lines); ``reference`` a point on the treated side of a line (None:
    the left of its direction); ``flip`` negates the sign (``outside``, ``right``).
    """

    crs: Any
    line: Any
    region: Any = None
    reference: Any = None
    flip: bool = False

    def signed(self, points: Any) -> np.ndarray:
        """Signed distance in metres of points (a GeoSeries, any CRS) to the boundary:
        positive on the treated side (zero counts as treated).
        """
        import geopandas as gpd
        import shapely

        from geocausal.data.boundary import signed_distance

        pts = points.to_crs(self.crs) if not points.crs.equals(self.crs) else points
        if self.region is None:
            d = signed_distance(gpd.GeoSeries(pts.values, crs=self.crs), self.line,
                                treated_side=self.reference)
        else:
            xy = shapely.points(shapely.get_coordinates(pts.values))
            dist = shapely.distance(xy, self.line)
            inside = shapely.contains(self.region, xy) | shapely.touches(self.region, xy)
            d = np.where(inside, dist, -dist)
        return -d if self.flip else d

    def clip(self, zones: Any, points: Any) -> tuple[Any, int]:
        """Each zone clipped to its unit's own side of the boundary.

        ``zones`` and ``points`` are GeoSeries (any CRS) of the same length. Returns the
        clipped zones (in the boundary's metric CRS) and how many zones crossed the boundary.
        A point exactly on the boundary belongs to the treated side, as in :meth:`signed`.
        """
        import geopandas as gpd
        import shapely
        from shapely.ops import split

        z = zones.to_crs(self.crs) if not zones.crs.equals(self.crs) else zones
        geoms = np.asarray(z.values, dtype=object).copy()
        own = self.signed(points) >= 0
        cross = np.asarray(shapely.intersects(geoms, self.line), bool)
        if self.region is not None:
            in_region = own != self.flip  # the unit is inside the treated region
            hit = cross & in_region
            geoms[hit] = shapely.intersection(geoms[hit], self.region)
            hit = cross & ~in_region
            geoms[hit] = shapely.difference(geoms[hit], self.region)
        else:
            for i in np.flatnonzero(cross):
                parts = list(split(geoms[i], self.line).geoms)
                if len(parts) < 2:
                    continue
                reps = gpd.GeoSeries([q.representative_point() for q in parts], crs=self.crs)
                keep = [q for q, s in zip(parts, self.signed(reps) >= 0) if s == own[i]]
                geoms[i] = shapely.union_all(keep) if keep else shapely.Polygon()
        return gpd.GeoSeries(geoms, index=zones.index, crs=self.crs), int(cross.sum())


def _compass_reference(line: Any, label: str, what: str, where: str) -> Any:
    """A point far beyond the line in the compass direction ``label``."""
    from shapely.geometry import Point
    from shapely.ops import nearest_points

    x0, y0, x1, y1 = line.bounds
    span = max(x1 - x0, y1 - y0, 1.0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ref = {"north": Point(cx, y1 + span), "south": Point(cx, y0 - span),
           "east": Point(x1 + span, cy), "west": Point(x0 - span, cy)}[label]
    near = nearest_points(line, ref)[0]
    parts = list(line.geoms) if hasattr(line, "geoms") else [line]
    ends = [Point(c) for g in parts for c in (g.coords[0], g.coords[-1])]
    if any(near.distance(e) < 1e-9 * span for e in ends) and not line.is_ring:
        raise DataError(f"{where}: side '{label}' of {what} is ambiguous (the line does not run "
                        f"across the {label}ward direction); use 'left' or 'right' (of the "
                        "line's direction), another compass side, or 'treated_side' (a point)")
    return ref


def sided_boundary(units: Any, boundary: Any, *, treated: str | None = None,
                   side_column: str | None = None, treated_side: Any = None,
                   what: str = "the boundary layer", where: str = "distance_to"
                   ) -> SidedBoundary:
    """The boundary layer in the units' metric CRS, with its treated side.

    Parameters
    ----------
    units
        The units (GeoDataFrame with a CRS): their UTM zone, or their own projected CRS, is
        where distances are measured.
    boundary
        GeoDataFrame of lines or polygons, with a CRS.
    treated
        The treated side: ``"inside"`` or ``"outside"`` of a polygon layer; ``"left"``,
        ``"right"`` (of the line's direction) or a compass side (``"north"``, ``"south"``,
        ``"east"``, ``"west"``) of a line layer; with ``side_column``, the value of that column
        of the polygons that are treated (the boundary is then the border they share with the
        other polygons). Default: inside (polygons), left (lines), or ``treated_side``.
    side_column
        Column of a polygon layer that labels the regions on each side.
    treated_side
        ``(x, y)`` in the boundary layer's CRS: a point on the treated side of a line.

    Raises
    ------
    DataError
        No CRS, an unknown side label or one that does not fit the geometry (naming ``where``
        and ``what``), a label that no polygon carries, treated regions that share no border
        with the others.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import LineString, Point
    >>> units = gpd.GeoDataFrame(geometry=[Point(5, 1), Point(-2, 0)], crs=3857)
    >>> line = gpd.GeoDataFrame(geometry=[LineString([(0, -10), (0, 10)])], crs=3857)
    >>> sided_boundary(units, line, treated="east").signed(units.geometry).round(6).tolist()
    [5.0, -2.0]
    """
    import geopandas as gpd
    import shapely
    from shapely.geometry import Point

    _crs_of(boundary, what)
    _crs_of(units, "the units")
    if treated is not None and treated_side is not None:
        raise DataError(f"{where}: give the treated side as a label ('treated') or as a point "
                        "('treated_side'), not both")
    metric = _metric(units)
    layer = _to(boundary, metric, what)
    kinds = set(layer.geometry.geom_type.dropna())
    polygons = kinds <= {"Polygon", "MultiPolygon"}
    lines = kinds <= {"LineString", "MultiLineString", "LinearRing"}
    if not kinds or not (polygons or lines):
        raise DataError(f"{what} must hold only lines or only polygons, got {sorted(kinds)}")
    if side_column is not None:
        if not polygons:
            raise DataError(f"{where}: 'side_column' needs a polygon layer; {what} holds lines")
        if side_column not in layer.columns:
            raise DataError(f"{where}.side_column: {what} has no column '{side_column}'; "
                            f"columns are {[c for c in layer.columns if c != layer.geometry.name]}")
        labels = layer[side_column].astype(str)
        if treated is None or str(treated) not in set(labels):
            raise DataError(f"{where}.treated: side label {treated!r} is not a value of column "
                            f"'{side_column}' of {what}; values are {sorted(set(labels))[:10]}")
        mine = (labels == str(treated)).to_numpy()
        if mine.all():
            raise DataError(f"{where}.treated: every polygon of {what} is labelled "
                            f"{treated!r}; the boundary needs polygons of both sides")
        region = shapely.union_all(layer.geometry.values[mine])
        other = shapely.union_all(layer.geometry.values[~mine])
        border = shapely.intersection(region.boundary, other.boundary)
        if border.is_empty or border.length == 0:
            raise DataError(f"{where}: the polygons labelled {treated!r} share no border with "
                            f"the other polygons of {what}")
        return SidedBoundary(metric, border, region=region)
    if treated is not None and treated not in SIDE_LABELS:
        raise DataError(f"{where}.treated: unknown side label {treated!r} for {what}; use one "
                        f"of {list(SIDE_LABELS)}, or 'side_column' with a polygon layer")
    geom = shapely.union_all(layer.geometry.values)
    if polygons:
        if treated in LINE_SIDES:
            raise DataError(f"{where}.treated: side {treated!r} is for a line layer, but {what} "
                            f"holds polygons; use one of {list(POLYGON_SIDES)}")
        return SidedBoundary(metric, geom.boundary, region=geom, flip=treated == "outside")
    if treated in POLYGON_SIDES:
        raise DataError(f"{where}.treated: side {treated!r} is for a polygon layer, but {what} "
                        f"holds lines; use one of {list(LINE_SIDES)}")
    ref = None
    if treated_side is not None:
        ref = _to(gpd.GeoSeries([Point(*treated_side)], crs=boundary.crs), metric,
                  f"'treated_side' of {what}").iloc[0]
    elif treated in ("north", "south", "east", "west"):
        ref = _compass_reference(geom, treated, what, where)
    return SidedBoundary(metric, geom, reference=ref, flip=treated == "right")


def distance_to(units: Any, boundary: Any, *, treated_side: Any = None,
                signed: bool = True, treated: str | None = None,
                side_column: str | None = None, what: str = "the boundary layer",
                where: str = "distance_to") -> np.ndarray:
    """Distance in metres from each unit's point to a line or polygon boundary.

    ``signed=True``: positive on the treated side (:func:`sided_boundary`: inside a polygon,
    the side of ``treated_side`` or the ``treated`` side of a line, the regions labelled
    ``treated`` in ``side_column``); else the unsigned distance. ``treated_side`` is an
    ``(x, y)`` pair in the boundary layer's CRS.
    """
    b = sided_boundary(units, boundary, treated=treated, side_column=side_column,
                       treated_side=treated_side, what=what, where=where)
    d = b.signed(_points(units).geometry)
    return d if signed else np.abs(d)


def join_table(table: pd.DataFrame, other: pd.DataFrame, *, on: str, columns: Sequence[str],
               prefix: str = "", what: str = "the joined table") -> pd.DataFrame:
    """Columns of ``other`` matched to ``table``'s rows by the key column ``on`` (many to one).

    Raises
    ------
    DataError
        ``on`` missing from either table, or repeating in ``other``.
    """
    for name, df in (("the units table", table), (what, other)):
        if on not in df.columns:
            raise DataError(f"{name} has no key column '{on}'; columns are {list(df.columns)}")
    cols = [c for c in columns if c != on]
    missing = [c for c in cols if c not in other.columns]
    if missing:
        raise DataError(f"{what} has no column(s) {missing}; columns are {list(other.columns)}")
    if other[on].duplicated().any():
        dup = other.loc[other[on].duplicated(), on].tolist()[:5]
        raise DataError(f"{what}: key column '{on}' repeats (values {dup}); one row per key")
    right = other.set_index(on)[cols]
    keys = table[on]
    if keys.dtype != right.index.dtype and not (pd.api.types.is_numeric_dtype(keys)
                                                and pd.api.types.is_numeric_dtype(right.index)):
        raise DataError(f"key column '{on}' has type {keys.dtype} in the units table and "
                        f"{right.index.dtype} in {what}; make them the same")
    matched = keys.isin(right.index).to_numpy()
    _warn(int((~matched).sum()), len(table), np.flatnonzero(~matched),
          f"have no row in {what} (key '{on}'); their joined columns are missing")
    out = right.reindex(keys.to_numpy())
    out.index = table.index
    out.columns = [prefix + c for c in cols]
    return out


def align_periods(years: Any, periods: Sequence[Any], *, how: str = "nearest", lag: int = 0,
                  max_gap: float | None = None) -> np.ndarray:
    """The imagery period matched to each survey year.

    Parameters
    ----------
    years
        Survey years (numbers).
    periods
        The imagery periods (numbers, e.g. the manifest's ``periods``).
    how
        ``"nearest"``: the period closest to ``year + lag`` (ties to the earlier);
        ``"exact"``: the period equal to ``year + lag`` (``lag`` -1: the year before, a lag;
        +1: the year after, a lead).
    lag
        Years added to each survey year before matching.
    max_gap
        With ``"nearest"``: no match when the closest period is further than this.

    Returns
    -------
    numpy.ndarray
        Object array of periods (None where there is no match, counted in an
        :class:`~geocausal.errors.UnmatchedJoinWarning`).
    """
    if how not in ("nearest", "exact"):
        raise DataError(f"how={how!r} is not one of ('nearest', 'exact')")
    try:
        y = np.asarray(pd.to_numeric(pd.Series(years), errors="raise"), float) + float(lag)
        p = np.asarray([float(v) for v in periods])
    except (TypeError, ValueError) as exc:
        raise DataError(f"survey years and periods must be numbers to align them: {exc}") from None
    if p.size == 0:
        raise DataError("there are no imagery periods to align survey years to")
    order = np.argsort(p, kind="stable")
    p = p[order]
    out = np.empty(len(y), dtype=object)
    gap = np.abs(y[:, None] - p[None, :])
    gap = np.where(np.isnan(gap), np.inf, gap)
    j = np.argmin(gap, axis=1)  # ties: the first (earlier, when periods are sorted) one
    best = gap[np.arange(len(y)), j]
    ok = best == 0 if how == "exact" else np.isfinite(best)
    if how == "nearest" and max_gap is not None:
        ok &= best <= max_gap
    plist = [list(periods)[k] for k in order]
    for i in range(len(y)):
        out[i] = plist[j[i]] if ok[i] else None
    _warn(int((~ok).sum()), len(y), np.flatnonzero(~ok),
          f"have no imagery period matching their survey year ({how}, lag {lag}"
          + (f", max gap {max_gap:g}" if max_gap is not None else "") + ")")
    return out


def _read_layer(m: Any, spec: Any, where: str) -> Any:
    import geopandas as gpd

    path = m.resolve(spec.path)
    if not path.exists():
        raise DataError(f"{where}.path: file '{spec.path}' not found (relative to {m.base_dir})")
    suffix = path.suffix.lower()
    try:
        if spec.kind == "table":
            return pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
        layer = gpd.read_parquet(path) if suffix in (".parquet", ".geoparquet") else (
            gpd.read_file(path, layer=spec.layer) if spec.layer else gpd.read_file(path))
    except Exception as exc:
        raise DataError(f"{where}.path: cannot read '{path}': {exc}") from None
    if not isinstance(layer, gpd.GeoDataFrame) or layer.geometry is None:
        raise DataError(f"{where}.path: '{path}' has no geometry column")
    if layer.crs is None:
        if spec.crs is None:
            raise DataError(f"{where}: layer '{path}' has no CRS; give the file one or set "
                            "'crs' in this join")
        try:
            layer = layer.set_crs(spec.crs)
        except Exception as exc:
            raise DataError(f"{where}.crs: '{spec.crs}' is not a CRS: {exc}") from None
    return layer


def apply_joins(manifest: Any, units: Any, table: pd.DataFrame) -> pd.DataFrame:
    """The units table with the manifest's ``joins`` and ``align_time`` columns added.

    ``units`` is the GeoDataFrame whose rows are ``table``'s rows (same order and index).

    Raises
    ------
    DataError
        A file that cannot be read, a layer without CRS, a column collision (each naming the
        manifest field ``joins.<i>``).
    """
    m = manifest
    base = f"{m.file or m.name}: field"
    out = table.copy()
    for i, spec in enumerate(m.joins):
        where = f"{base} 'joins.{i}'"
        layer = _read_layer(m, spec, where)
        what = f"'{spec.path}' (joins.{i})"
        if spec.kind == "within":
            new = join_within(units, layer, spec.columns, prefix=spec.prefix, what=what)
        elif spec.kind == "nearest":
            new = join_nearest(units, layer, spec.columns, max_distance_m=spec.max_distance_m,
                               distance_col=spec.name, prefix=spec.prefix, what=what)
        elif spec.kind == "count":
            new = pd.DataFrame({spec.name: count_within(units, layer, radius_m=spec.radius_m,
                                                        what=what)}, index=out.index)
        elif spec.kind == "distance":
            new = pd.DataFrame({spec.name: distance_to(
                units, layer, what=what, treated_side=spec.treated_side, signed=spec.signed,
                treated=spec.treated, side_column=spec.side_column,
                where=where)}, index=out.index)
        else:
            new = join_table(out, layer, on=spec.on, columns=spec.columns, prefix=spec.prefix,
                             what=what)
        check_collisions(out.columns, list(new.columns), where)
        new.index = out.index
        out = pd.concat([out, new], axis=1)
    if m.align_time is not None:
        spec = m.align_time
        where = f"{base} 'align_time'"
        if spec.column not in out.columns:
            raise DataError(f"{where}: column '{spec.column}' is not in the units table; "
                            f"columns are {list(out.columns)}")
        check_collisions(out.columns, [spec.name], where)
        out[spec.name] = align_periods(out[spec.column], m.ordered_periods, how=spec.how,
                                       lag=spec.lag, max_gap=spec.max_gap)
    return out
