"""Figures for panel double machine learning: simulated estimates per approach, and the
estimates of each cross-fitting repetition.

Examples
--------
>>> import pandas as pd
>>> reps = pd.DataFrame({"approach": ["cre", "cre", "pooled", "pooled"],
...                      "estimate": [1.0, 1.1, 1.2, 1.3]})
>>> fig = estimates_boxplot(reps, truth=1.0)
>>> fig.axes[0].get_xlabel()
'estimate'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm

from geocausal.errors import DataError
from geocausal.results.plot import level_text, new_figure


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
        _, ax = new_figure(size=(7, 0.5 * reps["approach"].nunique() + 1.5))
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
    ax.set_ylabel("approach")
    if title:
        ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    ax.invert_yaxis()
    return ax.figure


def repetition_plot(estimate, ax=None, level: float = 0.95):
    """Per-repetition estimates with their ``level`` intervals (normal), and the aggregated
    one at the bottom; the legend sits outside the axes so it covers no interval.
    """
    if "thetas" not in estimate.diagnostics or "ses" not in estimate.diagnostics:
        raise DataError("repetition_plot needs a gc.dml_panel Estimate (diagnostics 'thetas' "
                        "and 'ses')")
    lt = level_text(level)
    z = float(norm.ppf(0.5 + level / 2))
    th = np.asarray(estimate.diagnostics["thetas"])[:, 0]
    se = np.asarray(estimate.diagnostics["ses"])[:, 0]
    if ax is None:
        _, ax = new_figure(size=(6.5, 0.3 * th.size + 2))
    y = np.arange(th.size)
    ax.errorbar(th, y, xerr=z * se, fmt="o", color="grey", capsize=2, label="repetition")
    agg, agg_se = float(estimate.params.iloc[0]), float(estimate.std_errors.iloc[0])
    ax.errorbar([agg], [th.size], xerr=[z * agg_se], fmt="s", color="k", capsize=3,
                label="median aggregate")
    ax.set_yticks(list(y) + [th.size], [f"rep {r + 1}" for r in y] + ["aggregate"])
    ax.invert_yaxis()
    ax.set_xlabel(f"{estimate.params.index[0]}{lt}")
    ax.set_ylabel("cross-fitting repetition")
    ax.set_title(f"{estimate.estimand} per repetition")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return ax.figure
