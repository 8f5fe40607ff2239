"""Where geocausal keeps data it generates: a user data folder, never the installed package.

The shipped study manifests are package data (``geocausal/datasets/manifests/*.yaml``, read
only). Their files, the chips caches extracted from them and any other generated data live in
the user data folder :func:`data_dir`: ``$GEOCAUSAL_DATA_DIR`` when that variable is set,
otherwise the platform's per-user data folder (``platformdirs.user_data_dir("geocausal")``,
e.g. ``~/.local/share/geocausal`` on Linux). Commands that take ``--out`` write only there.

Examples
--------
>>> import os, tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as tmp:
...     os.environ["GEOCAUSAL_DATA_DIR"] = tmp
...     try:
...         inside = data_dir() == Path(tmp).resolve()
...     finally:
...         del os.environ["GEOCAUSAL_DATA_DIR"]
>>> inside
True
>>> shipped_manifest("demo").name
'demo.yaml'
"""

from __future__ import annotations

import os
from pathlib import Path

from geocausal.errors import DataError

#: environment variable that overrides the user data folder
DATA_DIR_ENV = "GEOCAUSAL_DATA_DIR"

#: the installed package's root folder (read only: nothing is ever written below it)
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def shipped_manifests_dir() -> Path:
    """The folder of the manifests shipped with the package (package data, read only)."""
    return Path(__file__).resolve().parent / "manifests"


def shipped_manifest(name: str) -> Path:
    """Path of the shipped (read-only) manifest of study ``name``.

    Raises
    ------
    DataError
        No such shipped study.
    """
    path = shipped_manifests_dir() / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in shipped_manifests_dir().glob("*.yaml"))
        raise DataError(f"unknown study '{name}'; choose one of {known}")
    return path


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def data_dir() -> Path:
    """The user data folder: ``$GEOCAUSAL_DATA_DIR`` or ``platformdirs.user_data_dir``.

    The folder is not created here; the functions that write into it create it.

    Raises
    ------
    DataError
        ``GEOCAUSAL_DATA_DIR`` is blank, or points inside the installed package.
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env is not None and env != "":
        if not env.strip():
            raise DataError(f"{DATA_DIR_ENV} is blank ({env!r}); set it to a folder path or "
                            "unset it to use the user data folder")
        path = Path(env).expanduser().resolve()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("geocausal", appauthor=False)).resolve()
    if _inside(path, PACKAGE_DIR):
        raise DataError(f"data folder '{path}' lies inside the installed geocausal package "
                        f"('{PACKAGE_DIR}'); set {DATA_DIR_ENV} to a folder outside it")
    return path


def studies_dir() -> Path:
    """Where :func:`geocausal.datasets.ensure_study` materialises shipped studies."""
    return data_dir() / "studies"


def papers_dir() -> Path:
    """Default output folder root of ``geocausal paper run`` without ``--out``."""
    return data_dir() / "paper"


__all__ = ["DATA_DIR_ENV", "data_dir", "papers_dir", "shipped_manifest",
           "shipped_manifests_dir", "studies_dir"]
