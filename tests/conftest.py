"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]


def load_script(relpath: str, name: str, *, cache: bool = False):
    """Import a script of the repository that is not part of the package (``benchmarks/``,
    ``paper/``, ``docs/``) from its path relative to the root. ``cache=True`` registers it in
    ``sys.modules`` under ``name`` and returns the registered module on later calls (tests
    that share one module); otherwise every call executes it afresh.
    """
    import importlib.util
    import sys

    if cache and name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / relpath)
    mod = importlib.util.module_from_spec(spec)
    if cache:
        sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def execute_notebook(name: str, timeout: int = 600):
    """Execute ``notebooks/<name>`` at small size (GEOCAUSAL_SMALL=1) in a real kernel with
    its default (inline) matplotlib backend, fail on any error, and return the executed
    notebook (see ``tests/_notebooks.py`` for the checks of its figure outputs)."""
    import nbformat
    from nbclient import NotebookClient

    path = ROOT / "notebooks" / name
    nb = nbformat.read(path, as_version=4)
    os.environ["GEOCAUSAL_SMALL"] = "1"
    saved = os.environ.pop("MPLBACKEND", None)  # the kernel picks the inline backend itself
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT)}})
        client.execute()
    finally:
        if saved is not None:
            os.environ["MPLBACKEND"] = saved
    return nb


@pytest.fixture
def run_notebook():
    """Fixture returning :func:`execute_notebook`."""
    return execute_notebook


# ----------------------------------------------------------------------------- test tiers
#: tiers of whole test modules (markers registered in pyproject.toml); a single test can also
#: carry ``@pytest.mark.slow`` etc. ``make test`` runs every tier (gpu tests skip without a
#: GPU); ``make test-fast`` deselects slow, montecarlo, notebook and paper.
TIERS: dict[str, str] = {
    "test_rdd_coverage.py": "montecarlo",
    "test_dml_panel_mc.py": "montecarlo",
    "test_demo.py": "slow",
    "test_docs.py": "slow",
    "test_wheel.py": "slow",
    "test_encoders_learning.py": "slow",
    "test_dask.py": "slow",
    # JAX training, compilation or streaming of chips caches (each test several seconds)
    "test_encoders.py": "slow",
    "test_encoders_sharding.py": "slow",
    "test_streaming.py": "slow",
    "test_stream_train.py": "slow",
    "test_stream_design.py": "slow",
    # whole-README run and a mypy run over the public API
    "test_readme.py": "slow",
    "test_typing.py": "slow",
}
#: single tests of a tier inside otherwise fast modules (the slowest of the fast tier, measured
#: with --durations on 2 shared cores)
TEST_TIERS: dict[str, str] = {
    "test_cate.py::test_blp_coverage_and_size": "montecarlo",
    "test_debias_inference.py::test_clustered_intervals_cover_where_unit_level_ones_do_not":
        "montecarlo",
    "test_debias_inference.py::test_lcc_interval_coverage_monte_carlo": "montecarlo",
    "test_debias_inference.py::test_tweedie_bootstrap_coverage_monte_carlo": "montecarlo",
    "test_cli_help.py::test_paper_run_reports_steps_and_files": "paper",
    "test_cli_help.py::test_paper_run_default_out_is_in_the_user_data_folder": "paper",
    "test_chips.py::test_dask_workers_equal_serial": "slow",
    "test_ipw.py::test_image_learners_also_adjust_for_the_formula_controls": "slow",
    "test_ipw.py::test_image_learner_propensity_with_salience": "slow",
    "test_stacking.py::test_default_stack_removes_image_confounding_and_records_quality": "slow",
    "test_stacking.py::test_learned_candidate_end_to_end_with_salience": "slow",
    "test_stacking.py::test_multiscale_features_mask_nan_and_warn_when_not_converged": "slow",
    "test_image_representations_mc.py::test_one_draw_and_the_report": "slow",
    "test_imports.py::test_importing_every_module_changes_nothing": "slow",
    "test_ppi.py::test_ols_matches_ppi_py": "slow",
    "test_plots.py::test_gallery_renders_every_figure": "slow",
    "test_cli_safety.py::test_unreachable_scheduler_fails_fast_with_one_line": "slow",
    "test_cli_safety.py::test_embed_never_replaces_a_users_file": "slow",
}
#: doctests of these modules (and their submodules) train or compile JAX models: slow
SLOW_DOCTESTS: tuple[str, ...] = ("geocausal.encoders", "geocausal.nuisance.image_learner",
                                  "geocausal.demo")
#: module-name prefixes of a tier: every notebook and paper test, present and future
PREFIX_TIERS: dict[str, str] = {"test_notebook_": "notebook", "test_paper_": "paper"}
#: fast modules under a tier prefix (no pipeline runs)
UNTIERED = {"test_paper_labels.py"}


def tier_of(filename: str) -> str | None:
    """The tier marker of a test module, or None (the fast tier)."""
    if filename in UNTIERED:
        return None
    if filename in TIERS:
        return TIERS[filename]
    return next((t for p, t in PREFIX_TIERS.items() if filename.startswith(p)), None)


def _has_gpu() -> bool:
    try:
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    except Exception:  # no backend at all: no GPU
        return False


def pytest_collection_modifyitems(config, items):
    """Mark each test with its module's tier; skip gpu tests when JAX sees no GPU."""
    for item in items:
        name = Path(str(item.fspath)).name
        tier = (TEST_TIERS.get(f"{name}::{getattr(item, 'originalname', item.name)}")
                or tier_of(name))
        if name == "test_doctests.py" and item.name.startswith(
                tuple(f"test_docstring_examples[{m}" for m in SLOW_DOCTESTS)):
            tier = "slow"
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
    gpu_items = [i for i in items if i.get_closest_marker("gpu")]
    if gpu_items and not _has_gpu():
        skip = pytest.mark.skip(reason="needs a GPU visible to JAX (pip install '.[gpu]')")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture
def never_whole(monkeypatch):
    """Loading a whole chips cache (an array of it, or a lazy view's ``load``) fails the test."""
    from geocausal.data.chips import UnitOrderArray
    from geocausal.features.align import ChipsView

    def refuse(self, dtype=None, copy=None):
        raise AssertionError("the whole chips cache was loaded")

    monkeypatch.setattr(UnitOrderArray, "__array__", refuse)
    monkeypatch.setattr(UnitOrderArray, "_all", refuse)
    monkeypatch.setattr(ChipsView, "__array__", refuse)
    monkeypatch.setattr(ChipsView, "load", refuse)
