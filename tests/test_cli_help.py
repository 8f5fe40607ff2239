"""CLI help (plain text, examples that parse), paper-run reporting, and user data folders."""

from __future__ import annotations

import re
import shlex

import pytest

from geocausal.cli import _COMMANDS, PAPERS, _materialise_shipped, build_parser, main
from geocausal.errors import DataError

SUBCOMMANDS = [["estimate"], ["extract"], ["embed"], ["demo"], ["paper"], ["paper", "run"]]


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], *SUBCOMMANDS], ids=lambda a: " ".join(a) or "top")
def test_help_is_plain_text_with_examples(argv, capsys):
    text = _help(argv, capsys)
    assert "``" not in text and ":func:" not in text and ":mod:" not in text
    assert "examples:\n  geocausal " in text
    head = text.split("\n\n")[1]  # the description paragraph after the usage block
    assert len(head.split()) >= 8, head


def _examples(epilog: str) -> list[list[str]]:
    """The 'geocausal ...' command lines of an epilog, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", epilog)
    return [shlex.split(line.strip())[1:] for line in joined.splitlines()
            if line.strip().startswith("geocausal ")]


def test_every_example_in_the_help_parses():
    from geocausal.cli import _EPILOG

    lines = _examples(_EPILOG) + [a for _, _, ep in _COMMANDS.values() for a in _examples(ep)]
    assert len(lines) >= 15
    parser = build_parser()
    for argv in lines:
        args = parser.parse_args(argv)  # a CliError (bad flag or value) fails the test
        assert args.func is not None, argv
        if args.command == "estimate":
            from geocausal.cli import DESIGNS

            assert args.design in DESIGNS
        if args.command == "paper":
            assert args.name in PAPERS


def test_paper_run_reports_steps_and_files(tmp_path, capsys):
    out = tmp_path / "r3d"
    assert main(["paper", "run", "r3d", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for step in ("[1/3] loading", "[2/3] running", "[3/3] done"):
        assert step in text
    assert f"output:   {out.resolve()}" in text
    listed = re.findall(r"^  (\S+)  \(\d", text, flags=re.M)
    assert listed and "provenance.json" in listed
    n = int(re.search(r"wrote (\d+) files", text).group(1))
    assert n == len(listed)
    for rel in listed:
        assert (out / rel).is_file()
    # a rerun into the same (marked) folder lists the files it rewrote
    assert main(["paper", "run", "r3d", "--out", str(out)]) == 0
    assert "provenance.json" in capsys.readouterr().out


def test_paper_run_default_out_is_in_the_user_data_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEOCAUSAL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert main(["paper", "run", "r3d"]) == 0
    text = capsys.readouterr().out
    where = (tmp_path / "data" / "paper" / "r3d").resolve()
    assert f"output:   {where}" in text and "default folder" in text
    assert (where / "provenance.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing in the cwd


def test_shipped_manifest_resolves_to_the_user_data_folder(tmp_path, monkeypatch):
    from geocausal.datasets import shipped_manifest

    monkeypatch.setenv("GEOCAUSAL_DATA_DIR", str(tmp_path))
    by_name = _materialise_shipped("demo")
    assert by_name == tmp_path.resolve() / "studies" / "demo.yaml"
    assert (tmp_path / "studies" / "demo" / "units.gpkg").is_file()
    # the read-only copy inside the package resolves to the same user copy
    assert _materialise_shipped(shipped_manifest("demo")) == by_name
    assert not (shipped_manifest("demo").parent / "demo").exists()
    other = tmp_path / "mine.yaml"
    assert _materialise_shipped(other) == other  # any other path is left alone


def test_data_dir_env_is_validated(monkeypatch):
    from geocausal.datasets import data_dir
    from geocausal.datasets.folders import PACKAGE_DIR

    monkeypatch.setenv("GEOCAUSAL_DATA_DIR", "   ")
    with pytest.raises(DataError, match="GEOCAUSAL_DATA_DIR is blank"):
        data_dir()
    monkeypatch.setenv("GEOCAUSAL_DATA_DIR", str(PACKAGE_DIR / "datasets"))
    with pytest.raises(DataError, match="inside the installed geocausal package"):
        data_dir()
    monkeypatch.setenv("GEOCAUSAL_DATA_DIR", "")
    assert "geocausal" in str(data_dir())  # empty: the platform's user data folder


def test_edited_user_manifest_is_refused(tmp_path):
    from geocausal.datasets import ensure_study, shipped_manifest

    (tmp_path / "demo.yaml").write_text(shipped_manifest("demo").read_text() + "\n# edited\n")
    with pytest.raises(DataError, match="differs from the 'demo' manifest shipped"):
        ensure_study("demo", root=tmp_path)
