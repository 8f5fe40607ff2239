"""Shared pieces of the paper pipelines' real-data paths (``geocausal paper run NAME --data DIR``).

Each pipeline's ``data_paths.py`` reads the user's folder in the published schema of the
paper's data, checks every column it needs (a :class:`~geocausal.errors.DataError` names the
file, the column and what to do), writes a manifest for that folder and loads it with
:func:`geocausal.data.study.load_study`, so joins, zonal aggregates and chips go through the
data layer, never through one-off loaders. The functions here are those pieces: reading a
table with required columns, dropping rows without coordinates (counted), writing point
layers, listing a folder of yearly mosaics as manifest raster entries, and loading sibling
modules of the ``paper/`` folder (which is not a package).
"""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError, GeocausalWarning

PAPER_ROOT = Path(__file__).resolve().parent


class MissingCoordinatesWarning(GeocausalWarning):
    """Rows of a published table without usable coordinates were dropped (count in message)."""


def load_sibling(rel: str, name: str | None = None) -> Any:
    """Import ``paper/<rel>`` (a file path relative to ``paper/``) as a module, once."""
    path = PAPER_ROOT / rel
    mod_name = name or "geocausal_paper_" + re.sub(r"\W", "_", rel.removesuffix(".py"))
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover
        raise DataError(f"cannot load '{path}'")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return module


def find_one(folder: Path, patterns: Sequence[str], what: str, layout: str) -> Path:
    """The one file of ``folder`` matching the first pattern that matches; else a DataError
    that says which files were looked for and what the folder should hold."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--data '{folder}' is not a folder; it should hold:\n{layout}")
    for pat in patterns:
        hits = sorted(folder.glob(pat))
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise DataError(f"{what}: {len(hits)} files match '{pat}' under '{folder}' "
                            f"({[h.name for h in hits[:5]]}); keep one")
    raise DataError(f"{what}: no file matching {list(patterns)} under '{folder}'; the folder "
                    f"should hold:\n{layout}")


def read_table(path: Path, required: Sequence[str], what: str, *,
               key: str | None = None) -> pd.DataFrame:
    """A CSV or Parquet table with ``required`` columns (and a unique ``key``), or a DataError."""
    path = Path(path)
    try:
        df = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except Exception as exc:
        raise DataError(f"{what}: cannot read '{path}': {exc}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{what}: '{path.name}' lacks column(s) {missing} of the published "
                        f"schema; it has {list(df.columns)[:30]}")
    if key is not None:
        dup = df[key][df[key].duplicated()].unique()
        if len(dup):
            raise DataError(f"{what}: column '{key}' of '{path.name}' must be unique; "
                            f"{len(dup)} value(s) repeat, e.g. {list(dup[:3])}")
    return df


def numeric(df: pd.DataFrame, cols: Sequence[str], what: str) -> pd.DataFrame:
    """``cols`` converted to numbers; a DataError names the column with non-numbers."""
    out = df.copy()
    for c in cols:
        v = pd.to_numeric(out[c], errors="coerce")
        bad = v.isna() & out[c].notna()
        if bad.any():
            raise DataError(f"{what}: column '{c}' has {int(bad.sum())} non-numeric value(s), "
                            f"e.g. {out.loc[bad, c].iloc[0]!r}")
        out[c] = v
    return out


def drop_missing_coordinates(df: pd.DataFrame, lon: str, lat: str, what: str,
                             zero_is_missing: bool = False) -> pd.DataFrame:
    """Rows with finite coordinates inside lon/lat bounds; the others dropped and counted in a
    :class:`MissingCoordinatesWarning` (DHS codes a missing location as 0, 0)."""
    df = numeric(df, [lon, lat], what)
    x, y = df[lon].to_numpy(float), df[lat].to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y) & (np.abs(x) <= 180) & (np.abs(y) <= 90)
    if zero_is_missing:
        ok &= ~((x == 0) & (y == 0))
    n_bad = int((~ok).sum())
    if n_bad:
        warnings.warn(f"{what}: {n_bad} of {len(df)} rows have no usable coordinates "
                      f"('{lon}', '{lat}' missing, out of range"
                      + (" or 0, 0: DHS's code for a missing location" if zero_is_missing
                         else "") + "); they are dropped", MissingCoordinatesWarning,
                      stacklevel=2)
    if not ok.any():
        raise DataError(f"{what}: no row has usable coordinates in '{lon}', '{lat}'")
    return df.loc[ok].reset_index(drop=True)


def write_points(df: pd.DataFrame, lon: str, lat: str, path: Path,
                 columns: Sequence[str]) -> Path:
    """A GeoPackage of points (EPSG:4326) with ``columns``, for a manifest join."""
    import geopandas as gpd

    gdf = gpd.GeoDataFrame(df[list(columns)].reset_index(drop=True),
                           geometry=gpd.points_from_xy(df[lon], df[lat]), crs="EPSG:4326")
    path.parent.mkdir(parents=True, exist_ok=True)
    gdf.to_file(path, driver="GPKG")
    return path


_YEAR = re.compile(r"(?<!\d)(19|20)(\d{2})(?!\d)")


def yearly_rasters(folder: Path, what: str, min_bands: int = 1) -> list[dict[str, Any]]:
    """Manifest raster entries for a folder of mosaics named with their year
    (``landsat_2005.tif``, ``2010.tif``): one entry per year, bands named by the files'
    descriptions (``b1``, ``b2``, ... when there are none); every file must have the same bands."""
    import rasterio

    folder = Path(folder)
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".tif", ".tiff"))
    if not files:
        raise DataError(f"{what}: no GeoTIFF under '{folder}'; put one mosaic per year there, "
                        "named with the year (e.g. landsat_2005.tif)")
    entries, bands0, years = [], None, set()
    for f in files:
        m = _YEAR.findall(f.stem)
        if len(m) != 1:
            raise DataError(f"{what}: cannot read one year from the file name '{f.name}'; name "
                            "each mosaic with its year, e.g. landsat_2005.tif")
        year = int("".join(m[0]))
        if year in years:
            raise DataError(f"{what}: two mosaics for {year} under '{folder}'; keep one per year")
        years.add(year)
        with rasterio.open(f) as src:
            desc = [d or f"b{i + 1}" for i, d in enumerate(src.descriptions)]
            if src.crs is None:
                raise DataError(f"{what}: '{f.name}' has no CRS; write the mosaics as "
                                "georeferenced GeoTIFFs")
        if len(desc) < min_bands:
            raise DataError(f"{what}: '{f.name}' has {len(desc)} band(s); at least {min_bands} "
                            "are needed")
        if bands0 is not None and desc != bands0:
            raise DataError(f"{what}: '{f.name}' has bands {desc} but the other mosaics have "
                            f"{bands0}; give every year the same bands")
        bands0 = desc
        entries.append({"period": year, "paths": [str(f.resolve())], "bands": desc})
    return sorted(entries, key=lambda e: e["period"])


def write_manifest(spec: dict[str, Any], path: Path) -> Path:
    """Validate ``spec`` as a manifest and write it (paths relative to ``path``'s folder)."""
    from geocausal.data.manifest import manifest_from_dict
    from geocausal.data.manifest import write_manifest as _write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest_from_dict(spec, base_dir=path.parent)  # validate before writing
    return _write(spec, path)
