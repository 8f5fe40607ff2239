"""Simulation harness: which representation of image sequences detects effect heterogeneity?

``run(full, out, seed)`` writes ``tables/*.csv``, ``figures/*.png``, a transported CATE
GeoTIFF under ``rasters/`` and ``provenance.json``. :func:`simulate_trial` is the data
generator (also used by the notebook and the tests).

The comparison (:func:`candidate_specs`) pits tabular covariates, hand-made summaries of one
date and of the sequence, the self-supervised multi-scale encoder
(:func:`geocausal.encoders.multiscale.multiscale_features`), and supervised single-date (CNN)
and image-sequence (``SequenceEncoder``) networks against each other under T-, S-, X- and
DR-learners. The effect is planted (``effect="waterfront"``) in a pixel-level latent that
none of the candidates computes; :func:`rate_choice` picks a model per replication by the
RATE ratio, as a user without the truth would.
"""


import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import ndimage, stats

BANDS = ("built", "vegetation", "water")
REPRESENTATIONS = ("tabular", "image_single", "image_sequence", "combined")
CANDIDATES = ("tabular", "summary_single", "summary_sequence", "multiscale",
              "learned_single", "learned_sequence", "combined")
EFFECTS = ("growth", "waterfront")


@dataclass(frozen=True)
class SimTrial:
    """A synthetic trial on image sequences.

    ``data`` has ``y, d, x1, x2, tau`` (true CATE), ``tau_image`` (its image part), ``growth``,
    ``water``, ``waterfront``, ``built0`` and cell centres ``cx, cy``; ``chips`` is
    ``(n, T, s, s, C)``; ``mosaic`` is ``(T, C, H, W)`` over the whole landscape (trial sites
    and beyond) with ``transform``/``crs``; ``tau_grid`` is the image part of the true CATE
    per cell.
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
                   periods: int = 3, noise: float = 1.0, effect: str = "growth",
                   seed: int = 0) -> SimTrial:
    """Draw a landscape, its image sequence, trial sites, a randomised treatment and outcomes.

    ``effect="growth"``: true CATE ``0.5 + 6 growth + 3 water + 0.5 x1``, where ``growth`` is
    the increase of the built-up share between the first and last period (invisible at any
    single date; exactly what the hand-made sequence summary computes) and ``water`` a static
    share.

    ``effect="waterfront"``: the effect is planted in a pixel-level latent that the chips
    show but no candidate representation computes: ``waterfront`` = the share of a cell's
    pixels that were built up *after* the first period *next to water* (a pixel converting
    at some period within one pixel of a water pixel). True CATE
    ``0.5 + 12 waterfront + 0.5 x1`` (``12 waterfront`` has about the SD of the growth
    effect). Band means, SDs and their changes, one date, multi-scale pooling and tabular
    covariates all see only proxies of it (cell-level growth and water explain about two
    thirds of its variance, and only through their interaction).

    In both, the baseline outcome is ``1 + 2 built0 + 0.5 x2`` and the treatment a fair coin.

    Examples
    --------
    >>> s = simulate_trial(50, grid=10, effect="waterfront", seed=1)
    >>> s.chips.shape, bool(np.allclose(s.data.tau_image, 0.5 + 12 * s.data.waterfront))
    ((50, 3, 8, 8, 3), True)
    """
    from rasterio.transform import from_origin

    if effect not in EFFECTS:
        raise ValueError(f"effect={effect!r} is not one of {EFFECTS}")
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
    built_first = built = None
    for t in range(periods):
        built = (~water) & (u < b_px + g_px * t / max(periods - 1, 1))
        built_first = built if built_first is None else built_first
        veg = ~(water | built)
        for c, layer in enumerate((0.1 + 0.7 * built, 0.1 + 0.6 * veg, 0.05 + 0.8 * water)):
            mosaic[t, c] = layer + 0.05 * rng.normal(size=layer.shape)
    near_water = ndimage.binary_dilation(water, structure=np.ones((3, 3), bool)) & ~water
    front = (built & ~built_first & near_water).astype(float)  # the pixel-level latent
    front_cell = front.reshape(grid, chip, grid, chip).mean(axis=(1, 3))
    tau_grid = 0.5 + 6 * g + 3 * w if effect == "growth" else 0.5 + 12 * front_cell
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
                         "waterfront": front_cell[ri, ci],
                         "built0": b0[ri, ci], "row": ri, "col": ci,
                         "cx": (ci + 0.5) * chip * res,
                         "cy": grid * chip * res - (ri + 0.5) * chip * res})
    return SimTrial(data=data, chips=chips, mosaic=mosaic, transform=transform,
                    crs="EPSG:32633", tau_grid=tau_grid, chip=chip)


def representation_specs(sim: SimTrial) -> dict[str, dict[str, Any]]:
    """The four hand-made representations as ``gc.cate`` keyword sets (tabular, summary
    features of the last date, of the sequence, sequence plus tabular)."""
    return {
        "tabular": {"formula": "y ~ d + x1 + x2"},
        "image_single": {"formula": "y ~ d", "images": sim.chips, "representation": "single"},
        "image_sequence": {"formula": "y ~ d", "images": sim.chips, "representation": "sequence"},
        "combined": {"formula": "y ~ d + x1 + x2", "images": sim.chips,
                     "representation": "sequence"},
    }


def _dr_pseudo_outcome(X: np.ndarray, y: np.ndarray, d: np.ndarray, p: float) -> np.ndarray:
    """AIPW pseudo-outcome with arm-wise linear outcome fits on these rows (known ``p``).

    Its mean given ``X`` is the CATE; the outcome fits only lower its variance (the transformed
    outcome ``y (d - p) / (p (1 - p))`` is the special case of zero fits)."""
    from sklearn.linear_model import LinearRegression

    m1 = LinearRegression().fit(X[d == 1], y[d == 1]).predict(X)
    m0 = LinearRegression().fit(X[d == 0], y[d == 0]).predict(X)
    return m1 - m0 + d / p * (y - m1) - (1 - d) / (1 - p) * (y - m0)


def learned_scores(sim: SimTrial, encoder: str, cfg: dict, seed: int) -> pd.DataFrame:
    """A supervised image representation of the effect: out-of-fold CATE scores of a network.

    An ``ImageLearner`` (``encoder="sequence"``: a CNN per date with the config's temporal
    ``aggregator``, a transformer over the frame embeddings and their changes, or the cheaper
    ``"meandiff"``; ``"cnn"``: the last date) regresses the DR
    pseudo-outcome (:func:`_dr_pseudo_outcome`, linear outcome fits on the tabular covariates
    and the first date's band summaries, fitted on the training folds only; p = 0.5, the
    trial's assignment probability) on the chips. Each unit's score comes from the network
    of the folds that did not see it, so the CATE learners downstream never see a
    representation fitted on their own outcome. Returned as a frame on ``sim.data``'s index
    (``gc.cate`` aligns it by key).
    """
    from sklearn.model_selection import KFold

    from geocausal.designs.cate_model import chip_features
    from geocausal.nuisance.image_learner import ImageLearner

    if encoder not in ("sequence", "cnn"):
        raise ValueError(f"encoder={encoder!r} must be 'sequence' or 'cnn'")
    c = cfg["encoder"]
    df = sim.data
    d, y = df["d"].to_numpy(float), df["y"].to_numpy(float)
    base = np.column_stack([df[["x1", "x2"]].to_numpy(float),
                            chip_features(sim.chips, "first")])
    chips = sim.chips if encoder == "sequence" else sim.chips[:, -1]
    out = np.full(len(y), np.nan)
    with warnings.catch_warnings():
        # short CI-size training: the DiagnosticWarning "still improving" is expected there
        # and the score's quality is what the comparison measures
        warnings.simplefilter("ignore")
        for k, (tr, te) in enumerate(KFold(int(c["folds"]), shuffle=True,
                                           random_state=seed).split(chips)):
            target = _dr_pseudo_outcome(base[tr], y[tr], d[tr], 0.5)
            m = ImageLearner(encoder=encoder, task="regression", epochs=int(c["epochs"]),
                             widths=tuple(c["widths"]), embed_dim=int(c["embed_dim"]),
                             dim=int(c["embed_dim"]), depth=1, aggregator=c["aggregator"],
                             batch_size=int(c["batch_size"]), patience=int(c["patience"]),
                             seed=seed + k)
            m.fit(chips[tr], target)
            out[te] = np.asarray(m.predict(chips[te]), float).ravel()
    return pd.DataFrame({f"{encoder}_score": out}, index=df.index)


def multiscale_scores(sim: SimTrial, cfg: dict, seed: int) -> pd.DataFrame:
    """Self-supervised multi-scale features (whole chip, centre, ring; every date and the
    last-minus-first change) of :func:`geocausal.encoders.multiscale.multiscale_features`.
    No outcome or treatment is used, so no cross-fitting is needed; a frame on the data's
    index."""
    from geocausal.encoders.multiscale import multiscale_features

    c = cfg["multiscale"]
    with warnings.catch_warnings():  # a short CI pretraining warns that it could go on
        warnings.simplefilter("ignore")
        z = multiscale_features(sim.chips, seed=seed, epochs=int(c["epochs"]),
                                patience=int(c["patience"]), embed_dim=int(c["embed_dim"]),
                                widths=tuple(c["widths"]), batch_size=int(c["batch_size"]),
                                max_train=int(c["max_train"]))
    return pd.DataFrame(z, index=sim.data.index, columns=[f"ms{j}" for j in range(z.shape[1])])


def candidate_specs(sim: SimTrial, cfg: dict, seed: int) -> dict[str, dict[str, Any]]:
    """The competing representations as ``gc.cate`` keyword sets.

    tabular covariates; hand-made band summaries of the last date and of the sequence (means
    and SDs per period and their changes); the self-supervised multi-scale encoder; out-of-fold
    scores of a supervised single-date CNN and of a supervised image-sequence encoder; and the
    sequence encoder's score with the tabular covariates.
    """
    seq = learned_scores(sim, "sequence", cfg, seed)
    single = learned_scores(sim, "cnn", cfg, seed)
    return {
        "tabular": {"formula": "y ~ d + x1 + x2"},
        "summary_single": {"formula": "y ~ d", "images": sim.chips, "representation": "single"},
        "summary_sequence": {"formula": "y ~ d", "images": sim.chips,
                             "representation": "sequence"},
        "multiscale": {"formula": "y ~ d", "images": multiscale_scores(sim, cfg, seed)},
        "learned_single": {"formula": "y ~ d", "images": single},
        "learned_sequence": {"formula": "y ~ d", "images": seq},
        "combined": {"formula": "y ~ d + x1 + x2", "images": seq},
    }


def learner_slots(learner: str, cfg: dict, seed: int) -> dict[str, Any] | None:
    """Learner slots per meta-learner: the S-learner's single outcome model on ``[X, d]`` must
    be able to interact ``d`` with ``X`` (a linear one gives a constant CATE), so it gets
    histogram gradient boosting; the T-, X- and DR-learners keep the linear defaults."""
    if learner != "s":
        return None
    from sklearn.ensemble import HistGradientBoostingRegressor

    return {"outcome": HistGradientBoostingRegressor(**cfg["s_outcome"], random_state=seed)}


def _folds(cfg: dict):
    """Spatial-block cross-fitting folds on the cell centres (also the bootstrap clusters)."""
    from geocausal.folds import Folds

    return Folds.spatial(("cx", "cy"), k=int(cfg["folds"]))


def _options(cfg: dict) -> dict[str, Any]:
    return {"n_splits": int(cfg["n_splits"]), "n_boot": int(cfg["n_boot"])}


def compare(sim: SimTrial, learner: str, cfg: dict, seed: int,
            specs: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """One replication: every candidate fitted and evaluated, one row each.

    A cell that raises a :class:`~geocausal.errors.GeocausalError` is recorded in the
    ``status`` column (and counted in a ``GeocausalWarning``), never dropped silently.
    """
    from geocausal.api.cate import compare_representations
    from geocausal.errors import GeocausalError, GeocausalWarning

    specs = specs if specs is not None else candidate_specs(sim, cfg, seed)
    parts = []
    for name, spec in specs.items():
        try:
            t = compare_representations("y ~ d", sim.data, {name: spec}, learner=learner,
                                        learners=learner_slots(learner, cfg, seed),
                                        propensity=0.5, folds=_folds(cfg),
                                        options=_options(cfg), truth="tau", seed=seed,
                                        progress=False)
            t["status"] = "ok"
        except GeocausalError as exc:
            t = pd.DataFrame({"status": [f"failed: {type(exc).__name__}: {exc}"]}, index=[name])
        parts.append(t)
    t = pd.concat(parts)
    n_failed = int((t["status"] != "ok").sum())
    if n_failed:
        warnings.warn(f"eo_heterogeneity: {n_failed} of {len(t)} candidate cells of the "
                      f"{learner}-learner failed (recorded in the table's status column)",
                      GeocausalWarning, stacklevel=2)
    t.index.name = "representation"
    return t.reset_index()


def rate_choice(reps: pd.DataFrame) -> pd.DataFrame:
    """Model choice by the RATE ratio (AUTOC over its SE), per replication, among all
    learner x representation cells: the chosen cell, its correlation with the true CATE, and
    the best correlation any cell reached (the oracle choice, which needs the truth)."""
    rows = []
    ok = reps[(reps["status"] == "ok") & np.isfinite(reps["autoc_ratio"].astype(float))]
    for r, g in ok.reset_index(drop=True).groupby("rep"):
        ch = g.loc[g["autoc_ratio"].astype(float).idxmax()]
        best = g.loc[g["cor_truth"].astype(float).idxmax()]
        rows.append({"rep": r, "chosen_learner": ch["learner"],
                     "chosen_representation": ch["representation"],
                     "chosen_autoc_ratio": ch["autoc_ratio"], "chosen_cor_truth": ch["cor_truth"],
                     "oracle_learner": best["learner"],
                     "oracle_representation": best["representation"],
                     "oracle_cor_truth": best["cor_truth"],
                     "regret": best["cor_truth"] - ch["cor_truth"]})
    return pd.DataFrame(rows)


def paper_table(reps: pd.DataFrame) -> pd.DataFrame:
    """Paper-style summary: means over replications, their Monte Carlo SEs and detection rates
    per learner x representation cell (failed cells are counted in ``failed``)."""
    ok = reps[reps["status"] == "ok"]
    ok = ok.assign(autoc_detect=stats.norm.sf(ok["autoc_ratio"].astype(float)) < 0.05,
                   blp_detect=ok["blp_beta2_p"].astype(float) < 0.05)
    g = ok.groupby(["learner", "representation"], sort=False)

    def mcse(v):
        return float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else np.nan

    t = g.agg(cor_truth=("cor_truth", "mean"), cor_truth_mcse=("cor_truth", mcse),
              autoc=("autoc", "mean"), autoc_mcse=("autoc", mcse),
              autoc_se=("autoc_se", "mean"), autoc_ratio=("autoc_ratio", "mean"),
              qini=("qini", "mean"), blp_beta2=("blp_beta2", "mean"),
              autoc_detect_rate=("autoc_detect", "mean"),
              blp_detect_rate=("blp_detect", "mean"), reps=("ate", "size")).reset_index()
    failed = (reps["status"] != "ok").groupby([reps["learner"], reps["representation"]]).sum()
    t["failed"] = [int(failed.get((a, b), 0)) for a, b in zip(t["learner"], t["representation"])]
    return t


def reference_numbers(reps: pd.DataFrame, choice: pd.DataFrame) -> dict[str, dict]:
    """Mean correlation of predicted with true CATE and mean AUTOC per learner and
    representation, and the mean correlation of the RATE-ratio choice, with Monte Carlo SEs
    (SD over replications / sqrt(reps), floored at 0.02: CI size has two replications), for
    the drift test against ``reference_ci.json``."""
    from geocausal.paper_labels import number

    def num(v):
        v = np.asarray(v, dtype=float)
        se = float(np.std(v, ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.1
        return number(v.mean(), max(se, 0.02))

    out = {}
    for (lrn, rep), g in reps[reps["status"] == "ok"].groupby(["learner", "representation"],
                                                              sort=False):
        for col in ("cor_truth", "autoc"):
            out[f"{col}_{lrn}_{rep}"] = num(g[col])
    if len(choice):
        out["rate_choice_cor_truth"] = num(choice["chosen_cor_truth"])
    return out


def winners(table: pd.DataFrame, choice: pd.DataFrame) -> dict[str, Any]:
    """Which cell wins by mean correlation with the true CATE, which by mean RATE ratio, and
    how often the RATE-ratio choice picked each representation."""
    best_cor = table.loc[table["cor_truth"].idxmax()]
    best_rate = table.loc[table["autoc_ratio"].idxmax()]
    out = {"best_by_cor_truth": f"{best_cor.learner}/{best_cor.representation}",
           "best_cor_truth": float(best_cor.cor_truth),
           "best_by_rate_ratio": f"{best_rate.learner}/{best_rate.representation}",
           "best_rate_ratio": float(best_rate.autoc_ratio)}
    if len(choice):
        out["rate_choice_counts"] = {str(k): int(v) for k, v in
                                     (choice["chosen_learner"] + "/" +
                                      choice["chosen_representation"]).value_counts().items()}
        out["rate_choice_mean_cor_truth"] = float(choice["chosen_cor_truth"].mean())
        out["oracle_mean_cor_truth"] = float(choice["oracle_cor_truth"].mean())
    return out


def _sim_kw(cfg: dict) -> dict[str, Any]:
    return {k: cfg[k] for k in ("grid", "trial_frac", "chip", "periods", "noise", "effect")}


def replicate(r: int, cfg: dict, seed: int = 0) -> pd.DataFrame:
    """Replication ``r`` (trial drawn at seed ``seed + r``): every learner x candidate cell,
    one row each, with ``rep`` and ``learner`` columns. The learned candidates are fitted once
    and shared by the learners."""
    sim = simulate_trial(cfg["n_units"], seed=seed + r, **_sim_kw(cfg))
    specs = candidate_specs(sim, cfg, seed + r)
    rows = []
    for learner in cfg["learners"]:
        t = compare(sim, learner, cfg, seed + r, specs)
        t.insert(0, "learner", learner)
        t.insert(0, "rep", r)
        rows.append(t)
    return pd.concat(rows, ignore_index=True)


def write_comparison(reps: pd.DataFrame, tables: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write ``replications.csv``, ``representations.csv`` (:func:`paper_table`) and
    ``rate_choice.csv`` (:func:`rate_choice`) under ``tables``; return the last two."""
    tables = Path(tables)
    tables.mkdir(parents=True, exist_ok=True)
    reps.to_csv(tables / "replications.csv", index=False)
    table = paper_table(reps)
    table.to_csv(tables / "representations.csv", index=False)
    choice = rate_choice(reps)
    choice.to_csv(tables / "rate_choice.csv", index=False)
    return table, choice


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
    sim_kw = _sim_kw(cfg)
    from geocausal._progress import progress

    reps = pd.concat([replicate(r, cfg, seed) for r in progress(range(cfg["reps"]),
                                                                 desc="eo_heterogeneity trials")],
                     ignore_index=True)
    table, choice = write_comparison(reps, out / "tables")

    # one trial in detail: the hand-made sequence summary (the one representation that
    # transport_cate can rebuild from mosaics outside the trial): evaluation, map, land cover
    sim = simulate_trial(cfg["n_units"], seed=seed, **sim_kw)
    est = C.cate("y ~ d", sim.data, images=sim.chips,
                 propensity=0.5, folds=_folds(cfg), options=_options(cfg), truth="tau_image",
                 seed=seed, progress=False)
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
    cate_map(tr.path, ax=ax[0], title="Predicted CATE (summary_sequence, transported)",
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
    summary["comparison"] = winners(table, choice)
    summary["failed_cells"] = int((reps["status"] != "ok").sum())
    prov = make_provenance("y ~ d (+ x1 + x2)", seed, paper="eo_heterogeneity", full=full,
                           config=cfg, summary=summary)
    from geocausal.paper_labels import attach_labels, write_numbers

    prov = attach_labels(prov, "eo_heterogeneity")
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str))
    write_numbers(out / "tables" / "reference_numbers.json", reference_numbers(reps, choice),
                  pipeline="eo_heterogeneity", full=full, seed=seed)
    plt.close("all")
