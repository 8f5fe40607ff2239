"""Figures for panel double machine learning: simulated estimates per approach, and the
estimates of each cross-fitting repetition.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import pandas as pd
>>> reps = pd.DataFrame({"approach": ["cre", "cre", "pooled", "pooled"],
...                      "estimate": [1.0, 1.1, 1.2, 1.3]})
>>> ax = estimates_boxplot(reps, truth=1.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def estimates_boxplot(reps: pd.DataFrame, truth: float | None = None,
                      order: Sequence[str] | None = None, ax=None, title: str | None = None,
                      reference: dict[str, float] | None = None):
    """Box plots of simulated estimates per approach, with the truth and optional reference
    medians (e.g. those read off a paper's figure) as red crosses.

    Parameters
    ----------
    reps
        Rows with columns ``approach`` and ``estimate``.
    truth
        The true effect (a dashed line).
    order
        Approaches to show, top to bottom (default: by median).
    reference
        ``{approach: median}`` to mark.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.5 * reps["approach"].nunique() + 1.5))
    med = reps.groupby("approach")["estimate"].median()
    order = list(order) if order is not None else list(med.sort_values().index)
    data = [reps.loc[reps["approach"] == a, "estimate"].to_numpy() for a in order]
    ax.boxplot(data, vert=False, showfliers=True)
    ax.set_yticks(np.arange(1, len(order) + 1), order)
    if truth is not None:
        ax.axvline(truth, color="k", ls="--", lw=1, label="truth")
    if reference:
        pts = [(reference[a], i + 1) for i, a in enumerate(order) if a in reference]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, "x", color="tab:red", label="paper median")
    ax.set_xlabel("estimate")
    if title:
        ax.set_title(title)
    ax.legend(loc="lower right")
    ax.invert_yaxis()
    return ax


def repetition_plot(estimate, ax=None):
    """Per-repetition estimates with their intervals, and the aggregated one at the bottom."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    th = np.asarray(estimate.diagnostics["thetas"])[:, 0]
    se = np.asarray(estimate.diagnostics["ses"])[:, 0]
    y = np.arange(th.size)
    ax.errorbar(th, y, xerr=1.96 * se, fmt="o", color="grey", capsize=2, label="repetition")
    agg, agg_se = float(estimate.params.iloc[0]), float(estimate.std_errors.iloc[0])
    ax.errorbar([agg], [th.size], xerr=[1.96 * agg_se], fmt="s", color="k", capsize=3,
                label="median aggregate")
    ax.set_yticks(list(y) + [th.size], [f"rep {r + 1}" for r in y] + ["aggregate"])
    ax.invert_yaxis()
    ax.set_xlabel(str(estimate.params.index[0]))
    ax.legend(loc="best")
    return ax
