"""The reproduction labels: one vocabulary, the README table generated from it, drift checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from geocausal.errors import DataError
from geocausal.paper_labels import (
    LABELS,
    STATUSES,
    attach_labels,
    drift,
    labels,
    markdown_table,
    number,
    read_numbers,
    write_numbers,
)

ROOT = Path(__file__).resolve().parents[1]


def test_every_pipeline_is_labelled_with_known_statuses():
    pipelines = {p.parent.name for p in (ROOT / "paper").glob("*/pipeline.py")}
    assert pipelines == set(LABELS)
    for name in LABELS:
        rows = labels(name)
        assert rows and all(r["status"] in STATUSES for r in rows)
        assert all(r["why"] and r["here"] and r["paper"] for r in rows)
    with pytest.raises(DataError, match="no labels"):
        labels("nope")


def test_readme_table_is_the_generated_one():
    text = (ROOT / "paper" / "README.md").read_text()
    block = re.search(r"<!-- BEGIN LABELS.*?-->\n(.*?)\n<!-- END LABELS -->", text, re.S)
    assert block is not None and block.group(1) == markdown_table()
    assert "paper/README.md" in (ROOT / "README.md").read_text()


def test_real_data_relabels_only_the_data_limited_results():
    real = labels("one_map_many_trials", real_data=True)
    assert [r["status"] for r in real] == ["reproduced", "run on the paper's data"]
    prov = attach_labels({"seed": 0}, "r3d", echo=False)
    assert prov["seed"] == 0 and prov["reproduction"]["paper"] == "r3d"


def test_drift_is_two_sided_and_notices_missing_numbers(tmp_path):
    ref = {"a": number(1.0, 0.05), "b": number(0.0, 0.1)}
    write_numbers(tmp_path / "ref.json", ref, pipeline="x")
    ref = read_numbers(tmp_path / "ref.json")
    assert drift({"a": number(1.19, 0.05), "b": number(-0.39, 0.1)}, ref) == []
    bad = drift({"a": number(0.79, 0.05), "b": number(0.41, 0.1)}, ref)
    assert [b["name"] for b in bad] == ["a", "b"]
    assert bad[0]["z"] < -4 < 4 < bad[1]["z"]
    assert drift({"a": number(1.0, 0.05)}, ref)[0] == {"name": "b", "problem": "missing"}
    with pytest.raises(DataError, match="positive Monte Carlo"):
        number(1.0, 0.0)
