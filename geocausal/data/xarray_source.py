"""xarray / rioxarray imagery as the rasters of a study.

Users who already hold their imagery as an ``xarray.DataArray`` (dims ``(band, y, x)`` or
``(y, x)``, optionally with a ``time`` or ``period`` dimension) or an ``xarray.Dataset`` (one
variable per band) pass it to :func:`~geocausal.data.chips.extract` as ``rasters=``, or a
mapping ``{period: DataArray or Dataset}``. The arrays need a CRS and a regular grid
(rioxarray's ``.rio.crs`` and ``.rio.transform()``). Each period is written once as a tiled
GeoTIFF in a folder of the cache directory named by a hash of its values, grid, CRS and band
names (so a rerun reuses it and the chips cache), and the chips then flow through the usual
windowed reads and zarr cache: they equal the chips of the same data written as GeoTIFF.

Band names are the ``band`` coordinate's values when they are strings, else the Dataset's
variable names, else the ``long_name`` attribute, else the manifest's band names, else
``band1``, ``band2``, ... Period labels are the ``time``/``period`` coordinate's values
(years, for datetimes in distinct years) or the mapping's keys.

Examples
--------
>>> import numpy as np, xarray as xr, rioxarray  # noqa: F401
>>> da = xr.DataArray(np.zeros((2, 4, 4), "float32"), dims=("band", "y", "x"),
...                   coords={"band": ["red", "nir"], "y": [35.0, 25.0, 15.0, 5.0],
...                           "x": [5.0, 15.0, 25.0, 35.0]}).rio.write_crs("EPSG:32633")
>>> periods = xarray_periods(da, default_period=2020)
>>> list(periods), periods[2020][1]
([2020], ['red', 'nir'])
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from geocausal.data.manifest import Manifest, manifest_from_dict
from geocausal.errors import DataError

_PERIOD_DIMS = ("time", "period")


def _is_xarray(obj: Any) -> bool:
    mod = type(obj).__module__
    return mod.startswith("xarray") and type(obj).__name__ in ("DataArray", "Dataset")


def _label(value: Any, years_distinct: bool) -> int | str:
    if isinstance(value, np.datetime64):
        if years_distinct:
            return int(str(value.astype("datetime64[Y]")))
        return str(value.astype("datetime64[D]"))
    if isinstance(value, np.integer | int) and not isinstance(value, bool):
        return int(value)
    return str(value)


def _band_array(obj: Any, fallback_names: list[str] | None, where: str) -> tuple[Any, list[str]]:
    """A ``(band, y, x)`` DataArray and its band names."""
    import rioxarray  # noqa: F401 - registers the .rio accessor

    if type(obj).__name__ == "Dataset":
        names = [str(v) for v in obj.data_vars]
        if not names:
            raise DataError(f"{where}: the Dataset has no data variables (bands)")
        crs = obj.rio.crs
        da = obj.to_array(dim="band").assign_coords(band=names)
        if crs is not None:
            da = da.rio.write_crs(crs)
    else:
        da = obj
    try:
        ydim, xdim = da.rio.y_dim, da.rio.x_dim
    except Exception:  # noqa: BLE001 - rioxarray's MissingSpatialDimensionError and kin
        raise DataError(f"{where}: no spatial dimensions found (dims {tuple(da.dims)}); name "
                        "them x/y (or longitude/latitude) or call .rio.set_spatial_dims") from None
    others = [d for d in da.dims if d not in (ydim, xdim)]
    if len(others) > 1:
        raise DataError(f"{where}: dims {tuple(da.dims)} have more than one non-spatial "
                        "dimension; give (band, y, x) per period (a 'time' or 'period' "
                        "dimension is split into periods first)")
    if not others:
        da = da.expand_dims("band")
        others = ["band"]
    bdim = others[0]
    da = da.transpose(bdim, ydim, xdim)
    n = da.sizes[bdim]
    coord = da.coords[bdim].values if bdim in da.coords else None
    long_name = da.attrs.get("long_name")
    if coord is not None and all(isinstance(v, str | np.str_) for v in coord):
        names = [str(v) for v in coord]
    elif isinstance(long_name, list | tuple) and len(long_name) == n:
        names = [str(v) for v in long_name]
    elif fallback_names and len(fallback_names) == n:
        names = list(fallback_names)
    else:
        names = [f"band{i + 1}" for i in range(n)]
    if len(set(names)) != n:
        raise DataError(f"{where}: band names repeat: {names}")
    return da, names


def xarray_periods(obj: Any, *, default_period: Any = 0,
                   band_names: list[str] | None = None) -> dict[Any, tuple[Any, list[str]]]:
    """Split an xarray object (or a ``{period: object}`` mapping) into ``{period: ((band, y, x)
    DataArray, band names)}``.

    Raises
    ------
    DataError
        Not an xarray object, no spatial dims, more than one non-spatial dim, repeated names.
    """
    if isinstance(obj, Mapping):
        items = list(obj.items())
        if not items:
            raise DataError("rasters=: the mapping {period: DataArray} is empty")
        out = {}
        for key, val in items:
            if not _is_xarray(val):
                raise DataError(f"rasters=[{key!r}]: expected an xarray DataArray or Dataset, "
                                f"got {type(val).__name__}")
            out[_label(key, True)] = _band_array(val, band_names, f"rasters=[{key!r}]")
        return out
    if not _is_xarray(obj):
        raise DataError(f"rasters=: expected an xarray DataArray or Dataset (or a mapping "
                        f"period -> one), got {type(obj).__name__}")
    pdim = next((d for d in _PERIOD_DIMS if d in obj.dims), None)
    if pdim is None:
        return {default_period: _band_array(obj, band_names, "rasters=")}
    values = obj.coords[pdim].values if pdim in obj.coords else np.arange(obj.sizes[pdim])
    distinct = (np.issubdtype(np.asarray(values).dtype, np.datetime64)
                and len({str(v.astype("datetime64[Y]")) for v in values}) == len(values))
    labels = [_label(v, distinct) for v in values]
    if len(set(map(str, labels))) != len(labels):
        raise DataError(f"rasters=: the '{pdim}' coordinate repeats periods: {labels}")
    crs = obj.rio.crs if hasattr(obj, "rio") else None
    out = {}
    for k, lab in enumerate(labels):
        sel = obj.isel({pdim: k}, drop=True)
        if crs is not None and sel.rio.crs is None:
            sel = sel.rio.write_crs(crs)
        out[lab] = _band_array(sel, band_names, f"rasters= ({pdim}={lab})")
    return out


def _write_period(da: Any, names: list[str], folder: Path, label: Any) -> Path:
    """Write one period as a tiled GeoTIFF named by the hash of its content (reused if there)."""
    from geocausal.data.chips import _mark_owned
    from geocausal.data.rasters import write_geotiff

    crs = da.rio.crs
    if crs is None:
        raise DataError(f"rasters= (period {label}): the array has no CRS; set it with "
                        "da.rio.write_crs('EPSG:...')")
    try:
        transform = da.rio.transform(recalc=True)
    except Exception as exc:  # noqa: BLE001 - an irregular grid
        raise DataError(f"rasters= (period {label}): no regular grid ({exc}); resample to a "
                        "regular grid first") from None
    values = np.asarray(da.values)
    if values.dtype == np.float64:
        values = values.astype(np.float32)
    nodata = da.rio.nodata if da.rio.nodata is not None else da.rio.encoded_nodata
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(values).tobytes())
    h.update(repr((values.shape, str(values.dtype), tuple(transform)[:6], crs.to_wkt(), names,
                   None if nodata is None else float(nodata))).encode())
    path = folder / f"period-{label}-{h.hexdigest()[:16]}.tif"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    _mark_owned(folder)
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    write_geotiff(tmp, values, crs.to_wkt(), transform,
                  nodata=None if nodata is None else float(nodata),
                  blocksize=256 if min(values.shape[1:]) >= 256 else None,
                  band_names=names)
    os.replace(tmp, path)
    return path


def manifest_with_xarray(manifest: Manifest, rasters: Any, folder: str | Path) -> Manifest:
    """A copy of ``manifest`` whose rasters are the xarray imagery ``rasters`` (written as
    GeoTIFFs under ``folder / 'xarray'``).

    Raises
    ------
    DataError
        Bad arrays (see :func:`xarray_periods`), periods that differ from the manifest's, or
        periods with different band names.
    """
    default = manifest.ordered_periods[0] if len(manifest.ordered_periods) == 1 else 0
    periods = xarray_periods(rasters, default_period=default,
                             band_names=manifest.band_names or None)
    if manifest.periods and [str(p) for p in manifest.periods] != [str(p) for p in periods]:
        raise DataError(f"rasters=: the arrays' periods {list(periods)} differ from the "
                        f"manifest's 'periods' {list(manifest.periods)}; make them match or "
                        "remove 'periods' from the manifest")
    names = {tuple(n) for _, n in periods.values()}
    if len(names) > 1:
        raise DataError(f"rasters=: periods have different bands {sorted(names)}")
    out_dir = Path(folder) / "xarray"
    entries = [{"period": lab, "paths": [str(_write_period(da, n, out_dir, lab))], "bands": n}
               for lab, (da, n) in periods.items()]
    data = manifest.model_dump(mode="json", exclude_defaults=True)
    data["rasters"] = entries
    data["periods"] = list(periods)
    return manifest_from_dict(data, base_dir=manifest.base_dir, file=manifest.file)
