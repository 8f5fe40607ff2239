"""The distributional RD notebook runs end to end at small size;
every figure cell shows its figures inline, once (before issue 15 only 2 of the 9
figure cells of the shipped notebooks showed anything)."""

from __future__ import annotations

from _notebooks import check_figures


def test_rdd_notebook(run_notebook):
    nb = run_notebook("rdd_distributions.ipynb")
    check_figures(nb, expected={"afaa778e": 1, "342297bd": 3})
