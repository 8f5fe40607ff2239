"""The semi-synthetic suite's pieces (benchmarks/image_representations_mc.py), small and fast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import load_script


@pytest.fixture(scope="module")
def mc():
    return load_script("benchmarks/image_representations_mc.py", "image_representations_mc")


def test_draw_is_the_package_semisynthetic_form(mc):
    from geocausal.datasets.semisynthetic import draw_semisynthetic

    z = np.random.default_rng(0).normal(size=(300, 3)) * [1.0, 2.0, 0.5]
    ours = mc.draw(z, 7)
    content = pd.DataFrame({"veg_share": z[:, 0], "ndvi_sd": z[:, 1], "water": z[:, 2]})
    ref = draw_semisynthetic(content, 7, mechanism="composition")
    for c in ("x1", "x2", "x3", "x4", "d", "y", "cate"):
        assert np.allclose(ours[c], ref[c], atol=1e-12), c


def test_configuration_confounders_see_the_centre_and_the_water(mc):
    n, h = 2, 16
    chips = np.full((n, h, h, 10), 0.1, np.float32)
    nir = mc.S2_BANDS.index("B08")
    green = mc.S2_BANDS.index("B03")
    chips[0, 4:12, 4:12, nir] = 0.5  # vegetated centre: NDVI 0.667 inside, 0 outside
    chips[1, :, :, nir] = 0.5
    chips[1, 4:12, 4:12, nir] = 0.1  # vegetated ring, bare centre
    chips[1, 0, 0, green] = 0.9      # one water pixel in a corner of chip 1
    chips[1, 0, 0, nir] = 0.05
    mask = np.ones((n, h, h), bool)
    c = mc.sentinel2_confounders(chips, mask)["c_configuration"]
    assert c[0, 0] == pytest.approx(2 / 3, abs=1e-6)       # centre minus ring
    assert c[1, 0] < -0.5
    assert c[0, 2] == pytest.approx(1.0) and c[1, 2] == pytest.approx(1.0, abs=1e-9)
    # masking the vegetated centre of chip 0 removes it from the statistic (no silent zeros)
    mask[0, 4:12, 4:12] = False
    c2 = mc.sentinel2_confounders(chips, mask)["c_configuration"]
    assert c2[0, 0] == pytest.approx(0.0, abs=1e-12)


def test_cut_points_move_the_vegetation_water_and_edge_confounders(mc):
    import argparse

    n, h = 2, 16
    chips = np.full((n, h, h, 10), 0.1, np.float32)
    nir, red, green = (mc.S2_BANDS.index(b) for b in ("B08", "B04", "B03"))
    chips[:, :8, :, nir] = 0.25           # NDVI (0.25 - 0.1) / 0.35 = 0.43 in the top half
    chips[1, 8:, :, green] = 0.12         # NDWI (0.12 - 0.1) / 0.22 = 0.09 in chip 1's bottom
    mask = np.ones((n, h, h), bool)
    at = mc.sentinel2_confounders(chips, mask)
    off = mc.sentinel2_confounders(chips, mask, (0.45, 0.1, 0.5))
    assert mc.CUT_POINTS == (0.4, 0.0, 0.1)
    assert at["a_composition"][0, 0] == pytest.approx(0.5) and off["a_composition"][0, 0] == 0
    assert at["a_composition"][1, 1] == pytest.approx(0.5) and off["a_composition"][1, 1] == 0
    # 16 of 480 adjacent pairs cross the NDVI 0.43 / 0 line: an edge at 0.1, none at 0.5
    assert at["b_texture"][0, 1] == pytest.approx(16 / 480)
    assert off["b_texture"][0, 1] == 0
    assert mc.cut_points("0.37,0.05,0.08") == (0.37, 0.05, 0.08)
    for bad in ("0.4,0", "0.4,0,0", "a,b,c", "0.4,nan,0.1"):
        with pytest.raises(argparse.ArgumentTypeError):
            mc.cut_points(bad)


def test_change_confounder(mc):
    n, t, h = 3, 4, 9
    chips = np.full((n, t, h, h, 3), 0.1, np.float32)
    chips[:, 2:, 3:6, 3:6, 1] = 0.3       # the centre greens up in the last two dates
    chips[2, :, :, :, 1] = 0.3            # unit 2 is green throughout: no change
    mask = np.ones((n, t, h, h), bool)
    z = mc.landsat_confounders(chips, mask)
    assert z[0, 0] == pytest.approx(0.5, abs=1e-6) and z[2, 0] == pytest.approx(0.0, abs=1e-6)
    assert z[0, 2] == pytest.approx(0.0, abs=1e-6)


def test_d_centre_regions_and_the_disk_confounder(mc):
    blk, disk = mc.centre_region(9, 9, "block3"), mc.centre_region(9, 9, "disk2")
    assert blk.sum() == 9 and blk[3:6, 3:6].all()
    assert disk.sum() == 13 and disk[4, 2] and disk[2, 4]
    assert not disk[2, 3] and disk[3, 3]            # (2, 1) px away: sqrt(5) > 2
    with pytest.raises(ValueError, match="centre"):
        mc.centre_region(9, 9, "ring")
    n, t, h = 2, 4, 9
    chips = np.full((n, t, h, h, 3), 0.1, np.float32)
    chips[:, 2:, 4, 2, 1] = 0.3       # one disk pixel outside the 3 x 3 block greens up
    mask = np.ones((n, t, h, h), bool)
    zb = mc.landsat_confounders(chips, mask)
    zd = mc.landsat_confounders(chips, mask, "disk2")
    assert zb[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert zd[0, 0] == pytest.approx(0.5 / 13, abs=1e-6)


def test_masked_centre_is_missing_not_ndvi_zero(mc):
    """A centre fully masked (cloud) on a date is missing on that date: the late mean is the
    clear date's NDVI, never an average with 0; a whole period masked falls back to the ring."""
    n, t, h = 3, 4, 9
    chips = np.full((n, t, h, h, 3), 0.1, np.float32)
    chips[:, :, :, :, 1] = 0.3                # NDVI 0.5 everywhere, every date
    mask = np.ones((n, t, h, h), bool)
    mask[0, 2, 3:6, 3:6] = False              # unit 0: centre clouded on one late date
    chips[0, 2, 3:6, 3:6] = np.nan
    mask[1, 2:, 3:6, 3:6] = False             # unit 1: centre clouded on both late dates
    chips[1, 2:, :, :, 1] = 0.5               # ... while the (clear) ring greens up
    mc.FALLBACKS.clear()
    z = mc.landsat_confounders(chips, mask)
    assert z[0, 0] == pytest.approx(0.0, abs=1e-6)    # no change (old rule: -0.25)
    assert z[0, 1] == pytest.approx(0.5, abs=1e-6)
    ring_change = 2 / 3 - 0.5
    assert z[1, 0] == pytest.approx(ring_change, abs=1e-6) and z[1, 2] == pytest.approx(
        ring_change, abs=1e-6)
    assert mc.FALLBACKS["d: centre change: fallback 1"] == 1
    assert mc.FALLBACKS["d: centre change: constant 0.0"] == 0
    # a chip masked over a whole period: no change (0), counted
    mask[2, 2:] = False
    mc.FALLBACKS.clear()
    z = mc.landsat_confounders(chips, mask)
    assert z[2, 0] == 0.0 and z[2, 2] == 0.0 and np.isfinite(z).all()
    assert mc.FALLBACKS["d: centre change: constant 0.0"] == 1


def test_one_draw_and_the_report(mc, tmp_path):
    rng = np.random.default_rng(1)
    n = 240
    z = rng.normal(size=(n, 3))
    feats = {"summary": z[:, :1] + rng.normal(0, 0.1, (n, 1)), "engineered": z,
             "learned": rng.normal(size=(n, 5))}
    mc._init({"studies": {"sentinel2": feats}, "confounders": {"a_composition": z}})
    raw = pd.DataFrame([r for s in range(2) for r in mc.one(("a_composition", s))])
    assert set(raw.method) == set(mc.METHODS)
    tab = mc.summarise(raw)
    assert np.isfinite(tab[["bias", "rmse", "coverage", "length"]].to_numpy()).all()
    eng = raw[raw.method == "engineered"]
    naive = raw[raw.method == "naive"]
    assert (eng.est - eng.truth).abs().mean() < (naive.est - naive.truth).abs().mean()
    lines = mc.targets(tab)
    assert any(line.startswith("- a_composition: default removes") for line in lines)
    # the report keeps the hand-written head above the marker and rewrites what is below
    from types import SimpleNamespace

    out = tmp_path / "r.md"
    out.write_text("# head\n\nstatus by hand\n" + mc.MARKER + "\nold run\n")
    state = {"studies": {"sentinel2": {**feats, "chips": np.zeros((n, 2, 2, 1))}}}
    args = SimpleNamespace(out=out, reps=2, workers=1)
    mc.report(raw, state, args, ["--reps", "2"], 1.0, 2.0, 3.0, {}, 2, 4, False)
    text = out.read_text()
    assert text.startswith("# head\n\nstatus by hand\n" + mc.MARKER)
    assert "old run" not in text and "PARTIAL (running): 2 of 4 draws" in text
    # the default's SE is gc.aipw's (the outcome fits' term added); the fixed-fit SE is kept
    dft = raw[raw.method == "default"]
    assert dft.se_fixed.notna().all() and dft.fixed_share.between(0, 1).all()
    assert (dft.se != dft.se_fixed).all() and raw[raw.method != "default"].se_fixed.isna().all()
    assert "SE/SD with term" in text
    assert "Paired against the oracle" in text and "| a_composition | engineered | oracle |" in text
    assert len(pd.read_csv(out.with_suffix(".csv"))) == len(raw)
    assert "mean_outcome_adaptive_weight_e" not in text and (raw.w_adaptive == 0).all()
    # --outcome-adaptive: the propensity of every candidate stacks its outcome-adaptive fit
    mc._init({"studies": {"sentinel2": feats}, "confounders": {"a_composition": z},
              "outcome_adaptive": True})
    raw2 = pd.DataFrame(mc.one(("a_composition", 0)))
    assert raw2.winner_e.iloc[0].split("/")[1] in ("all_columns", "outcome_adaptive")
    assert raw2.w_adaptive.between(0, 1).all()
    mc.report(raw2, {**state, "outcome_adaptive": True}, args, ["--reps", "1"], 1.0, 2.0, 3.0,
              {}, 1, 4, False)
    assert "mean_outcome_adaptive_weight_e" in out.read_text()
    # --combine select_propensity: the default's propensity is one candidate's, not a mix
    mc._init({"studies": {"sentinel2": feats}, "confounders": {"a_composition": z},
              "outcome_adaptive": False, "combine": "select_propensity"})
    raw3 = pd.DataFrame(mc.one(("a_composition", 0)))
    mc._init({"combine": "stack"})
    raw1 = pd.DataFrame(mc.one(("a_composition", 0)))
    same = raw3.method != "default"
    assert np.allclose(raw3.est[same], raw1.est[same])
    assert not np.isclose(raw3.est[~same].iloc[0], raw1.est[~same].iloc[0])
    with pytest.raises(SystemExit):
        mc.main(["--combine", "mix"])


def test_export_provenance_and_a_stale_export_warns(mc):
    import warnings

    now = mc.provenance()
    assert set(now) == {"feature_code", "versions", "cpu"}
    assert now["versions"]["geocausal"] and len(now["feature_code"]) == 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        made = mc.check_export({"provenance": now}, relearn=False)  # same code: no warning
    assert made["export"] == now and made["run"] == now
    with pytest.warns(mc.StaleExportWarning, match="records no provenance.*learned"):
        mc.check_export({}, relearn=False)
    old = {**now, "feature_code": "0" * 16}
    with pytest.warns(mc.StaleExportWarning, match="feature code 0000000000000000") as rec:
        mc.check_export({"provenance": old}, relearn=True)
    assert "learned" not in str(rec[0].message)  # relearned here: only the summary is old


def test_first_seed_is_checked_before_anything_runs(mc, monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("the options are checked before the chips are read")

    monkeypatch.setattr(mc, "load", no_load)
    monkeypatch.setattr(mc, "prepare", no_load)
    with pytest.raises(SystemExit):
        mc.main(["--first-seed", "-1"])
    # the draws run are seeds first-seed .. first-seed + reps - 1
    seen = []
    monkeypatch.setattr(mc, "load", lambda *a, **k: {"studies": {}, "confounders": {}})
    monkeypatch.setattr(mc, "one", lambda job: seen.append(job) or [{"seed": job[1]}])
    monkeypatch.setattr(mc, "report", lambda *a, **k: None)
    assert mc.main(["--chips", "x", "--first-seed", "100", "--reps", "2",
                    "--mechanisms", "a_composition"]) == 0
    assert seen == [("a_composition", 100), ("a_composition", 101)]


def test_resume_keeps_complete_draws_and_runs_the_rest(mc):
    rows = [{"mechanism": m, "seed": s, "method": k, "est": 1.0}
            for m, s in (("a_composition", 0), ("b_texture", 0)) for k in mc.METHODS]
    rows = rows[:-1]  # b_texture seed 0 lost its last method: it runs again
    jobs = [(m, s) for s in range(2) for m in ("a_composition", "b_texture")]
    kept, todo = mc.resume(pd.DataFrame(rows), jobs)
    assert {(r["mechanism"], r["seed"]) for r in kept} == {("a_composition", 0)}
    assert todo == [("b_texture", 0), ("a_composition", 1), ("b_texture", 1)]


def test_suite_engineered_features_are_the_default_stack_candidate(mc):
    """The suite measures the package's default: its engineered matrix is the one that
    ``gc.aipw(..., images=chips)`` builds for its engineered candidate."""
    from geocausal.nuisance.candidates import image_candidates

    rng = np.random.default_rng(3)
    chips = rng.uniform(0.02, 0.5, size=(12, 8, 8, 10)).astype(np.float32)
    mask = rng.uniform(size=(12, 8, 8)) > 0.05
    ours = mc.engineered(chips, mask, "sentinel2")["engineered"]
    cands, _ = image_candidates(chips, mask, np.zeros((12, 0)), candidates=("engineered",),
                                engineered_options={"bands": list(mc.S2_BANDS),
                                                    "preset": "sentinel2"})
    np.testing.assert_allclose(ours, cands["engineered"](), rtol=1e-12)
    assert ours.shape[1] > 400  # thresholds on bands and indices, valid shares


def test_direction_check_is_what_the_engineered_candidate_cannot_see(mc):
    """e_direction's confounders change sign when a chip is turned by 180 degrees, while every
    engineered column stays the same (odd chips: every region is symmetric about the unit)."""
    rng = np.random.default_rng(4)
    chips = rng.uniform(0.02, 0.5, size=(6, 15, 15, 10)).astype(np.float32)
    mask = rng.uniform(size=(6, 15, 15)) > 0.1
    nir, red = mc.S2_BANDS.index("B08"), mc.S2_BANDS.index("B04")
    chips[0, :7, :, nir], chips[0, :7, :, red] = 0.5, 0.05  # vegetation north of the unit

    def turn(x):
        return np.ascontiguousarray(x[:, ::-1, ::-1])

    z = mc.sentinel2_confounders(chips, mask)["e_direction"]
    zt = mc.sentinel2_confounders(turn(chips), turn(mask))["e_direction"]
    assert z.shape == (6, 3) and np.abs(z).min() > 0
    assert np.allclose(zt, -z, atol=1e-12)
    assert z[0, 0] > 0.5 and zt[0, 0] < -0.5  # north minus south NDVI of chip 0
    eng = mc.engineered(chips, mask, "sentinel2")["engineered"]
    eng_t = mc.engineered(turn(chips), turn(mask), "sentinel2")["engineered"]
    assert eng.shape[1] > 500 and np.allclose(eng, eng_t, rtol=1e-9, atol=1e-9)
    # a half with no valid pixel has no contrast: 0, counted
    mask2 = mask.copy()
    mask2[1, :7] = False
    mc.FALLBACKS.clear()
    z2 = mc.sentinel2_confounders(chips, mask2)["e_direction"]
    assert z2[1, 0] == 0.0 and mc.FALLBACKS["e: NDVI north minus south: constant 0.0"] == 1


def test_paired_mse_table_against_the_oracle(mc):
    rows = []
    for s in range(4):
        for k, err in (("oracle", 0.1), ("engineered", 0.2 + 0.1 * (s % 2)), ("learned", 0.5)):
            rows.append({"mechanism": "e_direction", "seed": s, "method": k,
                         "est": 1.0 + err, "truth": 1.0})
    rows.append({"mechanism": "e_direction", "seed": 4, "method": "engineered", "est": np.nan,
                 "truth": 1.0})
    tab = mc.paired_mse_table(pd.DataFrame(rows)).set_index("method")
    assert list(tab.index) == ["engineered", "learned"]  # no default in these rows
    d = np.array([0.04, 0.09, 0.04, 0.09]) - 0.01
    assert tab.loc["engineered", "draws"] == 4
    assert tab.loc["engineered", "difference"] == pytest.approx(d.mean(), abs=1e-4)
    assert tab.loc["engineered", "MC SE"] == pytest.approx(d.std(ddof=1) / 2, abs=1e-4)
    assert tab.loc["learned", "difference"] == pytest.approx(0.24, abs=1e-4)
    assert np.isnan(tab.loc["learned", "z"])  # no spread: no z
    lines = mc.targets(pd.DataFrame({
        "mechanism": ["e_direction"] * 3, "method": ["learned", "engineered", "default"],
        "rmse": [0.5, 0.6, 0.4], "bias_removed": [0.5, 0.1, 0.6], "coverage": [0.5] * 3}))
    assert "e_direction: RMSE learned 0.5000 vs engineered 0.6000 -> MET (a check" in lines[-1]


def test_the_checks_are_run_only_when_named(mc, monkeypatch):
    seen = []
    monkeypatch.setattr(mc, "load", lambda *a, **k: {"studies": {}, "confounders": {}})
    monkeypatch.setattr(mc, "one", lambda job: seen.append(job) or [{"seed": job[1]}])
    monkeypatch.setattr(mc, "report", lambda *a, **k: None)
    assert mc.main(["--chips", "x", "--reps", "1"]) == 0
    assert [m for m, _ in seen] == list(mc.MECHANISMS)
    seen.clear()
    assert mc.main(["--chips", "x", "--reps", "1", "--mechanisms", "e_direction"]) == 0
    assert seen == [("e_direction", 0)]
    with pytest.raises(SystemExit):
        mc.main(["--chips", "x", "--mechanisms", "f_shape"])
    # --learned-sides: the learned candidate pretrained again and pooled over the halves too
    calls = []
    monkeypatch.setattr(mc, "load", lambda folder, relearn, **k: calls.append((relearn, k))
                        or {"studies": {}, "confounders": {}})
    assert mc.main(["--chips", "x", "--reps", "1", "--mechanisms", "e_direction",
                    "--learned-sides"]) == 0
    assert calls[-1][0] is True and calls[-1][1]["sides"] is True
    assert mc.main(["--chips", "x", "--reps", "1", "--mechanisms", "e_direction"]) == 0
    assert calls[-1][0] is False and calls[-1][1]["sides"] is False
    with pytest.raises(SystemExit):
        mc.main(["--chips", "x", "--export-chips", "y", "--learned-sides"])
