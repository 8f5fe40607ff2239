"""Checks of executed notebooks: every figure cell shows its figures inline, once, and no
progress bar warns about ipywidgets (issue 15, items 1 and 9)."""

from __future__ import annotations

import re

#: A cell that draws: a plot method or function of the package, or pyplot subplots.
FIGURE_CELL = re.compile(r"\.plot\(|_plot\(|plt\.subplots\(|cate_map\(|salience_figure\(|"
                         r"estimates_boxplot\(")


def image_outputs(cell) -> int:
    """Number of PNG images a code cell displayed."""
    return sum(1 for o in cell.get("outputs", [])
               if o.get("output_type") in ("display_data", "execute_result")
               and "image/png" in o.get("data", {}))


def figure_cells(nb) -> dict[str, int]:
    """``{cell id: number of PNG outputs}`` of every code cell that draws."""
    return {c.get("id", str(i)): image_outputs(c) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and FIGURE_CELL.search(c.source)}


def check_figures(nb, expected: dict[str, int] | None = None) -> dict[str, int]:
    """Every figure cell shows at least one image; the cells named in ``expected`` (by cell id)
    show exactly that many (one per figure: no duplicate); no cell printed a TqdmWarning or
    IProgress warning."""
    counts = figure_cells(nb)
    assert counts, "no figure cell found"
    blank = [i for i, k in counts.items() if k == 0]
    assert not blank, f"figure cells {blank} show no image (counts {counts})"
    if expected is not None:
        got = {k: counts.get(k) for k in expected}
        assert got == expected, f"images per figure cell {got}, expected {expected}"
    for i, c in enumerate(nb.cells):
        for o in c.get("outputs", []):
            text = o.get("text", "") if o.get("output_type") == "stream" else ""
            assert "TqdmWarning" not in text and "IProgress" not in text, (i, text[:300])
    return counts
