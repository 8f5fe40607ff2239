"""Contour plot of a sensitivity analysis: the bound nearest the null over (cf_y, cf_d).

As DoubleML's ``sensitivity_plot`` and sensemakr's ``ovb_contour_plot`` draw it: contours of the
bound of the estimate (the lower bound when the estimate is above the null), the contour where
it reaches the null in red, the scenario asked for as a black triangle and the benchmarks
(confounders as strong as observed covariate groups, or as the images) as red diamonds.

Examples
--------
>>> import numpy as np
>>> from geocausal.inference.sensitivity import SensitivityElements, ovb_sensitivity
>>> z = np.zeros((1, 4))
>>> el = SensitivityElements("d", "plr", [1.0], z, [1.0], [1.0], z, z, var_y=1.0)
>>> fig = sensitivity_contour(ovb_sensitivity(el, 0.1, 0.1))
>>> fig.axes[0].get_xlabel()
'cf_y (share of the outcome residual variation)'
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geocausal.results.plot import axes_or_new


def sensitivity_contour(result: Any, ax=None, max_cf: float | None = None, n: int = 80,
                        levels: int = 12, title: str | None = None):
    """Contours of the bound over a grid of (cf_y, cf_d), scenario and benchmarks marked.

    Parameters
    ----------
    result
        A :class:`~geocausal.inference.sensitivity.SensitivityResult`.
    ax
        Axes to draw on (a new figure by default).
    max_cf
        Upper end of both axes; default covers the scenario and benchmarks (at least 0.15,
        at most 0.99).
    n, levels
        Grid points per axis and number of contour levels.
    title
        Figure title (default names the term).

    Returns
    -------
    matplotlib.figure.Figure
    """
    ax = axes_or_new(ax, size=(6, 5))
    row = result.table.iloc[0]
    bench = result.benchmarks
    pts = [row.cf_y, row.cf_d]
    if bench is not None and len(bench):
        pts += [float(v) for v in bench.cf_y] + [float(v) for v in bench.cf_d]
    top = max_cf if max_cf is not None else min(0.99, max(0.15, 1.25 * max(pts)))
    g = np.linspace(0, top, n)
    z = result.bound_grid(g, g)
    cs = ax.contour(g, g, z, levels=levels, colors="0.35", linewidths=0.8)
    ax.clabel(cs, fontsize=7, fmt="%.3g")
    null = float(row["null"])
    if np.nanmin(z) < null < np.nanmax(z):
        ax.contour(g, g, z, levels=[null], colors="tab:red", linewidths=1.6, linestyles="--")
    ax.plot([row.cf_y], [row.cf_d], marker="^", color="black", ms=8, ls="none",
            label=f"scenario: bound {row.theta_lower if row.estimate >= null else row.theta_upper:.3g}")
    if bench is not None and len(bench):
        inside = (bench.cf_y <= top) & (bench.cf_d <= top)
        ax.plot(bench.cf_y[inside], bench.cf_d[inside], marker="D", color="tab:red", ms=6,
                ls="none", label="benchmarks")
        for _, b in bench[inside].iterrows():
            lab = str(b.group) + (f" x{b.kd:g}" if "kd" in b and b.kd != 1 else "")
            ax.annotate(lab, (b.cf_y, b.cf_d), xytext=(4, 4), textcoords="offset points",
                        fontsize=8, color="tab:red")
        if (~inside).any():
            ax.text(0.99, 0.01, f"{int((~inside).sum())} benchmark(s) beyond the axes",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=7)
    lin = result.kind == "linear"
    ax.set_xlabel("partial R2 of the confounder with the outcome" if lin
                  else "cf_y (share of the outcome residual variation)")
    ax.set_ylabel("partial R2 of the confounder with the treatment" if lin
                  else "cf_d (share of the Riesz representer variation)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_title(title or f"Sensitivity of '{row.term}': bound of the estimate "
                 f"(red: {null:g})", fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    return ax.figure
