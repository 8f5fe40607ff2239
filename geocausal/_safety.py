"""May geocausal write here? One set of rules for every file and folder geocausal writes.

geocausal never overwrites or deletes what it did not create, unless told to (``overwrite=True``,
``--overwrite`` on the command line):

* a folder geocausal creates (or fills while it is empty) gets a marker file, :data:`MARKER`;
  files geocausal writes in a marked folder may be replaced by a later run;
* an existing folder without the marker is the user's: geocausal writes into it only names that
  are not there yet (or, with ``names=None``, only if the folder is empty);
* a single output file (``geocausal embed --out FILE``) that already exists is replaced only when
  its folder is marked, or with ``overwrite=True``;
* a path that should be a folder but is a file (or the other way round) is an error.

Every refusal is a :class:`~geocausal.errors.DataError` naming the path and what to do.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> root = Path(tempfile.mkdtemp())
>>> out = prepare_output_dir(root / "results", names=["aipw.csv"])
>>> created_by_geocausal(out)
True
>>> _ = (root / "mine").mkdir(), (root / "mine" / "aipw.csv").write_text("my notes")
>>> prepare_output_dir(root / "mine", names=["aipw.csv"])
Traceback (most recent call last):
...
geocausal.errors.DataError: '...mine' already holds ['aipw.csv'] (1 file(s) in a folder geocausal did not create); choose a new or empty folder, or pass overwrite=True (--overwrite on the command line) to replace them
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from geocausal.errors import DataError

#: name of the marker file geocausal writes in every folder it creates
MARKER = ".geocausal"

_MARKER_TEXT = ("This folder was created by geocausal; geocausal may replace the files it wrote "
                "here.\nDelete this file to protect the folder from being overwritten.\n")

_HINT = "pass overwrite=True (--overwrite on the command line)"


def created_by_geocausal(path: str | Path) -> bool:
    """Whether ``path`` is a folder that geocausal created (it holds :data:`MARKER`).

    Examples
    --------
    >>> import tempfile
    >>> created_by_geocausal(tempfile.mkdtemp())
    False
    """
    p = Path(path)
    return p.is_dir() and (p / MARKER).is_file()


def mark_created(path: str | Path) -> Path:
    """Write :data:`MARKER` into the folder ``path`` (which geocausal created); return ``path``.

    Examples
    --------
    >>> import tempfile
    >>> created_by_geocausal(mark_created(tempfile.mkdtemp()))
    True
    """
    p = Path(path)
    if not p.is_dir():
        raise DataError(f"'{p}' is not a folder; cannot mark it as created by geocausal")
    marker = p / MARKER
    if not marker.exists():
        marker.write_text(_MARKER_TEXT)
    return p


def _check_ancestors(p: Path) -> None:
    """The nearest existing ancestor of ``p`` must be a folder (else mkdir fails obscurely)."""
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataError(f"'{parent}' is a file, so '{p}' cannot be created under it; "
                                "choose another path")
            return


def prepare_output_dir(path: str | Path, names: Sequence[str] | None = None, *,
                       overwrite: bool = False, trust_marker: bool = True,
                       clear: bool = False) -> Path:
    """Create (or check) the output folder ``path`` before geocausal writes ``names`` into it.

    Parameters
    ----------
    path
        The output folder. Missing folders are created and marked with :data:`MARKER`; an
        existing empty folder is marked.
    names
        Relative paths geocausal is about to write in ``path``. ``None``: an unknown set of
        files (a pipeline's whole output), so an existing folder must be empty or marked.
    overwrite
        Replace whatever is in the way.
    trust_marker
        Whether files in a marked folder (written by an earlier geocausal run) may be replaced
        without ``overwrite``. The dataset generators pass ``False``: they never replace a
        generated study silently.
    clear
        Once allowed, delete the existing files of ``names`` (for writers that refuse to
        replace a file, such as :func:`geocausal.data.manifest.write_manifest`).

    Returns
    -------
    pathlib.Path
        ``path``, existing.

    Raises
    ------
    DataError
        ``path`` (or one of its parents) is a file, or it holds files geocausal did not
        create and would replace.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> f = Path(tempfile.mkdtemp()) / "a_file"
    >>> _ = f.write_text("x")
    >>> prepare_output_dir(f)
    Traceback (most recent call last):
    ...
    geocausal.errors.DataError: '...a_file' is a file, not a folder; give a folder path for the outputs
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise DataError(f"'{p}' is a file, not a folder; give a folder path for the outputs")
    if not p.exists():
        _check_ancestors(p)
        p.mkdir(parents=True)
        return mark_created(p)
    held = [c.name for c in p.iterdir() if c.name != MARKER]
    if not held:
        return mark_created(p)
    if not (overwrite or (trust_marker and created_by_geocausal(p))):
        _refuse_clash(p, held, names)
    for n in names if clear and names is not None else ():
        if (p / n).is_file() or (p / n).is_symlink():
            (p / n).unlink()
    return p


def _refuse_clash(p: Path, held: list[str], names: Sequence[str] | None) -> None:
    if names is None:
        raise DataError(f"'{p}' is not empty and was not created by geocausal (it holds "
                        f"{sorted(held)[:3]}, {len(held)} entries); choose a new or empty "
                        f"folder, or {_HINT} to write into it")
    clash = [n for n in names if (p / n).exists()]
    if clash:
        raise DataError(f"'{p}' already holds {clash[:3]} ({len(clash)} file(s) in a folder "
                        f"geocausal did not create); choose a new or empty folder, or {_HINT} "
                        "to replace them")


def check_writable_file(path: str | Path, overwrite: bool = False) -> Path:
    """Check that geocausal may write the single file ``path``; create its folder if needed.

    An existing file is replaced only with ``overwrite`` or when its folder was created by
    geocausal. A new parent folder is created and marked.

    Raises
    ------
    DataError
        ``path`` is a folder, a parent is a file, or ``path`` exists and may not be replaced.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> root = Path(tempfile.mkdtemp())
    >>> check_writable_file(root / "new" / "e.parquet").parent.name
    'new'
    >>> check_writable_file(root)
    Traceback (most recent call last):
    ...
    geocausal.errors.DataError: '...' is a folder; give a file path (e.g. .../embeddings.parquet)
    """
    p = Path(path)
    if p.is_dir():
        raise DataError(f"'{p}' is a folder; give a file path (e.g. {p}/embeddings.parquet)")
    if p.exists() and not overwrite and not created_by_geocausal(p.parent):
        raise DataError(f"'{p}' already exists and was not written by geocausal; choose "
                        f"another file name, or {_HINT} to replace it")
    if not p.parent.exists():
        _check_ancestors(p.parent)
        p.parent.mkdir(parents=True)
        mark_created(p.parent)
    elif not p.parent.is_dir():
        raise DataError(f"'{p.parent}' is a file, so '{p}' cannot be written; choose another path")
    return p


def check_replaceable_dir(path: str | Path, overwrite: bool = False) -> None:
    """Refuse to delete or replace an existing folder (or file) geocausal did not create.

    Call before ``shutil.rmtree(path)``: passes when ``path`` is missing, is a marked folder,
    or ``overwrite`` is set.

    Raises
    ------
    DataError
        ``path`` exists and was not created by geocausal.

    Examples
    --------
    >>> import tempfile
    >>> check_replaceable_dir(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    geocausal.errors.DataError: '...' exists and was not created by geocausal (no .geocausal marker); move it away, or pass overwrite=True (--overwrite on the command line) to replace it
    """
    p = Path(path)
    missing = not p.exists() and not p.is_symlink()
    if missing or overwrite or created_by_geocausal(p):
        return
    kind = "folder" if p.is_dir() else "file"
    raise DataError(f"'{p}' exists and was not created by geocausal (no {MARKER} marker"
                    f"{'' if kind == 'folder' else ', and it is a file'}); move it away, or "
                    f"{_HINT} to replace it")
