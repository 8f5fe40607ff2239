"""Figures of a distributional regression discontinuity (an Estimate from ``gc.rdd``).

Examples
--------
>>> import numpy as np
>>> import geocausal as gc
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(-1, 1, 300)
>>> est = gc.rdd(outcome=[rng.normal(xi + (xi >= 0), 1, 20) for xi in x], running=x,
...              q_grid=[.25, .5, .75], n_boot=100)
>>> ax = effect_plot(est)
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from geocausal.errors import DataError  # noqa: E402
from geocausal.results.plot import (
    axes_or_new,  # noqa: E402
    curve_plot,  # noqa: E402
)


def effect_plot(est, ax=None, truth=None, title: str | None = "Quantile treatment effect"):
    """tau(q) with its pointwise CI and uniform band; optional true curve."""
    ax = curve_plot(est.curve, ax=axes_or_new(ax), x="quantile", title=title)
    if truth is not None:
        ax.plot(est.curve["quantile"], np.broadcast_to(truth, len(est.curve)), ls="--",
                color="tab:red", label="truth")
        ax.legend()
    ax.set_ylabel("effect")
    return ax


def quantile_functions_plot(est, ax=None, title: str | None = "Side limits at the cutoff"):
    """The fitted quantile functions just right and just left of the cutoff."""
    ax = axes_or_new(ax)
    bw = est.diagnostics["bandwidths"]
    ax.plot(bw["quantile"], bw["m_plus"], color="tab:orange", label="right of cutoff")
    ax.plot(bw["quantile"], bw["m_minus"], color="tab:blue", label="left of cutoff")
    ax.set_xlabel("quantile")
    ax.set_ylabel("outcome")
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def rd_plot(est, quantiles: Sequence[float] = (0.25, 0.5, 0.75), bins: int = 20, axes=None):
    """Binned per-unit quantiles against the running variable, one panel per chosen quantile."""
    pts = est.diagnostics.get("points")
    if pts is None:
        raise DataError("this estimate holds no per-unit points (too many units x quantiles); "
                        "refit on a subsample to draw the RD plot")
    grid = est.diagnostics["bandwidths"]["quantile"].to_numpy()
    c = est.diagnostics["cutoff"]
    if axes is None:
        _, axes = plt.subplots(1, len(quantiles), figsize=(4 * len(quantiles), 3.5), squeeze=False)
        axes = axes[0]
    x = pts["running"].to_numpy()
    for ax, q in zip(axes, quantiles):
        k = int(np.argmin(np.abs(grid - q)))
        y = pts.iloc[:, 1 + k].to_numpy()
        for side, col in ((x < c, "tab:blue"), (x >= c, "tab:orange")):
            xs, ys = x[side], y[side]
            if xs.size == 0:
                continue
            edges = np.quantile(xs, np.linspace(0, 1, bins // 2 + 1))
            idx = np.clip(np.searchsorted(edges, xs, side="right") - 1, 0, edges.size - 2)
            mx = np.bincount(idx, xs) / np.maximum(np.bincount(idx), 1)
            my = np.bincount(idx, ys) / np.maximum(np.bincount(idx), 1)
            ax.scatter(mx, my, s=12, color=col)
        ax.axvline(c, color="grey", ls=":")
        ax.set_title(f"q = {grid[k]:.2f}")
        ax.set_xlabel("running variable")
    return axes


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
    return ax
