"""A border study with a planted distributional jump in NDVI: the geographic R3D case on rasters.

:func:`border_ndvi_study` writes, into one folder,

- ``imagery.tif``: a float32 GeoTIFF (bands ``red``, ``nir``; UTM zone 32N, 10 m pixels) whose
  NDVI field is, at a pixel whose signed distance to the border is ``s`` metres,

  ``NDVI = base + slope * s / 1000 + sigma * e``                      (west, ``s < 0``)
  ``NDVI = base + slope * s / 1000 + jump + (1 + scale) * sigma * e``  (east, ``s >= 0``)

  with ``e`` i.i.d. standard normal per pixel; red and nir are ``0.2 (1 -+ NDVI)``, so the
  index computed from the bands is the field itself;
- ``border.gpkg``: the border, a slanted line (layer ``border``, EPSG:4326), and the two
  regions on its sides (layer ``regions``, column ``country`` with ``west`` and ``east``);
- ``units.gpkg``: points (EPSG:4326) placed uniformly at random, with ``unit_id``;
- ``manifest.yaml``: the study: a ``distance`` join giving the running variable
  ``dist_border`` (positive on the ``east`` side), the per-unit NDVI pixel distributions in
  buffers of ``radius_m`` metres clipped to each unit's own side (``distributions``), and the
  ``truth``.

The truth
---------
A unit just east of the border sees, in its zone clipped to the east side, pixels at normal
distances ``X`` distributed as the distance of a uniform point of a half disc of radius
``r`` to its diameter: density ``4 sqrt(r^2 - x^2) / (pi r^2)`` on ``[0, r]`` (mirrored just
west). The quantile treatment effect at the border is therefore

  ``tau(q) = Q_east(q) - Q_west(q)``,

the quantiles of ``base + jump + slope X / 1000 + (1 + scale) sigma e`` and of
``base - slope X / 1000 + sigma e``, computed by quadrature (:func:`border_truth`); roughly
``jump + scale * sigma * Phi^-1(q)``. The effect on the mean is
``jump + 2 slope (4 r / 3 pi) / 1000``. They are stored as ``truth`` entries ``qte_<100q>``
and ``mean``.

Examples
--------
>>> import tempfile
>>> s = border_ndvi_study(tempfile.mkdtemp(), n_units=40, size_px=120, seed=1)
>>> s.manifest_path.name, len(s.units)
('manifest.yaml', 40)
>>> round(s.truth["qte_50"], 5)
0.08102
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geocausal._safety import prepare_output_dir
from geocausal.data.rasters import write_geotiff
from geocausal.errors import DataError

__all__ = ["BorderStudy", "border_ndvi_study", "border_truth", "TRUTH_LEVELS"]

#: quantile levels whose true effects the manifest records
TRUTH_LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9)
#: CRS of the imagery (UTM zone 32N) and the upper-left corner of the image
CRS = "EPSG:32632"
ORIGIN = (600_000.0, 5_000_000.0)
FILES = ("imagery.tif", "border.gpkg", "units.gpkg", "manifest.yaml")


@dataclass(frozen=True)
class BorderStudy:
    """What :func:`border_ndvi_study` wrote."""

    folder: Path
    manifest_path: Path
    units: Any
    truth: dict[str, float] = field(default_factory=dict)


def _half_disc_quantiles(levels: np.ndarray, loc: float, sd: float, slope_m: float,
                         radius_m: float, sign: float) -> np.ndarray:
    """Quantiles of ``loc + sign * slope_m * X + sd * e``, X the distance of a uniform point
    of a half disc of radius ``radius_m`` to its diameter, e standard normal.
    """
    from scipy.optimize import brentq
    from scipy.special import ndtr

    x = np.linspace(0.0, radius_m, 4001)
    dens = 4.0 * np.sqrt(np.maximum(radius_m ** 2 - x ** 2, 0.0)) / (np.pi * radius_m ** 2)
    w = dens * np.gradient(x)
    w /= w.sum()
    shift = loc + sign * slope_m * x

    def cdf(z: float) -> float:
        return float(np.sum(w * ndtr((z - shift) / sd)))

    lo, hi = loc - 12 * sd - abs(slope_m) * radius_m, loc + 12 * sd + abs(slope_m) * radius_m
    return np.array([brentq(lambda z, q=q: cdf(z) - q, lo, hi, xtol=1e-12) for q in levels])


def _spaced_points(rng: np.random.Generator, n: int, xr: tuple[float, float],
                   yr: tuple[float, float], spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform points in a box, each at least ``spacing`` from the earlier ones."""
    pts: list[tuple[float, float]] = []
    tries = 0
    while len(pts) < n:
        tries += 1
        if tries > 200 * n:
            raise DataError(f"could not place {n} units at least {spacing} m apart in the "
                            f"image; lower n_units or min_spacing_m (placed {len(pts)})")
        x, y = rng.uniform(*xr), rng.uniform(*yr)
        if pts:
            arr = np.asarray(pts)
            if np.min(np.hypot(arr[:, 0] - x, arr[:, 1] - y)) < spacing:
                continue
        pts.append((x, y))
    arr = np.asarray(pts)
    return arr[:, 0], arr[:, 1]


def border_truth(levels: Sequence[float] = TRUTH_LEVELS, *, base: float = 0.45,
                 jump: float = 0.08, scale: float = 0.5, sigma: float = 0.06,
                 slope: float = 0.02, radius_m: float = 60.0) -> dict[str, float]:
    """The true quantile effects (``qte_<100q>``) and mean effect (``mean``) at the border.

    Examples
    --------
    >>> t = border_truth([0.5], slope=0.0)
    >>> round(t["qte_50"], 10), round(t["mean"], 10)
    (0.08, 0.08)
    """
    q = np.asarray(levels, float)
    if q.ndim != 1 or np.any((q <= 0) | (q >= 1)):
        raise DataError(f"levels must lie strictly between 0 and 1, got {list(levels)}")
    east = _half_disc_quantiles(q, base + jump, (1 + scale) * sigma, slope / 1000, radius_m, 1.0)
    west = _half_disc_quantiles(q, base, sigma, slope / 1000, radius_m, -1.0)
    out = {f"qte_{round(100 * lv):d}": float(e - w) for lv, e, w in zip(q, east, west)}
    out["mean"] = float(jump + 2 * slope / 1000 * 4 * radius_m / (3 * np.pi))
    return out


def border_ndvi_study(out_dir: str | Path, *, n_units: int = 300, size_px: int = 400,
                      pixel_m: float = 10.0, radius_m: float = 60.0, base: float = 0.45,
                      jump: float = 0.08, scale: float = 0.5, sigma: float = 0.06,
                      slope: float = 0.02, min_spacing_m: float = 0.0, seed: int = 0,
                      overwrite: bool = False) -> BorderStudy:
    """Write the border study (imagery, border layer, units, manifest) into ``out_dir``.

    Parameters
    ----------
    out_dir
        Folder to write into (created; an existing one must be empty or ``overwrite``).
    n_units
        Number of unit points.
    size_px, pixel_m
        Image side in pixels and pixel size in metres.
    radius_m
        Buffer radius of each unit's zone.
    base, jump, scale, sigma, slope
        The NDVI field (module docstring): level, jump at the border, relative increase of
        the pixel spread on the east side, west pixel spread, trend per km of signed distance.
    min_spacing_m
        Minimum distance between unit points (dart throwing: uniform points, each one closer
        than this to an earlier one redrawn); ``2 * radius_m + 2 * pixel_m`` gives zones that
        share no pixel. 0 (the default): independent uniform points.
    seed
        Seed of the unit positions and pixel noise.

    Returns
    -------
    BorderStudy
    """
    import geopandas as gpd
    import yaml
    from affine import Affine
    from shapely.geometry import LineString, Point, Polygon

    if n_units < 10 or size_px < 20 or not pixel_m > 0 or not radius_m > 0 or not sigma > 0:
        raise DataError("border_ndvi_study needs n_units >= 10, size_px >= 20 and positive "
                        "pixel_m, radius_m and sigma")
    if not (np.isfinite(min_spacing_m) and min_spacing_m >= 0):
        raise DataError(f"min_spacing_m must be a finite number >= 0, got {min_spacing_m}")
    out = prepare_output_dir(out_dir, list(FILES), overwrite=overwrite, trust_marker=False,
                             clear=True)
    rng = np.random.default_rng(seed)
    x0, y0 = ORIGIN
    side = size_px * pixel_m
    # the border: a slanted line through the image's centre, beyond its edges
    a = np.array([x0 + 0.45 * side, y0 + 0.3 * side])
    b = np.array([x0 + 0.55 * side, y0 - 1.3 * side])
    t = b - a
    normal = np.array([-t[1], t[0]]) / np.hypot(*t)  # points east (left of a -> b, southward)
    cols = x0 + (np.arange(size_px) + 0.5) * pixel_m
    rows = y0 - (np.arange(size_px) + 0.5) * pixel_m
    gx, gy = np.meshgrid(cols, rows)
    s = (gx - a[0]) * normal[0] + (gy - a[1]) * normal[1]  # signed distance, metres
    e = rng.standard_normal(s.shape)
    east = s >= 0
    ndvi = base + slope * s / 1000 + np.where(east, jump + (1 + scale) * sigma * e, sigma * e)
    data = np.stack([0.2 * (1 - ndvi), 0.2 * (1 + ndvi)]).astype(np.float32)
    write_geotiff(out / "imagery.tif", data, CRS, Affine(pixel_m, 0, x0, 0, -pixel_m, y0),
                  band_names=["red", "nir"], compress="deflate")
    # the border layer (a line, and the regions on its sides), in longitude/latitude
    line = LineString([tuple(a), tuple(b)])
    far = 2 * side * normal
    west_poly = Polygon([tuple(a), tuple(b), tuple(b - far), tuple(a - far)])
    east_poly = Polygon([tuple(a), tuple(b), tuple(b + far), tuple(a + far)])
    gpd.GeoDataFrame({"name": ["border"]}, geometry=[line], crs=CRS).to_crs(
        "EPSG:4326").to_file(out / "border.gpkg", layer="border", driver="GPKG",
                             engine="pyogrio")
    gpd.GeoDataFrame({"country": ["west", "east"]}, geometry=[west_poly, east_poly],
                     crs=CRS).to_crs("EPSG:4326").to_file(
        out / "border.gpkg", layer="regions", driver="GPKG", engine="pyogrio")
    # units: uniform inside the image, a zone away from its edges
    margin = radius_m + 2 * pixel_m
    if min_spacing_m > 0:
        ux, uy = _spaced_points(rng, n_units, (x0 + margin, x0 + side - margin),
                                (y0 - side + margin, y0 - margin), min_spacing_m)
    else:
        ux = rng.uniform(x0 + margin, x0 + side - margin, n_units)
        uy = rng.uniform(y0 - side + margin, y0 - margin, n_units)
    units = gpd.GeoDataFrame({"unit_id": np.arange(1, n_units + 1)},
                             geometry=[Point(p) for p in zip(ux, uy)], crs=CRS).to_crs("EPSG:4326")
    units.to_file(out / "units.gpkg", layer="units", driver="GPKG", engine="pyogrio")
    truth = border_truth(base=base, jump=jump, scale=scale, sigma=sigma, slope=slope,
                         radius_m=radius_m)
    manifest = {
        "name": "border_ndvi",
        "description": "NDVI pixel distributions across a border with a planted jump "
                       "(geocausal.datasets.boundary.border_ndvi_study).",
        "units": {"path": "units.gpkg", "id": "unit_id", "layer": "units"},
        "rasters": [{"period": 2020, "paths": ["imagery.tif"], "bands": ["red", "nir"]}],
        "periods": [2020],
        "chip": {"size_px": 16},
        "joins": [{"kind": "distance", "path": "border.gpkg", "layer": "border",
                   "name": "dist_border", "treated": "east"}],
        "distributions": [{"name": "ndvi", "index": "NDVI", "zone": "buffer",
                           "radius_m": float(radius_m)}],
        "columns": {"id": ["unit_id"], "outcome": ["ndvi"], "running": ["dist_border"]},
        "truth": truth,
    }
    path = out / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return BorderStudy(folder=out, manifest_path=path, units=units, truth=truth)
