"""Figures for debiased predicted outcomes: pseudo-trial and simulation slope plots.

Examples
--------
>>> import pandas as pd
>>> t = pd.DataFrame({"method": ["naive", "naive", "lcc", "lcc"], "true": [0., 1, 0, 1],
...                   "estimate": [0., .5, 0, 1]})
>>> fig = slope_plot(t)
>>> fig.axes[0].get_xlabel()
'true effect'
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def slope_plot(trials: pd.DataFrame, ax=None, true: str = "true", estimate: str = "estimate",
               method: str = "method", title: str | None = None):
    """Estimated against true effects per method, with fitted slopes (each in its points'
    colour) and the 45-degree line; returns the Figure.
    """
    from geocausal.results.plot import new_figure

    if ax is None:
        _, ax = new_figure(size=(5, 4.5))
    lo = float(min(trials[true].min(), trials[estimate].min()))
    hi = float(max(trials[true].max(), trials[estimate].max()))
    ax.plot([lo, hi], [lo, hi], color="0.5", ls="--", lw=1, label="45-degree line")
    for name, g in trials.groupby(method, sort=False):
        b, a = np.polyfit(g[true], g[estimate], 1)
        pts = ax.scatter(g[true], g[estimate], s=12, alpha=0.6)
        xs = np.array([lo, hi])
        ax.plot(xs, a + b * xs, color=pts.get_facecolor()[0][:3], lw=1.5,
                label=f"{name} (slope {b:.2f})")
    ax.set_xlabel("true effect")
    ax.set_ylabel("estimated effect")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    return ax.figure


def comparison_plot(comparison, ax=None):
    """:func:`slope_plot` of a :class:`~geocausal.api.debias.DebiaserComparison`."""
    return slope_plot(comparison.trials, ax=ax,
                      title=f"pseudo-trials (recommended: {comparison.recommended})")
