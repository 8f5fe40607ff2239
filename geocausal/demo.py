"""The demo: an effect estimated from satellite mosaics, printed beside the known truth.

``geocausal demo`` (or ``make demo``) runs, in a few minutes on a laptop:

1. :func:`geocausal.datasets.synthetic_world` writes a synthetic study (multi-band GeoTIFFs
   for four years, a units GeoPackage, a manifest with the known effects);
2. :func:`geocausal.extract` cuts a chip around every unit for every year into a zarr cache;
3. image features: per-band chip summaries and self-supervised learned embeddings from
   :mod:`geocausal.encoders` (a CNN trained contrastively on the chips; the nuisance models on
   top of them are cross-fitted), and fully cross-fitted learned embeddings (one encoder per
   fold, trained without the units it embeds for that fold's nuisance models);
4. :func:`geocausal.aipw` estimates the ATE with standard errors clustered by country, with
   each image representation and with the default ``images=(chips, mask)`` (a cross-fitted
   stack over tabular, band-summary, engineered and learned candidates, whose out-of-fold
   nuisance quality is written to ``tables/nuisance_quality.csv``), next to the naive
   difference in means and a tabular-only AIPW, all beside the true ATE;
5. tables (CSV, Markdown and LaTeX), figures (PNG) and ``provenance.json`` are written to ``out``.

The command ``geocausal demo --out results --units 600 --size 32`` calls :func:`run_demo`.

Examples
--------
>>> from geocausal.cli import build_parser
>>> args = build_parser().parse_args(["demo", "--units", "200"])
>>> args.units, args.size
(200, 32)
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geocausal.results.estimate import Estimate, make_provenance


def difference_in_means(y: np.ndarray, d: np.ndarray, clusters: np.ndarray | None = None,
                        name: str = "d", cluster_name: str = "cluster") -> Estimate:
    """The naive difference in means with its influence function (cluster-robust if asked).

    Examples
    --------
    >>> est = difference_in_means(np.array([1.0, 2.0, 3.0, 5.0]), np.array([0, 0, 1, 1]))
    >>> float(est.params["d"])
    2.5
    """
    y = np.asarray(y, dtype=float)
    d = np.asarray(d, dtype=float)
    p = d.mean()
    m1, m0 = y[d == 1].mean(), y[d == 0].mean()
    psi = d * (y - m1) / p - (1 - d) * (y - m0) / (1 - p)
    vcov: Any = "hetero" if clusters is None else {"cluster": cluster_name}
    cd = {} if clusters is None else {cluster_name: np.asarray(clusters)}
    return Estimate.from_influence(pd.Series({name: m1 - m0}), psi[:, None], vcov=vcov,
                                   cluster_data=cd, estimand="ATE", design="difference-in-means")


#: options of :func:`geocausal.encoders.embed.learned_features` used by the demo
LEARNED_OPTIONS: dict[str, Any] = {"encoder": "cnn", "epochs": 3, "embed_dim": 16}


def image_representations(chips: np.ndarray, mask: np.ndarray, seed: int,
                          learned: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Image features for the demo: per-band chip summaries and self-supervised learned
    embeddings (no labels are used, so nothing leaks into the cross-fitted nuisance models).

    ``learned`` holds options of :func:`geocausal.encoders.embed.learned_features` (default
    :data:`LEARNED_OPTIONS`).

    Examples
    --------
    >>> chips = np.random.default_rng(0).random((3, 2, 4, 4, 3), dtype="float32")
    >>> f = image_representations(chips, np.ones((3, 2, 4, 4), bool), 0,
    ...                           learned={"encoder": "random", "embed_dim": 4})
    >>> f["summary"].shape, f["learned"].shape[0]
    ((3, 12), 3)
    """
    from geocausal.features.images import image_features

    n = chips.shape[0]
    return {"summary": image_features((chips, mask), n, representation="summary"),
            "learned": image_features((chips, mask), n, representation="learned", seed=seed,
                                      progress=False, **(learned or LEARNED_OPTIONS))}


def foldwise_learned_aipw(formula: str, units: pd.DataFrame, chips: np.ndarray,
                          mask: np.ndarray, *, seed: int, vcov: Any, folds: int = 3,
                          learned: dict[str, Any] | None = None) -> Estimate:
    """AIPW with fully cross-fitted learned image features.

    For each fold a self-supervised encoder is trained on the other folds' chips only
    (:func:`geocausal.encoders.embed.foldwise_learned_features`); the propensity and outcome
    models for that fold are fit on the other folds' rows of tabular + those embeddings and
    predict the fold. The fixed out-of-fold nuisances then go to :func:`geocausal.aipw`.
    """
    from sklearn.base import clone

    import geocausal as gc
    from geocausal.encoders.embed import foldwise_learned_features
    from geocausal.formula import parse_formula
    from geocausal.nuisance import make_folds
    from geocausal.vocabulary import default_learners

    parsed = parse_formula(formula, units)
    y, d = parsed.outcome_vector(units), parsed.treatment_vector(units)
    X_tab = parsed.control_matrix(units).to_numpy()
    fold_ids = make_folds(len(units), folds, seed, stratify=d)
    Z = foldwise_learned_features(chips, fold_ids, mask, seed, progress=False,
                                  **(learned or LEARNED_OPTIONS))
    lrn = default_learners("aipw", seed)
    e, mu0, mu1 = (np.empty(len(units)) for _ in range(3))
    for k in range(folds):  # fold k's nuisances: fit on the other folds, features from Z[k]
        X, test = np.hstack([X_tab, Z[k]]), fold_ids == k
        e[test] = clone(lrn["propensity"]).fit(X[~test], d[~test]).predict_proba(X[test])[:, 1]
        for arm, mu in ((0, mu0), (1, mu1)):
            tr = ~test & (d == arm)
            mu[test] = clone(lrn["outcome"]).fit(X[tr], y[tr]).predict(X[test])
    return gc.aipw(formula, units, vcov=vcov, seed=seed, propensity=e,
                   predictions={"mu0": mu0, "mu1": mu1})


def _estimates_table(ests: dict[str, Estimate], truth: float) -> pd.DataFrame:
    rows = []
    for name, est in ests.items():
        t = est.tidy().iloc[0]
        rows.append({"method": name, "estimate": t["estimate"], "std_error": t["std_error"],
                     "conf_low": t["conf_low"], "conf_high": t["conf_high"],
                     "vcov": est.vcov_type, "truth": truth, "bias": t["estimate"] - truth,
                     "covers_truth": bool(t["conf_low"] <= truth <= t["conf_high"])})
    return pd.DataFrame(rows)


def _print(table: pd.DataFrame, world, info: dict, console) -> None:
    from rich.table import Table

    tab = Table(title=f"ATE of d on y: {info['n_units']} units, {len(world.periods)} periods, "
                      f"SE clustered by country ({info['n_countries']})")
    for col in ("method", "estimate", "SE", "95% CI", "bias", "truth in CI"):
        tab.add_column(col, justify="left" if col == "method" else "right")
    for r in table.itertuples():
        tab.add_row(r.method, f"{r.estimate:.3f}", f"{r.std_error:.3f}",
                    f"[{r.conf_low:.3f}, {r.conf_high:.3f}]", f"{r.bias:+.3f}",
                    "yes" if r.covers_truth else "no")
    tab.add_row("[bold]truth[/bold]", f"[bold]{world.ate:.3f}[/bold]", "", "", "", "")
    console.print(tab)


def run_demo(out: Path | str = "results", n_units: int = 600, seed: int = 0, size: int = 32,
             quiet: bool = False, overwrite: bool = False) -> pd.DataFrame:
    """Run the demo end to end and write its outputs to ``out``.

    Parameters
    ----------
    out
        Output folder: ``world/`` (the synthetic study), ``tables/``, ``figures/``,
        ``provenance.json``.
    n_units, seed, size
        Size of the synthetic world, its seed (also of the folds and learners) and chip side.
    quiet
        Print nothing.
    overwrite
        Write into ``out`` even when it holds files geocausal did not create. Without it,
        ``out`` must be new, empty, or the folder of an earlier run (marked by
        :func:`geocausal._safety.prepare_output_dir`); nothing is written outside ``out``.

    Returns
    -------
    pandas.DataFrame
        The estimates table (also written to ``tables/estimates.csv``).

    Raises
    ------
    DataError
        ``out`` is a file, or a folder of someone else's files (without ``overwrite``).
    """
    from rich.console import Console
    from threadpoolctl import threadpool_limits

    import geocausal as gc
    from geocausal._safety import prepare_output_dir
    from geocausal.data.units import load_units
    from geocausal.datasets import synthetic_world
    from geocausal.results.export import write_tables
    from geocausal.results.plot import coef_plot, save
    from geocausal.results.plot_ipw import love_plot, overlap_plot

    console = Console(quiet=quiet)
    out = prepare_output_dir(out, overwrite=overwrite)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    with console.status("writing the synthetic world"):
        world = synthetic_world(out / "world", seed=seed, n_units=n_units, size=size,
                                overwrite=True)
    timings["world_s"] = time.perf_counter() - t0
    console.print(f"[green]synthetic world[/green]: {n_units} units, periods "
                  f"{list(world.periods)}, rasters in {world.out_dir}")

    t = time.perf_counter()
    manifest = world.manifest()
    res = gc.extract(manifest, cache_dir=out / ".cache", progress=False)
    chips, mask = res.load()
    timings["extract_s"] = time.perf_counter() - t
    if not quiet:
        console.print(res.report())

    units = pd.DataFrame(load_units(manifest).drop(columns="geometry"))
    if list(map(str, res.unit_ids)) != list(map(str, units["unit_id"])):
        raise RuntimeError("chips and units are not in the same order")

    t = time.perf_counter()
    with console.status("image features"):
        feats = image_representations(chips, mask, seed)
    timings["features_s"] = time.perf_counter() - t
    console.print("image features: " + ", ".join(f"{k} ({v.shape[1]} per unit)"
                                                  for k, v in feats.items()))

    covs = manifest.role("covariates")
    formula = "y ~ d + " + " + ".join(covs)
    vcov = {"cluster": "country"}
    t = time.perf_counter()
    # the data are small: one OpenMP thread per learner is fastest and never oversubscribes
    with console.status("estimating"), warnings.catch_warnings(), \
            threadpool_limits(limits=1, user_api="openmp"):
        warnings.simplefilter("ignore")
        naive = difference_in_means(units["y"], units["d"], units["country"],
                                    cluster_name="country")
        ests = {"naive difference in means": naive,
                "AIPW, tabular": gc.aipw(formula, units, vcov=vcov, seed=seed)}
        names = {"summary": "band summaries", "learned": "learned image"}
        for key in sorted(feats, key=lambda k: k != "summary"):
            ests[f"AIPW, tabular + {names[key]}"] = gc.aipw(
                formula, units, vcov=vcov, seed=seed, images=feats[key])
        ests["AIPW, tabular + learned image, fold-wise encoders"] = foldwise_learned_aipw(
            formula, units, chips, mask, seed=seed, vcov=vcov)
        ests["AIPW, default: stacked image candidates"] = gc.aipw(
            formula, units, vcov=vcov, seed=seed, images=(chips, mask))
    img = ests["AIPW, default: stacked image candidates"]
    timings["estimate_s"] = time.perf_counter() - t
    table = _estimates_table(ests, world.ate)
    info = {"n_units": n_units, "n_countries": int(units["country"].nunique())}
    _print(table, world, info, console)

    # --- outputs
    table.to_csv(out / "tables" / "estimates.csv", index=False)
    write_tables(list(ests.values()), out / "tables", "estimates",
                 caption="ATE estimates: " + "; ".join(
                     f"({j + 1}) {name}" for j, name in enumerate(ests)))
    bal = img.diagnostics.get("balance")
    if isinstance(bal, pd.DataFrame) and len(bal):
        bal.to_csv(out / "tables" / "balance.csv", index=False)
    img.diagnostics["overlap"].to_csv(out / "tables" / "overlap.csv", index=False)
    img.diagnostics["nuisance_quality"].to_csv(out / "tables" / "nuisance_quality.csv",
                                               index=False)
    pd.DataFrame([world.truth_summary]).to_csv(out / "tables" / "truth.csv", index=False)
    save(overlap_plot(img, title="Overlap: propensity of the default (stacked) image path"),
         out / "figures" / "overlap.png")
    if isinstance(bal, pd.DataFrame) and len(bal):
        save(love_plot(img), out / "figures" / "balance.png")
    ax = coef_plot(table.assign(term=table["method"]), truth=world.ate,
                   title="ATE estimates and the true ATE")
    save(ax, out / "figures" / "estimates.png")
    import matplotlib.pyplot as plt

    plt.close("all")
    timings["total_s"] = time.perf_counter() - t0
    prov = make_provenance(formula, seed, manifest.content_hash(), design="demo",
                           n_units=n_units, size=size, periods=list(world.periods),
                           representation=LEARNED_OPTIONS, vcov=vcov, truth=world.truth_summary,
                           estimates=table.to_dict(orient="records"), timings=timings)
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str))
    console.print(f"tables and figures in [bold]{out}[/bold] ({timings['total_s']:.1f} s)")
    return table
