"""The documentation site builds with ``mkdocs build --strict`` (notebooks rendered, not
executed here: ``make docs`` executes them), and covers every design, notebook and the gallery."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


class _Loader(yaml.SafeLoader):
    """Reads mkdocs.yml's ``!ENV [NAME, default]`` tags as their default."""


_Loader.add_constructor("!ENV", lambda loader, node: loader.construct_sequence(node)[-1])


def _nav_files(nav) -> list[str]:
    out: list[str] = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        out.extend(_nav_files(value) if isinstance(value, list) else [value])
    return out


def test_nav_lists_every_page_notebook_and_design():
    cfg = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)
    files = _nav_files(cfg["nav"])
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"notebooks/{nb.name}" in files, f"{nb.name} is not in mkdocs.yml's nav"
    docs = ROOT / "docs"
    pages = {p.relative_to(docs).as_posix() for p in docs.rglob("*.md")
             if "notebooks" not in p.relative_to(docs).parts}
    assert pages <= set(files), f"pages missing from the nav: {sorted(pages - set(files))}"
    for design in ("ipw", "fe", "cate", "dml_panel", "debias", "rdd"):
        text = (docs / "designs" / f"{design}.md").read_text()
        for section in ("## Assumptions", "## Options", "## Peer equivalents"):
            assert section in text, f"docs/designs/{design}.md lacks '{section}'"
    assert "gallery.md" in files


def test_mkdocs_build_strict(tmp_path):
    env = dict(os.environ, GEOCAUSAL_DOCS_EXECUTE="false", NO_MKDOCS_2_WARNING="1")
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                        "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    api = (site / "api" / "designs" / "index.html").read_text()
    for fn in ("geocausal.api.ipw.aipw", "geocausal.api.cate.cate", "geocausal.api.rdd.rdd",
               "geocausal.api.dml_panel.dml_panel", "geocausal.api.fe.fe"):
        assert f'id="{fn}"' in api, f"{fn} has no API entry"
    vocab = (site / "vocabulary" / "index.html").read_text()
    assert "ml_l" in vocab and "cluster" in vocab
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        page = (site / "notebooks" / nb.stem / "index.html").read_text()
        assert "jp-Cell" in page and '"cell_type"' not in page, f"{nb.name} not rendered"
    assert (site / "gallery" / "index.html").is_file()
    assert not re.search(r"``\w", (site / "index.html").read_text())


def test_docs_hook_reads_its_switch(monkeypatch):
    import pytest
    from conftest import load_script

    hooks = load_script("docs/hooks.py", "geocausal_docs_hooks")
    monkeypatch.setenv("GEOCAUSAL_DOCS_EXECUTE", "maybe")
    with pytest.raises(ValueError, match="GEOCAUSAL_DOCS_EXECUTE"):
        hooks._wanted()
    monkeypatch.setenv("GEOCAUSAL_DOCS_EXECUTE", "false")
    files = [object()]
    assert hooks.on_files(files, {}) is files  # nothing executed, nothing touched
