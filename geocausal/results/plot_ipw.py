"""Figures for weighting designs: propensity overlap by arm, a love plot of balance, and
causal salience maps of an image propensity model.

Both accept either an :class:`~geocausal.results.estimate.Estimate` from ``gc.ipw`` /
``gc.aipw`` (reading its diagnostics) or the raw arrays / table.

Examples
--------
>>> import numpy as np, pandas as pd
>>> fig = overlap_plot(np.array([.2, .4, .6, .7]), np.array([0, 0, 1, 1]))
>>> t = pd.DataFrame({"term": ["x"], "smd_unweighted": [.5], "smd_weighted": [.02]})
>>> love_plot(t).axes[0].get_xlabel()
'|standardised mean difference|'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError
from geocausal.results.plot import axes_or_new, new_figure


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
    return ax.figure


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
    ax.axvline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_yticks(y, t["term"])
    ax.set_xlabel("|standardised mean difference|")
    ax.set_ylabel("covariate")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "Covariate balance")
    return ax.figure


def rgb_bands(n_bands: int, bands: Sequence[int] | None = None, roles: Any = None
              ) -> list[int]:
    """Chip bands shown as red, green, blue.

    ``bands`` when given (checked against ``n_bands``); else the bands whose roles are
    ``red``, ``green`` and ``blue`` (``roles``: a :class:`~geocausal.features.roles.BandRoles`
    or a mapping role -> 0-based band); else the first three bands in the order given (one
    grey band when there are fewer than three).

    Examples
    --------
    >>> rgb_bands(4), rgb_bands(4, roles={"blue": 0, "green": 1, "red": 2}), rgb_bands(1)
    ([0, 1, 2], [2, 1, 0], [0])
    """
    if bands is not None:
        b = [int(c) for c in bands]
        bad = [c for c in b if not 0 <= c < n_bands]
        if bad or len(b) not in (1, 3):
            raise DataError(f"bands {list(bands)} must be 1 or 3 indices in 0..{n_bands - 1}")
        return b
    r = getattr(roles, "roles", roles)
    if isinstance(r, Mapping) and all(k in r for k in ("red", "green", "blue")):
        b = [int(r[k]) for k in ("red", "green", "blue")]
        if all(0 <= c < n_bands for c in b):
            return b
    return [0, 1, 2] if n_bands >= 3 else [0]


def stretch(img: np.ndarray) -> np.ndarray:
    """2-98 percentile stretch of an image to [0, 1] (constant images become 0)."""
    v = np.asarray(img, dtype=float)
    lo, hi = np.nanpercentile(v, 2), np.nanpercentile(v, 98)
    return np.clip((v - lo) / (hi - lo if hi > lo else 1.0), 0, 1)


def salience_plot(estimate_or_salience, bands: Sequence[int] | None = None,
                  title: str | None = None, roles: Any = None):
    """Each explained unit's image (first period) above its salience map, with a colorbar.

    Takes an Estimate whose ``diagnostics["salience"]`` came from a JAX image propensity
    learner, or that dict itself. The salience is the L2 norm over bands of the gradient of
    the propensity logit with respect to each pixel; it is shown as
    ``log(1 + 100 s / max s)``, with ``max s`` over all shown units, on one colour scale.

    Parameters
    ----------
    bands
        Chip bands drawn as red, green, blue; default: those with roles red, green, blue in
        ``roles`` (or in the salience dict's ``roles``), else the first three bands as given.
    roles
        Band roles (:class:`~geocausal.features.roles.BandRoles` or role -> band index).

    Returns
    -------
    matplotlib.figure.Figure
    """
    sal = estimate_or_salience
    if not isinstance(sal, dict):
        sal = getattr(estimate_or_salience, "diagnostics", {}).get("salience")
    if not isinstance(sal, dict):
        raise DataError(f"no salience maps to draw ({sal!r}); use an image propensity learner")
    imgs, maps = np.asarray(sal["images"], float), np.asarray(sal["maps"], float)
    if imgs.ndim == 5:  # (N, T, H, W, C): show the first period
        imgs, maps = imgs[:, 0], maps[:, 0] if maps.ndim == 4 else maps
    b = rgb_bands(imgs.shape[-1], bands, roles if roles is not None else sal.get("roles"))
    k = imgs.shape[0]
    top = float(np.abs(maps).max()) or 1.0
    shown = np.log1p(np.abs(maps) / top * 100)
    fig, axes = new_figure(2, k, size=(2.2 * k + 1.2, 4.8), squeeze=False)
    im = None
    for j in range(k):
        rgb = stretch(imgs[j][..., b])
        axes[0, j].imshow(rgb if rgb.shape[-1] == 3 else rgb[..., 0],
                          cmap=None if rgb.shape[-1] == 3 else "gray")
        arm = "treated" if sal["treated"][j] else "control"
        axes[0, j].set_title(f"{arm}, e={sal['propensity'][j]:.2f}", fontsize=8)
        im = axes[1, j].imshow(shown[j], cmap="magma", vmin=0, vmax=float(np.log1p(100)))
        for a in axes[:, j]:
            a.set_xticks([])
            a.set_yticks([])
    axes[0, 0].set_ylabel(f"bands {b} as RGB" if len(b) == 3 else f"band {b[0]}", fontsize=8)
    axes[1, 0].set_ylabel("salience", fontsize=8)
    fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.9, label="log(1 + 100 s / max s)")
    fig.suptitle(title or "Causal salience s = ||d logit(e) / d pixel||, log scale")
    return fig
