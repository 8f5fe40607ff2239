r"""Regression tables of several estimates side by side: text, Markdown, LaTeX and HTML.

One implementation for :func:`geocausal.etable` and :meth:`EstimateSet.etable`, in the spirit of
fixest's and pyfixest's ``etable``: one column per model, the estimate with significance stars
and, on the row below, its standard error in parentheses (or interval, t statistic, p-value);
then the number of observations, estimand, design, variance type and number of clusters; then
notes (what the parentheses hold, the variance of each model, the star legend).

Examples
--------
>>> import pandas as pd
>>> from geocausal.results.estimate import Estimate
>>> a = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.04]]), nobs=100, design="aipw")
>>> b = Estimate(pd.Series({"d": 0.5, "x": 2.0}), pd.DataFrame([[0.09, 0], [0, 1.0]]), nobs=80)
>>> print(etable(a, b, fmt="md", keep="^d$"))
|              | (1)         | (2)     |
|:-------------|:------------|:--------|
| d            | 1.000\*\*\* | 0.500\* |
|              | (0.200)     | (0.300) |
| Observations | 100         | 80      |
| Estimand     | ATE         | ATE     |
| Design       | aipw        |         |
| S.E. type    | hetero      | hetero  |
<BLANKLINE>
Standard errors in parentheses. S.E.: hetero. Significance: \* p<0.1, \*\* p<0.05, \*\*\* p<0.01.
"""

from __future__ import annotations

import html as _html
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError

FORMATS = ("frame", "text", "md", "markdown", "latex", "tex", "html")
BELOW = ("se", "ci", "t", "p", None)
DEFAULT_STARS = (0.1, 0.05, 0.01)

_BELOW_NOTE = {"se": "Standard errors in parentheses", "t": "t statistics in parentheses",
               "p": "p-values in parentheses"}


def _expand(items: Sequence[Any], names: Sequence[str] | None) -> tuple[list[Any], list[str]]:
    """Flatten Estimates and EstimateSets into (estimates, default model names)."""
    from geocausal.results.estimate import Estimate, EstimateSet

    ests: list[Any] = []
    heads: list[str] = []
    for j, item in enumerate(items):
        if isinstance(item, EstimateSet):
            ests.extend(item.estimates)
            heads.extend(item.names)
        elif isinstance(item, Estimate):
            ests.append(item)
            heads.append(f"({len(heads) + 1})")
        else:
            raise DataError(f"etable argument {j + 1} is a {type(item).__name__}; pass Estimate "
                            "or EstimateSet objects (the results of gc.<design>(...))")
    if not ests:
        raise DataError("etable needs at least one Estimate")
    if names is not None:
        names = [str(n) for n in ([names] if isinstance(names, str) else names)]
        if len(names) != len(ests):
            raise DataError(f"etable got {len(names)} model names for {len(ests)} models "
                            "(an EstimateSet counts one model per member)")
        heads = names
    if len(set(heads)) != len(heads):
        dup = sorted({h for h in heads if heads.count(h) > 1})
        raise DataError(f"etable model names {dup} repeat; give distinct names=")
    return ests, heads


def _patterns(value: str | Sequence[str] | None, what: str) -> list[re.Pattern] | None:
    if value is None:
        return None
    vals = [value] if isinstance(value, str) else list(value)
    out = []
    for v in vals:
        if not isinstance(v, str):
            raise DataError(f"etable {what}= takes regular expressions (strings), got "
                            f"{type(v).__name__}")
        try:
            out.append(re.compile(v))
        except re.error as err:
            raise DataError(f"etable {what}= pattern {v!r} is not a valid regular expression: "
                            f"{err}") from err
    return out


def _select_terms(all_terms: list[str], keep, drop) -> list[str]:
    """Terms after keep (in the order of the patterns) and drop (regular expressions)."""
    kp, dp = _patterns(keep, "keep"), _patterns(drop, "drop")
    terms = all_terms
    if kp is not None:
        ordered: list[str] = []
        for p in kp:
            ordered += [t for t in terms if p.search(t) and t not in ordered]
        terms = ordered
    if dp is not None:
        terms = [t for t in terms if not any(p.search(t) for p in dp)]
    return terms


def _check_stars(stars) -> tuple[float, ...]:
    if stars is None or stars is False:
        return ()
    if stars is True:
        return DEFAULT_STARS
    try:
        levels = tuple(float(s) for s in stars)
    except (TypeError, ValueError) as err:
        raise DataError(f"etable stars= must be levels like (0.1, 0.05, 0.01), got {stars!r}") \
            from err
    if any(not 0 < s < 1 for s in levels) or list(levels) != sorted(levels, reverse=True):
        raise DataError(f"etable stars= must be decreasing levels in (0, 1), got {stars!r}")
    return levels


def table_frame(
    *estimates: Any,
    names: Sequence[str] | None = None,
    keep: str | Sequence[str] | None = None,
    drop: str | Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    digits: int = 3,
    alpha: float = 0.05,
    below: str | None = "se",
    stars: Sequence[float] | bool | None = DEFAULT_STARS,
) -> tuple[pd.DataFrame, int, list[str]]:
    """The table as strings: (frame, number of coefficient rows, notes).

    The frame's index holds the row labels: a term (relabelled) for an estimate row, ``""``
    for the row below it, then ``N``, ``Estimand``, ``Design``, ``S.E. type`` and, when any
    model is clustered, ``Clusters``. See :func:`etable` for the parameters.

    Examples
    --------
    >>> import pandas as pd
    >>> from geocausal.results.estimate import Estimate
    >>> e = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.25]]), nobs=10)
    >>> frame, k, notes = table_frame(e)
    >>> frame.iloc[:2, 0].tolist(), k
    (['1.000**', '(0.500)'], 2)
    """
    ests, heads = _expand(estimates, names)
    if not isinstance(digits, int | np.integer) or isinstance(digits, bool) or not 0 <= digits <= 12:
        raise DataError(f"etable digits= must be an integer from 0 to 12, got {digits!r}")
    if not 0 < float(alpha) < 1:
        raise DataError(f"etable alpha= must be in (0, 1), got {alpha!r}")
    if below not in BELOW:
        raise DataError(f"etable below= must be one of {BELOW}, got {below!r}")
    levels = _check_stars(stars)
    labels = dict(labels or {})
    bad = [k for k, v in labels.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise DataError(f"etable labels= maps term names to strings; bad entries {bad}")
    tidies = [e.tidy(alpha).set_index("term") for e in ests]
    all_terms: list[str] = []
    for t in tidies:
        all_terms += [str(x) for x in t.index if str(x) not in all_terms]
    unknown = sorted(set(labels) - set(all_terms))
    if unknown:
        raise DataError(f"etable labels= names terms {unknown} that no model has; terms are "
                        f"{all_terms}")
    terms = _select_terms(all_terms, keep, drop)
    if not terms:
        raise DataError(f"etable keep=/drop= leave no terms; terms are {all_terms}")
    # relabelled rows: terms that share a label merge across models, never within one
    rows: dict[str, list[str]] = {}
    for t in terms:
        rows.setdefault(labels.get(t, t), []).append(t)
    for lab, group in rows.items():
        for head, tid in zip(heads, tidies):
            hit = [t for t in group if t in tid.index]
            if len(hit) > 1:
                raise DataError(f"etable labels= gives terms {hit} of model {head} the same "
                                f"label {lab!r}; one model's terms need distinct labels")
    f = f"{{:.{digits}f}}"
    body: list[tuple[str, list[str]]] = []
    for lab, group in rows.items():
        top, bottom = [], []
        for tid in tidies:
            hit = [t for t in group if t in tid.index]
            if not hit:
                top.append("")
                bottom.append("")
                continue
            r = tid.loc[hit[0]]
            p = float(r.p_value)
            star = "*" * sum(p < s for s in levels) if np.isfinite(p) else ""
            top.append(f.format(r.estimate) + star)
            if below == "se":
                bottom.append("(" + f.format(r.std_error) + ")")
            elif below == "ci":
                bottom.append("[" + f.format(r.conf_low) + ", " + f.format(r.conf_high) + "]")
            elif below == "t":
                bottom.append("(" + f.format(r.statistic) + ")")
            elif below == "p":
                bottom.append("(" + f.format(r.p_value) + ")")
        body.append((lab, top))
        if below is not None:
            body.append(("", bottom))
    n_coef = len(body)
    body.append(("N", [f"{int(e.nobs):,}" for e in ests]))
    body.append(("Estimand", [str(e.estimand) for e in ests]))
    body.append(("Design", [str(e.design) for e in ests]))
    body.append(("S.E. type", [str(e.vcov_type) for e in ests]))
    n_cl = [getattr(e, "n_clusters", None) for e in ests]
    if any(g is not None for g in n_cl):
        body.append(("Clusters", ["" if g is None else f"{int(g):,}" for g in n_cl]))
    frame = pd.DataFrame([r for _, r in body], index=[lab for lab, _ in body], columns=heads)
    return frame, n_coef, _notes(ests, heads, below, alpha, levels)


def _notes(ests, heads, below, alpha, levels) -> list[str]:
    notes = []
    if below == "ci":
        notes.append(f"{100 * (1 - alpha):g}% confidence intervals in brackets")
    elif below is not None:
        notes.append(_BELOW_NOTE[below])
    kinds = []
    for e in ests:
        g = getattr(e, "n_clusters", None)
        kinds.append(str(e.vcov_type) + ("" if g is None else f" ({int(g):,} clusters)"))
    if len(set(kinds)) == 1:
        notes.append(f"S.E.: {kinds[0]}")
    else:
        notes.append("S.E.: " + "; ".join(f"{h} {k}" for h, k in zip(heads, kinds)))
    tdist = [f"{h} t({e.dof})" for h, e in zip(heads, ests) if e.dof]
    if tdist:
        notes.append("Tests use t critical values: " + ", ".join(tdist))
    nonzero = [f"{h} {t} = {float(v):g}" for h, e in zip(heads, ests)
               for t, v in e.null.items() if float(v) != 0]
    if nonzero:
        notes.append("Tested against non-zero null values: " + ", ".join(nonzero))
    if levels:
        legend = ", ".join(f"{'*' * (j + 1)} p<{s:g}" for j, s in enumerate(levels))
        notes.append("Significance: " + legend)
    return notes


def etable(
    *estimates: Any,
    fmt: str = "text",
    names: Sequence[str] | None = None,
    keep: str | Sequence[str] | None = None,
    drop: str | Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    digits: int = 3,
    alpha: float = 0.05,
    below: str | None = "se",
    stars: Sequence[float] | bool | None = DEFAULT_STARS,
    caption: str | None = None,
    label: str | None = None,
) -> str | pd.DataFrame:
    r"""Several estimates side by side, as fixest's ``etable``.

    Parameters
    ----------
    *estimates
        :class:`~geocausal.results.estimate.Estimate` objects; an
        :class:`~geocausal.results.estimate.EstimateSet` adds one column per member.
    fmt
        ``"text"`` (default), ``"md"`` (``"markdown"``), ``"latex"`` (``"tex"``; booktabs),
        ``"html"`` (strings) or ``"frame"`` (a DataFrame of the cells).
    names
        Model (column) names; default ``(1), (2), ...`` and an EstimateSet's own names.
    keep, drop
        Regular expressions (``re.search``) of the terms to keep (rows in the order of the
        patterns) or to drop.
    labels
        ``{term: label}``; terms of different models with the same label share a row.
    digits
        Decimals of estimates and standard errors.
    alpha
        Level of the intervals when ``below="ci"``.
    below
        What goes under each estimate: ``"se"`` (default), ``"ci"``, ``"t"``, ``"p"`` or None.
    stars
        Decreasing p-value levels for ``*``, ``**``, ``***``; None or False for no stars.
        Each estimate is tested against its own null value (``Estimate.null``).
    caption, label
        LaTeX and HTML caption, LaTeX ``\label``.

    Returns
    -------
    str or pandas.DataFrame

    Examples
    --------
    >>> import pandas as pd
    >>> from geocausal.results.estimate import Estimate
    >>> e = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.25]]), nobs=10)
    >>> tex = etable(e, fmt="latex")
    >>> "\\toprule" in tex and "\\bottomrule" in tex
    True
    """
    key = str(fmt).lower()
    if key not in FORMATS:
        raise DataError(f"etable fmt={fmt!r} is not one of {FORMATS}")
    frame, n_coef, notes = table_frame(*estimates, names=names, keep=keep, drop=drop,
                                       labels=labels, digits=digits, alpha=alpha, below=below,
                                       stars=stars)
    if key == "frame":
        return frame
    if key == "text":
        return _text(frame, n_coef, notes)
    if key in ("md", "markdown"):
        return _markdown(frame, notes)
    if key in ("latex", "tex"):
        return _latex(frame, n_coef, notes, caption, label)
    return _html_table(frame, n_coef, notes, caption)


def _display_index(frame: pd.DataFrame) -> list[str]:
    return ["Observations" if i == "N" else str(i) for i in frame.index]


def _text(frame: pd.DataFrame, n_coef: int, notes: list[str]) -> str:
    idx = _display_index(frame)
    w0 = max(len(s) for s in idx)
    widths = [max(len(str(c)), *(len(v) for v in frame[c])) for c in frame.columns]

    def line(lab: str, cells) -> str:
        return (lab.ljust(w0) + "  " + "  ".join(v.rjust(w) for v, w in zip(cells, widths))).rstrip()

    head = line("", [str(c) for c in frame.columns])
    rule = "-" * len(line("x" * w0, ["x" * w for w in widths]))
    out = [head, rule]
    for j, (lab, row) in enumerate(zip(idx, frame.to_numpy())):
        if j == n_coef:
            out.append(rule)
        out.append(line(lab, row))
    out.append(rule)
    out += [n + "." for n in notes]
    return "\n".join(out)


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("*", "\\*")


def _markdown(frame: pd.DataFrame, notes: list[str]) -> str:
    idx = _display_index(frame)
    cols = [_md_escape(c) for c in frame.columns]
    cells = [[_md_escape(v) for v in (lab, *row)] for lab, row in zip(idx, frame.to_numpy().tolist())]
    widths = [max(len(r[j]) for r in [["", *cols], *cells]) for j in range(len(cols) + 1)]

    def line(r) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |"

    out = [line(["", *cols]), "|" + "|".join(":" + "-" * (w + 1) for w in widths) + "|"]
    out += [line(r) for r in cells]
    return "\n".join(out) + "\n\n" + _md_escape(". ".join(notes) + ".")


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "<": r"\textless{}", ">": r"\textgreater{}"}


def tex_escape(s: str) -> str:
    r"""Escape LaTeX special characters.

    Examples
    --------
    >>> print(tex_escape("x_1 & 50%"))
    x\_1 \& 50\%
    """
    return "".join(_TEX.get(ch, ch) for ch in str(s))


def _tex_cell(v: str) -> str:
    m = re.fullmatch(r"(.*?)(\*+)", v)
    if m:
        return tex_escape(m.group(1)) + "$^{" + m.group(2) + "}$"
    return tex_escape(v)


def _latex(frame: pd.DataFrame, n_coef: int, notes: list[str], caption: str | None,
           label: str | None) -> str:
    k = frame.shape[1]
    idx = _display_index(frame)
    out = [r"\begin{table}[htbp]", r"\centering"]
    if caption:
        out.append(r"\caption{" + tex_escape(caption) + "}")
    if label:
        out.append(r"\label{" + label + "}")
    out += [r"\begin{tabular}{l" + "c" * k + "}", r"\toprule"]
    out.append(" & " + " & ".join(tex_escape(str(c)) for c in frame.columns) + r" \\")
    out.append(r"\midrule")
    for j, (lab, row) in enumerate(zip(idx, frame.to_numpy())):
        if j == n_coef:
            out.append(r"\midrule")
        out.append(tex_escape(lab) + " & " + " & ".join(_tex_cell(v) for v in row) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    out.append(r"\par\smallskip")
    out.append(r"\begin{minipage}{0.95\linewidth}\footnotesize")
    out.append(r"\textit{Notes:} " + ". ".join(_tex_note(n) for n in notes) + ".")
    out += [r"\end{minipage}", r"\end{table}"]
    return "\n".join(out)


def _tex_note(note: str) -> str:
    # star legend: keep the stars as superscripts, escape the rest
    parts = re.split(r"(\*+)", note)
    return "".join("$^{" + p + "}$" if p and set(p) == {"*"} else tex_escape(p) for p in parts)


def _html_table(frame: pd.DataFrame, n_coef: int, notes: list[str], caption: str | None) -> str:
    e = _html.escape
    idx = _display_index(frame)
    out = ['<table class="geocausal-etable">']
    if caption:
        out.append(f"<caption>{e(caption)}</caption>")
    out.append("<thead><tr><th></th>" + "".join(f"<th>{e(str(c))}</th>" for c in frame.columns)
               + "</tr></thead>")
    out.append("<tbody>")
    for j, (lab, row) in enumerate(zip(idx, frame.to_numpy())):
        if j == n_coef:
            out.append("</tbody><tbody>")
        out.append(f"<tr><th>{e(lab)}</th>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>")
    out.append("</tbody>")
    out.append(f'<tfoot><tr><td colspan="{frame.shape[1] + 1}">'
               + e(". ".join(notes) + ".") + "</td></tr></tfoot>")
    out.append("</table>")
    return "\n".join(out)


def pipe_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub pipe table of ``frame`` (floats with ``digits`` decimals), no index.

    Used by the Monte Carlo scripts and pipelines to record their tables.

    Examples
    --------
    >>> print(pipe_table(pd.DataFrame({"n": [200], "coverage": [0.9513]}), digits=3))
    | n | coverage |
    |---|---|
    | 200 | 0.951 |
    """
    cells = [[f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
             for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * frame.shape[1]]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
