"""The R3D paper pipeline at CI size, run through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from geocausal.cli import main
from geocausal.paper_labels import drift, read_numbers

REFERENCE = Path(__file__).resolve().parents[1] / "paper" / "r3d" / "reference_ci.json"


def test_paper_r3d_ci(tmp_path):
    assert main(["paper", "run", "r3d", "--out", str(tmp_path)]) == 0
    mc = pd.read_csv(tmp_path / "tables" / "mc.csv")
    assert set(mc.dgp) == {"dgp1", "dgp2"} and set(mc.method) == {"simple", "frechet"}
    assert mc[["bias", "rmse", "uniform_coverage", "reject_nullity"]].notna().all().all()
    # independent draws per effect size: the errors at delta = 0 and delta = 2 differ
    b = mc.set_index(["dgp", "delta", "method"])["bias"]
    assert not np.isclose(b.loc[("dgp1", 0.0, "simple")], b.loc[("dgp1", 2.0, "simple")])
    # delta = 2 is ~8 standard errors at n = 200: the nullity test always rejects
    assert np.all(mc[mc.delta == 2.0].reject_nullity == 1.0)
    summ = pd.read_csv(tmp_path / "tables" / "raster_summary.csv").set_index("scene")
    # the planted effect's truth is computed from the two scenes (not assumed); the estimate
    # is within 2 SEs of it (it was 0.21 against ~0.40 before buffers were clipped to their
    # side) and the uniform band covers the truth curve; the placebo covers 0
    p = summ.loc["planted"]
    assert 0.2 < p.truth_mean_of_curve < 0.8
    assert abs(p.mean_effect - p.truth_mean_of_curve) < 2 * p.mean_se
    assert summ.band_covers_truth.all()
    assert p.p_nullity < 0.05
    curve = pd.read_csv(tmp_path / "tables" / "raster_curve_planted.csv")
    assert list(curve.columns)[:2] == ["quantile", "estimate"] and "truth" in curve
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["pipeline"] == "r3d"
    assert prov["raster"]["buffers_crossing_boundary_clipped"] > 0
    statuses = {r["status"] for r in prov["reproduction"]["results"]}
    assert statuses == {"reproduced", "not reproducible here", "reproduced in design"}
    # the real-data application: NDWI jumps at shorelines (water is wetter than land)
    water = pd.read_csv(tmp_path / "tables" / "water_summary.csv").iloc[0]
    assert water.n_water > 20 and water.n_units - water.n_water > 20
    assert water.mean_effect - 2 * water.mean_se > 0
    assert (tmp_path / "figures" / "mc_coverage.png").exists()
    # drift: every recorded number within 4 Monte Carlo SEs of the committed reference
    bad = drift(read_numbers(tmp_path / "tables" / "reference_numbers.json"),
                read_numbers(REFERENCE))
    assert not bad, (f"numbers drifted from {REFERENCE} (regenerate it from a CI run at seed 0 "
                     f"if the change is intended): {bad}")
