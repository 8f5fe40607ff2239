"""The synthetic world: real multi-band, multi-year GeoTIFFs with a planted causal structure.

:func:`synthetic_world` writes, into one folder,

- ``imagery_<period>.tif``: one tiled, compressed, multi-band GeoTIFF per period (bands blue,
  green, red, nir, swir1, swir2 as reflectance x 10,000 in uint16, nodata 0, scale 1e-4) in a
  projected CRS (EPSG:32636 by default) with a real geotransform. Pixels are linear mixtures of
  land-cover end-members (water, vegetation, built-up, road, bare soil) whose maps are spatially
  correlated random fields: lakes, towns that grow over time, straight laterite roads (new ones
  appear), and vegetation with a seasonal factor per period and loss where towns grow;
- ``units.gpkg``: one point per unit (EPSG:4326) with tabular covariates ``x1..xk``, groups
  (``country``, ``funder`` in {china, world_bank}, ``sector``), an admin ``cluster_id``,
  the treatment ``d``, the outcome ``y`` (last period) and the outcome panel ``y_<period>``;
- ``truth.csv``: per unit the true CATE, the true propensity, both potential outcomes and the
  image content that drives them (water, built-up, road and vegetation shares in the unit's chip
  at the first period, and the growth of built-up area between the first and last period);
- ``manifest.yaml``: the study manifest (see :mod:`geocausal.data.manifest`) with column roles
  and the known ``truth`` (ATE, ATT, ATE per funder).

The planted design
------------------
Treatment is assigned on what the first-period image shows around the unit (water, built-up and
road shares) *and* on tabular covariates, with a stronger image dependence for World Bank sites
than for Chinese ones. The untreated outcome depends on the same image content, on the covariates
(``x1`` is a noisy proxy of built-up share), on a country effect and on noise, so a difference in
means and a tabular-only adjustment are biased while image-aware adjustment is not. Per-unit
effects vary with static content (vegetation share), with change over time (growth of built-up
area from the first to the last period: visible only in an image sequence), with ``x1`` and with
the funder. The panel ``y_<period>`` has unit effects, a common trend and the effect switched on
from the second period, for fixed-effects and panel work. Image shares are linear in the per-band
chip means (linear mixing), so per-band summaries recover the confounders, and a learned encoder
can recover them too.

Examples
--------
>>> import tempfile
>>> w = synthetic_world(tempfile.mkdtemp(), n_units=30, size=8, periods=(2012, 2018), seed=1)
>>> len(w.units), w.periods
(30, (2012, 2018))
>>> bool(abs(w.ate - w.truth["cate"].mean()) < 1e-12)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from geocausal._safety import prepare_output_dir
from geocausal.data.rasters import write_geotiff
from geocausal.datasets.dgp import (
    bounded_propensity,
    gaussian_field,
    road_mask,
    standardize,
    window_means,
)
from geocausal.errors import DataError

#: band names in file order and the reflectance end-members of each land cover per band
BAND_NAMES: tuple[str, ...] = ("blue", "green", "red", "nir", "swir1", "swir2")
ENDMEMBERS: dict[str, tuple[float, ...]] = {
    "water": (0.060, 0.050, 0.030, 0.020, 0.010, 0.006),
    "vegetation": (0.030, 0.070, 0.040, 0.400, 0.200, 0.100),
    "built": (0.150, 0.160, 0.180, 0.220, 0.280, 0.260),
    "road": (0.120, 0.150, 0.260, 0.290, 0.400, 0.360),  # laterite (red earth)
    "soil": (0.100, 0.140, 0.200, 0.260, 0.330, 0.300),
}
COUNTRIES: tuple[str, ...] = ("KEN", "UGA", "TZA", "RWA", "ETH", "MWI", "ZMB", "MOZ", "GHA",
                              "NGA", "SEN", "CMR", "CIV", "ZWE", "AGO", "SDN")
SECTORS: tuple[str, ...] = ("transport", "energy", "health", "education", "water", "emergency")
FUNDERS: tuple[str, ...] = ("china", "world_bank")
SCALE = 1e-4
FILES = ("manifest.yaml", "units.gpkg", "truth.csv")


@dataclass(frozen=True, eq=False)
class SyntheticWorld:
    """What :func:`synthetic_world` wrote and the truth it planted.

    Attributes
    ----------
    out_dir, manifest_path, units_path, truth_path, raster_paths
        Files on disk (``raster_paths`` in period order).
    periods
        The periods (years).
    ate, att
        True sample average effect and average effect on the treated
        (``ate == truth["cate"].mean()``).
    units
        The tabular data, one row per unit (what ``units.gpkg`` holds, without geometry).
    truth
        Per unit: ``unit_id``, ``cate``, ``propensity``, ``y0``, ``y1``, ``water``, ``built``,
        ``road``, ``vegetation``, ``built_change``, ``row``, ``col`` (pixel of the unit).
    truth_summary
        The ``truth`` mapping written in the manifest.
    """

    out_dir: Path
    manifest_path: Path
    units_path: Path
    truth_path: Path
    raster_paths: tuple[Path, ...]
    periods: tuple[int, ...]
    ate: float
    att: float
    units: pd.DataFrame
    truth: pd.DataFrame
    truth_summary: dict[str, float]

    @property
    def cate(self) -> np.ndarray:
        """True per-unit effects, aligned with :attr:`units`."""
        return self.truth["cate"].to_numpy()

    @property
    def propensity(self) -> np.ndarray:
        """True propensity scores, aligned with :attr:`units`."""
        return self.truth["propensity"].to_numpy()

    def panel(self) -> pd.DataFrame:
        """The outcome panel in long form: unit_id, period, y, d, post, treated (= d * post)."""
        cols = [f"y_{p}" for p in self.periods]
        long = self.units[["unit_id", "d", *cols]].melt(id_vars=["unit_id", "d"], var_name="period",
                                                      value_name="y")
        long["period"] = long["period"].str[2:].astype(int)
        long["post"] = (long["period"] >= self.periods[min(1, len(self.periods) - 1)]).astype(int)
        long["treated"] = long["d"] * long["post"]
        return long.sort_values(["unit_id", "period"], ignore_index=True)

    def manifest(self):
        """The validated :class:`~geocausal.data.manifest.Manifest`."""
        from geocausal.data.manifest import load_manifest

        return load_manifest(self.manifest_path)


# ----------------------------------------------------------------------------- land cover
@dataclass(frozen=True)
class _Landscape:
    water: np.ndarray  # (H, W) bool, static
    built: np.ndarray  # (T, H, W) bool
    road: np.ndarray  # (T, H, W) bool
    veg: np.ndarray  # (T, H, W) float in [0, 1], vegetation fraction of the pixel
    soil: np.ndarray  # (T, H, W) float, bare soil fraction


def _landscape(rng: np.random.Generator, shape: tuple[int, int], n_t: int, size: int) -> _Landscape:
    h, w = shape
    water = gaussian_field(rng, shape, size / 3) > 1.1  # ~14% water in lakes
    town = gaussian_field(rng, shape, size / 4) + 0.8 * gaussian_field(rng, shape, size * 1.5)
    growth = gaussian_field(rng, shape, size / 2)
    thr = np.quantile(town, 0.88)
    tf = np.linspace(0.0, 1.0, n_t) if n_t > 1 else np.zeros(1)
    built = np.stack([((town + 1.6 * t * (1.0 / (1.0 + np.exp(-2.0 * growth)))) > thr) & ~water
                      for t in tf])
    n_roads = max(2, int(round(1.2 * (h + w) / (2 * size))))
    _, ridx = road_mask(rng, shape, n_roads, width=1.0)
    opened = rng.integers(0, n_t, size=n_roads)  # period index when each road opens
    opened[: max(1, n_roads // 2)] = 0  # half the roads exist from the start
    road = np.stack([(ridx >= 0) & (opened[np.maximum(ridx, 0)] <= t) & ~water
                     for t in range(n_t)])
    built &= ~road
    vbase = 1.0 / (1.0 + np.exp(-(1.5 * gaussian_field(rng, shape, size / 3) + 0.4)))
    season = rng.uniform(0.8, 1.0, size=n_t)
    land = (~water)[None] & ~built & ~road
    veg = np.where(land, vbase[None] * season[:, None, None], 0.0)
    soil = np.where(land, 1.0 - veg, 0.0)
    return _Landscape(water=water, built=built, road=road, veg=veg, soil=soil)


def _reflectance(ls: _Landscape, t: int, band_idx: Sequence[int], rng: np.random.Generator,
                 noise: float = 0.004) -> np.ndarray:
    """uint16 reflectance x 10,000, (C, H, W)."""
    frac = {"water": ls.water.astype(np.float64), "built": ls.built[t].astype(np.float64),
            "road": ls.road[t].astype(np.float64), "vegetation": ls.veg[t], "soil": ls.soil[t]}
    haze = rng.uniform(0.0, 0.01)
    out = np.empty((len(band_idx), *ls.water.shape), dtype=np.uint16)
    for j, b in enumerate(band_idx):
        r = sum(frac[k] * ENDMEMBERS[k][b] for k in frac) + haze
        r = r + noise * rng.standard_normal(r.shape)
        out[j] = np.clip(np.round(r / SCALE), 1, 65535).astype(np.uint16)
    return out


def _band_indices(bands: int | Sequence[str]) -> list[int]:
    if isinstance(bands, int):
        if not 3 <= bands <= len(BAND_NAMES):
            raise DataError(f"bands={bands}: give between 3 and {len(BAND_NAMES)} bands")
        return list(range(bands))
    names = list(bands)
    bad = [b for b in names if b not in BAND_NAMES]
    if bad or len(set(names)) != len(names) or len(names) < 3:
        raise DataError(f"bands={names}: give 3 or more distinct names from {list(BAND_NAMES)}")
    return [BAND_NAMES.index(b) for b in names]


def world_manifest(periods: Sequence[int], band_names: Sequence[str], n_covariates: int,
                   size: int, truth: dict[str, float], prefix: str = "",
                   name: str = "synthetic_world") -> dict:
    """The manifest dict of a synthetic world whose files sit under ``prefix``.

    Examples
    --------
    >>> m = world_manifest([2012], ["blue", "green", "red"], 2, 16, {"ate": 1.0})
    >>> m["rasters"][0]["paths"], m["columns"]["covariates"]
    (['imagery_2012.tif'], ['x1', 'x2'])
    """
    return {
        "name": name,
        "description": ("Synthetic world: image- and covariate-driven treatment with known "
                        "effects (geocausal.datasets.synthetic_world)."),
        "units": {"path": f"{prefix}units.gpkg", "id": "unit_id", "layer": "units"},
        "rasters": [{"period": int(p), "paths": [f"{prefix}imagery_{p}.tif"],
                     "bands": list(band_names), "nodata": 0.0, "scale": SCALE}
                    for p in periods],
        "periods": [int(p) for p in periods],
        "chip": {"size_px": int(size)},
        "columns": {"id": ["unit_id"], "outcome": ["y"], "treatment": ["d"],
                    "covariates": [f"x{i + 1}" for i in range(n_covariates)],
                    "groups": ["country", "funder", "sector"],
                    "cluster": ["country", "cluster_id"]},
        "truth": {k: float(v) for k, v in truth.items()},
    }


# ----------------------------------------------------------------------------- main entry
def synthetic_world(
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_units: int = 600,
    periods: Sequence[int] | None = (2012, 2014, 2016, 2018),
    n_periods: int | None = None,
    size: int = 32,
    bands: int | Sequence[str] = 6,
    n_covariates: int = 5,
    n_countries: int = 12,
    effect: float = 2.0,
    confounding: float = 1.0,
    crs: str = "EPSG:32636",
    pixel_size: float = 30.0,
    overwrite: bool = False,
) -> SyntheticWorld:
    """Write a synthetic study (GeoTIFFs, units GeoPackage, truth, manifest) and return its record.

    Parameters
    ----------
    out_dir
        Folder to write into (created if needed). Existing files of a world are never replaced
        unless ``overwrite=True``.
    seed
        Seed of every random step; the same seed gives the same pixels, units and truth.
    n_units
        Number of units (at least 20).
    periods, n_periods
        Periods (years) of the imagery; ``n_periods`` instead gives ``2012, 2014, ...``.
    size
        Chip side in pixels (the scale of the land-cover patterns follows it).
    bands
        Number of bands (3-6, taken from blue, green, red, nir, swir1, swir2) or their names.
    n_covariates
        Number of tabular covariates ``x1..xk`` (at least 3).
    n_countries
        Number of countries (spatial blocks; the cluster for robust standard errors).
    effect
        Mean of the per-unit effects before the funder shift (the ATE is close to it).
    confounding
        Multiplies the image and covariate coefficients of the propensity (0: randomised).
    crs, pixel_size
        Projected CRS and pixel size (metres) of the rasters.
    overwrite
        Replace the files of an earlier world in ``out_dir``.

    Returns
    -------
    SyntheticWorld

    Examples
    --------
    >>> import tempfile
    >>> w = synthetic_world(tempfile.mkdtemp(), n_units=25, size=8, n_periods=2, bands=4)
    >>> w.manifest().band_names
    ['blue', 'green', 'red', 'nir']
    """
    from rasterio.transform import from_origin

    if n_periods is not None:
        periods = tuple(2012 + 2 * i for i in range(int(n_periods)))
    periods = tuple(int(p) for p in (periods or ()))
    if len(periods) < 1 or len(set(periods)) != len(periods):
        raise DataError(f"periods={periods}: give one or more distinct periods")
    if n_units < 20:
        raise DataError(f"n_units={n_units}: a synthetic world needs at least 20 units")
    if size < 4:
        raise DataError(f"size={size}: chips need at least 4 pixels a side")
    if n_covariates < 3:
        raise DataError(f"n_covariates={n_covariates}: give at least 3")
    if not 2 <= n_countries <= len(COUNTRIES):
        raise DataError(f"n_countries={n_countries}: give between 2 and {len(COUNTRIES)}")
    bidx = _band_indices(bands)
    band_names = [BAND_NAMES[i] for i in bidx]
    out = Path(out_dir)
    tif_names = [f"imagery_{p}.tif" for p in periods]
    prepare_output_dir(out, [*FILES, *tif_names], overwrite=overwrite, trust_marker=False,
                       clear=True)

    rng = np.random.default_rng(seed)
    n_t = len(periods)
    # --- unit layout: a jittered grid of cells one chip wide, with a margin of one chip
    nx = math.ceil(math.sqrt(n_units))
    ny = math.ceil(n_units / nx)
    margin = size
    h, w = ny * size + 2 * margin, nx * size + 2 * margin
    cells = np.sort(rng.choice(nx * ny, size=n_units, replace=False))
    jit = size // 4
    rows = margin + (cells // nx) * size + size // 2 + rng.integers(-jit, jit + 1, n_units)
    cols = margin + (cells % nx) * size + size // 2 + rng.integers(-jit, jit + 1, n_units)

    # --- imagery
    ls = _landscape(rng, (h, w), n_t, size)
    x0, y0 = 500_000.0 - w * pixel_size / 2, 150_000.0 + h * pixel_size
    transform = from_origin(x0, y0, pixel_size, pixel_size)
    raster_paths = []
    for t, name in enumerate(tif_names):
        data = _reflectance(ls, t, bidx, rng)
        write_geotiff(out / name, data, crs, transform, nodata=0, blocksize=256,
                      compress="deflate", zlevel=1, predictor=2, band_names=band_names,
                      band_tags={"scale": str(SCALE)})
        raster_paths.append(out / name)

    # --- image content per unit (chip window centred on the unit's pixel)
    water = window_means(ls.water, rows, cols, size)
    built = np.stack([window_means(ls.built[t], rows, cols, size) for t in range(n_t)])
    road = window_means(ls.road[0], rows, cols, size)
    veg = window_means(ls.veg[0], rows, cols, size)
    built_change = built[-1] - built[0]
    zw, zb, zr, zv = (standardize(v) for v in (water, built[0], road, veg))
    zc = standardize(built_change)

    # --- groups and covariates
    kx = math.ceil(math.sqrt(n_countries))
    ky = math.ceil(n_countries / kx)
    cx = np.minimum((cols * kx) // w, kx - 1)
    cy = np.minimum((rows * ky) // h, ky - 1)
    country_idx = (cy * kx + cx) % n_countries
    country = np.array(COUNTRIES)[country_idx]
    ax, ay = np.minimum((cols * 2 * kx) // w, 2 * kx - 1), np.minimum((rows * 2 * ky) // h, 2 * ky - 1)
    cluster_id = (ay * 2 * kx + ax).astype(int)
    funder = np.array(FUNDERS)[rng.integers(0, 2, n_units)]
    sector = np.array(SECTORS)[rng.integers(0, len(SECTORS), n_units)]
    x = rng.standard_normal((n_units, n_covariates))
    x[:, 0] = 0.6 * zb + 0.8 * x[:, 0]  # x1: a noisy tabular proxy of built-up share
    country_effect = rng.normal(0.0, 0.7, n_countries)[country_idx]
    is_wb = funder == "world_bank"

    # --- treatment: image content and covariates, image-driven more for the World Bank
    image_index = 0.8 * zw + 0.8 * zb + 0.5 * zr
    tab_index = 0.5 * x[:, 0] - 0.4 * x[:, 1] + 0.3 * x[:, 2]
    s_img = np.where(is_wb, 1.0, 0.6) * confounding
    s_tab = np.where(is_wb, 0.8, 0.5) * confounding
    e = bounded_propensity(-0.2 + s_img * image_index + s_tab * tab_index)
    d = (rng.uniform(size=n_units) < e).astype(int)

    # --- outcomes: untreated outcome shares the image drivers of treatment
    mu0 = (10.0 + 1.5 * zw + 1.5 * zb + 0.8 * zr + 0.4 * zv + 0.8 * x[:, 0] + 0.5 * x[:, 1]
           - 0.3 * x[:, 2] + 0.3 * (x[:, 3] ** 2 - 1.0) + country_effect)
    unit_fe = mu0 + rng.normal(0.0, 1.0, n_units)
    sector_shift = dict(zip(SECTORS, (0.3, 0.0, -0.2, 0.1, 0.2, 0.8), strict=True))
    cate = (effect + 1.0 * zc + 0.5 * zv + 0.3 * x[:, 0] + np.where(is_wb, -0.4, 0.4)
            + np.array([sector_shift[s] for s in sector]))
    trend = 0.5 * np.arange(n_t)
    post = (np.arange(n_t) >= min(1, n_t - 1)).astype(float)
    eps = rng.normal(0.0, 0.5, (n_units, n_t))
    y0_panel = unit_fe[:, None] + trend[None, :] + eps
    y_panel = y0_panel + (d * cate)[:, None] * post[None, :]
    y0, y1 = y0_panel[:, -1], y0_panel[:, -1] + cate
    y = np.where(d == 1, y1, y0)

    unit_id = np.array([f"u{i:05d}" for i in range(n_units)])
    units = pd.DataFrame({"unit_id": unit_id, "country": country, "cluster_id": cluster_id,
                          "funder": funder, "sector": sector})
    for j in range(n_covariates):
        units[f"x{j + 1}"] = x[:, j]
    units["d"] = d
    units["y"] = y
    for t, p in enumerate(periods):
        units[f"y_{p}"] = y_panel[:, t]

    truth = pd.DataFrame({"unit_id": unit_id, "cate": cate, "propensity": e, "y0": y0, "y1": y1,
                          "water": water, "built": built[0], "road": road, "vegetation": veg,
                          "built_change": built_change, "row": rows, "col": cols})
    ate, att = float(cate.mean()), float(cate[d == 1].mean())
    summary = {"ate": ate, "att": att, "atc": float(cate[d == 0].mean()),
               "ate_china": float(cate[~is_wb].mean()),
               "ate_world_bank": float(cate[is_wb].mean()),
               "cate_sd": float(cate.std()),
               "naive_difference": float(y[d == 1].mean() - y[d == 0].mean())}

    # --- units file (points at pixel centres, in lon/lat)
    import geopandas as gpd
    from rasterio.transform import xy

    ux, uy = xy(transform, rows, cols, offset="center")
    gdf = gpd.GeoDataFrame(units.copy(), geometry=gpd.points_from_xy(ux, uy), crs=crs)
    gdf = gdf.to_crs("EPSG:4326")
    gdf.to_file(out / "units.gpkg", layer="units", driver="GPKG", engine="pyogrio")
    truth.to_csv(out / "truth.csv", index=False)

    from geocausal.data.manifest import write_manifest

    write_manifest(world_manifest(periods, band_names, n_covariates, size, summary),
                   out / "manifest.yaml")
    return SyntheticWorld(out_dir=out, manifest_path=out / "manifest.yaml",
                          units_path=out / "units.gpkg", truth_path=out / "truth.csv",
                          raster_paths=tuple(raster_paths), periods=periods, ate=ate, att=att,
                          units=units, truth=truth, truth_summary=summary)
