"""Raster helpers: per-process open files, band lookup, chip size, and a tiny example study.

Every process (the main one or a Dask worker) keeps each raster it reads open once, in
:func:`open_raster`'s cache (one per thread: rasterio datasets are not shared between
threads); :func:`close_rasters` closes them.

A raster may be a local file or an http(s) URL of a cloud-optimised GeoTIFF, read with GDAL's
range requests (``/vsicurl/``) under a timeout (:data:`HTTP_TIMEOUT_S`, environment variable
``GEOCAUSAL_HTTP_TIMEOUT``) and a retry count (:data:`HTTP_MAX_RETRY`,
``GEOCAUSAL_HTTP_MAX_RETRY``); a URL that cannot be reached is a one-line
:class:`~geocausal.errors.DataError`. A period's imagery is a list of **scenes**
(:func:`scenes_of`): multi-band files, scene folders with one file per band
(``band_files``), or the items of a STAC catalog; :func:`tile_infos` describes each and
:func:`read_window` reads a window of its bands.

Examples
--------
>>> import tempfile
>>> m = write_example_study(tempfile.mkdtemp())
>>> chip_size_px(m), m.band_names
(8, ['red', 'nir'])
>>> src = open_raster(m.resolve(m.rasters[0].paths[0]))
>>> src.count, src.width
(2, 64)
>>> close_rasters()
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geocausal.data.manifest import Manifest, RasterSpec, is_url, manifest_from_dict
from geocausal.errors import DataError

_LOCAL = threading.local()


def _open_files() -> dict[str, Any]:
    files = getattr(_LOCAL, "files", None)
    if files is None:
        files = _LOCAL.files = {}
    return files


#: seconds GDAL waits for a remote raster's server before giving up (GEOCAUSAL_HTTP_TIMEOUT)
HTTP_TIMEOUT_S = 30
#: retries of a failed remote request (GEOCAUSAL_HTTP_MAX_RETRY)
HTTP_MAX_RETRY = 2


def _env_number(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DataError(f"environment variable {name}={raw!r} is not a whole number of "
                        "seconds/retries; unset it or give e.g. 30") from None
    if value < 0:
        raise DataError(f"environment variable {name}={raw!r} must be >= 0")
    return value


def remote_env() -> Any:
    """A ``rasterio.Env`` with the timeout and retry settings for remote (URL) rasters."""
    import rasterio

    timeout = _env_number("GEOCAUSAL_HTTP_TIMEOUT", HTTP_TIMEOUT_S)
    return rasterio.Env(GDAL_HTTP_TIMEOUT=max(1, timeout), GDAL_HTTP_CONNECTTIMEOUT=max(1, timeout),
                        GDAL_HTTP_MAX_RETRY=_env_number("GEOCAUSAL_HTTP_MAX_RETRY", HTTP_MAX_RETRY),
                        GDAL_HTTP_RETRY_DELAY=1, GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR",
                        CPL_VSIL_CURL_USE_HEAD="NO")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def open_raster(path: str | Path) -> Any:
    """Open ``path`` (a file or an http(s) URL) with rasterio once per process (per thread)
    and keep it open.

    Raises
    ------
    DataError
        The file cannot be opened, or the URL cannot be reached within the timeout (one line).
    """
    import rasterio

    key = str(path)
    files = _open_files()
    src = files.get(key)
    if src is None or src.closed:
        if is_url(key):
            try:
                with remote_env():
                    src = rasterio.open("/vsicurl/" + key)
            except DataError:
                raise
            except Exception as exc:
                raise DataError(f"cannot read remote raster '{key}': {_one_line(exc)} (check the "
                                "URL and the network; the timeout is GEOCAUSAL_HTTP_TIMEOUT="
                                f"{_env_number('GEOCAUSAL_HTTP_TIMEOUT', HTTP_TIMEOUT_S)} s)"
                                ) from None
        else:
            try:
                src = rasterio.open(key)
            except Exception as exc:
                raise DataError(f"cannot open raster '{key}': {_one_line(exc)}") from None
        files[key] = src
    return src


def close_rasters() -> None:
    """Close every raster opened by :func:`open_raster` in this thread."""
    files = _open_files()
    while files:
        _, src = files.popitem()
        src.close()


@dataclass(frozen=True)
class TileInfo:
    """What a reader needs to know about one raster file of one period."""

    period_index: int
    path: str
    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    image_bands: tuple[int, ...]
    mask_band: int | None
    clear_values: tuple[int, ...]
    nodata: float | None
    scale: float
    offset: float
    #: (file or URL, 1-based band) of each band read (image bands, then the mask band) when a
    #: scene's bands live in several files (one file per band, STAC assets); empty: ``path``
    sources: tuple[tuple[str, int], ...] = ()
    #: the period's composite (:class:`~geocausal.data.manifest.CompositeSpec`), or None for a
    #: mosaic (the first tile with a valid pixel serves it)
    composite: Any = None
    #: name of the scene (file, folder or STAC item id), for messages
    scene: str = ""

    @property
    def north_up(self) -> bool:
        """True when the grid has no rotation."""
        return self.transform[1] == 0 and self.transform[3] == 0


def read_window(tile: TileInfo, window: Any) -> np.ndarray:
    """Raw ``(B, h, w)`` block of a tile: its image bands, then its mask band (if any).

    Raises
    ------
    DataError
        A read fails (a truncated file, a remote server that stopped answering).
    """
    remote = is_url(tile.path) or any(is_url(p) for p, _ in tile.sources)
    try:
        if remote:
            with remote_env():
                return _read(tile, window)
        return _read(tile, window)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read raster '{tile.scene or tile.path}': {_one_line(exc)}"
                        ) from None


def _read(tile: TileInfo, window: Any) -> np.ndarray:
    if not tile.sources:
        bands = list(tile.image_bands) + ([tile.mask_band] if tile.mask_band else [])
        return open_raster(tile.path).read(bands, window=window)
    parts = [open_raster(f).read(b, window=window) for f, b in tile.sources]
    dtype = np.result_type(*parts)
    return np.stack([a.astype(dtype, copy=False) for a in parts])


def scenes_of(manifest: Manifest, spec: RasterSpec) -> list[tuple[str, dict[str, tuple[str, int]] | None]]:
    """The scenes of one raster entry: ``(name, sources)`` with ``sources`` ``{band: (file,
    1-based band)}`` for scenes whose bands are separate files, or None for a multi-band file
    (``name`` is then the file).

    Raises
    ------
    DataError
        A scene folder without (or with several) files for a band of ``band_files``, a STAC
        item without a band.
    """
    if spec.stac is not None:
        from geocausal.data.stac import stac_scenes

        return stac_scenes(manifest, spec)
    out: list[tuple[str, dict[str, tuple[str, int]] | None]] = []
    for rel in spec.paths or []:
        for f in manifest.expand(rel):
            if spec.band_files is None:
                out.append((f, None))
                continue
            folder = Path(f)
            if not folder.is_dir():
                raise DataError(f"'{f}' (field 'rasters.paths', period {spec.period}) is not a "
                                "folder; with 'band_files' every path is a scene folder holding "
                                "one file per band")
            sources = {}
            for band, pattern in spec.band_files.items():
                found = sorted(folder.glob(pattern))
                if len(found) != 1:
                    raise DataError(f"scene folder '{f}' has {len(found)} files matching "
                                    f"'{pattern}' (field 'band_files.{band}'); each scene needs "
                                    "exactly one file per band")
                sources[band] = (str(found[0]), 1)
            out.append((f, sources))
    return out


def first_raster_file(manifest: Manifest) -> str:
    """A file (or URL) of the first raster entry, for its CRS and pixel size."""
    name, sources = scenes_of(manifest, manifest.rasters[0])[0]
    return name if sources is None else next(iter(sources.values()))[0]


def band_indexes(spec: RasterSpec, count: int, path: str) -> tuple[tuple[int, ...], int | None]:
    """1-based indexes of the image bands and of the cloud-mask band of a raster file."""
    if count != len(spec.bands):
        raise DataError(f"raster '{path}' has {count} bands but the manifest lists "
                        f"{len(spec.bands)} ({spec.bands}) for period {spec.period}; "
                        "list every band of the file in 'bands'")
    image = tuple(spec.bands.index(b) + 1 for b in spec.image_bands)
    mask = spec.bands.index(spec.cloud_mask.band) + 1 if spec.cloud_mask else None
    return image, mask


def _multi_file_tile(t: int, name: str, sources: dict[str, tuple[str, int]],
                     spec: RasterSpec) -> TileInfo:
    """A scene whose bands are separate files (all on one grid)."""
    order = list(spec.image_bands) + ([spec.cloud_mask.band] if spec.cloud_mask else [])
    srcs = [(sources[b], open_raster(sources[b][0])) for b in order]
    (f0, _), first = srcs[0]
    if first.crs is None:
        raise DataError(f"raster '{f0}' has no CRS; give the file a CRS (e.g. with "
                        "gdal_edit.py -a_srs)")
    for (f, b), src in srcs:
        if b > src.count:
            raise DataError(f"raster '{f}' has {src.count} bands; band {b} was asked for "
                            f"(scene '{name}')")
        if src.crs != first.crs or src.transform != first.transform or \
                (src.width, src.height) != (first.width, first.height):
            raise DataError(f"the band files of scene '{name}' are not on one grid: '{f}' "
                            f"differs from '{f0}' (CRS, transform or size); resample them to "
                            "one grid")
    nodata = spec.nodata if spec.nodata is not None else first.nodatavals[srcs[0][0][1] - 1]
    k = len(spec.image_bands)
    return TileInfo(
        period_index=t, path=f0, crs=first.crs.to_wkt(), transform=tuple(first.transform)[:6],
        width=first.width, height=first.height, image_bands=tuple(range(1, k + 1)),
        mask_band=k + 1 if spec.cloud_mask else None,
        clear_values=spec.cloud_mask.clear if spec.cloud_mask else (),
        nodata=None if nodata is None else float(nodata), scale=spec.scale, offset=spec.offset,
        sources=tuple(sources[b] for b in order), composite=spec.composite, scene=name)


def tile_infos(manifest: Manifest, *, scenes: bool = False) -> list[TileInfo]:
    """One :class:`TileInfo` per scene (raster file, scene folder or STAC item), in period
    order then manifest order.

    Readers that use ``tile.path`` and ``tile.image_bands`` directly (one multi-band file per
    tile, mosaicked) get a :class:`~geocausal.errors.DataError` for composites, STAC items and
    scene folders; ``scenes=True`` (readers that go through :func:`read_window` and handle
    ``composite``, such as chip extraction) accepts them.
    """
    periods = manifest.ordered_periods
    if not scenes:
        for i, spec in enumerate(manifest.rasters):
            kind = ("composite" if spec.composite is not None else "stac" if spec.stac is not None
                    else "band_files" if spec.band_files is not None else None)
            if kind is not None:
                raise DataError(f"{manifest.file or manifest.name}: field 'rasters.{i}.{kind}': "
                                "this step reads one multi-band file per tile; composites, STAC "
                                "items and scene folders are read by chip extraction only "
                                "(geocausal extract). Write the imagery as multi-band GeoTIFFs "
                                "for it")
    out = []
    for spec in manifest.rasters:
        t = periods.index(spec.period)
        scenes = scenes_of(manifest, spec)
        if not scenes:
            raise DataError(f"period {spec.period}: field 'rasters' names no scene (a pattern "
                            "or STAC window that matches nothing)")
        for name, sources in scenes:
            if sources is not None:
                out.append(_multi_file_tile(t, name, sources, spec))
                continue
            path = name
            src = open_raster(path)
            if src.crs is None:
                raise DataError(f"raster '{path}' has no CRS; give the file a CRS (e.g. with "
                                "gdal_edit.py -a_srs)")
            image, mask = band_indexes(spec, src.count, path)
            manifest.check_band_roles(path, src.count, src.descriptions, spec)
            nodata = spec.nodata if spec.nodata is not None else src.nodata
            out.append(TileInfo(
                period_index=t, path=path, crs=src.crs.to_wkt(),
                transform=tuple(src.transform)[:6], width=src.width, height=src.height,
                image_bands=image, mask_band=mask,
                clear_values=spec.cloud_mask.clear if spec.cloud_mask else (),
                nodata=None if nodata is None else float(nodata),
                scale=spec.scale, offset=spec.offset, composite=spec.composite, scene=path))
    out.sort(key=lambda ti: ti.period_index)
    return out


def resolution_m(path: str | Path) -> float:
    """Pixel height of a raster in metres (approximate for geographic CRSs)."""
    src = open_raster(path)
    res = abs(src.transform.e) or abs(src.transform.a)
    if src.crs.is_geographic:
        return res * 111_320.0
    factor = src.crs.linear_units_factor[1] if src.crs.linear_units else 1.0
    return res * factor


def chip_size_px(manifest: Manifest) -> int:
    """Chip side in pixels: ``chip.size_px``, or ``chip.size_m`` over the first raster's pixel size."""
    if manifest.chip.size_px is not None:
        return int(manifest.chip.size_px)
    if not manifest.rasters:
        raise DataError("field 'chip.size_m' needs a raster to convert metres to pixels; "
                        "give 'chip.size_px' or add 'rasters'")
    res = resolution_m(first_raster_file(manifest))
    return max(1, int(round(manifest.chip.size_m / res)))


def valid_pixels(raw: np.ndarray, tile: TileInfo, image_pos: list[int],
                 mask_pos: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Scaled values ``(h, w, C)`` float32 and validity ``(h, w)`` of a block read from a tile.

    ``raw`` is ``(B, h, w)`` as read; ``image_pos``/``mask_pos`` index its first axis. A pixel is
    valid when every image band is finite and differs from nodata, and the cloud-mask value
    (if any) is one of the clear values.
    """
    img = raw[image_pos]
    valid = np.ones(raw.shape[1:], dtype=bool)
    if np.issubdtype(img.dtype, np.floating):
        valid &= np.isfinite(img).all(axis=0)
    if tile.nodata is not None:
        if math.isnan(tile.nodata):
            valid &= ~np.isnan(img).any(axis=0)
        else:
            valid &= (img != tile.nodata).all(axis=0)
    if mask_pos is not None:
        valid &= np.isin(raw[mask_pos], tile.clear_values)
    # one pass into a pixel-interleaved float32 array (the same float32 products and sums as
    # casting first and scaling after, without the temporaries)
    vals = np.empty(img.shape[1:] + img.shape[:1], dtype=np.float32)
    src = np.moveaxis(img, 0, -1)
    if tile.scale != 1.0 or tile.offset != 0.0:
        if img.dtype.itemsize <= 2 and img.dtype.kind in "ui":  # exact in float32
            np.multiply(src, np.float32(tile.scale), out=vals, dtype=np.float32)
        else:
            vals[...] = src
            vals *= np.float32(tile.scale)
        vals += np.float32(tile.offset)
    else:
        vals[...] = src
    return vals, valid


def write_geotiff(path: str | Path, data: np.ndarray, crs: str, transform: Any, *,
                  nodata: float | None = None, blocksize: int | None = None,
                  compress: str | None = None, band_names: Sequence[str] | None = None,
                  band_tags: Mapping[str, str] | None = None, **creation: Any) -> Path:
    """Write a ``(bands, rows, cols)`` array as a GeoTIFF (tiled when ``blocksize`` is given).

    ``band_names`` become band descriptions, ``band_tags`` are set on every band, and other
    keywords are GDAL creation options (``zlevel=1``, ``predictor=2``...).
    """
    import rasterio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile: dict[str, Any] = dict(driver="GTiff", width=data.shape[2], height=data.shape[1],
                                   count=data.shape[0], dtype=data.dtype, crs=crs,
                                   transform=transform, nodata=nodata)
    if blocksize:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    if compress:
        profile["compress"] = compress
    profile.update(creation)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i in range(1, data.shape[0] + 1):
            if band_names is not None:
                dst.set_band_description(i, band_names[i - 1])
            if band_tags:
                dst.update_tags(i, **band_tags)
    return path


def write_example_study(folder: str | Path, *, n_units: int = 6, size: int = 64,
                        periods: tuple[int, ...] = (2020, 2021), seed: int = 0) -> Manifest:
    """Write a tiny study (a UTM raster per period with red/nir bands, a units CSV, a manifest).

    Pixel ``(r, c)`` of band ``b`` in period ``t`` holds ``1000 * t_index + 100 * b + r + c / 100``
    (so values say where they came from); units sit at pixel centres away from the edges.

    Returns
    -------
    Manifest
        The loaded manifest (also written as ``manifest.yaml`` in ``folder``).
    """
    from pyproj import Transformer
    from rasterio.transform import from_origin

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    crs = "EPSG:32633"
    transform = from_origin(500_000.0, 5_000_000.0, 10.0, 10.0)
    rr, cc = np.mgrid[0:size, 0:size].astype(np.float32)
    rasters = []
    for t, p in enumerate(periods):
        data = np.stack([1000 * t + 100 * b + rr + cc / 100 for b in range(2)]).astype(np.float32)
        name = f"img_{p}.tif"
        write_geotiff(folder / name, data, crs, transform, nodata=-9999.0, blocksize=16)
        rasters.append({"period": p, "paths": [name], "bands": ["red", "nir"]})
    rng = np.random.default_rng(seed)
    rows = rng.integers(8, size - 8, n_units)
    cols = rng.integers(8, size - 8, n_units)
    x = 500_000.0 + 10.0 * (cols + 0.5)
    y = 5_000_000.0 - 10.0 * (rows + 0.5)
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    import pandas as pd

    pd.DataFrame({"unit": np.arange(1, n_units + 1), "lon": lon, "lat": lat,
                  "x1": rng.normal(size=n_units),
                  "treat": rng.integers(0, 2, n_units)}).to_csv(folder / "units.csv", index=False)
    data = {"name": "example", "units": {"path": "units.csv", "id": "unit", "lon": "lon",
                                         "lat": "lat"},
            "rasters": rasters, "periods": list(periods), "chip": {"size_px": 8},
            "columns": {"treatment": ["treat"], "covariates": ["x1"]}}
    import yaml

    (folder / "manifest.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return manifest_from_dict(data, base_dir=folder, file=folder / "manifest.yaml")


def cpu_count() -> int:
    """Usable CPU cores of this process."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
