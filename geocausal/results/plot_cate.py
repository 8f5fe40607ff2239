"""Figures for heterogeneous effects: GATES, TOC curves, CATE maps, land-cover relations.

Every function returns its Figure.

Examples
--------
>>> import numpy as np
>>> fig = cate_map(np.arange(12.0).reshape(3, 4))
>>> fig.axes[0].get_xlabel()
'column (pixels)'
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from geocausal.errors import DataError
from geocausal.results.plot import axes_or_new, new_figure

#: At most this many trial sites are drawn on a map (a seeded subsample beyond it).
MAX_SITES = 400


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
    return ax.figure


def toc_plot(rates, ax=None, title: str | None = "TOC", level: float = 0.95):
    """Targeting operator characteristic curves of one or more RATE results (dict name -> r),
    each with its pointwise ``level`` band when the result's curve holds ``std_error`` (from
    the half-sample bootstrap).
    """
    from scipy.stats import norm

    if not 0 < level < 1:
        raise DataError(f"level must lie in (0, 1), got {level!r}")
    z = float(norm.ppf(0.5 + level / 2))
    ax = axes_or_new(ax)
    items = rates.items() if isinstance(rates, dict) else [("", rates)]
    for name, r in items:
        c = r.curve
        (line,) = ax.plot(c["quantile"], c["estimate"],
                          label=f"{name} {r.target} = {r.estimate:.3f} ({r.std_error:.3f})".strip())
        if "std_error" in c and np.isfinite(c["std_error"]).any():
            ax.fill_between(c["quantile"], c["estimate"] - z * c["std_error"],
                            c["estimate"] + z * c["std_error"], color=line.get_color(),
                            alpha=0.2, lw=0, label=f"{name} pointwise {level:.0%} band".strip())
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("treated fraction q (highest predicted CATE first)")
    ax.set_ylabel("TOC(q)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax.figure


def evaluation_plot(ev, axes=None):
    """GATES (when available) and the TOC curve of a :class:`CateEvaluation`; the Figure."""
    if axes is None:
        _, axes = new_figure(1, 2, size=(11, 4))
    if ev.generic_ml is not None:
        gates_plot(ev.generic_ml, ax=axes[0])
    else:
        axes[0].set_axis_off()
        axes[0].text(0.5, 0.5, "no GATES (generic ML not run)", ha="center", va="center")
    toc_plot({"": ev.rate["AUTOC"]}, ax=axes[1])
    return axes[1].figure


def _crs_axis_labels(crs) -> tuple[str, str]:
    """Axis labels naming the CRS units: easting/northing (metre) or longitude/latitude."""
    if crs is None:
        return "x (CRS units)", "y (CRS units)"
    try:
        from rasterio.crs import CRS

        c = crs if isinstance(crs, CRS) else CRS.from_user_input(crs)
        if c.is_geographic:
            return "longitude (degrees)", "latitude (degrees)"
        units = c.linear_units or "CRS units"
        name = c.to_string()
    except Exception:  # noqa: BLE001 - an unreadable CRS still gets generic labels
        return f"x ({crs})", f"y ({crs})"
    return f"easting ({units}, {name})", f"northing ({units}, {name})"


def cate_map(values, ax=None, transform=None, title: str | None = "Predicted CATE",
             sites: np.ndarray | None = None, cmap: str = "RdYlBu_r", crs=None,
             max_sites: int = MAX_SITES, seed: int = 0):
    """Map of a CATE raster (array, or a GeoTIFF path) with optional trial sites.

    Parameters
    ----------
    values
        ``(rows, cols)`` array or the path of a one-band GeoTIFF (its transform and CRS are
        read).
    transform, crs
        Affine transform and CRS of the array; the axes are then labelled in the CRS units.
        Without a transform the axes are pixel rows and columns.
    sites
        ``(n, 2)`` x, y of the trial sites, drawn as small hollow markers; beyond
        ``max_sites`` a seeded random subsample is drawn (the legend says how many).
    seed
        Seed of that subsample.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ax = axes_or_new(ax, (6, 5))
    extent = None
    if isinstance(values, str | Path):
        import rasterio

        with rasterio.open(values) as src:
            arr = src.read(1, masked=True).astype(float).filled(np.nan)
            transform, crs = src.transform, src.crs
    else:
        arr = np.asarray(values, dtype=float)
    if arr.ndim != 2:
        raise DataError(f"cate_map needs a 2-D grid, got shape {arr.shape}")
    if transform is not None:
        h, w = arr.shape
        x0, y0 = transform @ (0, 0)
        x1, y1 = transform @ (w, h)
        extent = (x0, x1, y1, y0)
        xl, yl = _crs_axis_labels(crs)
        ax.ticklabel_format(useOffset=False, style="plain")
        ax.xaxis.set_major_locator(MaxNLocator(4))
    else:
        xl, yl = "column (pixels)", "row (pixels)"
    im = ax.imshow(arr, cmap=cmap, extent=extent)
    plt.colorbar(im, ax=ax, label="CATE")
    if sites is not None:
        xy = np.asarray(sites, dtype=float)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise DataError(f"sites must be (n, 2) x, y coordinates, got shape {xy.shape}")
        n = len(xy)
        label = f"trial sites ({n})"
        if n > max_sites:
            keep = np.random.default_rng(seed).choice(n, max_sites, replace=False)
            xy = xy[np.sort(keep)]
            label = f"trial sites ({max_sites} of {n} shown)"
        ax.scatter(xy[:, 0], xy[:, 1], s=5, facecolors="none", edgecolors="k", linewidths=0.4,
                   alpha=0.5, label=label)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.13), frameon=False)
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    if title:
        ax.set_title(title)
    return ax.figure


def landcover_plot(fractions: pd.DataFrame, tau: np.ndarray, ax=None,
                   title: str | None = "CATE against land cover"):
    """Scatter of predicted CATE against each land-cover fraction, with a least-squares line
    in the same colour as its points.
    """
    ax = axes_or_new(ax)
    tau = np.asarray(tau, dtype=float)
    if len(fractions) != tau.size:
        raise DataError(f"fractions has {len(fractions)} rows but tau has {tau.size} values")
    for col in fractions.columns:
        x = fractions[col].to_numpy(dtype=float)
        pts = ax.scatter(x, tau, s=6, alpha=0.4, label=str(col))
        if np.ptp(x) > 0:
            b = np.polyfit(x, tau, 1)
            grid = np.linspace(x.min(), x.max(), 20)
            ax.plot(grid, np.polyval(b, grid), lw=1.5, color=pts.get_facecolor()[0][:3],
                    label=f"{col}: slope {b[0]:.2f}")
    ax.set_xlabel("land-cover fraction")
    ax.set_ylabel("predicted CATE")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax.figure
