"""The import graph runs one way (issue 14, item 5).

Every module under ``geocausal/`` is parsed (``ast``: module-level and function-level imports,
relative ones resolved; docstrings and strings are not imports) and each import of another
geocausal module must point to the same layer or a lower one:

====  ===================  =============================================================
rank  layer                modules
====  ===================  =============================================================
0     leaf                 errors, _safety, _progress, parallel, folds, vocabulary,
                           registry: utilities that import only other leaves
1     data                 data/, datasets/, and features.roles / features.indices
2     features, encoders   features/, encoders/, and data.study
3     nuisance             nuisance/
4     inference            inference/
5     designs              designs/ and formula
6     results              results/
7     api                  api/, the package root (``gc.*``), speccurve
8     cli, demo, paper     cli, demo, paper_labels
====  ===================  =============================================================

Decisions, documented here once:

* **inference sits below designs.** The issue writes the data flow as ``designs ->
  inference`` (a design's influence functions feed the variance), but the imports go the other
  way: designs call the one covariance registry and bootstrap of ``inference/`` (item 3 of the
  same issue asks ``fe``, the influence-function designs, placement and the rdd bootstrap to
  use it), while nothing in ``inference/`` imports a design. Ranking inference below designs
  is the only one-way order of that graph; swap the two numbers in :data:`LAYERS` to enforce
  the literal order instead.
* ``features.roles`` and ``features.indices`` (band names and spectral-index formulas; they
  import nothing of geocausal but ``errors``) sit with ``data``: manifest validation and zonal
  statistics use them.
* ``data.study`` assembles units, joins, zonal statistics *and* image features, so it sits
  with ``features`` (it imports :mod:`geocausal.features.images`).
* ``formula`` checks the values of a model matrix with ``designs.common`` and the CATE model
  parses formulas, so it sits with ``designs``.
* Imports under ``if TYPE_CHECKING:`` are annotations, not imports, and are skipped.
* Names a package loads lazily from strings (``geocausal.data._LAZY``, the root's ``_LAZY``,
  ``registry``) are not imports; the modules they name are checked where they import.
"""

from __future__ import annotations

import ast
import functools
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "geocausal"

LEAF, DATA, FEATURES, NUISANCE, INFERENCE, DESIGNS, RESULTS, API, TOP = range(9)

#: layer of each subpackage / module; the longest dotted prefix of a module's name decides
LAYERS: dict[str, int] = {
    "geocausal.errors": LEAF,
    "geocausal._safety": LEAF,
    "geocausal._progress": LEAF,
    "geocausal.parallel": LEAF,
    "geocausal.folds": LEAF,
    "geocausal.vocabulary": LEAF,
    "geocausal.registry": LEAF,
    "geocausal.data": DATA,
    "geocausal.datasets": DATA,
    "geocausal.features.roles": DATA,
    "geocausal.features.indices": DATA,
    "geocausal.features": FEATURES,
    "geocausal.encoders": FEATURES,
    "geocausal.data.study": FEATURES,
    "geocausal.nuisance": NUISANCE,
    "geocausal.inference": INFERENCE,
    "geocausal.designs": DESIGNS,
    "geocausal.formula": DESIGNS,
    "geocausal.results": RESULTS,
    "geocausal.api": API,
    "geocausal": API,  # the package root: the flat public API
    "geocausal.speccurve": API,
    "geocausal.cli": TOP,
    "geocausal.demo": TOP,
    "geocausal.paper_labels": TOP,
}

NAMES = {LEAF: "leaf", DATA: "data", FEATURES: "features/encoders", NUISANCE: "nuisance",
         INFERENCE: "inference", DESIGNS: "designs", RESULTS: "results", API: "api",
         TOP: "cli/demo/paper"}

#: known upward imports that other engineers are removing now; the lead empties this set
PENDING: set[tuple[str, str]] = set()


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str, root: Path) -> bool:
    rel = Path(*name.split("."))
    return (root.parent / rel).with_suffix(".py").is_file() or (root.parent / rel).is_dir()


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            t = node.test
            if (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
                    isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"):
                skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """The geocausal modules ``path`` imports (module and function level)."""
    me = module_name(path, root)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "geocausal")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "geocausal":
                continue
            for a in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{target}.{a.name}"
                out.add(sub if _is_module(sub, root) else target)
    out.discard(me)
    return out


def layer_of(module: str) -> int:
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        key = ".".join(parts[:k])
        if key in LAYERS:
            return LAYERS[key]
    raise KeyError(module)


@functools.cache
def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Every module under ``root`` and the geocausal modules it imports (parsed once)."""
    return {module_name(p, root): imports_of(p, root) for p in sorted(root.rglob("*.py"))}


def layer_edges(root: Path = ROOT) -> Counter:
    """Count of import edges between layers: ``(from layer, to layer) -> n``."""
    c: Counter = Counter()
    for a, targets in import_graph(root).items():
        for b in targets:
            c[(NAMES[layer_of(a)], NAMES[layer_of(b)])] += 1
    return c


def upward_imports(root: Path = ROOT) -> set[tuple[str, str]]:
    return {(a, b) for a, targets in import_graph(root).items() for b in targets
            if layer_of(b) > layer_of(a)}


def test_every_module_has_a_layer():
    unknown = []
    for name in import_graph(ROOT):
        try:
            layer_of(name)
        except KeyError:
            unknown.append(name)
    assert not unknown, f"add these modules to LAYERS in tests/test_layers.py: {unknown}"


def test_the_import_graph_runs_one_way():
    bad = sorted(upward_imports() - PENDING)
    lines = [f"{a} ({NAMES[layer_of(a)]}) imports {b} ({NAMES[layer_of(b)]})" for a, b in bad]
    assert not bad, "imports of a higher layer:\n" + "\n".join(lines)


def test_pending_violations_are_still_real():
    """An entry of PENDING that is fixed must leave the set (so it cannot hide a new one)."""
    stale = sorted(PENDING - upward_imports())
    assert not stale, f"fixed, remove from PENDING in tests/test_layers.py: {stale}"


def test_encoders_and_nuisance_do_not_form_a_cycle():
    graph = import_graph(ROOT)
    enc_to_nuis = [(a, b) for a, t in graph.items() if a.startswith("geocausal.encoders")
                   for b in t if b.startswith("geocausal.nuisance")]
    assert enc_to_nuis == []


@pytest.mark.parametrize("module", ["geocausal.data.study", "geocausal.designs.cate_eval"])
def test_fixed_violations_stay_fixed(module):
    path = ROOT.parent / Path(*module.split("."))
    targets = imports_of(path.with_suffix(".py"))
    assert not any(t.startswith(("geocausal.api", "geocausal.results")) for t in targets)


def test_the_scanner_sees_function_level_relative_and_from_package_imports(tmp_path):
    pkg = tmp_path / "geocausal"
    (pkg / "data").mkdir(parents=True)
    (pkg / "api").mkdir()
    for f in ("__init__.py", "data/__init__.py", "api/__init__.py", "api/face.py",
              "errors.py"):
        (pkg / f).write_text("")
    (pkg / "data" / "bad.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from .. import errors\n"
        "if TYPE_CHECKING:\n    from geocausal.results import Estimate\n"
        "def f():\n    from geocausal.api import face\n    import geocausal.api.face\n")
    got = imports_of(pkg / "data" / "bad.py", pkg)
    assert got == {"geocausal.errors", "geocausal.api.face"}
    assert {(a, b) for a, t in import_graph(pkg).items() for b in t
            if layer_of(b) > layer_of(a)} == {("geocausal.data.bad", "geocausal.api.face")}
