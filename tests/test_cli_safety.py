"""The command line never destroys a user's files and never shows a traceback (issue 13, 14/16).

Every bad input exits with code 2 and exactly one line on stderr; outputs never replace a file
geocausal did not create unless ``--overwrite`` is given; ``paper run`` loads only the
package's own pipelines.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geocausal import _safety, cli
from geocausal._safety import (
    MARKER,
    check_replaceable_dir,
    check_writable_file,
    created_by_geocausal,
    prepare_output_dir,
)
from geocausal.cli import main
from geocausal.errors import DataError
from geocausal.parallel import check_workers, dask_client


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from geocausal.datasets import synthetic_world

    return synthetic_world(tmp_path_factory.mktemp("world"), seed=3, n_units=120, size=8,
                           periods=(2012, 2018))


@pytest.fixture(scope="module")
def bad_manifest(world, tmp_path_factory):
    """The same study with one infinite covariate and six units without a funder."""
    import geopandas as gpd

    folder = tmp_path_factory.mktemp("bad") / "world"
    shutil.copytree(world.out_dir, folder)
    units = gpd.read_file(folder / "units.gpkg")
    units.loc[0, "x1"] = np.inf
    units.loc[:5, "funder"] = None
    (folder / "units.gpkg").unlink()
    units.to_file(folder / "units.gpkg", layer="units", driver="GPKG", engine="pyogrio")
    return folder / "manifest.yaml"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- item 16
ESTIMATE = ["estimate", "--images", "none"]
CASES = {
    "inf in the data": (True, ["--design", "aipw", "--formula", "y ~ d + x1"],
                        "column 'x1' has 1 infinite value"),
    "by values that are None": (True, ["--design", "aipw", "--formula", "y ~ d + x2",
                                       "--by", "funder"],
                                "by column 'funder' has 6 missing value"),
    "by column missing": (False, ["--design", "aipw", "--formula", "y ~ d + x2", "--by", "nope"],
                          "by column 'nope' is not in the data"),
    "n_boot=0": (False, ["--design", "cate", "--formula", "y ~ d + x2", "--set", "n_boot=0"],
                 "n_boot=0: give an integer >= 1"),
    "folds a string": (False, ["--design", "aipw", "--formula", "y ~ d + x2",
                               "--set", 'folds="five"'], "folds='five': give an integer >= 2"),
    "folds=1": (False, ["--design", "aipw", "--formula", "y ~ d + x2", "--folds", "1"],
                "argument --folds: 1 is below 2"),
    "alpha out of range": (False, ["--design", "aipw", "--formula", "y ~ d + x2",
                                   "--set", "alpha=1.5"], "alpha=1.5"),
    "rdd without --running": (False, ["--design", "rdd", "--formula", "y ~ x2"],
                              "design 'rdd' needs --running COLUMN"),
    "dml_panel without --unit/--time": (False, ["--design", "dml_panel",
                                                "--formula", "y ~ d + x2"],
                                        "design 'dml_panel' needs --unit COLUMN, --time COLUMN"),
    "cutoff nan": (False, ["--design", "rdd", "--formula", "y ~ x2", "--running", "x1",
                           "--cutoff", "nan"], "'nan' is not a finite number"),
    "negative seed": (False, ["--design", "aipw", "--formula", "y ~ d", "--seed", "-1"],
                      "argument --seed: -1 is below 0"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_estimate_bad_input_exits_2_with_one_line(case, world, bad_manifest, tmp_path, capsys):
    bad, argv, needle = CASES[case]
    manifest = bad_manifest if bad else world.manifest_path
    out = tmp_path / "out"
    rc = main([*ESTIMATE, "--manifest", str(manifest), "--out", str(out), *argv])
    err = _one_line_error(capsys)
    assert rc == 2 and err.startswith("error: ") and needle in err, err
    assert not any(out.glob("*.csv")), "nothing is written on bad input"


def test_out_or_cache_pointing_at_a_file(world, tmp_path, capsys):
    f = tmp_path / "precious.txt"
    f.write_text("mine")
    m = str(world.manifest_path)
    runs = [
        (["estimate", "--design", "aipw", "--manifest", m, "--formula", "y ~ d", "--images",
          "none", "--out", str(f)], "is a file, not a folder"),
        (["estimate", "--design", "aipw", "--manifest", m, "--formula", "y ~ d", "--images",
          "none", "--out", str(f / "sub")], "is a file, so"),
        (["extract", "--manifest", m, "--cache", str(f), "--quiet"], "is a file, not a folder"),
        (["embed", "--cache", str(f), "--out", str(tmp_path / "e.parquet")],
         "is not a chips cache"),
        (["demo", "--out", str(f)], "is a file, not a folder"),
        (["paper", "run", "r3d", "--out", str(f)], "is a file, not a folder"),
    ]
    for argv, needle in runs:
        assert main(argv) == 2, argv
        err = _one_line_error(capsys)
        assert needle in err and str(f) in err, (argv, err)
    assert f.read_text() == "mine"


def test_extract_negative_workers_exits_2_instead_of_hanging(world, tmp_path):
    r = subprocess.run([sys.executable, "-m", "geocausal.cli", "extract", "--manifest",
                        str(world.manifest_path), "--cache", str(tmp_path / "c"),
                        "--workers", "-1", "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "--workers: -1 is below 1" in r.stderr


@pytest.mark.parametrize("flag,value,needle", [("--task-mb", "0", "0 is not a positive number"),
                                                ("--task-mb", "nan", "nan is not a positive"),
                                                ("--threads", "0", "0 is below 1")])
def test_extract_memory_flags_are_validated(world, tmp_path, capsys, flag, value, needle):
    """--threads and --task-mb (what the out-of-memory error says to lower) exit 2, one line."""
    argv = ["extract", "--manifest", str(world.manifest_path), "--cache", str(tmp_path / "c"),
            flag, value, "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_extract_task_mb_and_threads_reach_the_extractor(world, tmp_path, monkeypatch):
    seen = {}

    class Done:
        def report(self):
            return "done"

    def fake_extract(manifest, **kw):
        seen.update(kw)
        return Done()

    monkeypatch.setattr("geocausal.data.chips.extract", fake_extract)
    assert main(["extract", "--manifest", str(world.manifest_path), "--cache",
                 str(tmp_path / "c"), "--threads", "3", "--task-mb", "16", "--quiet"]) == 0
    assert seen["threads"] == 3 and seen["task_mb"] == 16.0


def test_unreachable_scheduler_fails_fast_with_one_line(world, tmp_path):
    address = f"tcp://127.0.0.1:{_free_port()}"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "geocausal.cli", "extract", "--manifest",
                        str(world.manifest_path), "--cache", str(tmp_path / "c"),
                        "--scheduler", address, "--quiet"],
                       capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - t0
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"cannot reach the Dask scheduler at '{address}'" in r.stderr
    assert elapsed < 25, f"took {elapsed:.1f} s (the connect timeout is 5 s)"


def test_unexpected_errors_are_one_line_exit_3_and_debug_shows_them(world, monkeypatch,
                                                                    capsys):
    import geocausal.data.chips as chips

    def boom(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(chips, "extract", boom)
    argv = ["extract", "--manifest", str(world.manifest_path)]
    assert main(argv) == 3
    err = _one_line_error(capsys)
    assert err.startswith("internal error: RuntimeError: boom second line") and "--debug" in err
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", *argv])
    monkeypatch.setenv("GEOCAUSAL_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(argv)


def test_warnings_print_as_one_line(monkeypatch, capsys):
    import warnings

    from geocausal.errors import GeocausalWarning

    def warn(args):
        warnings.warn("3 units trimmed\nsee diagnostics", GeocausalWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(cli, "cmd_demo", warn)
    assert main(["demo"]) == 0
    err = capsys.readouterr().err.strip()
    assert err == "warning: GeocausalWarning: 3 units trimmed see diagnostics"


# ----------------------------------------------------------------------------- item 14
def test_estimate_never_replaces_a_users_file(world, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "aipw.csv").write_text("my own table")
    argv = ["estimate", "--design", "aipw", "--manifest", str(world.manifest_path),
            "--formula", "y ~ d + x1", "--images", "none", "--out", str(out)]
    assert main(argv) == 2
    err = _one_line_error(capsys)
    assert "already holds ['aipw.csv']" in err and "--overwrite" in err
    assert (out / "aipw.csv").read_text() == "my own table"
    assert sorted(p.name for p in out.iterdir()) == ["aipw.csv"]
    assert main([*argv, "--overwrite"]) == 0
    assert pd.read_csv(out / "aipw.csv").term.tolist() == ["d"]
    assert not created_by_geocausal(out), "a user's folder is never claimed"
    # a folder geocausal created may be written again without --overwrite
    new = tmp_path / "new"
    assert main([*argv[:-1], str(new)]) == 0 and created_by_geocausal(new)
    assert main([*argv[:-1], str(new)]) == 0
    capsys.readouterr()


def test_embed_never_replaces_a_users_file(world, tmp_path, capsys):
    from geocausal.data.chips import extract

    res = extract(world.manifest_path, cache_dir=tmp_path / "cache", progress=False)
    target = tmp_path / "emb.parquet"
    target.write_text("precious")
    argv = ["embed", "--cache", str(res.path), "--out", str(target), "--encoder", "random"]
    assert main(argv) == 2
    err = _one_line_error(capsys)
    assert "already exists and was not written by geocausal" in err
    assert target.read_text() == "precious"
    assert main([*argv, "--overwrite"]) == 0
    assert pd.read_parquet(target).shape[0] == 120 * 2
    # a file in a folder geocausal created is replaced without --overwrite
    inside = tmp_path / "made" / "emb.parquet"
    assert main([*argv[:4], str(inside), *argv[5:]]) == 0
    assert main([*argv[:4], str(inside), *argv[5:]]) == 0
    assert main(["embed", "--cache", str(res.path), "--out", str(tmp_path)]) == 2
    capsys.readouterr()


def test_demo_refuses_a_folder_of_user_files(tmp_path, capsys):
    out = tmp_path / "D"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert main(["demo", "--out", str(out), "--units", "40", "--size", "8"]) == 2
    err = _one_line_error(capsys)
    assert "not empty and was not created by geocausal" in err and "--overwrite" in err
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    assert (out / "thesis.tex").read_text() == "years of work"


def test_paper_run_loads_only_the_packages_pipeline(tmp_path, monkeypatch, capsys):
    fake = tmp_path / "paper" / "r3d"
    fake.mkdir(parents=True)
    pwned = tmp_path / "pwned"
    fake.joinpath("pipeline.py").write_text(
        f"from pathlib import Path\nPath({str(pwned)!r}).write_text('ran')\n"
        "def run(full, out, seed):\n    pass\n")
    monkeypatch.chdir(tmp_path)
    path = cli._paper_dir("r3d")
    assert path == Path(cli.__file__).resolve().parents[1] / "paper" / "r3d" / "pipeline.py"
    assert tmp_path not in path.parents
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.md").write_text("mine")
    assert main(["paper", "run", "r3d", "--out", str(user)]) == 2
    assert "not empty and was not created by geocausal" in _one_line_error(capsys)
    assert not pwned.exists(), "code from the working directory must never run"
    assert [p.name for p in user.iterdir()] == ["notes.md"]


# ----------------------------------------------------------------------------- helpers
def test_prepare_output_dir_rules(tmp_path):
    new = prepare_output_dir(tmp_path / "a" / "b", names=["x.csv"])
    assert created_by_geocausal(new) and (new / MARKER).is_file()
    (new / "x.csv").write_text("old")
    prepare_output_dir(new, names=["x.csv"])  # geocausal's own folder: allowed
    with pytest.raises(DataError, match="already holds"):
        prepare_output_dir(new, names=["x.csv"], trust_marker=False)
    prepare_output_dir(new, names=["x.csv"], trust_marker=False, overwrite=True, clear=True)
    assert not (new / "x.csv").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    assert created_by_geocausal(prepare_output_dir(empty))
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    prepare_output_dir(user, names=["x.csv"])  # no clash: writes next to the user's file
    assert not created_by_geocausal(user)
    with pytest.raises(DataError, match="not empty and was not created by geocausal"):
        prepare_output_dir(user)
    with pytest.raises(DataError, match=r"already holds \['notes.txt'\]"):
        prepare_output_dir(user, names=["notes.txt"], clear=True)
    prepare_output_dir(user, overwrite=True)
    assert (user / "notes.txt").read_text() == "mine", "overwrite alone deletes nothing"


def test_check_writable_file_and_replaceable_dir(tmp_path):
    f = tmp_path / "f.parquet"
    check_writable_file(f)
    f.write_text("x")
    with pytest.raises(DataError, match="already exists"):
        check_writable_file(f)
    check_writable_file(f, overwrite=True)
    with pytest.raises(DataError, match="is a folder"):
        check_writable_file(tmp_path)
    with pytest.raises(DataError, match="is a file, so"):
        check_writable_file(f / "g.parquet")
    check_replaceable_dir(tmp_path / "missing")
    with pytest.raises(DataError, match="not created by geocausal"):
        check_replaceable_dir(tmp_path)
    check_replaceable_dir(tmp_path, overwrite=True)
    check_replaceable_dir(_safety.mark_created(tmp_path))


@pytest.mark.parametrize("workers", [-1, 0, 2.5, True, "4"])
def test_dask_client_rejects_bad_worker_counts(workers):
    with pytest.raises(DataError, match="workers="), dask_client(workers=workers):
        pass
    with pytest.raises(DataError):
        check_workers(workers)


def test_dask_client_unreachable_scheduler_times_out(tmp_path):
    address = f"tcp://127.0.0.1:{_free_port()}"
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="cannot reach the Dask scheduler"), \
            dask_client(address=address, timeout=1):
        pass
    assert time.perf_counter() - t0 < 10


def test_connect_timeout_from_the_environment(monkeypatch):
    from geocausal.parallel import CONNECT_TIMEOUT_S, connect_timeout

    assert connect_timeout() == CONNECT_TIMEOUT_S == 5.0
    monkeypatch.setenv("GEOCAUSAL_CONNECT_TIMEOUT", "12")
    assert connect_timeout() == 12.0 and connect_timeout(3) == 3.0
    monkeypatch.setenv("GEOCAUSAL_CONNECT_TIMEOUT", "soon")
    with pytest.raises(DataError, match="GEOCAUSAL_CONNECT_TIMEOUT='soon'"):
        connect_timeout()
