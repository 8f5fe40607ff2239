"""Command line: help on each command, one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from geocausal.cli import build_parser, main


@pytest.mark.parametrize("cmd", [[], ["estimate"], ["extract"], ["embed"], ["demo"],
                                 ["paper", "run"]])
def test_help_on_each_command(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*cmd, "--help"])
    assert exc.value.code == 0
    assert "usage: geocausal" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["estimate", "--design", "nope", "--manifest", "m.yaml", "--formula", "y ~ d"],
     "unknown design 'nope'"),
    (["estimate", "--design", "aipw", "--manifest", "missing.yaml", "--formula", "y ~ d"],
     "'missing.yaml' not found"),
    (["estimate", "--design", "aipw"], "required"),
    (["paper", "run", "nope"], "unknown paper 'nope'"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_exits_2_with_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_bad_manifest_names_field_and_file(tmp_path, capsys):
    m = tmp_path / "study.yaml"
    m.write_text("name: x\nunits: {path: u.csv, id: id}\nchip: {size_px: 8}\n")
    rc = main(["estimate", "--design", "aipw", "--manifest", str(m), "--formula", "y ~ d"])
    err = capsys.readouterr().err
    assert rc == 2 and "study.yaml" in err and "'units'" in err and len(err.strip().splitlines()) == 1


def test_console_script_exit_code_in_a_subprocess(tmp_path):
    r = subprocess.run([sys.executable, "-m", "geocausal.cli", "paper", "run", "nope"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_parser_lists_every_design():
    text = build_parser().format_help()
    for cmd in ("estimate", "extract", "embed", "demo", "paper"):
        assert cmd in text


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from geocausal.datasets import synthetic_world

    return synthetic_world(tmp_path_factory.mktemp("world"), seed=3, n_units=120, size=8,
                           periods=(2012, 2018))


def test_estimate_end_to_end_writes_tidy_csv_json_and_figure(tiny_world, tmp_path, capsys):
    import json

    import pandas as pd

    out = tmp_path / "out"
    rc = main(["estimate", "--design", "aipw", "--manifest", str(tiny_world.manifest_path),
               "--formula", "y ~ d + x1 + x2", "--vcov", "cluster:country", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    tidy = pd.read_csv(out / "aipw.csv")
    payload = json.loads((out / "aipw.json").read_text())
    assert tidy.term.tolist() == ["d"] and tidy.std_error[0] > 0
    assert payload["vcov_type"] == "cluster(country)"
    assert payload["manifest_hash"] and payload["provenance"]["formula"] == "y ~ d + x1 + x2"
    assert (out / "aipw.png").stat().st_size > 0


def test_estimate_rejects_options_a_design_does_not_take(tiny_world, tmp_path, capsys):
    rc = main(["estimate", "--design", "fe", "--manifest", str(tiny_world.manifest_path),
               "--formula", "y ~ d + x1 | country", "--set", "bogus=1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "does not take ['bogus']" in err and len(err.strip().splitlines()) == 1
