"""The debiasing notebook runs end to end at small size;
every figure cell shows its figures inline, once (before issue 15 only 2 of the 9
figure cells of the shipped notebooks showed anything)."""

from __future__ import annotations

from _notebooks import check_figures


def test_debias_notebook_executes(run_notebook):
    nb = run_notebook("debias_predicted_outcomes.ipynb")
    check_figures(nb, expected={"8adc1931": 1})
