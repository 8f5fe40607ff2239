"""gc.etable: exact strings on a small case, LaTeX structure, keep/drop/relabel, stars, files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import geocausal as gc
from geocausal.errors import DataError
from geocausal.results.estimate import Estimate, EstimateSet
from geocausal.results.export import write_outputs


def _pair():
    # se 0.2 -> t = 5 (***); se 0.3 -> t = 1.667, p = 0.0956 (*); x: t = 2 (**)
    a = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.04]]), nobs=100, design="aipw")
    b = Estimate(pd.Series({"d": 0.5, "x_1": 2.0}), pd.DataFrame([[0.09, 0.0], [0.0, 1.0]]),
                 nobs=1200, design="fe", vcov_type="cluster(g)",
                 cluster_data={"g": np.repeat(np.arange(40), 30)})
    return a, b


def test_text_markdown_exact():
    a, b = _pair()
    assert b.n_clusters == 40
    text = gc.etable(a, b)
    assert text == "\n".join([
        "                   (1)         (2)",
        "----------------------------------",
        "d             1.000***      0.500*",
        "               (0.200)     (0.300)",
        "x_1                        2.000**",
        "                           (1.000)",
        "----------------------------------",
        "Observations       100       1,200",
        "Estimand           ATE         ATE",
        "Design            aipw          fe",
        "S.E. type       hetero  cluster(g)",
        "Clusters                        40",
        "----------------------------------",
        "Standard errors in parentheses.",
        "S.E.: (1) hetero; (2) cluster(g) (40 clusters).",
        "Significance: * p<0.1, ** p<0.05, *** p<0.01.",
    ])
    md = gc.etable(a, b, fmt="md", names=["A", "B"], keep="d", digits=2)
    assert md == "\n".join([
        "|              | A          | B          |",
        "|:-------------|:-----------|:-----------|",
        "| d            | 1.00\\*\\*\\* | 0.50\\*     |",
        "|              | (0.20)     | (0.30)     |",
        "| Observations | 100        | 1,200      |",
        "| Estimand     | ATE        | ATE        |",
        "| Design       | aipw       | fe         |",
        "| S.E. type    | hetero     | cluster(g) |",
        "| Clusters     |            | 40         |",
        "",
        "Standard errors in parentheses. S.E.: A hetero; B cluster(g) (40 clusters). "
        "Significance: \\* p<0.1, \\*\\* p<0.05, \\*\\*\\* p<0.01.",
    ])


def test_latex_structure_and_notes():
    a, b = _pair()
    tex = gc.etable(a, b, fmt="latex", caption="Effects & more", label="tab:x")
    lines = tex.splitlines()
    assert lines[0] == r"\begin{table}[htbp]" and lines[-1] == r"\end{table}"
    assert r"\caption{Effects \& more}" in lines and r"\label{tab:x}" in lines
    assert r"\begin{tabular}{lcc}" in lines
    i_top, i_bot = lines.index(r"\toprule"), lines.index(r"\bottomrule")
    mids = [i for i, x in enumerate(lines) if x == r"\midrule"]
    assert i_top < mids[0] < mids[1] < i_bot and len(mids) == 2
    body = lines[mids[0] + 1:mids[1]]
    assert body == [r"d & 1.000$^{***}$ & 0.500$^{*}$ \\", r" & (0.200) & (0.300) \\",
                    r"x\_1 &  & 2.000$^{**}$ \\", r" &  & (1.000) \\"]
    assert r"Observations & 100 & 1,200 \\" in lines and r"Clusters &  & 40 \\" in lines
    notes = next(x for x in lines if x.startswith(r"\textit{Notes:}"))
    assert "Standard errors in parentheses" in notes and "40 clusters" in notes
    assert r"$^{***}$ p\textless{}0.01" in notes
    # braces balance and every environment closes
    assert tex.count("{") == tex.count("}")
    for env in ("table", "tabular", "minipage"):
        assert tex.count(r"\begin{" + env + "}") == tex.count(r"\end{" + env + "}") == 1


def test_html_escapes_and_sections():
    a, b = _pair()
    h = gc.etable(a, b, fmt="html", labels={"x_1": "<x>"})
    assert h.startswith('<table class="geocausal-etable">') and h.endswith("</table>")
    assert "<th>&lt;x&gt;</th>" in h and "<tfoot>" in h and "p&lt;0.01" in h


def test_keep_drop_relabel_and_merge():
    a, b = _pair()
    f = gc.etable(a, b, fmt="frame", keep=["x", "d"])  # order follows the patterns
    assert list(f.index[:4]) == ["x_1", "", "d", ""]
    f = gc.etable(a, b, fmt="frame", drop="^x")
    assert list(f.index[:2]) == ["d", ""] and "x_1" not in f.index
    f = gc.etable(a, b, fmt="frame", labels={"d": "Treatment", "x_1": "Control"})
    assert f.loc["Treatment", "(1)"] == "1.000***" and f.loc["Control", "(2)"] == "2.000**"
    # different terms of different models merge into one row under one label
    c = Estimate(pd.Series({"treat": 3.0}), pd.DataFrame([[1.0]]), nobs=5)
    f = gc.etable(a, c, fmt="frame", labels={"d": "T", "treat": "T"})
    assert f.loc["T"].tolist() == ["1.000***", "3.000***"]  # t = 3
    # one model's two terms under one label is refused, as are unknown terms and empty tables
    with pytest.raises(DataError, match="same label"):
        gc.etable(b, labels={"d": "T", "x_1": "T"})
    with pytest.raises(DataError, match="no model has"):
        gc.etable(a, labels={"zz": "Z"})
    with pytest.raises(DataError, match="leave no terms"):
        gc.etable(a, keep="^zz$")
    with pytest.raises(DataError, match="regular expression"):
        gc.etable(a, keep="(")


def test_stars_follow_levels_and_null():
    # t = 1.70 (p = 0.089): * at 0.1, none at (0.05, 0.01)
    e = Estimate(pd.Series({"d": 1.7}), pd.DataFrame([[1.0]]), nobs=10)
    assert gc.etable(e, fmt="frame").iloc[0, 0] == "1.700*"
    assert gc.etable(e, fmt="frame", stars=(0.05, 0.01)).iloc[0, 0] == "1.700"
    assert gc.etable(e, fmt="frame", stars=None).iloc[0, 0] == "1.700"
    txt = gc.etable(e, stars=(0.05, 0.01, 0.001))
    assert "Significance: * p<0.05, ** p<0.01, *** p<0.001." in txt
    # stars test against the estimate's own null (AUC 0.5), and the notes say so
    auc = Estimate(pd.Series({"auc": 0.55}), pd.DataFrame([[0.0001]]), null=0.5, nobs=50)
    assert gc.etable(auc, fmt="frame").iloc[0, 0] == "0.550***"
    assert "non-zero null values: (1) auc = 0.5" in gc.etable(auc)
    for bad in ((0.01, 0.05), (1.5,), "x"):
        with pytest.raises(DataError, match="stars"):
            gc.etable(e, stars=bad)


def test_below_options_and_validation():
    e = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.25]]), nobs=10)
    f = gc.etable(e, fmt="frame", below="ci")
    assert f.iloc[1, 0] == "[0.020, 1.980]"
    assert "95% confidence intervals in brackets" in gc.etable(e, below="ci")
    assert gc.etable(e, fmt="frame", below="t").iloc[1, 0] == "(2.000)"
    assert list(gc.etable(e, fmt="frame", below=None).index[:2]) == ["d", "N"]
    for kw in ({"fmt": "pdf"}, {"digits": -1}, {"below": "var"}, {"names": ["a", "b"]},
               {"alpha": 1.0}):
        with pytest.raises(DataError):
            gc.etable(e, **kw)
    with pytest.raises(DataError, match="Estimate"):
        gc.etable(e, pd.DataFrame())
    with pytest.raises(DataError, match="repeat"):
        gc.etable(e, e, names=["m", "m"])


def test_estimate_set_delegates_and_with_vcov_counts_clusters():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(25), 8)
    a = Estimate.from_influence({"d": 0.3}, rng.normal(size=200), cluster_data={"g": g})
    with pytest.warns(gc.errors.FewClustersWarning):
        b = a.with_vcov({"cluster": "g"})
    assert a.n_clusters is None and b.n_clusters == 25 and b.dof == 24
    s = EstimateSet((a, b), ("het", "cl"))
    assert s.etable(fmt="latex") == gc.etable(a, b, names=["het", "cl"], fmt="latex")
    assert s.etable(terms=["d"], fmt="md") == gc.etable(s, fmt="md", keep="^d$")
    frame = s.etable()
    assert list(frame.columns) == ["het", "cl"] and frame.loc["Clusters", "cl"] == "25"
    assert "t(24)" in repr(s)
    # an array of labels (not a named column) still gives the count
    with pytest.warns(gc.errors.FewClustersWarning):
        c = Estimate.from_influence({"d": 0.3}, rng.normal(size=200), vcov={"cluster": g})
    assert c.n_clusters == 25


def test_write_outputs_writes_md_and_tex(tmp_path):
    a, b = _pair()
    paths = write_outputs(EstimateSet((a, b), ("A", "B")), tmp_path, "res")
    names = [p.name for p in paths]
    assert names == ["res.csv", "res.json", "res.md", "res.tex", "res.png"]
    assert (tmp_path / "res.tex").read_text().startswith(r"\begin{table}")
    assert "| d " in (tmp_path / "res.md").read_text()
