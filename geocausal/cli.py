"""The ``geocausal`` command line: estimate | extract | embed | demo | paper.

Bad input exits with code 2 and one line naming the problem, never a traceback.

Examples
--------
>>> main(["--version"]) == 0
geocausal 0.1.0
True
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geocausal.errors import GeocausalError

#: design name -> "module:function" of the formula API called by ``geocausal estimate``
DESIGNS: dict[str, str] = {
    "ipw": "geocausal.api.ipw:ipw",
    "aipw": "geocausal.api.ipw:aipw",
    "placement": "geocausal.api.ipw:placement",
    "fe": "geocausal.api.fe:fe",
    "cate": "geocausal.api.cate:cate",
    "dml_panel": "geocausal.api.dml_panel:dml_panel",
    "rdd": "geocausal.api.rdd:rdd",
}

PAPERS = ("china_worldbank", "eo_heterogeneity", "dml_panel", "one_map_many_trials", "r3d")


class CliError(GeocausalError):
    """Bad command-line usage."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        raise CliError(f"{self.prog}: {message}")


def _load(target: str):
    mod, _, fn = target.partition(":")
    return getattr(importlib.import_module(mod), fn)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _options(pairs: Sequence[str]) -> dict[str, Any]:
    out = {}
    for p in pairs or ():
        if "=" not in p:
            raise CliError(f"--set expects key=value, got '{p}'")
        k, v = p.split("=", 1)
        out[k.strip()] = _parse_value(v)
    return out


def _vcov(text: str | None) -> Any:
    if text is None:
        return None
    if text.startswith("cluster:"):
        cols = text.split(":", 1)[1].split(",")
        return {"cluster": cols[0] if len(cols) == 1 else cols}
    return text


# ----------------------------------------------------------------------------- commands
def _materialise_shipped(manifest: Path) -> None:
    """Generate a shipped study's files (``data_manifests/<name>.yaml``) on first use."""
    from geocausal.datasets import STUDIES, ensure_study, manifests_dir

    name = manifest.stem
    if name in STUDIES and manifest.exists() and manifest.resolve() == (manifests_dir() / f"{name}.yaml").resolve():
        ensure_study(name)


def _accepted(fn, design: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keep the keywords ``fn`` takes; image features are dropped for designs without images."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    kwargs = {k: v for k, v in kwargs.items() if k in params or k != "images"}
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise CliError(f"design '{design}' does not take {unknown}; see its docstring for options")
    return kwargs


def cmd_estimate(args: argparse.Namespace) -> int:
    if args.design not in DESIGNS:
        raise CliError(f"unknown design '{args.design}'; choose one of {sorted(DESIGNS)}")
    from geocausal.data.manifest import load_manifest

    _materialise_shipped(Path(args.manifest))
    load_manifest(args.manifest)  # fail fast, naming the field and the file
    from geocausal.data.study import load_study
    from geocausal.results.export import write_outputs

    study = load_study(args.manifest, features=args.images, seed=args.seed,
                       workers=args.workers)
    kwargs: dict[str, Any] = {"seed": args.seed}
    for key in ("unit", "time", "running", "cutoff", "by", "folds"):
        val = getattr(args, key)
        if val is not None:
            kwargs[key] = val
    if args.vcov:
        kwargs["vcov"] = _vcov(args.vcov)
    if study.features is not None:
        kwargs["images"] = study.features
    kwargs.update(_options(args.set))
    fn = _load(DESIGNS[args.design])
    result = fn(args.formula, study.table, **_accepted(fn, args.design, kwargs))
    out = Path(args.out)
    paths = write_outputs(result, out, stem=args.design, manifest_hash=study.manifest_hash)
    print(result)
    print("\nwrote: " + ", ".join(str(p) for p in paths))
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from geocausal.data.chips import extract

    res = extract(args.manifest, cache_dir=args.cache, workers=args.workers,
                  scheduler=args.scheduler, progress=not args.quiet,
                  overwrite=args.overwrite)
    print(res.report())
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from geocausal.encoders.embed import embed

    path = embed(args.cache, out=args.out, encoder=args.encoder, seed=args.seed,
                 epochs=args.epochs)
    print(f"wrote embeddings to {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from geocausal.demo import run_demo

    run_demo(out=Path(args.out), n_units=args.units, seed=args.seed, size=args.size)
    return 0


def _paper_dir(name: str) -> Path:
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        p = root / "paper" / name / "pipeline.py"
        if p.exists():
            return p
    raise CliError(f"paper pipeline '{name}' not found (looked for paper/{name}/pipeline.py)")


def cmd_paper(args: argparse.Namespace) -> int:
    if args.name not in PAPERS:
        raise CliError(f"unknown paper '{args.name}'; choose one of {list(PAPERS)}")
    path = _paper_dir(args.name)
    spec = importlib.util.spec_from_file_location(f"paper_{args.name}", path)
    module = importlib.util.module_from_spec(spec)
    if spec.loader is None:
        raise CliError(f"cannot load '{path}'")
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    out = Path(args.out) if args.out else path.parent
    module.run(full=args.full, out=out, seed=args.seed)
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    p = _Parser(prog="geocausal", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    e = sub.add_parser("estimate", help="estimate an effect from a manifest")
    e.add_argument("--design", required=True, help=f"one of {sorted(DESIGNS)}")
    e.add_argument("--manifest", required=True, help="data manifest YAML")
    e.add_argument("--formula", required=True, help="e.g. 'y ~ treat + x1 | country'")
    e.add_argument("--out", default="results", help="output folder (default: results)")
    e.add_argument("--vcov", help="iid, hetero, or cluster:COL[,COL2]")
    e.add_argument("--images", default="summary", choices=["none", "summary", "learned"],
                   help="image features for the design (default: summary)")
    e.add_argument("--unit", help="unit id column (panels)")
    e.add_argument("--time", help="time column (panels)")
    e.add_argument("--running", help="running variable (rdd)")
    e.add_argument("--cutoff", type=float, help="cutoff of the running variable (rdd)")
    e.add_argument("--by", help="subgroup column(s), comma separated")
    e.add_argument("--folds", type=int, help="cross-fitting folds")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--workers", type=int, help="local Dask workers for extraction")
    e.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other keyword of the design (JSON values), repeatable")
    e.set_defaults(func=cmd_estimate)

    x = sub.add_parser("extract", help="extract image chips for every unit and period")
    x.add_argument("--manifest", required=True)
    x.add_argument("--cache", help="cache folder (default: .cache next to the manifest)")
    x.add_argument("--workers", type=int, help="start a local Dask cluster with N workers")
    x.add_argument("--scheduler", help="address of a running Dask scheduler")
    x.add_argument("--quiet", action="store_true", help="no progress bar")
    x.add_argument("--overwrite", action="store_true",
                   help="replace whatever sits at the cache path, even if geocausal did not make it")
    x.set_defaults(func=cmd_extract)

    m = sub.add_parser("embed", help="embed chips with an encoder, write Parquet")
    m.add_argument("--cache", required=True, help="chips cache (from 'geocausal extract')")
    m.add_argument("--out", required=True, help="output Parquet file")
    m.add_argument("--encoder", default="cnn", help="cnn, vit, sequence or random")
    m.add_argument("--epochs", type=int, default=5)
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=cmd_embed)

    d = sub.add_parser("demo", help="run the embedded demo study end to end")
    d.add_argument("--out", default="results")
    d.add_argument("--units", type=int, default=600)
    d.add_argument("--size", type=int, default=32, help="chip side in pixels")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_demo)

    pp = sub.add_parser("paper", help="paper pipelines")
    psub = pp.add_subparsers(dest="paper_command", parser_class=_Parser)
    pr = psub.add_parser("run", help="run a paper pipeline (CI size unless --full)")
    pr.add_argument("name", help=f"one of {list(PAPERS)}")
    pr.add_argument("--full", action="store_true", help="paper size")
    pr.add_argument("--out", help="output folder (default: the paper's folder)")
    pr.add_argument("--seed", type=int, default=0)
    pr.set_defaults(func=cmd_paper)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``geocausal`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.version:
            from geocausal import __version__

            print(f"geocausal {__version__}")
            return 0
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except GeocausalError as exc:
        print(f"error: {exc}".splitlines()[0] if "\n" in str(exc) else f"error: {exc}",
              file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
