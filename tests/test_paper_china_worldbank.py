"""The china_worldbank paper pipeline at CI size, run through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from geocausal.cli import main
from geocausal.paper_labels import drift, read_numbers

REFERENCE = Path(__file__).resolve().parents[1] / "paper" / "china_worldbank" / "reference_ci.json"


def test_paper_pipeline_ci(tmp_path):
    assert main(["paper", "run", "china_worldbank", "--out", str(tmp_path)]) == 0
    tables, figs = tmp_path / "tables", tmp_path / "figures"
    for name in ("world_ate", "world_ate_by_funder", "world_overlap", "world_love",
                 "world_funder_sector", "world_placement", "sentinel2_bias"):
        assert (figs / f"{name}.png").stat().st_size > 0
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["size"] == "ci" and prov["manifest_hash"]
    # honest labels: substitute data, said so; drift: numbers within 4 MC SEs of the reference
    statuses = {r["status"] for r in prov["reproduction"]["results"]}
    assert "reproduced" not in statuses and "not reproducible here" in statuses
    bad = drift(read_numbers(tmp_path / "tables" / "reference_numbers.json"),
                read_numbers(REFERENCE))
    assert not bad, f"numbers drifted from {REFERENCE} (regenerate it from a CI run at seed 0 "\
                    f"if the change is intended): {bad}"

    eff = pd.read_csv(tables / "world_effects.csv")
    overall = eff[eff.model == "all"].set_index("method")
    # the planted design: naive and tabular-only estimates are biased upwards, imagery fixes it
    assert overall.loc["naive", "bias"] > 0.5 and overall.loc["tabular", "bias"] > 0.5
    assert abs(overall.loc["image", "bias"]) < 0.5 * overall.loc["tabular", "bias"]
    img = overall.loc["image"]
    assert img.conf_low <= img.truth <= img.conf_high
    per_funder = eff[eff.model != "all"]
    assert set(per_funder.model) == {"china", "world_bank"}
    for _, g in per_funder.groupby("model"):
        g = g.set_index("method")
        assert g.loc["image", "conf_low"] <= g.loc["image", "truth"] <= g.loc["image", "conf_high"]
    wb = per_funder[per_funder.model == "world_bank"].set_index("method")
    assert abs(wb.loc["image", "bias"]) < abs(wb.loc["tabular", "bias"])

    # the paper's steps on the synthetic world (issue 17 item 3)
    cnn = pd.read_csv(tables / "world_cnn_effects.csv")
    assert set(cnn.model) == {"china", "world_bank"}
    assert ((cnn.conf_low <= cnn.truth) & (cnn.truth <= cnn.conf_high)).all()
    assert (figs / "world_salience_china.png").stat().st_size > 0
    cells = pd.read_csv(tables / "world_funder_sector_pooled.csv")
    assert cells.n_units.min() >= 100 and {"p_holm", "p_bh", "truth"} <= set(cells.columns)
    assert cells.n_units.sum() == prov["world"]["n_units"]
    vs_half = pd.read_csv(tables / "world_placement_vs_half.csv").set_index(["model", "term"])
    assert (vs_half["null"] == 0.5).all()
    # the World Bank's placement is image-driven by design: its image AUC is far above 0.5
    assert vs_half.loc[("world_bank", "auc_image"), "p_value"] < 0.01
    fe_p = pd.read_csv(tables / "world_fe_predicted.csv").set_index("method")
    att = fe_p.att_truth.iloc[0]
    # images do not show the effect: FE on the predicted panel is attenuated; the PPI
    # correction with the surveyed subsample covers the truth
    assert fe_p.loc["predicted", "estimate"] < 0.5 * att
    assert fe_p.loc["ppi", "conf_low"] <= att <= fe_p.loc["ppi", "conf_high"]

    sector = pd.read_csv(tables / "world_funder_sector.csv")
    assert {"p_holm", "p_bh"} <= set(sector.columns)
    assert sector.model.str.contains(" x ").all()

    plc = pd.read_csv(tables / "world_placement.csv")
    assert set(plc.model) == {"china", "world_bank"}
    assert {"auc_image", "auc_tabular", "auc_both", "both_minus_tabular"} <= set(plc.term)
    auc = plc[plc.term.str.startswith("auc")]
    assert auc.estimate.between(0, 1).all() and (auc.conf_low < auc.conf_high).all()

    fe = pd.read_csv(tables / "world_fe.csv")
    assert fe.term.tolist() == ["treated"] and np.isfinite(fe.std_error).all()

    s2 = pd.read_csv(tables / "sentinel2_bias_coverage.csv").set_index("method")
    reps = pd.read_csv(tables / "sentinel2_replications.csv")
    assert s2.loc["naive", "replications"] == reps.replication.nunique()
    assert np.isclose(s2.loc["image", "mean_bias"], reps[reps.method == "image"].bias.mean())
    # image-aware adjustment removes at least 75% of the naive bias on real Sentinel-2 pixels
    assert s2.loc["image", "bias_removed_vs_naive"] >= 0.75
    assert s2.loc["naive", "mean_bias"] > 1.0

    # sensitivity of the image-aware effects, benchmarked against the images (issue 19)
    sens = pd.read_csv(tables / "world_sensitivity.csv")
    eff_rows = sens[sens.row == "effect"].set_index("model")
    assert {"all", "china", "world_bank", "fe (unit, period)"} <= set(eff_rows.index)
    a = eff_rows.loc["all"]
    assert a.theta_lower < a.estimate < a.theta_upper and 0 < a.rva <= a.rv < 1
    bench = sens[(sens.row == "benchmark") & (sens.model == "all")].set_index("group")
    # the planted confounding lives in the images: leaving them out is a strong benchmark
    assert bench.loc["images", "cf_y"] > 0.1
    assert (figs / "world_sensitivity.png").stat().st_size > 0

    # specification curve of the image-aware ATE (issue 16): chip size x formula x learner x trim
    spec = pd.read_csv(tables / "world_spec_curve.csv")
    assert len(spec) == 2 * 2 * 2 * 3 and (spec.status == "ok").all()
    assert {"chip_px", "formula", "learners", "trim", "estimate", "conf_low", "conf_high",
            "truth", "covers_truth"} <= set(spec.columns)
    assert set(spec.formula) == {"with country", "without country"}
    # every specification adjusts for the images: none is as biased as the tabular-only AIPW
    assert (spec.estimate - spec.truth).abs().max() < overall.loc["tabular", "bias"]
    assert spec.covers_truth.mean() >= 0.5
    assert prov["world"]["spec_curve"]["n_specs"] == 24
    assert (figs / "world_spec_curve.png").stat().st_size > 0
