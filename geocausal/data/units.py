"""Units of a study: points or polygons read from a GeoPackage, GeoParquet or CSV.

The id column must be present and unique (unique per ``(id, time)`` when the manifest names a
``time`` column, i.e. a long panel). Polygons are kept: chips are centred on each unit's
centroid, pixel distributions use the polygon itself.

Examples
--------
>>> import tempfile
>>> from geocausal.data.rasters import write_example_study
>>> m = write_example_study(tempfile.mkdtemp())
>>> units = load_units(m)
>>> list(units.columns[:3]), len(units), units.crs.to_string()
(['unit', 'lon', 'lat'], 6, 'EPSG:4326')
"""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from geocausal.data.manifest import Manifest, load_manifest
from geocausal.errors import DataError


def as_manifest(manifest: Manifest | str | Path) -> Manifest:
    """Return ``manifest`` itself, or load it when a path is given."""
    if isinstance(manifest, Manifest):
        return manifest
    return load_manifest(manifest)


def _read_file(path: Path, manifest: Manifest) -> gpd.GeoDataFrame:
    spec = manifest.units
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(path)
            for col, role in ((spec.lon, "lon"), (spec.lat, "lat")):
                if col not in df.columns:
                    raise DataError(f"{path}: coordinate column '{col}' (units.{role}) not found; "
                                    f"columns are {list(df.columns)}")
                if not np.all(np.isfinite(pd.to_numeric(df[col], errors="coerce"))):
                    raise DataError(f"{path}: column '{col}' (units.{role}) has missing or "
                                    "non-numeric values; every unit needs a location")
            geom = gpd.points_from_xy(df[spec.lon], df[spec.lat])
            return gpd.GeoDataFrame(df, geometry=geom, crs=spec.crs)
        if suffix in (".parquet", ".geoparquet"):
            gdf = gpd.read_parquet(path)
        else:
            gdf = gpd.read_file(path, layer=spec.layer) if spec.layer else gpd.read_file(path)
    except DataError:
        raise
    except Exception as exc:  # unreadable file: name it
        raise DataError(f"cannot read units file '{path}' (field 'units.path'): {exc}") from None
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry is None:
        raise DataError(f"{path}: the units file has no geometry column")
    if gdf.crs is None:
        gdf = gdf.set_crs(spec.crs)
    return gdf


def load_units(manifest: Manifest | str | Path) -> gpd.GeoDataFrame:
    """Read the units of a study as a GeoDataFrame (file order kept).

    Parameters
    ----------
    manifest
        A :class:`~geocausal.data.manifest.Manifest` or a path to its YAML file.

    Returns
    -------
    geopandas.GeoDataFrame
        Every column of the file plus ``geometry``; the CRS is the file's, or the manifest's
        ``units.crs`` when the file has none.

    Raises
    ------
    DataError
        The file cannot be read, the id column is missing or repeats, a geometry is empty.
    """
    m = as_manifest(manifest)
    path = m.resolve(m.units.path)
    gdf = _read_file(path, m)
    id_col = m.units.id
    if id_col not in gdf.columns:
        raise DataError(f"{path}: id column '{id_col}' (field 'units.id') not found; columns are "
                        f"{[c for c in gdf.columns if c != gdf.geometry.name]}")
    if gdf[id_col].isna().any():
        raise DataError(f"{path}: id column '{id_col}' has {int(gdf[id_col].isna().sum())} "
                        "missing values")
    time_cols = [c for c in m.role("time") if c in gdf.columns]
    keys = [id_col, *time_cols[:1]]
    dup = gdf.duplicated(subset=keys)
    if dup.any():
        first = gdf.loc[dup, keys].iloc[0].tolist()
        what = f"id column '{id_col}'" + (f" with time column '{keys[1]}'" if len(keys) > 1 else "")
        raise DataError(f"{path}: {what} is not unique ({int(dup.sum())} repeated rows, first "
                        f"{first}); give each unit one id")
    empty = gdf.geometry.is_empty | gdf.geometry.isna()
    if empty.any():
        bad = gdf.loc[empty, id_col].tolist()[:5]
        raise DataError(f"{path}: {int(empty.sum())} units have no geometry (ids {bad})")
    return gdf.reset_index(drop=True)


def unique_units(units: gpd.GeoDataFrame, id_col: str) -> gpd.GeoDataFrame:
    """One row per unit id (the first), for panels stored one row per unit and period."""
    return units.drop_duplicates(subset=[id_col]).reset_index(drop=True)


def unit_points(units: gpd.GeoDataFrame) -> gpd.GeoSeries:
    """A point per unit: the point itself, or the centroid of a polygon.

    Centroids of geographic polygons are computed in a local UTM projection, then returned in
    the units' CRS.
    """
    geom = units.geometry
    if bool((geom.geom_type == "Point").all()):
        return geom
    if geom.crs is not None and geom.crs.is_geographic:
        utm = units.estimate_utm_crs()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return geom.to_crs(utm).centroid.to_crs(geom.crs)
    return geom.centroid


def lonlat(units: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (EPSG:4326) of each unit's point."""
    pts = unit_points(units)
    if pts.crs is not None and not pts.crs.equals("EPSG:4326"):
        pts = pts.to_crs("EPSG:4326")
    return np.asarray(pts.x, float), np.asarray(pts.y, float)
