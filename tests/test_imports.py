"""Importing geocausal has no side effects.

Every module of the package is imported in a fresh subprocess with an empty ``HOME``; nothing
may change: JAX's compilation-cache folder, the matplotlib backend, environment variables,
numpy's error handling, and the files under ``HOME``. A canary run plants each side effect on
purpose and checks that the probe sees it, so the probe itself can fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent(r"""
    import importlib, json, os, pkgutil, sys
    from pathlib import Path

    import matplotlib
    import numpy as np

    def home_files():
        home = Path(os.environ["HOME"])
        return sorted(str(p.relative_to(home)) for p in home.rglob("*"))

    def state():
        import jax  # noqa: imported for its configuration only
        return {
            "jax_cache": jax.config.jax_compilation_cache_dir,
            "backend": repr(matplotlib.rcParams._get_backend_or_none()),
            "env": dict(os.environ),
            "np_err": np.geterr(),
            "home": home_files(),
        }

    # third-party packages with import-time effects of their own (scikit-learn sets KMP_*
    # variables) are imported first: the probe judges geocausal's modules, not theirs
    import sklearn, jax, matplotlib.pyplot  # noqa: F401
    before = state()
    import geocausal
    names = ["geocausal"] + [m.name for m in pkgutil.walk_packages(geocausal.__path__,
                                                                   "geocausal.")]
    failed = {}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # reported, not hidden
            failed[name] = f"{type(exc).__name__}: {exc}"
    after = state()

    def diff(a, b):
        out = {k: [a[k], b[k]] for k in a if k != "env" and a[k] != b[k]}
        env = {k: [a["env"].get(k), b["env"].get(k)] for k in set(a["env"]) | set(b["env"])
               if a["env"].get(k) != b["env"].get(k)}
        if env:
            out["env"] = env
        return out

    # the canary: plant every side effect the probe must see, so that the probe can fail
    matplotlib.use("Agg")
    os.environ["GEOCAUSAL_CANARY"] = "1"
    np.seterr(all="ignore")
    jax.config.update("jax_compilation_cache_dir", str(Path(os.environ["HOME"], "jaxc")))
    Path(os.environ["HOME"], ".cache", "geocausal").mkdir(parents=True)
    print(json.dumps({"modules": len(names), "failed": failed, "changed": diff(before, after),
                      "canary": diff(after, state())}))
""")


def _probe(tmp_path: Path, *args: str) -> dict:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("MPLBACKEND", "GEOCAUSAL_JAX_CACHE", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
                        "XDG_DATA_HOME")}
    # matplotlib's own font cache is matplotlib's business, not an import side effect of ours
    env.update(HOME=str(home), MPLCONFIGDIR=str(tmp_path / "mpl"), JAX_PLATFORMS="cpu",
               OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_importing_every_module_changes_nothing(tmp_path):
    out = _probe(tmp_path)
    assert out["modules"] > 80, out["modules"]  # the walk really found the package
    assert not out["failed"], out["failed"]
    assert not out["changed"], out["changed"]
    # the same probe sees each side effect when one is planted on purpose
    canary = out["canary"]
    assert set(canary) == {"jax_cache", "backend", "env", "np_err", "home"}, canary
    assert canary["jax_cache"][0] is None and canary["jax_cache"][1].endswith("jaxc")
    assert "agg" in canary["backend"][1].lower()
    assert canary["env"] == {"GEOCAUSAL_CANARY": [None, "1"]}
    assert ".cache/geocausal" in canary["home"][1]


@pytest.fixture
def no_cache(monkeypatch):
    """JAX's compilation-cache folder switched off for the test, then restored."""
    import jax

    previous = jax.config.jax_compilation_cache_dir  # a cache configured before: restored
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.delenv("GEOCAUSAL_JAX_CACHE", raising=False)
    yield jax
    jax.config.update("jax_compilation_cache_dir", previous)


def test_compile_cache_is_opt_in(tmp_path, monkeypatch, no_cache):
    """On only when asked: a folder given to ``enable_compile_cache``, or named by
    ``GEOCAUSAL_JAX_CACHE``; unset or ``"0"`` leaves it off; an existing one is kept."""
    from geocausal.encoders import enable_compile_cache

    jax = no_cache
    assert enable_compile_cache() is None
    monkeypatch.setenv("GEOCAUSAL_JAX_CACHE", "0")
    assert enable_compile_cache() is None
    assert jax.config.jax_compilation_cache_dir is None
    env_folder = tmp_path / "from env" / "jax"
    monkeypatch.setenv("GEOCAUSAL_JAX_CACHE", str(env_folder))
    assert enable_compile_cache() == env_folder and env_folder.is_dir()
    assert jax.config.jax_compilation_cache_dir == str(env_folder)
    # a cache already configured is left alone
    assert enable_compile_cache(tmp_path / "other") == env_folder
    assert not (tmp_path / "other").exists()
    jax.config.update("jax_compilation_cache_dir", None)
    folder = tmp_path / "given"
    assert enable_compile_cache(folder) == folder and folder.is_dir()
    assert jax.config.jax_compilation_cache_dir == str(folder)


def test_compile_cache_refuses_an_unwritable_folder(tmp_path, no_cache):
    from geocausal.encoders import enable_compile_cache
    from geocausal.errors import DataError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="cannot create the JAX compilation cache"):
        enable_compile_cache(blocker / "sub")
    assert no_cache.config.jax_compilation_cache_dir is None


def test_fit_asks_for_the_cache(monkeypatch):
    """Training asks for the cache (a no-op unless ``GEOCAUSAL_JAX_CACHE`` is set)."""
    from geocausal.encoders import train

    class Asked(Exception):
        pass

    def ask(path=None):
        assert path is None
        raise Asked

    monkeypatch.setattr(train, "enable_compile_cache", ask)
    with pytest.raises(Asked):
        train.fit(None, None, None)
