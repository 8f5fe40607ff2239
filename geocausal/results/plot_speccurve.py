"""The specification-curve figure (Simonsohn, Simmons and Nelson 2020).

Top panel: the estimates of every successful specification, sorted, with their intervals and a
reference line at the null (filled markers where the interval excludes it). Bottom panel: one
row per option of each choice, a mark where the specification above uses that option, so the
choices behind large and small estimates can be read off. Failed specifications are left out
and counted in the title.

Examples
--------
>>> import pandas as pd
>>> from geocausal.speccurve import SpecCurve
>>> t = pd.DataFrame({"spec": [0, 1], "trim": ["None", "0.05"], "term": ["d", "d"],
...                   "estimate": [1.0, 0.8], "conf_low": [0.5, -0.1],
...                   "conf_high": [1.5, 1.7], "status": ["ok", "ok"]})
>>> sc = SpecCurve(t, (None, None), {"trim": ("None", "0.05")}, design="aipw")
>>> fig = spec_curve_plot(sc)
>>> fig.axes[0].get_ylabel(), fig.axes[1].get_xlabel()
('estimate of d (95% CI)', 'specification (sorted by estimate)')
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geocausal.errors import DataError
from geocausal.results.plot import level_text, new_figure


def spec_curve_plot(curve: Any, term: str | None = None, null: float | None = None,
                    title: str | None = None, size: tuple[float, float] | None = None,
                    ylabel: str | None = None, truth: float | None = None):
    """Draw a :class:`~geocausal.speccurve.SpecCurve`: sorted estimates over the choices.

    Parameters
    ----------
    curve
        A :class:`~geocausal.speccurve.SpecCurve`.
    term
        The term to draw; needed when the curve has several.
    null
        Height of the reference line; default the term's null value (0 for most estimands).
    title
        Figure title; default names the design and counts the specifications shown and failed.
    size
        Figure size in inches; default grows with the number of options.
    ylabel
        Label of the estimates' axis; default ``"estimate of <term> (95% CI)"``.
    truth
        A known true value (simulations), drawn as a green line.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    DataError
        ``term`` is missing or not in the curve, or no specification succeeded.
    """
    tab = curve.table
    terms = [t for t in dict.fromkeys(tab["term"]) if t != ""]
    if term is None:
        if len(terms) != 1:
            raise DataError(f"the curve has terms {terms}; choose one with term=")
        term = terms[0]
    elif term not in terms:
        raise DataError(f"term={term!r} is not in the curve; terms: {terms}")
    rows = tab[tab["term"] == term]
    ok = rows[rows["status"] == "ok"].sort_values("estimate", kind="stable")
    if ok.empty:
        raise DataError(f"no specification of term {term!r} succeeded; see the table's "
                        "'error' column")
    n_failed = int((rows["status"] != "ok").sum())
    ref = float(curve.nulls.get(term, 0.0)) if null is None else float(null)
    options = [(c, lab) for c, labs in curve.choices.items() for lab in labs]
    k = len(ok)
    fig, (top, bottom) = new_figure(
        2, 1, size=size or (max(6.0, min(14.0, 3 + 0.12 * k)), 3.2 + 0.28 * len(options)),
        sharex=True, gridspec_kw={"height_ratios": [3.0, max(1.0, 0.35 * len(options))]})
    x = np.arange(1, k + 1)
    est = ok["estimate"].to_numpy(float)
    lo, hi = ok["conf_low"].to_numpy(float), ok["conf_high"].to_numpy(float)
    sig = (lo > ref) | (hi < ref)
    top.vlines(x, lo, hi, color=np.where(sig, "tab:blue", "0.6"), lw=1.2)
    top.scatter(x[sig], est[sig], color="tab:blue", s=18, zorder=3,
                label="interval excludes the null")
    top.scatter(x[~sig], est[~sig], facecolor="white", edgecolor="0.4", s=18, zorder=3,
                label="interval covers the null")
    top.axhline(ref, color="black", ls="--", lw=0.8)
    top.axhline(float(np.median(est)), color="tab:red", ls=":", lw=0.8,
                label=f"median {np.median(est):.3g}")
    if truth is not None:
        top.axhline(float(truth), color="tab:green", lw=1.0, label=f"truth {float(truth):.3g}")
    top.set_ylabel(ylabel or f"estimate of {term}{level_text(1 - curve.alpha)}")
    top.legend(loc="best", fontsize="small", frameon=True, framealpha=0.8)
    ypos = {opt: len(options) - 1 - i for i, opt in enumerate(options)}
    for c in curve.choices:
        used = ok[c].astype(str).to_numpy()
        bottom.scatter(x, [ypos[(c, u)] for u in used], marker="|", s=60, color="black")
    bounds = np.cumsum([len(v) for v in curve.choices.values()])[:-1]
    for b in bounds:
        bottom.axhline(len(options) - b - 0.5, color="0.75", lw=0.8)
    bottom.set_yticks([ypos[o] for o in options],
                      [f"{c} = {lab}" for c, lab in options], fontsize="small")
    bottom.set_ylim(-0.5, len(options) - 0.5)
    bottom.set_xlim(0.5, k + 0.5)
    bottom.set_xlabel("specification (sorted by estimate)")
    bottom.set_ylabel("choices")
    failed = f", {n_failed} failed (not shown)" if n_failed else ""
    top.set_title(title or f"Specification curve: {curve.design}, {k} specifications{failed}")
    fig.tight_layout()
    return fig
