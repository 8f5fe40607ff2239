"""mkdocs hook: with ``GEOCAUSAL_DOCS_EXECUTE=true`` (``make docs``), execute the notebooks
before mkdocs-jupyter renders them, from the repository root as the notebook tests do, into a
temporary folder (the committed notebooks are never rewritten). Without it the notebooks are
rendered as committed (``tests/test_docs.py``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_TEMP: list[Path] = []


def _wanted() -> bool:
    value = os.environ.get("GEOCAUSAL_DOCS_EXECUTE", "false").strip().lower()
    if value not in ("1", "true", "yes", "0", "false", "no", ""):
        raise ValueError(f"GEOCAUSAL_DOCS_EXECUTE={value!r}: use true or false")
    return value in ("1", "true", "yes")


def _execute(src: Path, out_dir: Path) -> Path:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(src, as_version=4)
    saved = os.environ.pop("MPLBACKEND", None)  # the kernel picks the inline backend itself
    try:
        NotebookClient(nb, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        if saved is not None:
            os.environ["MPLBACKEND"] = saved
    out = out_dir / "notebooks" / src.name  # mkdocs-jupyter matches "notebooks/*.ipynb"
    out.parent.mkdir(exist_ok=True)
    nbformat.write(nb, out)
    return out


def on_files(files, config):
    """Point every notebook page at an executed copy (when asked to execute)."""
    if not _wanted():
        return files
    out_dir = Path(tempfile.mkdtemp(prefix="geocausal-docs-notebooks-"))
    _TEMP.append(out_dir)
    for f in files:
        if f.src_uri.startswith("notebooks/") and f.src_uri.endswith(".ipynb"):
            print(f"executing {f.src_uri}", flush=True)
            executed = str(_execute(Path(f.abs_src_path), out_dir))
            inner = getattr(f, "file", None)  # mkdocs-jupyter wraps the File
            for obj in (f, inner) if inner is not None else (f,):
                obj.abs_src_path = executed
            assert f.abs_src_path == executed, "mkdocs-jupyter did not take the executed copy"
    return files


def on_post_build(config):
    """Remove the executed copies."""
    while _TEMP:
        shutil.rmtree(_TEMP.pop(), ignore_errors=True)
