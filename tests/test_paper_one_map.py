"""The one-map-many-trials pipeline at CI size: shrinkage and its corrections."""

from __future__ import annotations

import json

import pandas as pd

from geocausal.cli import main


def test_one_map_pipeline_ci(tmp_path):
    assert main(["paper", "run", "one_map_many_trials", "--out", str(tmp_path)]) == 0
    slopes = pd.read_csv(tmp_path / "tables" / "slopes.csv")
    sim = slopes[slopes.setting == "simulation"].set_index("method")
    world = slopes[slopes.setting == "synthetic_world"].set_index("method")
    # CI size: 9 trials on 1,500 units; slope se ~0.035 (naive), ~0.06 (Tweedie), ~0.07
    # (LCC), ~0.1 (PPI). The bands are about 4 se wide around the paper's values, and the
    # naive slope must be clearly attenuated.
    assert abs(sim.loc["oracle", "slope"] - 1) < 0.15
    assert 0.35 < sim.loc["naive", "slope"] < 0.75
    assert abs(sim.loc["tweedie", "slope"] - 1) < 0.25
    assert abs(sim.loc["lcc", "slope"] - 1) < 0.3
    assert abs(sim.loc["ppi", "slope"] - 1) < 0.4
    for m in ("tweedie", "lcc"):
        assert sim.loc[m, "mae"] < sim.loc["naive", "mae"]
    # synthetic world: ridge on chip summaries predicts the outcome (R^2 well below 1), so
    # pseudo-trial contrasts shrink and the corrections move the slope toward 1
    assert world.loc["naive", "slope"] < 0.8
    assert abs(world.loc["tweedie", "slope"] - 1) < abs(world.loc["naive", "slope"] - 1)
    assert abs(world.loc["lcc", "slope"] - 1) < abs(world.loc["naive", "slope"] - 1)
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["size"] == "ci" and 0 < prov["mean_r2_test"] < 1
    assert (tmp_path / "figures" / "simulation_slopes.png").exists()
    assert (tmp_path / "figures" / "world_slopes.png").exists()
