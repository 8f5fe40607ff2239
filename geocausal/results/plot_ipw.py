"""Figures for weighting designs: propensity overlap by arm and a love plot of balance.

Both accept either an :class:`~geocausal.results.estimate.Estimate` from ``gc.ipw`` /
``gc.aipw`` (reading its diagnostics) or the raw arrays / table.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import numpy as np, pandas as pd
>>> ax = overlap_plot(np.array([.2, .4, .6, .7]), np.array([0, 0, 1, 1]))
>>> t = pd.DataFrame({"term": ["x"], "smd_unweighted": [.5], "smd_weighted": [.02]})
>>> ax = love_plot(t)
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from geocausal.errors import DataError  # noqa: E402


def _axes(ax, size=(6, 4)):
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def overlap_plot(e_or_estimate, d=None, ax=None, bins: int = 30, title: str | None = None):
    """Histograms of the propensity score by treatment arm (the overlap check)."""
    if d is None:
        diag = getattr(e_or_estimate, "diagnostics", {})
        if "propensity" not in diag:
            raise DataError("overlap_plot needs (propensity, treatment) arrays or an IPW/AIPW Estimate")
        frame = diag["propensity"]
        e, d = frame["propensity"].to_numpy(), frame["treated"].to_numpy()
    else:
        e, d = np.asarray(e_or_estimate, float), np.asarray(d)
    ax = _axes(ax)
    edges = np.linspace(0, 1, bins + 1)
    ax.hist(e[d == 1], bins=edges, alpha=0.55, density=True, color="tab:red", label="treated")
    ax.hist(e[d == 0], bins=edges, alpha=0.55, density=True, color="tab:blue", label="control")
    ax.set_xlabel("propensity score")
    ax.set_ylabel("density")
    ax.legend()
    ax.set_title(title or "Propensity overlap")
    return ax


def love_plot(table_or_estimate, ax=None, threshold: float = 0.1, title: str | None = None):
    """Absolute standardised mean differences before and after weighting, one row per term."""
    table = table_or_estimate
    if not isinstance(table, pd.DataFrame):
        table = getattr(table_or_estimate, "diagnostics", {}).get("balance")
        if table is None or len(table) == 0:
            raise DataError("love_plot needs a balance table or an Estimate with diagnostics['balance']")
    t = table.assign(_o=table["smd_unweighted"].abs()).sort_values("_o")
    ax = _axes(ax, (6, max(2.5, 0.3 * len(t) + 1)))
    y = np.arange(len(t))
    ax.scatter(t["smd_unweighted"].abs(), y, marker="o", facecolors="none",
               edgecolors="tab:grey", label="unweighted")
    if "smd_weighted" in t:
        ax.scatter(t["smd_weighted"].abs(), y, marker="o", color="k", label="weighted")
    ax.axvline(threshold, color="tab:red", ls="--", lw=1)
    ax.set_yticks(y, t["term"])
    ax.set_xlabel("|standardised mean difference|")
    ax.legend(loc="lower right")
    ax.set_title(title or "Covariate balance")
    return ax
