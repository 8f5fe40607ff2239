"""Figures for heterogeneous effects: GATES, TOC curves, CATE maps, land-cover relations.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import numpy as np
>>> ax = cate_map(np.arange(12.0).reshape(3, 4))
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from geocausal.results.plot import axes_or_new  # noqa: E402


def gates_plot(gml, ax=None, title: str | None = "GATES"):
    """Sorted group average treatment effects with their aggregated intervals and the ATE."""
    ax = axes_or_new(ax)
    g = gml.gates
    g = g[g["term"].str.match(r"gates_\d+$")]
    k = np.arange(1, len(g) + 1)
    ax.errorbar(k, g["estimate"], yerr=[g["estimate"] - g["conf_low"],
                                        g["conf_high"] - g["estimate"]],
                fmt="o", color="k", capsize=3, label=f"GATES ({g['level'].iloc[0]:.0%} CI)")
    b = gml.blp.set_index("term")
    ax.axhline(b.loc["beta1", "estimate"], color="tab:red", ls="--", lw=1, label="ATE (BLP)")
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set_xticks(k, [f"G{i}" for i in k])
    ax.set_xlabel("group by predicted CATE (low to high)")
    ax.set_ylabel("effect")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def toc_plot(rates, ax=None, title: str | None = "TOC"):
    """Targeting operator characteristic curves of one or more RATE results (dict name -> r)."""
    ax = axes_or_new(ax)
    items = rates.items() if isinstance(rates, dict) else [("", rates)]
    for name, r in items:
        ax.plot(r.curve["quantile"], r.curve["estimate"],
                label=f"{name} {r.target} = {r.estimate:.3f} ({r.std_error:.3f})".strip())
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("treated fraction q (highest predicted CATE first)")
    ax.set_ylabel("TOC(q)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def evaluation_plot(ev, axes=None):
    """GATES (when available) and the TOC curve of a :class:`CateEvaluation`."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4))
    if ev.generic_ml is not None:
        gates_plot(ev.generic_ml, ax=axes[0])
    toc_plot({"": ev.rate["AUTOC"]}, ax=axes[1])
    return axes


def cate_map(values, ax=None, transform=None, title: str | None = "Predicted CATE",
             sites: np.ndarray | None = None, cmap: str = "RdYlBu_r"):
    """Map of a CATE raster (array, or a GeoTIFF path) with optional trial sites ``(n, 2)`` x, y."""
    ax = axes_or_new(ax, (6, 5))
    extent = None
    if isinstance(values, str | Path):
        import rasterio

        with rasterio.open(values) as src:
            arr = src.read(1, masked=True).astype(float).filled(np.nan)
            transform = src.transform
    else:
        arr = np.asarray(values, dtype=float)
    if transform is not None:
        h, w = arr.shape
        x0, y0 = transform @ (0, 0)
        x1, y1 = transform @ (w, h)
        extent = (x0, x1, y1, y0)
    im = ax.imshow(arr, cmap=cmap, extent=extent)
    plt.colorbar(im, ax=ax, label="CATE")
    if sites is not None:
        xy = np.asarray(sites, dtype=float)
        ax.scatter(xy[:, 0], xy[:, 1], s=4, c="k", marker="s", label="trial sites")
        ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    return ax


def landcover_plot(fractions: pd.DataFrame, tau: np.ndarray, ax=None,
                   title: str | None = "CATE against land cover"):
    """Scatter of predicted CATE against each land-cover fraction, with a least-squares line."""
    ax = axes_or_new(ax)
    tau = np.asarray(tau, dtype=float)
    for col in fractions.columns:
        x = fractions[col].to_numpy(dtype=float)
        ax.scatter(x, tau, s=6, alpha=0.4, label=str(col))
        if np.ptp(x) > 0:
            b = np.polyfit(x, tau, 1)
            grid = np.linspace(x.min(), x.max(), 20)
            ax.plot(grid, np.polyval(b, grid), lw=1.5)
    ax.set_xlabel("land-cover fraction")
    ax.set_ylabel("predicted CATE")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax
