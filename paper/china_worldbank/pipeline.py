"""Chinese vs World Bank development projects: image confounding, placement and fixed effects.

What the paper shows, on data with a known truth:

1. Synthetic world (funders china / world_bank, sectors, placement driven by what the images
   show): the difference in means and tabular-only AIPW are biased; adding image features
   to the propensity and outcome models moves the estimates to the truth, overall, per funder
   and per funder x sector (with Holm and Benjamini-Hochberg adjustments).
2. Placement: cross-validated AUCs of image-only, tabular-only and combined propensity models
   per funder, with DeLong confidence intervals and paired tests of the differences.
3. Unit and period fixed-effects regressions on the outcome panel, alongside.
3b. Sensitivity of the image-aware effects (overall and per funder) to a confounder the images
   missed: omitted-variable-bias bounds and robustness values (Chernozhukov et al. 2022),
   benchmarked against everything the images captured (refit without ``images=``) and
   against the country effects (refit without ``C(country)``); the Cinelli-Hazlett robustness
   value of the fixed-effects estimate.
3c. Specification curve of the image-aware ATE (``gc.spec_curve``): chip size (a data-layer
   choice: the manifest's chip, re-extracted), formula with or without country effects,
   outcome learner and propensity trimming; the table and the Simonsohn-Simmons-Nelson
   figure, with the truth.
4. Sentinel-2 semi-synthetic study (real pixels, simulated placement and outcomes): bias and
   95% CI coverage over replications (seeds) of the naive, tabular-only and image-aware
   estimators, and the share of the naive bias that image-aware adjustment removes.

Writes ``tables/*.csv``, ``figures/*.png`` and ``provenance.json`` under ``out``.
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

import geocausal as gc
from geocausal.errors import DiagnosticWarning
from geocausal.results.estimate import make_provenance
from geocausal.results.export import write_tables
from geocausal.results.plot import coef_plot, save
from geocausal.results.plot_ipw import love_plot, overlap_plot

HERE = Path(__file__).resolve().parent


def learners(kind: str, seed: int) -> dict:
    """Propensity: standardised logistic regression; outcome: ridge (CV) or boosting."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {"propensity": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))}
    if kind == "ridge":
        out["outcome"] = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    else:
        out["outcome"] = HistGradientBoostingRegressor(max_iter=200, random_state=seed)
    return out


def first_period(features: pd.DataFrame, period) -> pd.DataFrame:
    """Pre-treatment image features: the columns of the first period."""
    cols = [c for c in features.columns if str(c).endswith(f"_{period}")]
    return features[cols] if cols else features


def outcome_panel(units: pd.DataFrame, periods) -> pd.DataFrame:
    """Long outcome panel: unit_id, period, y, d, treated (= d after the first period)."""
    cols = {f"y_{p}": p for p in periods}
    long = units[["unit_id", "d", *cols]].melt(id_vars=["unit_id", "d"], var_name="period",
                                               value_name="outcome")
    long["period"] = long["period"].map(cols)
    long["treated"] = long["d"] * (long["period"] > periods[0]).astype(int)
    return long.rename(columns={"outcome": "y"}).sort_values(["unit_id", "period"],
                                                             ignore_index=True)


def three_estimates(formula_tab: str, data: pd.DataFrame, images: pd.DataFrame, *, lrn, folds,
                    seed, trim, by=None, vcov="hetero") -> dict:
    """Naive difference in means, tabular-only AIPW and image-aware AIPW."""
    treat = formula_tab.split("~")[1].split("+")[0].strip()
    outcome = formula_tab.split("~")[0].strip()
    naive_p = np.full(len(data), data[treat].mean())
    if by is not None:  # naive within groups: the group share treated
        key = data[by].astype(str).agg(" x ".join, axis=1) if isinstance(by, list) else data[by]
        naive_p = data.groupby(key)[treat].transform("mean").to_numpy()
    common = dict(learners=lrn, folds=folds, seed=seed, by=by, vcov=vcov)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        return {
            "naive": gc.ipw(f"{outcome} ~ {treat}", data, propensity=naive_p, by=by, vcov=vcov),
            "tabular": gc.aipw(formula_tab, data, trim=trim, **common),
            "image": gc.aipw(formula_tab, data, images=images, trim=trim, **common),
        }


def _tidy(res, method: str) -> pd.DataFrame:
    t = res.tidy()
    if "model" not in t:
        t.insert(0, "model", "all")
    t.insert(0, "method", method)
    return t


# ----------------------------------------------------------------------------- world
def run_world(cfg: dict, seed: int, work: Path, tables: Path, figs: Path) -> dict:
    from geocausal.data.study import load_study

    wc = cfg["world"]
    world = gc.datasets.synthetic_world(work / "world", seed=seed, n_units=wc["n_units"],
                                        size=wc["size"], periods=tuple(wc["periods"]),
                                        n_countries=wc["n_countries"])
    study = load_study(world.manifest_path, features="summary", seed=seed)
    data = study.table.reset_index(drop=True)
    img = first_period(study.features, world.periods[0]).reset_index(drop=True)
    truth = world.truth.set_index("unit_id").loc[data["unit_id"]].reset_index()
    lrn = learners(cfg["outcome_learner"], seed)
    xs = " + ".join(c for c in data.columns if c.startswith("x") and c[1:].isdigit())
    f_tab = f"y ~ d + {xs} + C(country)"
    rows, groups = [], []

    overall = three_estimates(f_tab, data, img, lrn=lrn, folds=cfg["folds"], seed=seed,
                              trim=cfg["trim"], vcov={"cluster": "country"})
    for m, est in overall.items():
        t = _tidy(est, m)
        t["truth"] = world.ate
        rows.append(t)
    by_funder = three_estimates(f_tab, data, img, lrn=lrn, folds=cfg["folds"], seed=seed,
                                trim=cfg["trim"], by="funder")
    for m, est in by_funder.items():
        t = _tidy(est, m)
        t["truth"] = [truth.loc[data.funder == g, "cate"].mean() for g in t.model]
        rows.append(t)
    effects = pd.concat(rows, ignore_index=True)
    effects["bias"] = effects["estimate"] - effects["truth"]
    effects.to_csv(tables / "world_effects.csv", index=False)

    fs = three_estimates(f_tab, data, img, lrn=lrn, folds=cfg["folds"], seed=seed,
                         trim=cfg["trim"], by=["funder", "sector"])
    for m, est in fs.items():
        t = _tidy(est, m)
        key = data[["funder", "sector"]].astype(str).agg(" x ".join, axis=1)
        t["truth"] = [truth.loc[key == g, "cate"].mean() for g in t.model]
        groups.append(t)
    sector = pd.concat(groups, ignore_index=True)
    sector.to_csv(tables / "world_funder_sector.csv", index=False)
    fs["image"].etable(fmt="frame").to_csv(tables / "world_funder_sector_etable.csv")
    write_tables(fs["image"], tables, "world_funder_sector_etable",
                 caption="AIPW with image features by funder x sector")

    # placement per funder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        plc = gc.placement(f"d ~ {xs}", data, images=img, by="funder",
                           learners={"propensity": lrn["propensity"]}, folds=cfg["folds"],
                           seed=seed)
    placement = plc.tidy()
    placement.to_csv(tables / "world_placement.csv", index=False)
    write_tables(plc, tables, "world_placement", caption="Placement AUC by funder")

    # fixed effects on the outcome panel
    panel = outcome_panel(world.units, world.periods)
    fe = gc.fe("y ~ treated | unit_id + period", panel, vcov={"cluster": "unit_id"})
    fe_t = fe.tidy()
    fe_t["att_truth"] = world.att
    fe_t.to_csv(tables / "world_fe.csv", index=False)
    write_tables(fe, tables, "world_fe", caption="Two-way fixed effects on the outcome panel")

    paper = run_paper_steps(world, study, data, img, truth, f_tab, xs.split(" + "), lrn, cfg,
                            seed, tables, figs)
    sens = run_sensitivity(f_tab, data, img, overall["image"], fe, lrn, cfg, seed, tables, figs)
    spec = run_spec_curve(world, f_tab, cfg, seed, work, tables, figs)

    # figures
    t = effects[effects.model == "all"].assign(term=lambda x: x.method)
    save(coef_plot(t, truth=world.ate, title="Synthetic world: ATE"), figs / "world_ate.png")
    ft = effects[effects.model != "all"].assign(term=lambda x: x.model + ": " + x.method)
    save(coef_plot(ft, title="Synthetic world: ATE by funder"), figs / "world_ate_by_funder.png")
    save(overlap_plot(overall["image"], title="Image-aware propensity"), figs / "world_overlap.png")
    save(love_plot(overall["image"], title="Balance (image-aware weights)"),
         figs / "world_love.png")
    save(fs["image"].plot(), figs / "world_funder_sector.png")
    save(plc.plot(), figs / "world_placement.png")
    return {"manifest_hash": study.manifest_hash, "ate": world.ate, "att": world.att,
            "n_units": int(len(data)), "sensitivity": sens, "spec_curve": spec,
            "paper_steps": paper}


def _steps():
    import sys
    from importlib.util import module_from_spec, spec_from_file_location

    name = "geocausal_paper_china_worldbank_paper_steps"  # the name _real_data.load_sibling uses
    if name not in sys.modules:
        spec = spec_from_file_location(name, HERE / "paper_steps.py")
        mod = module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def run_paper_steps(world, study, data: pd.DataFrame, img: pd.DataFrame, truth: pd.DataFrame,
                    f_tab: str, xs: list[str], lrn: dict, cfg: dict, seed: int, tables: Path,
                    figs: Path) -> dict:
    """The paper's own steps on the synthetic world (``paper_steps.py``, as on real data).

    - AIPW whose propensity is a CNN learned from the pre-treatment chips (overall and per
      funder), its salience maps;
    - funder x sector-group cells (sectors pooled so that each cell holds ``min_cell`` units),
      Holm / BH adjusted, with cell sizes and the cells' true effects;
    - placement AUCs (image, tabular, both) per funder tested against 0.5;
    - unit + period FE on the outcome panel *predicted from imagery* (cross-fitted ridge on
      each period's image features, trained on the first period), and its prediction-powered
      correction with a surveyed subsample (``survey_share`` of the units, outcome known every
      period), next to the FE on the true panel (the truth the correction aims at).
    """
    steps = _steps()
    ps = cfg["paper_steps"]
    scfg = {**cfg, **ps}
    chips_all, _mask = study.chips.load()
    pos = {u: i for i, u in enumerate(study.chips.unit_ids.tolist())}
    rows = np.array([pos[u] for u in data["unit_id"]])  # chips by key, never by position
    chips = chips_all[rows, 0]  # the first (pre-treatment) period
    out = {}
    # the paper's funder ATEs with the CNN propensity (one CNN per funder and fold)
    cnn_by = steps.cnn_effects(f_tab, data, chips, scfg, seed, lrn["outcome"], by="funder")
    cnn_t = cnn_by.tidy().assign(method="cnn")
    cnn_t["truth"] = [truth.loc[data.funder == g, "cate"].mean() for g in cnn_t.model]
    cnn_t["bias"] = cnn_t["estimate"] - cnn_t["truth"]
    cnn_t.to_csv(tables / "world_cnn_effects.csv", index=False)
    cnn = {g: cnn_by[g] for g in cnn_t.model}
    out["cnn_salience"] = all(
        steps.save_salience(est, figs / f"world_salience_{g}.png",
                            f"Synthetic world, {g}: salience of the CNN propensity")
        for g, est in cnn.items())
    for g, est in cnn.items():
        save(overlap_plot(est, title=f"{g}: CNN propensity"), figs / f"world_overlap_cnn_{g}.png")

    cells = steps.pooled_cells(f_tab, data, img, scfg, seed, lrn, truth=truth["cate"])
    cells["bias"] = cells["estimate"] - cells["truth"]
    cells.to_csv(tables / "world_funder_sector_pooled.csv", index=False)
    out["min_cell_units"] = int(cells["n_units"].min())

    plc = steps.placement_tests(data, xs, img, scfg, seed, lrn["propensity"])
    plc.to_csv(tables / "world_placement_vs_half.csv", index=False)

    # FE on the imagery-predicted outcome panel, and its PPI correction
    periods = list(world.periods)
    per = {p: first_period(study.features, p).reset_index(drop=True).to_numpy() for p in periods}
    y_true = {p: data[f"y_{p}"].to_numpy(float) for p in periods}
    pred, r2 = steps.predicted_panel(per, y_true[periods[0]], periods[0], scfg, seed)
    rng = np.random.default_rng(seed)
    labelled = rng.random(len(data)) < float(ps["survey_share"])
    start = np.full(len(data), float(periods[1]) if len(periods) > 1 else np.inf)
    fe_t = steps.rectified_fe(pred, y_true, data["unit_id"], data["d"].to_numpy(), start,
                              labelled)
    fe_true = gc.fe("y ~ treated | unit_id + period", outcome_panel(world.units, periods),
                    vcov={"cluster": "unit_id"})
    fe_t = pd.concat([fe_t, pd.DataFrame([{
        "method": "truth_panel", "estimate": float(fe_true.params.iloc[0]),
        "std_error": float(fe_true.std_errors.iloc[0]),
        "conf_low": float(fe_true.conf_int().iloc[0].conf_low),
        "conf_high": float(fe_true.conf_int().iloc[0].conf_high),
        "n_units": len(data)}])], ignore_index=True)
    fe_t["att_truth"] = world.att
    fe_t["oof_r2_first_period"] = r2
    fe_t.to_csv(tables / "world_fe_predicted.csv", index=False)
    out["predicted_oof_r2"] = r2
    return out


def run_spec_curve(world, f_tab: str, cfg: dict, seed: int, work: Path, tables: Path,
                   figs: Path) -> dict:
    """Specification curve of the image-aware ATE over the analyst's choices.

    A data-layer choice (the chip size cut from the rasters, through a manifest override and
    ``load_study``), the formula (with or without country effects), the outcome learner and
    the propensity trimming; every specification clusters by country. Writes
    ``world_spec_curve.csv`` (one row per specification, with the truth and whether the
    interval covers it) and ``world_spec_curve.png``.
    """
    from geocausal.data.study import load_study

    sc = cfg["spec_curve"]
    manifest = gc.load_manifest(world.manifest_path)
    period = world.periods[0]

    def study(chip_px: int) -> dict:
        chip = manifest.chip.model_copy(update={"size_px": int(chip_px), "size_m": None})
        s = load_study(manifest.model_copy(update={"chip": chip}), features="summary",
                       seed=seed, cache_dir=work / f"spec_chips_{chip_px}")
        return {"data": s.table.reset_index(drop=True),
                "images": first_period(s.features, period).reset_index(drop=True)}

    grid = {"chip_px": list(sc["chip_px"]),
            "formula": {"with country": f_tab,
                        "without country": f_tab.replace(" + C(country)", "")},
            "learners": {k: learners(k, seed) for k in sc["outcome_learners"]},
            "trim": list(sc["trim"])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        curve = gc.spec_curve(gc.aipw, None, study, grid=grid, seed=seed, folds=cfg["folds"],
                              vcov={"cluster": "country"}, workers=sc.get("workers"))
    table = curve.tidy().assign(truth=world.ate)
    table["covers_truth"] = (table.conf_low <= table.truth) & (table.truth <= table.conf_high)
    table.to_csv(tables / "world_spec_curve.csv", index=False)
    save(curve.plot(truth=world.ate, title="Synthetic world: image-aware ATE over "
                    f"{curve.n_specs} specifications"), figs / "world_spec_curve.png")
    ok = table[table.status == "ok"]
    return {"n_specs": curve.n_specs, "n_failed": curve.n_failed,
            "median": float(ok.estimate.median()),
            "share_covering_truth": float(ok.covers_truth.mean())}


def run_sensitivity(f_tab: str, data: pd.DataFrame, img: pd.DataFrame, overall, fe, lrn,
                    cfg: dict, seed: int, tables: Path, figs: Path) -> dict:
    """OVB bounds of the image-aware AIPW effects, benchmarked against the images.

    Each benchmark refits the AIPW on the same folds without the group: ``images`` drops
    ``images=`` (a confounder as strong as everything the images captured), ``country``
    drops ``C(country)``. Writes ``world_sensitivity.csv`` (one row per effect, with the
    benchmarks below) and ``world_sensitivity.png`` (the overall effect's contour).
    """
    groups = {"images": "images", "country": "C(country)"}
    common = dict(learners=lrn, folds=cfg["folds"], seed=seed, trim=cfg["trim"])
    fits = [("all", data, img, overall, {"cluster": "country"})]
    for g in sorted(data.funder.unique()):
        m = (data.funder == g).to_numpy()
        sub, sub_img = data.loc[m].reset_index(drop=True), img.loc[m].reset_index(drop=True)
        fits.append((g, sub, sub_img, None, "hetero"))
    rows, first = [], None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        for name, d, im, long, vcov in fits:
            if long is None:
                long = gc.aipw(f_tab, d, images=im, vcov=vcov, **common)
            bench = gc.sensitivity_benchmark(f_tab, d, groups, long=long, images=im,
                                             vcov=vcov, **common)
            res = long.sensitivity(cf_y=0.03, cf_d=0.03, benchmarks=bench)
            first = first or res
            rows.append(res.tidy().assign(model=name, row="effect"))
            rows.append(bench.assign(model=name, row="benchmark", term="d"))
    fe_s = fe.sensitivity(cf_y=0.03, cf_d=0.03)
    rows.append(fe_s.tidy().assign(model="fe (unit, period)", row="effect"))
    table = pd.concat(rows, ignore_index=True)
    table.to_csv(tables / "world_sensitivity.csv", index=False)
    save(first.plot(title="Image-aware ATE: lower bound under an omitted confounder"),
         figs / "world_sensitivity.png")
    r = first.tidy().iloc[0]
    img_b = table[(table.model == "all") & (table.row == "benchmark")
                  & (table.group == "images")].iloc[0]
    return {"rv": float(r.rv), "rva": float(r.rva), "images_cf_y": float(img_b.cf_y),
            "images_cf_d": float(img_b.cf_d), "fe_rv": float(fe_s.tidy().rv[0])}


# ----------------------------------------------------------------------------- Sentinel-2
def run_sentinel2(cfg: dict, seed: int, work: Path, tables: Path, figs: Path) -> dict:
    from geocausal.data.study import load_study

    sc = cfg["sentinel2"]
    lrn = learners(cfg["outcome_learner"], seed)
    feats, manifest_hash, reps = None, None, []
    from geocausal._progress import progress

    for r in progress(range(int(sc["seeds"])), desc="sentinel-2 seeds"):
        s = gc.datasets.sentinel2_semisynthetic(work / f"s2_{r}", seed=seed + r,
                                                resolution=sc["resolution"],
                                                chip_px=sc["chip_px"])
        if feats is None:  # the pixels (hence image features) are the same for every seed
            study = load_study(s.manifest_path, features="summary", seed=seed)
            manifest_hash = study.manifest_hash
            order = study.table["unit_id"].to_numpy()
            feats = study.features.reset_index(drop=True)
        data = s.units.set_index("unit_id").loc[order].reset_index()
        res = three_estimates("y ~ d + x1 + x2 + x3 + x4", data, feats, lrn=lrn,
                              folds=cfg["folds"], seed=seed + r, trim=cfg["trim"])
        for m, est in res.items():
            ci = est.conf_int().iloc[0]
            reps.append({"replication": r, "seed": seed + r, "method": m,
                         "estimate": float(est.params.iloc[0]),
                         "std_error": float(est.std_errors.iloc[0]),
                         "conf_low": float(ci.conf_low), "conf_high": float(ci.conf_high),
                         "truth": s.ate, "n_trimmed": int(est.diagnostics["n_trimmed"])})
    reps = pd.DataFrame(reps)
    reps["bias"] = reps["estimate"] - reps["truth"]
    reps["covered"] = (reps.conf_low <= reps.truth) & (reps.truth <= reps.conf_high)
    reps.to_csv(tables / "sentinel2_replications.csv", index=False)
    summ = reps.groupby("method", sort=False).agg(
        mean_bias=("bias", "mean"), rmse=("bias", lambda b: float(np.sqrt(np.mean(b ** 2)))),
        mean_std_error=("std_error", "mean"), sd_estimate=("estimate", "std"),
        coverage=("covered", "mean"), replications=("bias", "size")).reset_index()
    naive_bias = float(summ.set_index("method").loc["naive", "mean_bias"])
    summ["bias_removed_vs_naive"] = 1.0 - summ["mean_bias"].abs() / abs(naive_bias)
    summ.to_csv(tables / "sentinel2_bias_coverage.csv", index=False)
    t = summ.assign(term=summ.method, estimate=summ.mean_bias,
                    conf_low=summ.mean_bias - 1.96 * summ.sd_estimate / np.sqrt(summ.replications),
                    conf_high=summ.mean_bias + 1.96 * summ.sd_estimate / np.sqrt(summ.replications))
    save(coef_plot(t, title="Sentinel-2 semi-synthetic: mean bias"), figs / "sentinel2_bias.png")
    return {"manifest_hash": manifest_hash, "replications": int(sc["seeds"]),
            "n_units": int(len(feats))}


def run(full: bool, out: Path, seed: int) -> None:
    """Run the pipeline at CI size (``full=False``) or paper size; write outputs to ``out``."""
    cfg_all = yaml.safe_load((HERE / "config.yaml").read_text())
    size = "full" if full else "ci"
    cfg = cfg_all[size]
    out = Path(out)
    tables, figs = out / "tables", out / "figures"
    tables.mkdir(parents=True, exist_ok=True)
    figs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        world = run_world({**cfg, "paper_steps": cfg_all["paper_steps"]}, seed, Path(tmp),
                          tables, figs)
        s2 = run_sentinel2(cfg, seed, Path(tmp), tables, figs)
    prov = make_provenance(None, seed, world["manifest_hash"], size=size, config=cfg,
                           world=world, sentinel2=s2,
                           seconds=round(time.perf_counter() - t0, 1))
    from geocausal.paper_labels import attach_labels, write_numbers

    prov = attach_labels(prov, "china_worldbank")
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str))
    write_numbers(tables / "reference_numbers.json", reference_numbers(tables),
                  pipeline="china_worldbank", size=size, seed=seed)


def reference_numbers(tables: Path) -> dict[str, dict]:
    """The pipeline's headline numbers with their standard errors (the Monte Carlo error of
    one run), for the drift test against ``reference_ci.json``: the overall and per-funder
    effects of each method on the synthetic world, and the Sentinel-2 mean biases."""
    from geocausal.paper_labels import number

    out = {}
    eff = pd.read_csv(tables / "world_effects.csv")
    for r in eff.itertuples(index=False):
        out[f"world_{r.model}_{r.method}"] = number(r.estimate, r.std_error)
    s2 = pd.read_csv(tables / "sentinel2_bias_coverage.csv")
    for r in s2.itertuples(index=False):
        out[f"sentinel2_bias_{r.method}"] = number(
            r.mean_bias, max(r.sd_estimate / np.sqrt(r.replications), 1e-3))
    return out
