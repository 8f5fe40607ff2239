"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]


def execute_notebook(name: str, timeout: int = 600) -> None:
    """Execute ``notebooks/<name>`` at small size (GEOCAUSAL_SMALL=1) and fail on any error."""
    import nbformat
    from nbclient import NotebookClient

    path = ROOT / "notebooks" / name
    nb = nbformat.read(path, as_version=4)
    os.environ["GEOCAUSAL_SMALL"] = "1"
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}})
    client.execute()


@pytest.fixture
def run_notebook():
    """Fixture returning :func:`execute_notebook`."""
    return execute_notebook
