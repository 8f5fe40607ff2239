"""Local STAC catalogs, collections and items as raster sources of a manifest.

A raster entry with ``stac: {path: catalog.json, datetime: "2020-01-01/2020-12-31"}`` takes as
the period's scenes the STAC items under ``path`` (a catalog or collection, searched
recursively, or one item) dated inside the window (an item's ``datetime``, or its
``start_datetime``). Each band named in ``bands`` is found in every item's assets by, in this
order, the asset key, the name of one of the asset's ``eo:bands`` (STAC 1.0) or ``bands``
(STAC 1.1) entries, or such an entry's common name (``red``, ``nir``, ``swir16``...); a band
inside a multi-band asset is read from its position there. Asset hrefs may be files or
http(s) URLs of COGs. An item without a named band is a :class:`~geocausal.errors.DataError`
naming the item, the band and the assets it has.

The bands' roles (for spectral indices) come from the ``eo:bands`` common names
(:data:`COMMON_NAME_ROLES`), unless the manifest's ``band_roles``/``band_preset`` say otherwise.
Several items of a period form a mosaic, or, with ``composite``, are reduced per pixel.

Examples
--------
>>> role_of_common_name("swir16"), role_of_common_name("nir08", has_nir=False)
('swir1', 'nir')
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from geocausal.data.manifest import Manifest, RasterSpec, is_url
from geocausal.errors import DataError

#: STAC ``eo:bands`` common name -> geocausal band role (``rededge`` by wavelength order,
#: ``nir08`` is ``nir`` when no band is plain ``nir``)
COMMON_NAME_ROLES: dict[str, str] = {
    "coastal": "coastal", "blue": "blue", "green": "green", "yellow": "yellow", "red": "red",
    "rededge071": "rededge1", "rededge075": "rededge2", "rededge078": "rededge3",
    "nir": "nir", "nir08": "nir2", "nir09": "watervapour", "cirrus": "cirrus",
    "swir16": "swir1", "swir22": "swir2", "pan": "pan", "lwir": "thermal",
    "lwir11": "thermal1", "lwir12": "thermal2",
}


def role_of_common_name(common: str, *, has_nir: bool = True) -> str | None:
    """The band role of an ``eo:bands`` common name (None if it has none).

    Examples
    --------
    >>> role_of_common_name("red"), role_of_common_name("nir08")
    ('red', 'nir2')
    """
    c = str(common).strip().lower()
    if c == "nir08" and not has_nir:
        return "nir"
    return COMMON_NAME_ROLES.get(c)


def _where(manifest: Manifest, spec: RasterSpec) -> str:
    i = manifest.rasters.index(spec)
    return f"{manifest.file or '<manifest>'}: field 'rasters.{i}.stac'"


def _parse_time(text: str, where: str, end: bool) -> _dt.datetime | None:
    text = str(text).strip()
    if text in ("", ".."):
        return None
    try:
        t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DataError(f"{where}.datetime: '{text}' is not an ISO date or date-time "
                        "(e.g. 2020-01-01 or 2020-01-01T00:00:00Z); use '..' for an open end"
                        ) from None
    if len(text) <= 10 and end:  # a date as the end of the window: the whole day
        t = t + _dt.timedelta(days=1) - _dt.timedelta(microseconds=1)
    return t if t.tzinfo else t.replace(tzinfo=_dt.UTC)


def _window(spec: RasterSpec, where: str) -> tuple[_dt.datetime | None, _dt.datetime | None]:
    dt = spec.stac.datetime  # type: ignore[union-attr]
    if dt is None:
        return None, None
    parts = dt.split("/") if isinstance(dt, str) else list(dt)
    if len(parts) != 2:
        raise DataError(f"{where}.datetime: give a window 'start/end' or [start, end], got {dt!r}")
    lo, hi = _parse_time(parts[0], where, False), _parse_time(parts[1], where, True)
    if lo is not None and hi is not None and lo > hi:
        raise DataError(f"{where}.datetime: the window starts ({parts[0]}) after it ends "
                        f"({parts[1]})")
    return lo, hi


def _item_time(item: Any) -> _dt.datetime | None:
    t = item.datetime
    if t is None:
        raw = item.properties.get("start_datetime")
        t = _dt.datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None
    if t is not None and t.tzinfo is None:
        t = t.replace(tzinfo=_dt.UTC)
    return t


def stac_items(manifest: Manifest, spec: RasterSpec) -> list[Any]:
    """The ``pystac.Item`` objects of a raster entry, in the window, by date then id.

    Raises
    ------
    DataError
        An unreadable STAC file, a bad datetime window, or no item in the window.
    """
    import pystac

    where = _where(manifest, spec)
    path = manifest.resolve(spec.stac.path)  # type: ignore[union-attr]
    try:
        obj = pystac.read_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable JSON: name the file
        raise DataError(f"{where}.path: cannot read STAC file '{path}': "
                        f"{' '.join(str(exc).split())[:200]}") from None
    if isinstance(obj, pystac.Item):
        items = [obj]
    elif isinstance(obj, pystac.Catalog):
        items = list(obj.get_items(recursive=True))
    else:
        raise DataError(f"{where}.path: '{path}' is a STAC {type(obj).__name__}; give a "
                        "catalog, collection or item")
    coll = spec.stac.collection  # type: ignore[union-attr]
    if coll is not None:
        items = [it for it in items if it.collection_id == coll]
    lo, hi = _window(spec, where)
    kept = []
    for it in items:
        t = _item_time(it)
        if (lo is not None or hi is not None) and t is None:
            raise DataError(f"{where}: STAC item '{it.id}' has no datetime; it cannot be placed "
                            "in the window")
        if (lo is None or t >= lo) and (hi is None or t <= hi):
            kept.append(it)
    if not kept:
        raise DataError(f"{where}: no STAC item of '{path}' (of {len(items)}"
                        f"{' in collection ' + repr(coll) if coll else ''}) falls in the window "
                        f"{spec.stac.datetime!r} of period {spec.period}; "  # type: ignore[union-attr]
                        "widen the window or fix 'collection'")
    stamp = _dt.datetime.min.replace(tzinfo=_dt.UTC)
    kept.sort(key=lambda it: (_item_time(it) or stamp, it.id))
    return kept


def _asset_bands(item: Any, asset: Any) -> list[dict]:
    """The band entries of an asset (STAC 1.1 ``bands`` or eo ``eo:bands``), as dicts."""
    fields = asset.extra_fields
    bands = fields.get("bands") or fields.get("eo:bands") or []
    out = []
    for b in bands:
        if isinstance(b, int):  # eo 1.0-beta: indexes into the item's eo:bands
            table = item.properties.get("eo:bands") or []
            b = table[b] if 0 <= b < len(table) else {}
        if isinstance(b, dict):
            out.append({"name": b.get("name"),
                        "common_name": b.get("common_name") or b.get("eo:common_name"),
                        "center_wavelength": b.get("center_wavelength")
                        or b.get("eo:center_wavelength")})
    return out


def find_band(item: Any, band: str) -> tuple[str, int, str | None]:
    """Where ``band`` is in ``item``: (asset href, 1-based band in the asset, common name).

    Raises
    ------
    DataError
        The item has no asset key, band name or common name ``band``.
    """
    key = str(band)
    found = []
    for name, asset in item.assets.items():
        bands = _asset_bands(item, asset)
        if name == key:
            common = bands[0]["common_name"] if len(bands) == 1 else None
            found.append((asset, 1, common))
            continue
        for j, b in enumerate(bands):
            if b["name"] == key or b["common_name"] == key:
                found.append((asset, j + 1, b["common_name"]))
                break
    if not found:
        have = {k: [b["name"] or b["common_name"] for b in _asset_bands(item, a)]
                for k, a in item.assets.items()}
        raise DataError(f"STAC item '{item.id}' has no band '{band}' (no asset key, eo:bands "
                        f"name or common name '{band}'); its assets and bands are {have}. Fix "
                        "'bands' in the manifest or the item")
    if len(found) > 1:
        raise DataError(f"STAC item '{item.id}': band '{band}' is in several assets "
                        f"({[a.href for a, _, _ in found]}); name the band by its asset key")
    asset, idx, common = found[0]
    href = asset.get_absolute_href() or asset.href
    if not is_url(href) and href.startswith("file://"):
        href = href[len("file://"):]
    return href, idx, common


def stac_scenes(manifest: Manifest, spec: RasterSpec) -> list[tuple[str, dict[str, tuple[str, int]]]]:
    """The scenes of a STAC raster entry: ``(item id, {band: (href, 1-based band)})``."""
    out = []
    for item in stac_items(manifest, spec):
        try:
            sources = {b: find_band(item, b)[:2] for b in spec.bands}
        except DataError as exc:
            raise DataError(f"{_where(manifest, spec)} (period {spec.period}): {exc}") from None
        out.append((f"stac:{item.id}", sources))
    return out


def stac_files(manifest: Manifest, spec: RasterSpec) -> list[str]:
    """The STAC JSON files and the band files of a STAC raster entry (for the content hash)."""
    files = [str(manifest.resolve(spec.stac.path))]  # type: ignore[union-attr]
    for item in stac_items(manifest, spec):
        if item.get_self_href():
            files.append(item.get_self_href())
        for b in spec.bands:
            files.append(find_band(item, b)[0])
    return files


def stac_band_roles(manifest: Manifest) -> dict[str, str]:
    """``{role: band}`` of the image bands from the ``eo:bands`` common names of the STAC
    items (the first item of each STAC raster entry).

    Raises
    ------
    DataError
        Two raster entries whose items give a band different roles; two bands with one role.
    """
    roles: dict[str, str] = {}
    for spec in manifest.rasters:
        if spec.stac is None:
            continue
        item = stac_items(manifest, spec)[0]
        commons = {b: (find_band(item, b)[2] or "").lower() for b in spec.image_bands}
        has_nir = "nir" in commons.values()
        redge = sorted((b for b, c in commons.items() if c == "rededge"),
                       key=lambda b: spec.image_bands.index(b))
        here: dict[str, str] = {}
        for b, c in commons.items():
            role = f"rededge{redge.index(b) + 1}" if c == "rededge" and len(redge) <= 3 \
                else role_of_common_name(c, has_nir=has_nir)
            if role is None:
                continue
            if role in here:
                raise DataError(f"{_where(manifest, spec)}: bands '{here[role]}' and '{b}' of "
                                f"STAC item '{item.id}' both have the role '{role}'; set "
                                "'band_roles' in the manifest")
            here[role] = b
        for role, b in here.items():
            if roles.get(role, b) != b:
                raise DataError(f"{_where(manifest, spec)}: STAC role '{role}' is band "
                                f"'{b}' here but '{roles[role]}' in another period; set "
                                "'band_roles' in the manifest")
            roles[role] = b
    return roles


def write_example_stac(folder: str | Path, *, periods: tuple[int, ...] = (2020, 2021),
                       size: int = 32, seed: int = 0) -> Path:
    """Write a small STAC catalog (one item per period, one GeoTIFF asset per band, eo:bands
    with common names red and nir) and return the catalog's path.

    Examples
    --------
    >>> import tempfile
    >>> import pystac
    >>> cat = pystac.read_file(str(write_example_stac(tempfile.mkdtemp())))
    >>> sorted(it.id for it in cat.get_items(recursive=True))
    ['scene-2020', 'scene-2021']
    """
    import numpy as np
    import pystac
    from pystac.extensions.eo import Band, EOExtension
    from rasterio.transform import from_origin

    from geocausal.data.rasters import write_geotiff

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    cat = pystac.Catalog(id="example", description="geocausal example catalog")
    transform = from_origin(500_000.0, 5_000_000.0, 10.0, 10.0)
    bbox = [14.99, 45.1, 15.01, 45.12]
    geom = {"type": "Polygon", "coordinates": [[[bbox[0], bbox[1]], [bbox[2], bbox[1]],
                                                [bbox[2], bbox[3]], [bbox[0], bbox[3]],
                                                [bbox[0], bbox[1]]]]}
    for p in periods:
        item = pystac.Item(id=f"scene-{p}", geometry=geom, bbox=bbox,
                           datetime=_dt.datetime(p, 6, 1, tzinfo=_dt.UTC), properties={})
        for code, common in (("B04", "red"), ("B08", "nir")):
            data = rng.uniform(0, 1, (1, size, size)).astype(np.float32)
            path = write_geotiff(folder / f"scene-{p}" / f"{code}.tif", data, "EPSG:32633",
                                 transform, nodata=-9999.0)
            item.add_asset(code, pystac.Asset(href=str(path), media_type=pystac.MediaType.GEOTIFF,
                                              roles=["data"]))
            EOExtension.ext(item.assets[code], add_if_missing=True).bands = [
                Band.create(name=code, common_name=common)]
        cat.add_item(item)
    cat.normalize_hrefs(str(folder / "stac"))
    cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return folder / "stac" / "catalog.json"
