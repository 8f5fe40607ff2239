"""Simulation harness: which representation of image sequences detects effect heterogeneity?

``run(full, out, seed)`` writes ``tables/*.csv``, ``figures/*.png``, a transported CATE
GeoTIFF under ``rasters/`` and ``provenance.json``. :func:`simulate_trial` is the data
generator (also used by the notebook and the tests).
"""


import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import ndimage, stats

BANDS = ("built", "vegetation", "water")
REPRESENTATIONS = ("tabular", "image_single", "image_sequence", "combined")


@dataclass(frozen=True)
class SimTrial:
    """A synthetic trial on image sequences.

    ``data`` has ``y, d, x1, x2, tau`` (true CATE), ``tau_image`` (its image part), ``growth``,
    ``water``, ``built0`` and cell centres ``cx, cy``; ``chips`` is ``(n, T, s, s, C)``;
    ``mosaic`` is ``(T, C, H, W)`` over the whole landscape (trial sites and beyond) with
    ``transform``/``crs``; ``tau_grid`` is the image part of the true CATE per cell.
    """

    data: pd.DataFrame
    chips: np.ndarray
    mosaic: np.ndarray
    transform: Any
    crs: str
    tau_grid: np.ndarray
    chip: int


def _smooth_uniform(rng, shape, sigma):
    f = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return (stats.rankdata(f).reshape(shape) - 0.5) / f.size


def simulate_trial(n_units: int = 800, *, grid: int = 40, trial_frac: float = 0.75, chip: int = 8,
                   periods: int = 3, noise: float = 1.0, seed: int = 0) -> SimTrial:
    """Draw a landscape, its image sequence, trial sites, a randomised treatment and outcomes.

    True CATE: ``0.5 + 6 growth + 3 water + 0.5 x1``, where ``growth`` is the increase of the
    built-up share between the first and last period (invisible at any single date) and
    ``water`` a static share; baseline outcome ``1 + 2 built0 + 0.5 x2``.
    """
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    cols_trial = int(grid * trial_frac)
    if n_units > grid * cols_trial:
        raise ValueError(f"{n_units} units do not fit in {grid}x{cols_trial} trial cells")
    g = 0.4 * _smooth_uniform(rng, (grid, grid), 3.0)
    w = 0.35 * _smooth_uniform(rng, (grid, grid), 2.0)
    b0 = rng.uniform(0.05, 0.45, (grid, grid))
    up = np.ones((chip, chip))
    g_px, w_px, b_px = (np.kron(a, up) for a in (g, w, b0))
    u, v = rng.random(g_px.shape), rng.random(g_px.shape)
    water = v < w_px
    mosaic = np.empty((periods, len(BANDS)) + g_px.shape, dtype=np.float32)
    for t in range(periods):
        built = (~water) & (u < b_px + g_px * t / max(periods - 1, 1))
        veg = ~(water | built)
        for c, layer in enumerate((0.1 + 0.7 * built, 0.1 + 0.6 * veg, 0.05 + 0.8 * water)):
            mosaic[t, c] = layer + 0.05 * rng.normal(size=layer.shape)
    tau_grid = 0.5 + 6 * g + 3 * w
    cells = rng.choice(grid * cols_trial, n_units, replace=False)
    ri, ci = cells // cols_trial, cells % cols_trial
    chips = np.stack([mosaic[:, :, i * chip:(i + 1) * chip, j * chip:(j + 1) * chip]
                      for i, j in zip(ri, ci)]).transpose(0, 1, 3, 4, 2)
    x1, x2 = rng.normal(size=(2, n_units))
    tau = tau_grid[ri, ci] + 0.5 * x1
    d = rng.integers(0, 2, n_units)
    y = 1 + 2 * b0[ri, ci] + 0.5 * x2 + d * tau + noise * rng.normal(size=n_units)
    res = 10.0
    transform = from_origin(0, grid * chip * res, res, res)
    data = pd.DataFrame({"y": y, "d": d, "x1": x1, "x2": x2, "tau": tau,
                         "tau_image": tau_grid[ri, ci], "growth": g[ri, ci], "water": w[ri, ci],
                         "built0": b0[ri, ci], "row": ri, "col": ci,
                         "cx": (ci + 0.5) * chip * res,
                         "cy": grid * chip * res - (ri + 0.5) * chip * res})
    return SimTrial(data=data, chips=chips, mosaic=mosaic, transform=transform,
                    crs="EPSG:32633", tau_grid=tau_grid, chip=chip)


def representation_specs(sim: SimTrial) -> dict[str, dict[str, Any]]:
    """The four representations as ``gc.cate`` keyword sets."""
    return {
        "tabular": {"formula": "y ~ d + x1 + x2"},
        "image_single": {"formula": "y ~ d", "images": sim.chips, "representation": "single"},
        "image_sequence": {"formula": "y ~ d", "images": sim.chips, "representation": "sequence"},
        "combined": {"formula": "y ~ d + x1 + x2", "images": sim.chips,
                     "representation": "sequence"},
    }


def compare(sim: SimTrial, learner: str, cfg: dict, seed: int) -> pd.DataFrame:
    """One replication: every representation fitted and evaluated, one row each."""
    from geocausal.api.cate import compare_representations

    t = compare_representations("y ~ d", sim.data, representation_specs(sim), learner=learner,
                                propensity=0.5, folds=cfg["folds"], coords=["cx", "cy"],
                                n_splits=cfg["n_splits"], n_boot=cfg["n_boot"], truth="tau",
                                seed=seed)
    t.index.name = "representation"
    return t.reset_index()


def paper_table(reps: pd.DataFrame) -> pd.DataFrame:
    """Paper-style summary: means over replications and detection rates per cell."""
    reps = reps.assign(autoc_detect=stats.norm.sf(reps["autoc_ratio"]) < 0.05,
                       blp_detect=reps["blp_beta2_p"] < 0.05)
    g = reps.groupby(["learner", "representation"], sort=False)
    return g.agg(cor_truth=("cor_truth", "mean"), autoc=("autoc", "mean"),
                 autoc_se=("autoc_se", "mean"), autoc_ratio=("autoc_ratio", "mean"),
                 qini=("qini", "mean"), blp_beta2=("blp_beta2", "mean"),
                 autoc_detect_rate=("autoc_detect", "mean"),
                 blp_detect_rate=("blp_detect", "mean"), reps=("ate", "size")).reset_index()


def reference_numbers(reps: pd.DataFrame) -> dict[str, dict]:
    """Mean correlation of predicted with true CATE and mean AUTOC per learner and
    representation, with Monte Carlo SEs (SD over replications / sqrt(reps), floored at
    0.02: CI size has two replications), for the drift test against ``reference_ci.json``."""
    from geocausal.paper_labels import number

    out = {}
    for (lrn, rep), g in reps.groupby(["learner", "representation"], sort=False):
        for col in ("cor_truth", "autoc"):
            v = g[col].to_numpy(dtype=float)
            se = float(np.std(v, ddof=1) / np.sqrt(v.size)) if v.size > 1 else np.inf
            out[f"{col}_{lrn}_{rep}"] = number(v.mean(), max(se, 0.02) if np.isfinite(se)
                                               else 0.1)
    return out


def run(full: bool, out: Path, seed: int = 0) -> None:
    """Run the CI-sized (or full) study and write tables, figures, a CATE GeoTIFF, provenance."""
    import matplotlib.pyplot as plt

    import geocausal.api.cate as C
    from geocausal.api.landcover import cate_landcover, landcover_fractions
    from geocausal.api.transport import transport_cate
    from geocausal.data.rasters import write_geotiff
    from geocausal.results.estimate import make_provenance
    from geocausal.results.export import write_tables
    from geocausal.results.plot import save
    from geocausal.results.plot_cate import cate_map, evaluation_plot, landcover_plot

    cfg = yaml.safe_load((Path(__file__).parent / "config.yaml").read_text())["full" if full else "ci"]
    out = Path(out)
    for sub in ("tables", "figures", "rasters"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    sim_kw = {k: cfg[k] for k in ("grid", "trial_frac", "chip", "periods", "noise")}
    from geocausal._progress import progress

    rows = []
    for r in progress(range(cfg["reps"]), desc="eo_heterogeneity trials"):
        sim = simulate_trial(cfg["n_units"], seed=seed + r, **sim_kw)
        for learner in cfg["learners"]:
            t = compare(sim, learner, cfg, seed + r)
            t.insert(0, "learner", learner)
            t.insert(0, "rep", r)
            rows.append(t)
    reps = pd.concat(rows, ignore_index=True)
    reps.to_csv(out / "tables" / "replications.csv", index=False)
    table = paper_table(reps)
    table.to_csv(out / "tables" / "representations.csv", index=False)

    # one trial in detail: evaluation, transport map, land cover
    sim = simulate_trial(cfg["n_units"], seed=seed, **sim_kw)
    est = C.cate("y ~ d", sim.data, images=sim.chips, representation="sequence",
                 propensity=0.5, folds=cfg["folds"], coords=["cx", "cy"],
                 n_splits=cfg["n_splits"], n_boot=cfg["n_boot"], truth="tau_image", seed=seed)
    ev = est.diagnostics["evaluation"]
    ev.tidy().to_csv(out / "tables" / "evaluation_sequence.csv", index=False)
    save(evaluation_plot(ev), out / "figures" / "gates_toc.png")
    paths = [write_geotiff(out / "rasters" / f"mosaic_t{t}.tif", sim.mosaic[t], sim.crs,
                           sim.transform) for t in range(sim.mosaic.shape[0])]
    tr = transport_cate(est, paths, out / "rasters" / "cate_transport.tif", chip_size=sim.chip)
    transport_cor = float(np.corrcoef(tr.values.ravel(), sim.tau_grid.ravel())[0, 1])
    cols_trial = int(sim_kw["grid"] * sim_kw["trial_frac"])
    outside = np.s_[:, cols_trial:]
    transport_cor_out = float(np.corrcoef(tr.values[outside].ravel(),
                                          sim.tau_grid[outside].ravel())[0, 1])
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.5))
    cate_map(tr.path, ax=ax[0], title="Predicted CATE (transported)",
             sites=sim.data[["cx", "cy"]].to_numpy())
    cate_map(sim.tau_grid, ax=ax[1], transform=tr.transform, title="True CATE (image part)")
    save(fig, out / "figures" / "cate_map.png")
    both = landcover_fractions(sim.chips, n_classes=cfg["n_classes"], seed=seed, change_from=0)
    frac = both.iloc[:, :cfg["n_classes"]]
    # the reference class is left out of the levels; all but one change column are kept
    lc = cate_landcover(est, both.iloc[:, :-1], reference=frac.columns[-1])
    lc.tidy().to_csv(out / "tables" / "landcover.csv", index=False)
    write_tables(lc, out / "tables", "landcover", caption="CATE on land-cover fractions")
    save(landcover_plot(frac, est.diagnostics["cate"]), out / "figures" / "landcover.png")
    summary = {
        "transport_cor_all": transport_cor, "transport_cor_outside": transport_cor_out,
        "landcover_r2": lc.diagnostics["r_squared"],
        "sequence_cor_truth_image_part": est.diagnostics["cor_truth"],
    }
    pd.Series(summary).to_csv(out / "tables" / "transport_landcover.csv", header=["value"])
    prov = make_provenance("y ~ d (+ x1 + x2)", seed, paper="eo_heterogeneity", full=full,
                           config=cfg, summary=summary)
    from geocausal.paper_labels import attach_labels, write_numbers

    prov = attach_labels(prov, "eo_heterogeneity")
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str))
    write_numbers(out / "tables" / "reference_numbers.json", reference_numbers(reps),
                  pipeline="eo_heterogeneity", full=full, seed=seed)
    plt.close("all")
