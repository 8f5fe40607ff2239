"""An installed wheel works outside a checkout and never writes inside the installed package.

The wheel is built offline (``--no-build-isolation``: setuptools and wheel come from the test
extra) from a copy of the sources, installed without dependencies into a fresh venv that
sees the current environment's packages through a ``.pth`` line, and run from a folder
outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
         timeout: int = 600) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def _package_files(site: Path) -> dict[str, int]:
    """Files of the installed package (byte-code caches aside) -> size."""
    pkg = site / "geocausal"
    return {p.relative_to(pkg).as_posix(): p.stat().st_size for p in pkg.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "geocausal", src / "geocausal",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(dist), "."], cwd=src)
    (wheel,) = dist.glob("geocausal-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "geocausal/datasets/manifests/demo.yaml" in names
    assert "geocausal/datasets/manifests/sentinel2_semisynthetic.yaml" in names
    assert not [n for n in names if n.startswith(("tests/", "paper/", "data_manifests/"))]

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    vpy = venv / "bin" / "python"
    site = Path(_run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     cwd=tmp_path).stdout.strip())
    # dependencies from the current environment, after the venv's own site-packages (its .pth
    # files, such as an editable install of this checkout, are not processed from there)
    (site / "_deps_from_test_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(vpy), "install", "--no-deps", "-q",
          str(wheel)], cwd=tmp_path)
    before = _package_files(site)

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"GEOCAUSAL_DATA_DIR": str(tmp_path / "user-data"), "MPLBACKEND": "Agg",
                "OMP_NUM_THREADS": "1", "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"})
    where = _run([str(vpy), "-c", "import geocausal, sys; print(geocausal.__file__)"],
                 cwd=work, env=env).stdout.strip()
    assert Path(where).resolve().is_relative_to(site.resolve()), where  # not the checkout

    r = _run([str(venv / "bin" / "geocausal"), "demo", "--out", "x", "--units", "60",
              "--size", "8"], cwd=work, env=env)
    assert (work / "x" / "provenance.json").is_file(), r.stdout[-2000:]
    # a shipped study from the wheel: manifest from package data, files in the user data folder
    r = _run([str(vpy), "-c", "import geocausal as gc; print(gc.datasets.ensure_study('demo'))"],
             cwd=work, env=env)
    assert Path(r.stdout.strip()) == (tmp_path / "user-data" / "studies" / "demo.yaml")
    assert (tmp_path / "user-data" / "studies" / "demo" / "units.gpkg").is_file()
    # paper pipelines ship with a checkout only: a one-line refusal (exit 2), not a traceback
    r = subprocess.run([str(venv / "bin" / "geocausal"), "paper", "run", "r3d", "--out", "p"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "source checkout" in r.stderr and "Traceback" not in r.stderr

    assert _package_files(site) == before  # nothing written inside the installed package
    assert sorted(p.name for p in work.iterdir()) == ["x"]
