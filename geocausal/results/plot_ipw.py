"""Figures for weighting designs: propensity overlap by arm, a love plot of balance, and
causal salience maps of an image propensity model.

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
from geocausal.results.plot import axes_or_new  # noqa: E402


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
    ax = axes_or_new(ax)
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
    ax = axes_or_new(ax, (6, max(2.5, 0.3 * len(t) + 1)))
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


def salience_plot(estimate_or_salience, bands: tuple[int, ...] = (0, 1, 2), title: str | None = None):
    """Each explained unit's image (first period, ``bands`` as RGB) beside its salience map.

    Takes an Estimate whose ``diagnostics["salience"]`` came from a JAX image propensity
    learner, or that dict itself. Returns the figure.
    """
    sal = estimate_or_salience
    if not isinstance(sal, dict):
        sal = getattr(estimate_or_salience, "diagnostics", {}).get("salience")
    if not isinstance(sal, dict):
        raise DataError(f"no salience maps to draw ({sal!r}); use an image propensity learner")
    imgs, maps = np.asarray(sal["images"], float), np.asarray(sal["maps"], float)
    if imgs.ndim == 5:  # (N, T, H, W, C): show the first period
        imgs, maps = imgs[:, 0], maps[:, 0] if maps.ndim == 4 else maps
    k = imgs.shape[0]
    fig, axes = plt.subplots(2, k, figsize=(2.2 * k, 4.6), squeeze=False)
    for j in range(k):
        b = [c for c in bands if c < imgs.shape[-1]] or [0]
        rgb = imgs[j][..., b]
        lo, hi = np.percentile(rgb, 2), np.percentile(rgb, 98)
        rgb = np.clip((rgb - lo) / (hi - lo + 1e-12), 0, 1)
        axes[0, j].imshow(rgb if rgb.shape[-1] == 3 else rgb[..., 0], cmap=None if rgb.shape[-1] == 3 else "gray")
        arm = "treated" if sal["treated"][j] else "control"
        axes[0, j].set_title(f"{arm}, e={sal['propensity'][j]:.2f}", fontsize=8)
        axes[1, j].imshow(np.sign(maps[j]) * np.log1p(np.abs(maps[j]) / (np.abs(maps[j]).max() + 1e-12) * 100), cmap="magma")
        for a in axes[:, j]:
            a.set_xticks([])
            a.set_yticks([])
    fig.suptitle(title or "Causal salience: |d logit(e) / d pixel|")
    return fig
