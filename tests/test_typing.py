"""mypy on the public API (issue 14 item 8): the faces, options, results and vocabulary type-check.

The list below is the one ``make lint`` checks too (``PUBLIC_API`` in the Makefile); the settings
are the ``[tool.mypy]`` section of pyproject.toml (python 3.11, missing imports ignored, imports
followed silently, unused ``type: ignore`` comments are errors).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: the public API mypy checks: package entry, vocabulary, formula and folds, every face in
#: geocausal/api/, the result objects and the modules that define the option dataclasses
PUBLIC_API = (
    "geocausal/__init__.py",
    "geocausal/registry.py",
    "geocausal/vocabulary.py",
    "geocausal/folds.py",
    "geocausal/errors.py",
    "geocausal/formula.py",
    "geocausal/api/",
    "geocausal/results/estimate.py",
    "geocausal/results/readonly.py",
    "geocausal/results/sensitivity.py",
    "geocausal/designs/rdd/options.py",
    "geocausal/designs/ipw.py",
    "geocausal/designs/cate.py",
    "geocausal/designs/dml_panel.py",
    "geocausal/designs/debias.py",
)


def test_makefile_lint_checks_the_same_list():
    """``make lint`` runs mypy on exactly the files this test checks."""
    make = (ROOT / "Makefile").read_text()
    m = re.search(r"^PUBLIC_API\s*:=\s*(.+)$", make, flags=re.M)
    assert m, "Makefile has no PUBLIC_API := ... line"
    assert tuple(m.group(1).split()) == PUBLIC_API
    assert "mypy $(PUBLIC_API)" in make


def test_public_api_paths_exist():
    missing = [p for p in PUBLIC_API if not (ROOT / p).exists()]
    assert not missing, f"PUBLIC_API names paths that do not exist: {missing}"


def test_mypy_public_api(tmp_path_factory):
    pytest.importorskip("mypy")
    cache = tmp_path_factory.mktemp("mypy_cache")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(cache), "--no-color-output", "--no-error-summary",
         "--show-error-codes", *PUBLIC_API],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    errors = [ln for ln in proc.stdout.splitlines() if ": error:" in ln]
    assert proc.returncode == 0 and not errors, (
        f"mypy found {len(errors)} error(s) in the public API (exit {proc.returncode}); fix the "
        "annotations or narrow the types (a targeted `# type: ignore[code]` with a reason only "
        "where a third-party stub is wrong):\n" + "\n".join(errors or [proc.stdout, proc.stderr]))
