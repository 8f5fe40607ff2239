"""The CATE notebook runs at small size;
every figure cell shows its figures inline, once (before issue 15 only 2 of the 9
figure cells of the shipped notebooks showed anything)."""

from __future__ import annotations

from _notebooks import check_figures


def test_cate_notebook_runs(run_notebook):
    nb = run_notebook("cate_image_sequences.ipynb")
    check_figures(nb, expected={"9ce6eafb": 1, "00517426": 1, "ef947f86": 1, "8a5f433e": 1})
