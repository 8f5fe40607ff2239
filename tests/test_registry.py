"""One registry of designs feeds ``gc.*``, the command line and the docs; the CLI runs debias
and ppi with the same numbers as the Python API."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import geocausal as gc
from geocausal import cli, registry
from geocausal.errors import DesignError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(registry.REGISTRY))
def test_every_entry_is_the_public_name(name):
    entry = registry.get(name)
    fn = entry.load()
    assert callable(fn) and fn.__name__ == entry.attribute
    assert getattr(gc, name) is fn
    assert name in gc.__all__ and gc._LAZY[name] == entry.module
    assert entry.description and entry.family
    params = list(inspect.signature(fn).parameters)
    if entry.cli:  # a formula face: geocausal estimate calls it as fn(formula, table, ...)
        assert params[:2] == ["formula", "data"], (name, params[:2])


def test_cli_designs_come_from_the_registry_and_roles_match_signatures():
    assert cli.DESIGNS == registry.cli_designs()
    assert {"debias", "ppi"} <= set(cli.DESIGNS)
    for name in cli.DESIGNS:
        entry = registry.get(name)
        params = inspect.signature(entry.load()).parameters
        takes = tuple(r for r in registry.ROLES if r in params)
        assert entry.roles == takes, f"{name}: registry roles {entry.roles} != signature {takes}"


def test_unknown_name_is_a_named_error():
    with pytest.raises(DesignError, match="unknown design or helper 'ivreg'"):
        registry.get("ivreg")


def test_importing_geocausal_imports_no_estimator():
    code = ("import sys, geocausal as gc; gc.registry.markdown_table(); "
            "print(sorted(m for m in sys.modules if m.startswith(('geocausal.api', "
            "'geocausal.designs', 'jax'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"


def test_docs_table_is_up_to_date(tmp_path):
    text = (ROOT / "docs" / "vocabulary.md").read_text()
    for name in registry.REGISTRY:
        assert f"`gc.{name}`" in text, f"gc.{name} is missing from docs/vocabulary.md"
    copy = tmp_path / "vocabulary.md"
    copy.write_text(text)
    assert not registry.write_docs(str(copy)), (
        "docs/vocabulary.md's registry table is stale; run python -c \"from geocausal.registry "
        "import write_docs; write_docs('docs/vocabulary.md')\"")
    # a stale table is noticed and rewritten
    copy.write_text(text.replace("| `gc.ppi` |", "| `gc.old_ppi` |", 1))
    assert registry.write_docs(str(copy)) and copy.read_text() == text
    copy.write_text("no markers")
    with pytest.raises(DesignError, match="markers"):
        registry.write_docs(str(copy))


# ----------------------------------------------------------------------------- CLI debias/ppi
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A table-only study: ML predictions ``yhat`` of an outcome ``y`` observed for 150 of 600
    units, a binary treatment ``d`` that depends on ``x1``; and a calibration file."""
    rng = np.random.default_rng(11)
    n = 600
    x1 = rng.normal(size=n)
    d = (rng.random(n) < 1 / (1 + np.exp(-0.5 * x1))).astype(int)
    y = 1.0 * d + x1 + rng.normal(size=n)
    yhat = 0.7 * y + rng.normal(0, 0.4, n)
    folder = tmp_path_factory.mktemp("pred")
    units = pd.DataFrame({"unit_id": [f"u{i:04d}" for i in range(n)],
                          "lon": 30 + rng.random(n), "lat": rng.random(n), "x1": x1, "d": d,
                          "yhat": yhat, "y": np.where(np.arange(n) < 150, y, np.nan)})
    units.to_csv(folder / "units.csv", index=False)
    yc = rng.normal(0.5, 1.6, size=800)
    pd.DataFrame({"yhat": 0.7 * yc + rng.normal(0, 0.4, 800), "truth": yc}).to_csv(
        folder / "calibration.csv", index=False)
    (folder / "study.yaml").write_text(
        "name: predicted\nunits: {path: units.csv, id: unit_id, lon: lon, lat: lat}\n"
        "chip: {size_px: 8}\ncolumns: {id: [unit_id], treatment: [d], covariates: [x1]}\n")
    return folder


def _run(argv, capsys):
    rc = cli.main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err.strip()


def test_cli_debias_equals_the_python_api(study, tmp_path, capsys):
    from geocausal.data.study import load_study

    out = tmp_path / "out"
    rc, _, err = _run(["estimate", "--design", "debias", "--manifest", str(study / "study.yaml"),
                       "--formula", "yhat ~ d + x1", "--calibration",
                       str(study / "calibration.csv"), "--images", "none", "--set",
                       "n_boot=99", "--out", str(out)], capsys)
    assert rc == 0, err
    table = load_study(study / "study.yaml", features="none").table
    cal = pd.read_csv(study / "calibration.csv")
    ref = gc.debias("yhat ~ d + x1", table, calibration=cal, n_boot=99, seed=0)
    tidy = pd.read_csv(out / "debias.csv")
    assert tidy.term.tolist() == list(ref.params.index)
    np.testing.assert_allclose(tidy.estimate, ref.params.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(tidy.std_error, ref.tidy().std_error, rtol=1e-12)
    assert json.loads((out / "debias.json").read_text())["design"] == "debias"


def test_cli_ppi_equals_the_python_api(study, tmp_path, capsys):
    from geocausal.data.study import load_study

    out = tmp_path / "out"
    rc, _, err = _run(["estimate", "--design", "ppi", "--manifest", str(study / "study.yaml"),
                       "--formula", "yhat ~ 1", "--truth", "y", "--set", 'estimand="mean"',
                       "--images", "none", "--out", str(out)], capsys)
    assert rc == 0, err
    table = load_study(study / "study.yaml", features="none").table
    ref = gc.ppi("yhat ~ 1", table, truth="y", estimand="mean")
    tidy = pd.read_csv(out / "ppi.csv")
    np.testing.assert_allclose(tidy.estimate, ref.params.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(tidy.std_error, ref.tidy().std_error, rtol=1e-12)


@pytest.mark.parametrize("extra, needle", [
    (["--design", "debias", "--formula", "yhat ~ d + x1"], "design 'debias' needs --calibration"),
    (["--design", "debias", "--formula", "yhat ~ d + x1", "--calibration", "nope.csv"],
     "--calibration 'nope.csv' does not exist"),
    (["--design", "debias", "--formula", "yhat ~ d + x1", "--calibration", "study.yaml"],
     "unknown file type '.yaml'"),
    (["--design", "ppi", "--formula", "yhat ~ 1"], "design 'ppi' needs --truth COLUMN"),
    (["--design", "ppi", "--formula", "yhat ~ 1", "--truth", "nope"],
     "truth column 'nope' is not in the data"),
    (["--design", "aipw", "--formula", "yhat ~ d", "--calibration", "calibration.csv"],
     "design 'aipw' does not take --calibration FILE (only debias)"),
    (["--design", "rdd", "--formula", "yhat ~ 1", "--truth", "y"],
     "design 'rdd' does not take --truth COLUMN (only cate, debias, ppi)"),
])
def test_cli_prediction_roles_refused_in_one_line(study, tmp_path, capsys, monkeypatch, extra,
                                                  needle):
    monkeypatch.chdir(study)
    rc, _, err = _run(["estimate", "--manifest", "study.yaml", "--images", "none", "--out",
                       str(tmp_path / "o"), *extra], capsys)
    assert rc == 2 and needle in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_option_objects_are_registered_and_taken_by_their_designs():
    """Every option object is reachable as gc.NAME, and every keyword a design lists for one is
    a parameter of its face; the CLI routes their fields there."""
    import inspect
    import warnings

    from geocausal.cli import route_option_fields
    from geocausal.registry import OPTIONS, get, option_fields

    for name in OPTIONS:
        assert getattr(gc, name).__name__ == name
    for design in ("aipw", "ipw", "cate", "dml_panel", "debias", "rdd"):
        params = inspect.signature(get(design).load()).parameters
        for keyword, fields in option_fields(design).items():
            assert keyword in params, (design, keyword)
            assert fields, (design, keyword)
    kw = {"n_rep": 2, "seed": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # routed, so no deprecation warning on the way
        route_option_fields("dml_panel", kw)
    assert kw == {"seed": 0, "options": {"n_rep": 2}}
    kw = {"kernel": "uniform", "n_boot": 99, "placebo": [0.5]}
    route_option_fields("rdd", kw)
    assert kw == {"bandwidth": {"kernel": "uniform"}, "inference": {"n_boot": 99},
                  "checks": {"placebo": [0.5]}}
