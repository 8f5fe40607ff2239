"""Execute notebooks/dml_panel.ipynb at small size."""

from __future__ import annotations


def test_dml_panel_notebook_runs(run_notebook):
    run_notebook("dml_panel.ipynb")
