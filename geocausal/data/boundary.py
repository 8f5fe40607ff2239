"""Geographic running variables: the signed distance of units to a boundary.

A data-layer computation (shapely and geopandas only): the manifest joins
(:mod:`geocausal.data.joins`) and ``gc.signed_distance`` (:mod:`geocausal.api.rdd_geo`) both
use it.

Distances are computed in a projected CRS (metres); geographic coordinates are refused. Units
are represented by their centroids (or any point geometry).

- A polygon boundary: positive inside the polygon (the treated region), negative outside; the
  distance is to the polygon's boundary.
- A line boundary: positive on the side of ``treated_side`` (a point geometry on the treated
  side), negative on the other; without ``treated_side``, positive on the left of the line's
  direction of travel.

Examples
--------
>>> import geopandas as gpd
>>> from shapely.geometry import LineString, Point
>>> pts = gpd.GeoDataFrame(geometry=[Point(0, 5), Point(0, -2)], crs=3857)
>>> line = LineString([(-10, 0), (10, 0)])
>>> signed_distance(pts, line, crs=3857).round(6).tolist()
[5.0, -2.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geocausal.errors import DataError


def _boundary_geometry(boundary: Any, crs: Any):
    import geopandas as gpd

    if isinstance(boundary, gpd.GeoDataFrame | gpd.GeoSeries):
        if boundary.crs is not None and crs is not None and boundary.crs != crs:
            boundary = boundary.to_crs(crs)
        return boundary.union_all()
    return boundary


def signed_distance(units: Any, boundary: Any, treated_side: Any = None,
                    crs: Any = None) -> np.ndarray:
    """Signed distance of each unit's centroid to a boundary line or polygon.

    Parameters
    ----------
    units
        GeoDataFrame or GeoSeries of unit geometries (polygons or points).
    boundary
        A shapely (multi)polygon or (multi)line, or a GeoDataFrame/GeoSeries of them (reprojected
        to the units' CRS).
    treated_side
        For a line: a shapely point on the treated (positive) side.
    crs
        CRS of a bare shapely ``boundary`` when ``units`` has none (must be projected).

    Returns
    -------
    numpy.ndarray
        Distances in CRS units, positive on the treated side.
    """
    import geopandas as gpd
    import shapely

    if not isinstance(units, gpd.GeoDataFrame | gpd.GeoSeries):
        raise DataError("units must be a GeoDataFrame or GeoSeries")
    ucrs = units.crs or (gpd.GeoSeries([], crs=crs).crs if crs is not None else None)
    if ucrs is None:
        raise DataError("units have no CRS; set one (a projected CRS in metres) before computing "
                        "distances")
    if not ucrs.is_projected:
        raise DataError(f"units are in the geographic CRS {ucrs.to_string()}; reproject to a "
                        "projected CRS (e.g. a UTM zone) so that distances are in metres")
    geom = _boundary_geometry(boundary, ucrs)
    if geom is None or geom.is_empty:
        raise DataError("the boundary geometry is empty")
    pts = units.geometry.centroid
    coords = shapely.get_coordinates(pts.values)
    points = shapely.points(coords)
    if isinstance(geom, shapely.Polygon | shapely.MultiPolygon):
        dist = shapely.distance(points, geom.boundary)
        inside = shapely.contains(geom, points) | shapely.touches(geom, points)
        return np.where(inside, dist, -dist)
    if not isinstance(geom, shapely.LineString | shapely.MultiLineString | shapely.LinearRing):
        raise DataError(f"boundary must be a line or a polygon, got {geom.geom_type}")
    dist = shapely.distance(points, geom)
    sign = _line_side(geom, coords)
    if treated_side is not None:
        ref = _line_side(geom, shapely.get_coordinates(treated_side))[0]
        if ref == 0:
            raise DataError("treated_side lies on the boundary line; pick a point off the line")
        sign = sign * ref
    return np.where(sign >= 0, dist, -dist)


def _line_side(geom, coords: np.ndarray) -> np.ndarray:
    """+1 left of the nearest segment's direction, -1 right (vectorised over points)."""
    import shapely

    lines = list(geom.geoms) if hasattr(geom, "geoms") else [geom]
    segs = []
    for ln in lines:
        c = np.asarray(ln.coords)
        segs.append(np.c_[c[:-1], c[1:]])
    S = np.vstack(segs)                                              # (m, 4)
    a, b = S[:, :2], S[:, 2:]
    ab = b - a
    ap = coords[:, None, :] - a[None]                                # (n, m, 2)
    t = np.clip(np.sum(ap * ab, -1) / np.maximum(np.sum(ab * ab, -1), 1e-300), 0, 1)
    closest = a[None] + t[..., None] * ab[None]
    d2 = np.sum((coords[:, None, :] - closest) ** 2, -1)
    j = np.argmin(d2, axis=1)
    cross = ab[j, 0] * ap[np.arange(len(j)), j, 1] - ab[j, 1] * ap[np.arange(len(j)), j, 0]
    del shapely
    return np.sign(cross)
