"""The R3D paper pipeline at CI size, run through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from geocausal.cli import main


def test_paper_r3d_ci(tmp_path):
    assert main(["paper", "run", "r3d", "--out", str(tmp_path)]) == 0
    mc = pd.read_csv(tmp_path / "tables" / "mc.csv")
    assert set(mc.dgp) == {"dgp1", "dgp2"} and set(mc.method) == {"simple", "frechet"}
    assert mc[["bias", "rmse", "uniform_coverage", "reject_nullity"]].notna().all().all()
    # tau(q) = delta: |bias| small against the RMSE (6 replications: loose, 0.3)
    assert np.all(np.abs(mc.bias) < 0.3)
    # delta = 2 is ~8 standard errors at n = 200: the nullity test always rejects
    assert np.all(mc[mc.delta == 2.0].reject_nullity == 1.0)
    summ = pd.read_csv(tmp_path / "tables" / "raster_summary.csv").set_index("scene")
    # no boundary effect in the scene as written; a strong planted greening east of it
    assert summ.loc["planted", "mean_effect"] > summ.loc["placebo", "mean_effect"]
    assert summ.loc["planted", "p_nullity"] < 0.05
    curve = pd.read_csv(tmp_path / "tables" / "raster_curve_planted.csv")
    assert list(curve.columns)[:2] == ["quantile", "estimate"]
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["pipeline"] == "r3d"
    assert (tmp_path / "figures" / "mc_coverage.png").exists()
