"""Figures of a distributional regression discontinuity (an Estimate from ``gc.rdd``).

Examples
--------
>>> import numpy as np
>>> import geocausal as gc
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(-1, 1, 300)
>>> est = gc.rdd(outcome=[rng.normal(xi + (xi >= 0), 1, 20) for xi in x], running=x,
...              q_grid=[.25, .5, .75], inference={"n_boot": 100})
>>> fig = effect_plot(est)
>>> fig.axes[0].get_ylabel()
'QTE'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from geocausal.errors import DataError
from geocausal.results.plot import axes_or_new, curve_plot, new_figure


def effect_plot(est, ax=None, truth=None, title: str | None = "Quantile treatment effect"):
    """tau(q) with its pointwise CI and uniform band (the level fitted, when recorded in
    ``provenance["alpha"]``); optional true curve. Returns the Figure.
    """
    ax = axes_or_new(ax)
    a = (est.provenance or {}).get("alpha")
    curve_plot(est.curve, ax=ax, x="quantile", title=title,
               level=None if a is None else 1 - float(a), ylabel=str(est.estimand))
    if truth is not None:
        ax.plot(est.curve["quantile"], np.broadcast_to(truth, len(est.curve)), ls="--",
                color="tab:red", label="truth")
        ax.legend(fontsize=8)
    return ax.figure


def quantile_functions_plot(est, ax=None, title: str | None = "Side limits at the cutoff"):
    """The fitted quantile functions just right and just left of the cutoff."""
    ax = axes_or_new(ax)
    bw = est.diagnostics["bandwidths"]
    ax.plot(bw["quantile"], bw["m_plus"], color="tab:orange", label="right of cutoff")
    ax.plot(bw["quantile"], bw["m_minus"], color="tab:blue", label="left of cutoff")
    ax.set_xlabel("quantile")
    ax.set_ylabel("outcome quantile")
    ax.legend()
    if title:
        ax.set_title(title)
    return ax.figure


def rd_plot(est, quantiles: Sequence[float] = (0.25, 0.5, 0.75), bins: int = 20, axes=None,
            order: int = 4):
    """Binned per-unit quantiles against the running variable, with a polynomial fit on each
    side of the cutoff, one panel per chosen quantile (the layout of rdrobust's ``rdplot``).

    Parameters
    ----------
    quantiles
        Quantiles of the unit outcome distributions to show (the nearest grid point is used).
    bins
        Number of quantile-spaced bins (half on each side).
    axes
        Axes to draw on, one per quantile.
    order
        Order of the global polynomial fitted by least squares on each side to the unit-level
        points (``rdplot`` uses 4); lowered on a side with too few distinct running values.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(order, int | np.integer) or order < 0:
        raise DataError(f"order must be a non-negative integer, got {order!r}")
    pts = est.diagnostics.get("points")
    if pts is None:
        raise DataError("this estimate holds no per-unit points (too many units x quantiles); "
                        "refit on a subsample to draw the RD plot")
    grid = est.diagnostics["bandwidths"]["quantile"].to_numpy()
    c = est.diagnostics["cutoff"]
    if axes is None:
        _, axes = new_figure(1, len(quantiles), size=(4.2 * len(quantiles), 3.6), squeeze=False,
                             layout="constrained")
        axes = axes[0]
    x = pts["running"].to_numpy()
    for ax, q in zip(axes, quantiles):
        k = int(np.argmin(np.abs(grid - q)))
        y = pts.iloc[:, 1 + k].to_numpy()
        for side, col, name in ((x < c, "tab:blue", "left"), (x >= c, "tab:orange", "right")):
            ok = side & np.isfinite(y)
            xs, ys = x[ok], y[ok]
            if xs.size == 0:
                continue
            edges = np.quantile(xs, np.linspace(0, 1, bins // 2 + 1))
            idx = np.clip(np.searchsorted(edges, xs, side="right") - 1, 0, edges.size - 2)
            cnt = np.bincount(idx, minlength=edges.size - 1)
            has = cnt > 0
            mx = np.bincount(idx, xs, minlength=cnt.size)[has] / cnt[has]
            my = np.bincount(idx, ys, minlength=cnt.size)[has] / cnt[has]
            ax.scatter(mx, my, s=12, color=col, label=f"binned means ({name})")
            deg = min(order, np.unique(xs).size - 1)
            if deg >= 0:
                fit = np.polynomial.Polynomial.fit(xs, ys, deg)
                gx = np.linspace(xs.min(), c, 100) if name == "left" else \
                    np.linspace(c, xs.max(), 100)
                ax.plot(gx, fit(gx), color=col, lw=1.5, label=f"order-{deg} fit ({name})")
        ax.axvline(c, color="grey", ls=":", label="cutoff")
        ax.set_title(f"q = {grid[k]:.2f}")
        ax.set_xlabel("running variable")
        ax.set_ylabel(f"unit {grid[k]:.2f}-quantile of the outcome")
    axes[0].legend(fontsize=7)
    return axes[0].figure


def bandwidth_plot(est, ax=None, title: str | None = "Bandwidth by quantile"):
    """Selected (or given) bandwidths per quantile on each side."""
    ax = axes_or_new(ax)
    bw = est.diagnostics["bandwidths"]
    ax.plot(bw["quantile"], bw["h_plus"], marker="o", ms=3, label="right")
    if not np.allclose(bw["h_plus"], bw["h_minus"]):
        ax.plot(bw["quantile"], bw["h_minus"], marker="o", ms=3, label="left")
    ax.set_xlabel("quantile")
    ax.set_ylabel("bandwidth")
    ax.legend()
    if title:
        ax.set_title(title)
    return ax.figure
