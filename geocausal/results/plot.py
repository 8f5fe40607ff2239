"""Shared matplotlib plots: coefficient plots and function-valued estimate curves.

Design-specific figures live beside their design (``results/plot_<design>.py``). No module
here sets a matplotlib backend: figures render inline in Jupyter and in whatever backend the
user chose elsewhere. Every plot function returns its :class:`~matplotlib.figure.Figure`
(the figure of ``ax`` when one is given). Figures this package creates are
:class:`GeoFigure`: in a notebook each is shown exactly once, whether it is the last
expression of a cell, assigned to a name or neither.

Examples
--------
>>> import pandas as pd
>>> t = pd.DataFrame({"term": ["a"], "estimate": [1.0], "conf_low": [0.5], "conf_high": [1.5]})
>>> fig = coef_plot(t, level=0.95)
>>> fig.axes[0].get_xlabel()
'estimate (95% CI)'
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from geocausal.errors import DataError


class GeoFigure(Figure):
    """A :class:`~matplotlib.figure.Figure` that Jupyter shows once.

    With the inline backend, a figure returned as a cell's last expression is otherwise drawn
    twice (once as the cell's result, once when the backend flushes open figures). This class
    renders itself as PNG when displayed and then leaves pyplot's list of open figures, so the
    flush does not draw it again. Outside the inline backend it displays as plain text, like any
    Figure.
    """

    def _ipython_display_(self) -> None:
        from IPython.display import display

        text = repr(self)
        if "inline" not in str(matplotlib.get_backend()).lower():
            display({"text/plain": text}, raw=True)
            return
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        plt.close(self)  # leaves pyplot's open figures (a no-op when it is not there)
        display({"image/png": buf.getvalue(), "text/plain": text}, raw=True)


def new_figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6, 4), **kwargs):
    """A new :class:`GeoFigure` and its axes (``plt.subplots`` arguments)."""
    return plt.subplots(nrows, ncols, figsize=size, FigureClass=GeoFigure, **kwargs)


def axes_or_new(ax, size: tuple[float, float] = (6, 4)):
    """``ax``, or the axes of a new :class:`GeoFigure` of ``size`` inches."""
    if ax is None:
        _, ax = new_figure(size=size)
    return ax


def level_text(level: float | None) -> str:
    """``" (95% CI)"`` for ``level=0.95``; empty when unknown."""
    if level is None:
        return ""
    if not 0 < float(level) < 1:
        raise DataError(f"a confidence level must lie in (0, 1), got {level!r}")
    pct = 100 * float(level)
    return f" ({pct:.0f}% CI)" if abs(pct - round(pct)) < 1e-9 else f" ({pct:g}% CI)"


def coef_plot(tidy: pd.DataFrame, ax=None, truth: float | None = None, title: str | None = None,
              null: float | Sequence[float] | np.ndarray = 0.0, level: float | None = None,
              xlabel: str = "estimate"):
    """Point estimates with confidence intervals, one row per term.

    Parameters
    ----------
    tidy
        Columns ``term``, ``estimate``, ``conf_low``, ``conf_high``.
    ax
        Axes to draw on (default: a new figure).
    truth
        A true value, drawn as a dashed red line.
    title
        Axes title.
    null
        Reference value of the tests (one number, or one per row: AUCs are tested against 0.5);
        a common value is drawn as a vertical line, per-row values as short marks.
    level
        Confidence level of the intervals, stated in the x label (e.g. ``0.95``).
    xlabel
        X-axis label (the level is appended).

    Returns
    -------
    matplotlib.figure.Figure
    """
    missing = {"term", "estimate", "conf_low", "conf_high"} - set(tidy.columns)
    if missing:
        raise DataError(f"coef_plot needs columns {sorted(missing)} in the tidy table")
    ax = axes_or_new(ax, (6, max(2.5, 0.35 * len(tidy) + 1.2)))
    y = range(len(tidy))
    ax.errorbar(tidy["estimate"], y,
                xerr=[tidy["estimate"] - tidy["conf_low"], tidy["conf_high"] - tidy["estimate"]],
                fmt="o", color="k", capsize=3, label=f"estimate{level_text(level)}")
    ax.set_yticks(list(y), tidy["term"])
    ref = np.broadcast_to(np.asarray(null, dtype=float), (len(tidy),))
    if len(tidy) == 0 or np.all(ref == ref[0]):
        ax.axvline(float(ref[0]) if len(tidy) else 0.0, color="grey", lw=0.8, ls=":")
    else:
        ax.vlines(ref, [i - 0.4 for i in y], [i + 0.4 for i in y], color="grey", lw=0.8,
                  ls=":")
    if truth is not None:
        ax.axvline(truth, color="tab:red", lw=1, ls="--", label="truth")
        ax.legend(fontsize=8)
    ax.set_xlabel(f"{xlabel}{level_text(level)}")
    ax.set_ylabel("term")
    if title:
        ax.set_title(title)
    ax.invert_yaxis()
    return ax.figure


def curve_plot(curve: pd.DataFrame, ax=None, x: str | None = None, title: str | None = None,
               level: float | None = None, ylabel: str = "estimate"):
    """A function-valued estimate with pointwise (and uniform, if present) bands.

    ``level`` is the confidence level of both bands, stated in their legend labels. Returns the
    Figure.
    """
    ax = axes_or_new(ax)
    x = x or curve.columns[0]
    lv = level_text(level).strip(" ()").replace(" CI", "")
    lv = f"{lv} " if lv else ""
    ax.plot(curve[x], curve["estimate"], color="k", label="estimate")
    if {"uniform_low", "uniform_high"} <= set(curve.columns):
        ax.fill_between(curve[x], curve["uniform_low"], curve["uniform_high"], alpha=0.2,
                        color="tab:blue", label=f"{lv}uniform band")
    if {"conf_low", "conf_high"} <= set(curve.columns):
        ax.fill_between(curve[x], curve["conf_low"], curve["conf_high"], alpha=0.35,
                        color="tab:blue", label=f"{lv}pointwise CI")
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax.figure


def _title(est) -> str:
    design = getattr(est, "design", "") or ""
    return f"{est.estimand} ({design})" if design else str(est.estimand)


def estimate_plot(est, ax=None, alpha: float = 0.05, title: str | None = None, **kwargs):
    """The figure of ``Estimate.plot()``: a curve for function-valued estimands, else a
    coefficient plot, titled with the estimand and design and stating the CI level.

    Parameters
    ----------
    est
        An :class:`~geocausal.results.estimate.Estimate`.
    alpha
        1 - confidence level of the intervals (a curve keeps the level it was fitted with, read
        from ``provenance["alpha"]`` when recorded).
    title
        Default: ``"<estimand> (<design>)"``.
    **kwargs
        Passed to :func:`coef_plot` or :func:`curve_plot`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from geocausal.results.estimate import Estimate
    >>> est = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.04]], ["d"], ["d"]), design="ipw")
    >>> ax = estimate_plot(est).axes[0]
    >>> ax.get_title(), ax.get_xlabel()
    ('ATE (ipw)', 'ATE (95% CI)')
    """
    if not 0 < float(alpha) < 1:
        raise DataError(f"alpha must lie in (0, 1), got {alpha!r}")
    title = _title(est) if title is None else title
    if est.curve is not None:
        a = (getattr(est, "provenance", {}) or {}).get("alpha")
        kwargs.setdefault("level", None if a is None else 1 - float(a))
        kwargs.setdefault("ylabel", str(est.estimand))
        return curve_plot(est.curve, ax=ax, title=title, **kwargs)
    kwargs.setdefault("null", est.null.to_numpy())
    kwargs.setdefault("xlabel", str(est.estimand))
    return coef_plot(est.tidy(alpha), ax=ax, title=title, level=1 - alpha, **kwargs)


def estimate_set_plot(es, ax=None, alpha: float = 0.05, title: str | None = None, **kwargs):
    """The figure of ``EstimateSet.plot()``: every estimate's terms as ``model: term`` rows.

    Examples
    --------
    >>> import pandas as pd
    >>> from geocausal.results.estimate import Estimate, EstimateSet
    >>> e = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.04]], ["d"], ["d"]))
    >>> es = EstimateSet((e, e), ("a", "b"))
    >>> estimate_set_plot(es).axes[0].get_xlabel()
    'ATE (95% CI)'
    """
    if not 0 < float(alpha) < 1:
        raise DataError(f"alpha must lie in (0, 1), got {alpha!r}")
    t = es.tidy(alpha)
    if len(t):
        t["term"] = t["model"] + ": " + t["term"]
    ests = list(es.estimates)
    if ests:
        kwargs.setdefault("null", np.concatenate([e.null.to_numpy() for e in ests]))
    kinds = sorted({str(e.estimand) for e in ests})
    kwargs.setdefault("xlabel", kinds[0] if len(kinds) == 1 else "estimate")
    if title is None:
        title = f"{', '.join(kinds)} by model" if kinds else "estimates"
    return coef_plot(t, ax=ax, title=title, level=1 - alpha, **kwargs)


def save(fig_or_ax, path: str | Path) -> Path:
    """Save a figure (or an axes' figure, or the first of an array of axes) to ``path``,
    creating folders, and close it.
    """
    obj = fig_or_ax
    if isinstance(obj, np.ndarray):
        obj = obj.flat[0]
    fig = obj if isinstance(obj, Figure) else obj.figure
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
