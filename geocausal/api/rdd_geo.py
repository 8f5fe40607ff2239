"""``gc.signed_distance``: a geographic running variable for ``gc.rdd``.

The face of :func:`geocausal.data.boundary.signed_distance` (the computation lives in the data
layer, where the manifest joins use it too): the signed distance of each unit's centroid to a
boundary line or polygon, in metres of a projected CRS, positive on the treated side.

Examples
--------
>>> import geopandas as gpd
>>> from shapely.geometry import LineString, Point
>>> pts = gpd.GeoDataFrame(geometry=[Point(0, 5), Point(0, -2)], crs=3857)
>>> signed_distance(pts, LineString([(-10, 0), (10, 0)]), crs=3857).round(6).tolist()
[5.0, -2.0]
"""

from __future__ import annotations

from geocausal.data.boundary import signed_distance

__all__ = ["signed_distance"]
