"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]


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
