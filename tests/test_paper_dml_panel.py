"""The Fuhr-Papies harness at CI size, run through the command line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from geocausal.cli import main


def test_paper_pipeline_ci(tmp_path):
    assert main(["paper", "run", "dml_panel", "--out", str(tmp_path)]) == 0
    summary = pd.read_csv(tmp_path / "tables" / "summary.csv")
    reps = pd.read_csv(tmp_path / "tables" / "replications.csv")
    assert (tmp_path / "figures" / "estimates.png").stat().st_size > 0
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["size"] == "ci" and prov["tasks"] == 4
    approaches = {"cre", "cre_cp", "fd", "pooled", "within", "late", "ols", "pols", "fe",
                  "oracle_fe"}
    assert set(summary.approach) == approaches
    assert len(reps) == 4 * len(approaches)
    s = summary.set_index("approach")
    # internal consistency of the table
    for a in approaches:
        est = reps.loc[reps.approach == a, "estimate"]
        assert np.isclose(s.loc[a, "median_bias"], est.median() - 1)
        assert np.isclose(s.loc[a, "rmse"], np.sqrt(np.mean((est - 1) ** 2)))
        assert 0 <= s.loc[a, "coverage"] <= 1
    # structure C, u-shaped: the true-form oracle is nearly unbiased (its estimates have sd
    # ~0.03 here), CRE-DML's median is nearer the truth than pooled DML's and linear FE's
    assert abs(s.loc["oracle_fe", "median_bias"]) < 0.1
    assert abs(s.loc["cre", "median_bias"]) < abs(s.loc["pooled", "median_bias"])
    assert abs(s.loc["cre", "median_bias"]) < abs(s.loc["fe", "median_bias"])
