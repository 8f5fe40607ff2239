"""Render every figure of geocausal to ``docs/gallery/*.png`` and list them in
``docs/gallery.md``.

Each figure is drawn from a real (small, seeded) fit where that is cheap, else from a small
seeded example; the page says which. Run from the repository root::

    .venv/bin/python docs/gallery.py            # writes docs/gallery/ and docs/gallery.md
    .venv/bin/python docs/gallery.py --out DIR  # somewhere else (the test does this)
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a script that only writes files (the package itself never sets one)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent


def _rdd():
    import geocausal as gc

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 400)
    return gc.rdd(outcome=[rng.normal(xi + (xi >= 0), 1 + 0.5 * (xi >= 0), 25) for xi in x],
                  running=x, q_grid=np.linspace(0.1, 0.9, 9), inference={"n_boot": 200}, seed=0)


def _ipw():
    import geocausal as gc

    rng = np.random.default_rng(1)
    n = 600
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                       "x3": rng.uniform(size=n)})
    e = 1 / (1 + np.exp(-(0.8 * df.x1 - 0.5 * df.x2)))
    df["d"] = (rng.uniform(size=n) < e).astype(int)
    df["y"] = 1.0 * df.d + df.x1 + 0.5 * df.x2 + rng.normal(size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gc.ipw("y ~ d + x1 + x2 + x3", df, seed=0), gc.aipw("y ~ d + x1 + x2 + x3", df,
                                                                  seed=0)


def _cate():
    from geocausal.designs.cate import crossfit_cate
    from geocausal.designs.cate_eval import evaluate_cate

    rng = np.random.default_rng(2)
    n = 800
    X = rng.normal(size=(n, 2))
    d = rng.integers(0, 2, n).astype(float)
    y = d * (1 + X[:, 0]) + X[:, 1] + rng.normal(size=n)
    fit = crossfit_cate("dr", X, y, d, np.arange(n) % 5, propensity=.5)
    return fit, evaluate_cate(fit, X, y, d, propensity=.5, n_splits=10, n_boot=200,
                              progress=False)


def _dml():
    from linearmodels.datasets import wage_panel
    from sklearn.linear_model import LinearRegression

    import geocausal as gc

    df = wage_panel.load()
    df = df[df.nr.isin(np.unique(df.nr)[:150])].reset_index(drop=True)
    lr = LinearRegression()
    return gc.dml_panel("lwage ~ union + exper + expersq + married + hours", df, unit="nr",
                        time="year", learners={"ml_l": lr, "ml_m": lr, "ml_g": lr},
                        options={"n_rep": 6, "n_boot": 0},
                        seed=0, progress=False)


def figures() -> list[tuple[str, str, Callable[[], object]]]:
    """``(name, caption, draw)`` for every figure; ``draw()`` returns the Figure."""
    from rasterio.transform import from_origin

    from geocausal.results import (
        plot_cate,
        plot_debias,
        plot_dml,
        plot_ipw,
        plot_rdd,
        plot_salience,
    )
    from geocausal.results.estimate import EstimateSet

    cache: dict[str, object] = {}

    def get(key, make):
        if key not in cache:
            cache[key] = make()
        return cache[key]

    rdd = lambda: get("rdd", _rdd)  # noqa: E731
    ipw = lambda: get("ipw", _ipw)  # noqa: E731
    cate = lambda: get("cate", _cate)  # noqa: E731
    rng = np.random.default_rng(3)
    imgs = rng.random((12, 16, 16, 4))
    sal_maps = np.exp(-((np.arange(16)[:, None] - 8) ** 2 + (np.arange(16) - 8) ** 2) / 20)
    sal = {"images": imgs[:6], "maps": sal_maps * rng.uniform(0.5, 1, (6, 1, 1)),
           "treated": [1, 1, 1, 0, 0, 0], "propensity": [.9, .85, .8, .2, .15, .1]}
    grid = np.add.outer(np.linspace(0, 1, 30), np.linspace(0, 2, 40))
    sites = np.column_stack([rng.uniform(500000, 501000, 2000),
                             rng.uniform(3998500, 4000000, 2000)])
    trials = pd.DataFrame({"method": np.repeat(["naive", "lcc", "tweedie"], 20),
                           "true": np.tile(np.linspace(-1, 1, 20), 3)})
    trials["estimate"] = trials["true"] * trials["method"].map(
        {"naive": 0.5, "lcc": 1.0, "tweedie": 0.9}) + rng.normal(0, 0.05, 60)
    boxes = pd.DataFrame({"approach": np.repeat(["cre", "wg", "fd"], 50),
                          "estimate": rng.normal(np.repeat([1.0, 1.05, 0.9], 50), 0.1)})
    return [
        ("estimate_plot", "`est.plot()` of an AIPW estimate: estimand, design and CI level "
         "(real fit, simulated data)", lambda: ipw()[1].plot()),
        ("estimate_set_plot", "`EstimateSet.plot()` of IPW and AIPW (real fits)",
         lambda: EstimateSet(tuple(ipw()), ("ipw", "aipw")).plot()),
        ("overlap_plot", "`plot_ipw.overlap_plot`: propensity overlap by arm (real IPW fit)",
         lambda: plot_ipw.overlap_plot(ipw()[0])),
        ("love_plot", "`plot_ipw.love_plot`: balance before and after weighting (real fit)",
         lambda: plot_ipw.love_plot(ipw()[0])),
        ("salience_plot", "`plot_ipw.salience_plot`: images (first three bands as RGB) and "
         "salience maps with a colorbar (seeded example arrays)",
         lambda: plot_ipw.salience_plot(sal)),
        ("salience_figure", "`plot_salience.salience_figure`: most and least likely treated "
         "(seeded example arrays)",
         lambda: plot_salience.salience_figure(imgs, np.broadcast_to(sal_maps, (12, 16, 16)),
                                               rng.random(12), n=2, score_name="propensity")),
        ("rdd_effect_plot", "`est.plot()` / `plot_rdd.effect_plot` of a distributional RD "
         "with pointwise and uniform 95% bands (real fit)",
         lambda: plot_rdd.effect_plot(rdd(), truth=1.0)),
        ("rd_plot", "`plot_rdd.rd_plot`: binned means and order-4 polynomial fits each side "
         "(real fit)", lambda: plot_rdd.rd_plot(rdd(), quantiles=(0.1, 0.5, 0.9))),
        ("quantile_functions_plot", "`plot_rdd.quantile_functions_plot` (real fit)",
         lambda: plot_rdd.quantile_functions_plot(rdd())),
        ("bandwidth_plot", "`plot_rdd.bandwidth_plot` (real fit)",
         lambda: plot_rdd.bandwidth_plot(rdd())),
        ("evaluation_plot", "CATE evaluation: GATES and the TOC curve with its pointwise 95% "
         "band (real fit)", lambda: plot_cate.evaluation_plot(cate()[1])),
        ("gates_plot", "`plot_cate.gates_plot` (real fit)",
         lambda: plot_cate.gates_plot(cate()[1].generic_ml)),
        ("toc_plot", "`plot_cate.toc_plot` of AUTOC and QINI (real fit)",
         lambda: plot_cate.toc_plot(cate()[1].rate)),
        ("cate_map", "`plot_cate.cate_map` / transport map: axes in CRS units, 400 of 2,000 "
         "trial sites as small hollow markers (seeded example grid)",
         lambda: plot_cate.cate_map(grid, transform=from_origin(500000, 4000000, 25, 50),
                                    crs="EPSG:32633", sites=sites)),
        ("landcover_plot", "`plot_cate.landcover_plot`: each fit in its points' colour (real "
         "CATE predictions, seeded fractions)",
         lambda: plot_cate.landcover_plot(
             pd.DataFrame({"water": cate()[0].tau * 0 + rng.random(800),
                           "crops": rng.random(800)}), cate()[0].tau)),
        ("repetition_plot", "`plot_dml.repetition_plot`: six cross-fitting repetitions, legend "
         "outside the data (real `gc.dml_panel` fit on 150 men of wage_panel)",
         lambda: plot_dml.repetition_plot(_dml())),
        ("estimates_boxplot", "`plot_dml.estimates_boxplot` of simulated estimates (seeded "
         "example)", lambda: plot_dml.estimates_boxplot(boxes, truth=1.0,
                                                        reference={"cre": 1.0})),
        ("slope_plot", "`plot_debias.slope_plot` / `compare_debiasers(...).plot()` (seeded "
         "example)", lambda: plot_debias.slope_plot(trials)),
    ]


def render(out: Path, page: Path | None = None, only: list[str] | None = None) -> list[Path]:
    """Draw the figures (all, or those named in ``only``) into ``out`` and write the page."""
    from geocausal.results.plot import save

    out.mkdir(parents=True, exist_ok=True)
    written, lines = [], ["# Figure gallery", "",
                          "Every figure geocausal draws, rendered by `docs/gallery.py` "
                          "(rerun it after changing a plot). Each plot function returns its "
                          "matplotlib `Figure`; in Jupyter it is shown inline once.", ""]
    for name, caption, draw in figures():
        if only is not None and name not in only:
            continue
        path = save(draw(), out / f"{name}.png")
        written.append(path)
        lines += [f"## {name}", "", caption, "", f"![{name}](gallery/{path.name})", ""]
    (page or out.parent / "gallery.md").write_text("\n".join(lines))
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "gallery",
                    help="folder of the PNGs (the page goes beside it as gallery.md)")
    args = ap.parse_args(argv)
    paths = render(args.out)
    print(f"wrote {len(paths)} figures to {args.out} and {args.out.parent / 'gallery.md'}")


if __name__ == "__main__":
    main()
