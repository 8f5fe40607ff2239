"""Shared matplotlib plots: coefficient plots and function-valued estimate curves.

Design-specific figures live beside their design (``results/plot_<design>.py``).

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import pandas as pd
>>> t = pd.DataFrame({"term": ["a"], "estimate": [1.0], "conf_low": [0.5], "conf_high": [1.5]})
>>> ax = coef_plot(t)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def axes_or_new(ax, size: tuple[float, float] = (6, 4)):
    """``ax``, or the axes of a new figure of ``size`` inches."""
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def coef_plot(tidy: pd.DataFrame, ax=None, truth: float | None = None, title: str | None = None,
              null: float | Sequence[float] | np.ndarray = 0.0):
    """Point estimates with confidence intervals, one row per term.

    ``null`` is the reference value of the tests (one number, or one per row: AUCs are tested
    against 0.5); a common value is drawn as a vertical line, per-row values as short marks.
    """
    ax = axes_or_new(ax)
    y = range(len(tidy))
    ax.errorbar(tidy["estimate"], y,
                xerr=[tidy["estimate"] - tidy["conf_low"], tidy["conf_high"] - tidy["estimate"]],
                fmt="o", color="k", capsize=3)
    ax.set_yticks(list(y), tidy["term"])
    ref = np.broadcast_to(np.asarray(null, dtype=float), (len(tidy),))
    if len(tidy) == 0 or np.all(ref == ref[0]):
        ax.axvline(float(ref[0]) if len(tidy) else 0.0, color="grey", lw=0.8, ls=":")
    else:
        ax.vlines(ref, [i - 0.4 for i in y], [i + 0.4 for i in y], color="grey", lw=0.8,
                  ls=":")
    if truth is not None:
        ax.axvline(truth, color="tab:red", lw=1, ls="--", label="truth")
        ax.legend()
    if title:
        ax.set_title(title)
    ax.invert_yaxis()
    return ax


def curve_plot(curve: pd.DataFrame, ax=None, x: str | None = None, title: str | None = None):
    """A function-valued estimate with pointwise (and uniform, if present) bands."""
    ax = axes_or_new(ax)
    x = x or curve.columns[0]
    ax.plot(curve[x], curve["estimate"], color="k", label="estimate")
    if {"uniform_low", "uniform_high"} <= set(curve.columns):
        ax.fill_between(curve[x], curve["uniform_low"], curve["uniform_high"], alpha=0.2,
                        color="tab:blue", label="uniform band")
    if {"conf_low", "conf_high"} <= set(curve.columns):
        ax.fill_between(curve[x], curve["conf_low"], curve["conf_high"], alpha=0.35,
                        color="tab:blue", label="pointwise CI")
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(x)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def save(fig_or_ax, path: str | Path) -> Path:
    """Save a figure (or an axes' figure) to ``path``, creating folders, and close it."""
    fig = fig_or_ax.figure if hasattr(fig_or_ax, "figure") and not hasattr(fig_or_ax, "savefig") else fig_or_ax
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
