"""The image-confounding notebook runs end to end at small size;
every figure cell shows its figures inline, once (before issue 15 only 2 of the 9
figure cells of the shipped notebooks showed anything)."""

from __future__ import annotations

from _notebooks import check_figures


def test_ipw_notebook_runs(run_notebook):
    nb = run_notebook("ipw_image_confounding.ipynb")
    check_figures(nb, expected={"828c3bac": 1})
