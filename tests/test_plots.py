"""Every plot function returns its Figure, with labelled axes, a title where it names the
estimand, a stated CI level, and a legend wherever several series are drawn (issue 15, item 7).
"""

from __future__ import annotations

import ast
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import geocausal as gc
from geocausal.errors import DataError
from geocausal.results import (
    plot,
    plot_cate,
    plot_debias,
    plot_dml,
    plot_ipw,
    plot_rdd,
    plot_salience,
)
from geocausal.results.estimate import Estimate, EstimateSet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _close_all():
    yield
    plt.close("all")


def _data_axes(fig: Figure):
    """Axes that hold data (not colorbars, not switched-off panels)."""
    return [a for a in fig.axes if a.axison and a.get_label() != "<colorbar>"]


def _check(fig, *, several: bool = False, title: str | None = None, images: bool = False):
    """Labelled axes on every data panel, a legend when several series are drawn."""
    assert isinstance(fig, Figure)
    axes = _data_axes(fig)
    assert axes
    for ax in axes:
        if images:
            continue
        assert ax.get_xlabel().strip(), f"no x label on {ax.get_title()!r}"
        assert ax.get_ylabel().strip(), f"no y label on {ax.get_title()!r}"
    if several:
        assert any(ax.get_legend() is not None for ax in fig.axes), "several series, no legend"
        for ax in fig.axes:
            if ax.get_legend() is not None:
                assert len(ax.get_legend().get_texts()) >= 2
    if title is not None:
        titles = [ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text()
                                                         if fig._suptitle else ""]
        assert any(title in t for t in titles), titles


def _est(design="ipw", **kw):
    return Estimate(pd.Series({"d": 1.0, "x": 0.2}), pd.DataFrame(np.diag([0.04, 0.01]),
                    ["d", "x"], ["d", "x"]), design=design, **kw)


# ----------------------------------------------------------------------------- est.plot()
def test_estimate_plot_states_title_axis_and_level():
    fig = _est().plot()
    _check(fig, title="ATE (ipw)")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "ATE (95% CI)"
    assert ax.get_ylabel() == "term"
    fig = _est().plot(alpha=0.1)
    assert fig.axes[0].get_xlabel() == "ATE (90% CI)"
    # the drawn interval is the stated one: 90% -> +-1.645 se
    seg = fig.axes[0].collections[0].get_segments()[0]
    assert seg[1][0] - seg[0][0] == pytest.approx(2 * 1.6449 * 0.2, rel=1e-3)
    with pytest.raises(DataError, match="alpha"):
        _est().plot(alpha=1.5)


def test_estimate_set_plot_and_truth_legend():
    es = EstimateSet((_est(), _est("aipw")), ("a", "b"))
    fig = es.plot()
    _check(fig, title="ATE by model")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a: d", "a: x", "b: d",
                                                                       "b: x"]
    fig = plot.coef_plot(es.tidy(), truth=1.0, level=0.95)
    _check(fig, several=True)


def test_curve_plot_states_band_levels():
    est = gc.rdd(outcome=[np.random.default_rng(i).normal(x + (x >= 0), 1, 15)
                          for i, x in enumerate(np.linspace(-1, 1, 200))],
                 running=np.linspace(-1, 1, 200), q_grid=[.25, .5, .75],
                 inference={"n_boot": 50}, seed=0)
    fig = est.plot()
    _check(fig, several=True, title="QTE")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "95% uniform band" in labels and "95% pointwise CI" in labels
    # ------------------------------------------------------------- the rdd figures
    _check(plot_rdd.effect_plot(est, truth=1.0), several=True)
    _check(plot_rdd.quantile_functions_plot(est), several=True)
    _check(plot_rdd.bandwidth_plot(est))
    fig = plot_rdd.rd_plot(est, quantiles=(0.25, 0.75), order=2)
    _check(fig, several=True)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "unit 0.25-quantile of the outcome"
    fits = [ln for ln in ax.get_lines() if "fit" in str(ln.get_label())]
    assert len(fits) == 2                       # one polynomial per side
    left, right = fits
    c = est.diagnostics["cutoff"]
    assert left.get_xdata().max() == pytest.approx(c) and right.get_xdata().min() == pytest.approx(c)
    # the fitted jump at the cutoff is close to the estimated QTE at q = .25 (true jump 1)
    jump = right.get_ydata()[0] - left.get_ydata()[-1]
    assert 0.3 < jump < 1.7
    with pytest.raises(DataError, match="order"):
        plot_rdd.rd_plot(est, order=-1)


# ----------------------------------------------------------------------------- IPW
def test_ipw_plots_and_salience():
    rng = np.random.default_rng(0)
    _check(plot_ipw.overlap_plot(rng.uniform(.1, .9, 50), rng.integers(0, 2, 50)), several=True)
    t = pd.DataFrame({"term": ["a", "b"], "smd_unweighted": [.5, -.3], "smd_weighted": [.02, .01]})
    _check(plot_ipw.love_plot(t), several=True)
    imgs = rng.random((4, 6, 6, 4))
    imgs[..., 3] = 0.0                               # band 3 is black
    sal = {"images": imgs, "maps": rng.random((4, 6, 6)), "treated": [1, 1, 0, 0],
           "propensity": [.9, .8, .2, .1]}
    fig = plot_ipw.salience_plot(sal)
    _check(fig, images=True, title="log scale")
    assert any(a.get_label() == "<colorbar>" for a in fig.axes)
    # default RGB = the first three bands as given; with roles, red/green/blue roles
    shown = fig.axes[0].get_images()[0].get_array()
    assert np.allclose(shown, plot_ipw.stretch(imgs[0][..., [0, 1, 2]]))
    fig = plot_ipw.salience_plot(sal, roles={"red": 3, "green": 1, "blue": 0})
    assert np.allclose(fig.axes[0].get_images()[0].get_array()[..., 0], 0.0)
    with pytest.raises(DataError, match="bands"):
        plot_ipw.salience_plot(sal, bands=(0, 1, 9))
    f2 = plot_salience.salience_figure(imgs, rng.random((4, 6, 6)), rng.random(4), n=1)
    assert any(a.get_label() == "<colorbar>" for a in f2.axes)


# ----------------------------------------------------------------------------- CATE
def test_cate_plots_toc_band_and_landcover_colours():
    from sklearn.linear_model import LinearRegression  # noqa: F401  (learners load lazily)

    from geocausal.designs.cate import crossfit_cate
    from geocausal.designs.cate_eval import evaluate_cate

    rng = np.random.default_rng(1)
    n = 400
    X = rng.normal(size=(n, 1))
    d = rng.integers(0, 2, n).astype(float)
    y = d * (1 + X[:, 0]) + rng.normal(size=n)
    fit = crossfit_cate("dr", X, y, d, np.arange(n) % 5, propensity=.5)
    ev = evaluate_cate(fit, X, y, d, propensity=.5, n_splits=3, n_boot=60)
    fig = plot_cate.evaluation_plot(ev)
    _check(fig, several=True, title="TOC")
    toc_ax = fig.axes[1]
    assert len(toc_ax.collections) >= 1           # the band
    c = ev.rate["AUTOC"].curve
    assert np.isfinite(c["std_error"]).all() and (c["std_error"] > 0).all()
    _check(plot_cate.gates_plot(ev.generic_ml), several=True)
    frac = pd.DataFrame({"water": rng.random(n), "crops": rng.random(n)})
    fig = plot_cate.landcover_plot(frac, fit.tau)
    _check(fig, several=True)
    ax = fig.axes[0]
    for pts, line in zip(ax.collections, ax.get_lines()):
        assert np.allclose(pts.get_facecolor()[0][:3], plt.matplotlib.colors.to_rgb(line.get_color()))


def test_cate_map_crs_labels_and_site_subsample():
    from rasterio.transform import from_origin

    grid = np.arange(20.0).reshape(4, 5)
    tr = from_origin(500000, 4000000, 100, 100)
    sites = np.column_stack([np.random.default_rng(0).uniform(500000, 500500, 2000),
                             np.random.default_rng(1).uniform(3999600, 4000000, 2000)])
    fig = plot_cate.cate_map(grid, transform=tr, crs="EPSG:32633", sites=sites)
    _check(fig, several=False)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("easting (metre")
    assert ax.get_ylabel().startswith("northing (metre")
    sc = ax.collections[0]
    assert len(sc.get_offsets()) == plot_cate.MAX_SITES
    assert sc.get_alpha() <= 0.5
    assert "400 of 2000" in ax.get_legend().get_texts()[0].get_text()
    fig = plot_cate.cate_map(grid, transform=tr, crs="EPSG:4326")
    assert fig.axes[0].get_xlabel() == "longitude (degrees)"
    assert plot_cate.cate_map(grid).axes[0].get_xlabel() == "column (pixels)"


# ----------------------------------------------------------------------------- DML, debias
def test_dml_and_debias_plots_legend_outside():
    est = Estimate(pd.Series({"union": 0.08}), pd.DataFrame([[0.0004]], ["union"], ["union"]),
                   estimand="ATE (PLR)", design="dml_panel",
                   diagnostics={"thetas": np.array([[0.07], [0.08], [0.09]]),
                                "ses": np.array([[0.02], [0.02], [0.02]])})
    fig = plot_dml.repetition_plot(est)
    _check(fig, several=True)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "union (95% CI)"
    fig.canvas.draw()
    leg = ax.get_legend().get_window_extent()
    assert leg.x0 >= ax.get_window_extent().x1     # the legend sits right of the data
    reps = pd.DataFrame({"approach": ["cre"] * 5 + ["wg"] * 5, "estimate": np.arange(10.0)})
    _check(plot_dml.estimates_boxplot(reps, truth=1.0, reference={"cre": 2.0}), several=True)
    tr = pd.DataFrame({"method": ["naive"] * 3 + ["lcc"] * 3, "true": [0., 1, 2] * 2,
                       "estimate": [0, .5, 1, 0, 1, 2.]})
    _check(plot_debias.slope_plot(tr), several=True)


# ----------------------------------------------------------------------------- no backend
def test_no_module_sets_a_backend():
    """Plotting never sets a matplotlib backend (figures must render inline in Jupyter)."""
    offenders = []
    for path in sorted((ROOT / "geocausal").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("use",
                                                                                  "switch_backend"):
                if "matplotlib" in ast.unparse(node.func) or "plt" in ast.unparse(node.func):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        if 'matplotlib.use(' in path.read_text():
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_every_public_plot_function_returns_a_figure():
    rng = np.random.default_rng(0)
    out = [plot.coef_plot(_est().tidy()),
           plot.curve_plot(pd.DataFrame({"q": [.1, .5], "estimate": [0., 1], "conf_low": [-1, 0.],
                                         "conf_high": [1, 2.]})),
           plot_ipw.overlap_plot(rng.random(10), np.arange(10) % 2),
           plot_cate.cate_map(np.ones((3, 3)))]
    assert all(isinstance(f, Figure) for f in out)
    # a given ax: the figure of that ax
    fig, ax = plt.subplots()
    assert plot.coef_plot(_est().tidy(), ax=ax) is fig


# ----------------------------------------------------------------------------- gallery
def test_gallery_renders_every_figure(tmp_path):
    """docs/gallery.py draws every public figure function of the plot modules into PNGs and
    lists them on the page."""
    import importlib
    import inspect
    import sys

    sys.path.insert(0, str(ROOT / "docs"))
    try:
        gallery = importlib.import_module("gallery")
    finally:
        sys.path.remove(str(ROOT / "docs"))
    helpers = {"axes_or_new", "new_figure", "level_text", "save", "rgb_bands", "stretch",
               "coef_plot", "curve_plot"}            # coef/curve: drawn via est.plot()
    wanted = set()
    for mod in (plot, plot_cate, plot_debias, plot_dml, plot_ipw, plot_rdd, plot_salience):
        for name, fn in inspect.getmembers(mod, inspect.isfunction):
            if fn.__module__ == mod.__name__ and not name.startswith("_") and name not in helpers:
                wanted.add(name)
    wanted -= {"comparison_plot"}                     # = slope_plot of a comparison
    names = {n for n, _, _ in gallery.figures()}
    shown = {n.replace("rdd_", "") for n in names}
    assert wanted <= shown, f"not in the gallery: {sorted(wanted - shown)}"
    paths = gallery.render(tmp_path / "gallery")
    assert len(paths) == len(names) and all(p.stat().st_size > 5000 for p in paths)
    page = (tmp_path / "gallery.md").read_text()
    assert all(f"(gallery/{p.name})" in page for p in paths)
