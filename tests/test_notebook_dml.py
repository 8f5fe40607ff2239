"""Execute notebooks/dml_panel.ipynb at small size;
every figure cell shows its figures inline, once (before issue 15 only 2 of the 9
figure cells of the shipped notebooks showed anything)."""

from __future__ import annotations

from _notebooks import check_figures


def test_dml_panel_notebook_runs(run_notebook):
    nb = run_notebook("dml_panel.ipynb")
    check_figures(nb, expected={"eba3cc46": 1})
