"""The geocausal command line: estimate | extract | embed | demo | paper.

Bad input exits with code 2 and one line naming the problem, never a traceback; an unexpected
failure exits with code 3 and one line asking to report it (``--debug`` or ``GEOCAUSAL_DEBUG=1``
shows the traceback). Outputs go only under the folder or file given with ``--out``, and never
replace a file geocausal did not create unless ``--overwrite`` is given
(:mod:`geocausal._safety`).

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
import math
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geocausal import registry
from geocausal._safety import check_writable_file, prepare_output_dir
from geocausal.errors import DataError, GeocausalError

#: design name -> "module:function" of the formula API called by ``geocausal estimate``
#: (read from :mod:`geocausal.registry`, the one list of designs)
DESIGNS: dict[str, str] = registry.cli_designs()

#: designs whose estimates carry a function-valued ``curve`` (quantile effects): written to
#: ``<design>_curve.csv`` by ``geocausal estimate``
CURVE_DESIGNS = ("rdd",)

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


def _positive_float(text: str) -> float:
    """An argparse type: a finite number above zero.

    Examples
    --------
    >>> _positive_float("32")
    32.0
    >>> _positive_float("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 0 is not a positive number
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _int_at_least(low: int):
    """An argparse type: an integer >= ``low`` (a bad value is a one-line usage error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}; give an integer >= {low}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    return value


_finite_float.__name__ = "finite number"

#: keyword -> smallest value, for integer options a design may take (``--folds``, ``--set``)
_INT_OPTIONS: dict[str, int] = {"folds": 2, "n_folds": 2, "n_splits": 2, "n_boot": 1,
                                "n_rep": 1, "seed": 0}
#: command-line flag of a role keyword, for messages
_FLAGS = {"running": "--running COLUMN", "unit": "--unit COLUMN", "time": "--time COLUMN",
          "cutoff": "--cutoff VALUE", "by": "--by COLUMN", "truth": "--truth COLUMN",
          "calibration": "--calibration FILE"}


def check_options(kwargs: dict[str, Any]) -> None:
    """Refuse ill-typed values of the common options before a design sees them.

    Examples
    --------
    >>> check_options({"folds": 5, "n_boot": 100, "alpha": 0.1})
    >>> check_options({"folds": "five"})
    Traceback (most recent call last):
    ...
    geocausal.cli.CliError: folds='five': give an integer >= 2
    """
    for key, low in _INT_OPTIONS.items():
        if key not in kwargs:
            continue
        val = kwargs[key]
        if key in ("folds", "n_folds") and isinstance(val, list):
            continue  # explicit fold ids: the design checks their length
        if isinstance(val, bool) or not isinstance(val, int) or val < low:
            raise CliError(f"{key}={val!r}: give an integer >= {low}")
    if "alpha" in kwargs:
        a = kwargs["alpha"]
        if isinstance(a, bool) or not isinstance(a, int | float) or not 0 < a < 1:
            raise CliError(f"alpha={a!r}: give a number strictly between 0 and 1")
    by = kwargs.get("by")
    if by is not None and not (isinstance(by, str) or
                               (isinstance(by, list) and all(isinstance(b, str) for b in by))):
        raise CliError(f"by={by!r}: give a column name or a list of column names")


def check_required(fn, design: str, kwargs: dict[str, Any]) -> None:
    """Every keyword the design requires is given (``rdd`` needs ``--running``, ...)."""
    params = list(inspect.signature(fn).parameters.values())[2:]  # after formula, data
    missing = [p.name for p in params if p.default is inspect.Parameter.empty
               and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in kwargs]
    if missing:
        flags = ", ".join(_FLAGS.get(m, f"--set {m}=VALUE") for m in missing)
        raise CliError(f"design '{design}' needs {flags}")


def check_table(table, columns: Sequence[str], by: Any) -> None:
    """Refuse infinite values in the columns an estimate uses, and missing subgroup labels.

    Examples
    --------
    >>> import pandas as pd
    >>> check_table(pd.DataFrame({"y": [1.0, float("inf")], "g": ["a", None]}), ["y"], None)
    Traceback (most recent call last):
    ...
    geocausal.errors.DataError: column 'y' has 1 infinite value(s) (rows [1]); drop or recode them before estimating
    """
    import numpy as np
    import pandas as pd

    for col in columns:
        if col not in table.columns or not pd.api.types.is_numeric_dtype(table[col]):
            continue
        inf = np.isinf(pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float))
        if inf.any():
            rows = table.index[inf][:3].tolist()
            raise DataError(f"column '{col}' has {int(inf.sum())} infinite value(s) (rows "
                            f"{rows}); drop or recode them before estimating")
    for col in [by] if isinstance(by, str) else list(by or ()):
        if col not in table.columns:
            raise DataError(f"by column '{col}' is not in the data; choose one of "
                            f"{list(table.columns)[:10]}")
        n_missing = int(table[col].isna().sum())
        if n_missing:
            raise DataError(f"by column '{col}' has {n_missing} missing value(s); fill them "
                            "(e.g. with 'unknown') or drop those rows")


def _used_columns(formula: str, kwargs: dict[str, Any]) -> list[str]:
    from geocausal.formula import parse_formula

    cols = set(parse_formula(formula, treatment=False).columns())
    for key in ("unit", "time", "running", "treatment", "weights"):
        if isinstance(kwargs.get(key), str):
            cols.add(kwargs[key])
    return sorted(cols)


# ----------------------------------------------------------------------------- commands
def _materialise_shipped(manifest: str | Path) -> Path:
    """The manifest to read for ``--manifest``.

    A shipped study's name (``demo``, ``border_ndvi``, ``sentinel2_semisynthetic``), or the
    path of its read-only manifest inside the package, resolves to its copy in the user data
    folder (:func:`geocausal.datasets.ensure_study`, generated on first use; never inside the
    package). Any other path is returned unchanged.
    """
    from geocausal.datasets import STUDIES, ensure_study, shipped_manifests_dir

    text = str(manifest)
    path = Path(text)
    if text in STUDIES and not path.exists():
        return ensure_study(text)
    if (path.stem in STUDIES and path.is_file()
            and path.resolve().parent == shipped_manifests_dir().resolve()):
        return ensure_study(path.stem)
    return path


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
    """``geocausal estimate``: run a design on a manifest; write tables and figures."""
    if args.design not in DESIGNS:
        raise CliError(f"unknown design '{args.design}'; choose one of {sorted(DESIGNS)}")
    kwargs: dict[str, Any] = {"seed": args.seed}
    for key in ("unit", "time", "running", "cutoff", "folds"):
        val = getattr(args, key)
        if val is not None:
            kwargs[key] = val
    if args.by is not None:
        by = [b.strip() for b in args.by.split(",") if b.strip()]
        if not by:
            raise CliError("--by: give one or more column names, comma separated")
        kwargs["by"] = by[0] if len(by) == 1 else by
    if args.vcov:
        kwargs["vcov"] = _vcov(args.vcov)
    kwargs.update(_options(args.set))
    check_options(kwargs)
    _prediction_roles(args, kwargs)
    fn = _load(DESIGNS[args.design])
    check_required(fn, args.design, kwargs)
    from geocausal.data.manifest import load_manifest

    manifest = _materialise_shipped(args.manifest)
    m = load_manifest(manifest)  # fail fast, naming the field and the file
    _distribution_weights(m, args.formula, kwargs)
    names = [f"{args.design}.{ext}" for ext in ("csv", "json", "md", "tex", "png")]
    curve = args.design in CURVE_DESIGNS
    if curve:
        names.append(f"{args.design}_curve.csv")
    sens = _sensitivity_args(args)
    if sens is not None:
        names += [f"{args.design}_sensitivity.csv", f"{args.design}_sensitivity.png"]
    out = prepare_output_dir(args.out, names, overwrite=args.overwrite)  # before the work
    from geocausal.data.study import load_study
    from geocausal.results.export import write_outputs

    takes_images = "images" in inspect.signature(fn).parameters
    study = load_study(manifest, features=args.images if takes_images else "none",
                       seed=args.seed, workers=args.workers)
    check_table(study.table, _used_columns(args.formula, kwargs), kwargs.get("by"))
    if study.features is not None:
        kwargs["images"] = study.features
    result = fn(args.formula, study.table, **_accepted(fn, args.design, kwargs))
    paths = write_outputs(result, out, stem=args.design, manifest_hash=study.manifest_hash)
    if curve:
        paths.extend(_write_curve(result, out / f"{args.design}_curve.csv"))
    print(result)
    if sens is not None:
        paths = [*paths, *_write_sensitivity(result, sens, args, study, kwargs, fn, out)]
    print("\nwrote: " + ", ".join(str(p) for p in paths))
    return 0


def read_calibration(path: str | Path):
    """The calibration sample of ``--calibration``: a CSV or Parquet file of held-out
    predictions and truths (columns named as the formula's outcome, or ``prediction=``, and
    ``truth``).

    Examples
    --------
    >>> read_calibration("missing.csv")
    Traceback (most recent call last):
    ...
    geocausal.errors.DataError: --calibration 'missing.csv' does not exist; give a CSV or Parquet file of held-out predictions and truths
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise DataError(f"--calibration '{path}' does not exist; give a CSV or Parquet file "
                        "of held-out predictions and truths")
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise DataError(f"--calibration '{path}': unknown file type '{suffix}'; give a .csv "
                        "or .parquet file")
    try:
        table = pd.read_parquet(p) if suffix != ".csv" else pd.read_csv(p)
    except Exception as exc:  # a corrupt or foreign file: name it, one line
        raise DataError(f"--calibration '{path}' cannot be read as {suffix[1:]} "
                        f"({type(exc).__name__}: {exc})") from None
    if table.empty:
        raise DataError(f"--calibration '{path}' has no rows")
    return table


def _prediction_roles(args: argparse.Namespace, kwargs: dict[str, Any]) -> None:
    """``--calibration FILE`` and ``--truth COLUMN``: only for the designs that take them
    (:data:`geocausal.registry.ROLES`); debias needs a calibration sample.
    """
    roles = registry.get(args.design).roles
    for role in ("calibration", "truth"):
        if getattr(args, role, None) is None:
            continue
        if role not in roles:
            takers = [n for n in DESIGNS if role in registry.get(n).roles]
            raise CliError(f"design '{args.design}' does not take {_FLAGS[role]} (only "
                           f"{', '.join(takers)})")
        kwargs[role] = (read_calibration(args.calibration) if role == "calibration"
                        else args.truth)
    route_option_fields(args.design, kwargs)
    if (args.design == "debias" and kwargs.get("calibration") is None
            and kwargs.get("method", "tweedie") != "none"):
        raise CliError("design 'debias' needs --calibration FILE (held-out predictions and "
                       "truths), or --set 'method=\"none\"' for the naive effect")


def route_option_fields(design: str, kwargs: dict[str, Any]) -> None:
    """Move ``--set FIELD=VALUE`` of a design's option object into its keyword.

    A field that is also a keyword of the face itself stays a keyword; the option objects and
    their keywords come from the registry (``Entry.options``).

    Examples
    --------
    >>> kw = {"n_boot": 200, "seed": 1}
    >>> route_option_fields("rdd", kw); kw
    {'seed': 1, 'inference': {'n_boot': 200}}
    """
    fn = _load(DESIGNS[design])
    own = set(inspect.signature(fn).parameters)
    for keyword, names in registry.option_fields(design).items():
        moved = {f: kwargs.pop(f) for f in names if f in kwargs and f not in own}
        if moved:
            given = kwargs.get(keyword)
            if given is not None and not isinstance(given, dict):
                raise CliError(f"--set {', '.join(moved)} and --set {keyword}=... both given; "
                               f"use one")
            kwargs[keyword] = {**dict(given or {}), **moved}


def _distribution_weights(manifest, formula: str, kwargs: dict[str, Any]) -> None:
    """A formula whose outcome is a manifest ``distributions`` column takes its coverage
    weights (``weights="<name>_weight"``) unless ``--set weights=...`` says otherwise.
    """
    from geocausal.formula import parse_formula

    if "weights" in kwargs or not manifest.distributions:
        return
    outcome = parse_formula(formula if "~" in formula else f"{formula} ~ 1",
                            treatment=False).outcome
    for spec in manifest.distributions:
        if outcome == spec.name:
            kwargs["weights"] = spec.weight_column


def _write_curve(result, path: Path) -> list[Path]:
    """Write the function-valued estimates (quantile effects of ``rdd``) as a CSV table, with
    a ``group`` column for subgroups; nothing when the result has no curve.
    """
    import pandas as pd

    from geocausal.results.estimate import EstimateSet

    ests = (list(zip(result.names, result.estimates)) if isinstance(result, EstimateSet)
            else [("", result)])
    parts = []
    for name, est in ests:
        if getattr(est, "curve", None) is None:
            continue
        tab = est.curve.copy()
        if name:
            tab.insert(0, "group", name)
        parts.append(tab)
    if not parts:
        return []
    pd.concat(parts, ignore_index=True).to_csv(path, index=False)
    return [path]


def _sensitivity_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--sensitivity CF_Y,CF_D[,RHO]`` as keywords of ``est.sensitivity``."""
    if args.sensitivity is None:
        if args.benchmark:
            raise CliError("--benchmark needs --sensitivity")
        return None
    parts = [p.strip() for p in args.sensitivity.split(",")]
    if len(parts) not in (2, 3):
        raise CliError(f"--sensitivity expects CF_Y,CF_D[,RHO], got '{args.sensitivity}'")
    vals = [_finite_float(p) for p in parts]
    out = {"cf_y": vals[0], "cf_d": vals[1]}
    if len(vals) == 3:
        out["rho"] = vals[2]
    from geocausal.inference.sensitivity import check_cf, check_rho

    check_cf(out["cf_y"], "--sensitivity cf_y")
    check_cf(out["cf_d"], "--sensitivity cf_d")
    check_rho(out.get("rho", 1.0))
    return out


def _write_sensitivity(result, sens: dict[str, Any], args, study, kwargs, fn, out: Path
                       ) -> list[Path]:
    """Print the sensitivity table; write ``<design>_sensitivity.csv`` and ``.png``."""
    import pandas as pd

    from geocausal.results.estimate import EstimateSet

    ests = (list(zip(result.names, result.estimates)) if isinstance(result, EstimateSet)
            else [("", result)])
    tables, last = [], None
    for name, est in ests:
        kw = dict(sens)
        if args.benchmark and args.design == "fe":
            kw["benchmark"] = list(args.benchmark)
        elif args.benchmark:
            from geocausal.api.sensitivity import sensitivity_benchmark

            groups = {b: b for b in args.benchmark}
            data = study.table if not name else None
            if data is None:
                raise CliError("--benchmark with --by: run one subgroup at a time")
            kw["benchmarks"] = sensitivity_benchmark(
                args.formula, data, groups, design=args.design, long=est,
                **_accepted(fn, args.design, kwargs))
        res = est.sensitivity(**kw)
        print("\n" + res.summary())
        tab = res.tidy()
        if name:
            tab.insert(0, "group", name)
        tables.append(tab)
        if res.benchmarks is not None:
            b = res.benchmarks.copy()
            b.insert(0, "term", "benchmark")
            tables.append(b)
        last = res
    csv = out / f"{args.design}_sensitivity.csv"
    pd.concat(tables, ignore_index=True).to_csv(csv, index=False)
    png = out / f"{args.design}_sensitivity.png"
    from geocausal.results.plot import save

    save(last.plot(), png)  # any backend (headless falls back to Agg); closes the figure
    return [csv, png]


def cmd_extract(args: argparse.Namespace) -> int:
    """``geocausal extract``: cut chips around every unit into the chips cache."""
    from geocausal.data.chips import extract

    if args.cache is not None and Path(args.cache).exists() and not Path(args.cache).is_dir():
        raise DataError(f"--cache '{args.cache}' is a file, not a folder; give the folder "
                        "that holds (or will hold) chips caches")
    res = extract(_materialise_shipped(args.manifest), cache_dir=args.cache, workers=args.workers,
                  scheduler=args.scheduler, progress=not args.quiet,
                  overwrite=args.overwrite, threads=args.threads, task_mb=args.task_mb)
    print(res.report())
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """``geocausal embed``: encode a chips cache into per-unit features (Parquet)."""
    from geocausal.data.chips import open_cache
    from geocausal.encoders.embed import embed

    cache = open_cache(args.cache)  # a DataError naming the path when it is not a cache
    check_writable_file(args.out, overwrite=args.overwrite)
    path = embed(cache, out=args.out, encoder=args.encoder, seed=args.seed,
                 epochs=args.epochs, block_units=args.block_units,
                 memory_budget=args.memory_budget, workers=args.workers,
                 scheduler=args.scheduler)
    print(f"wrote embeddings to {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``geocausal demo``: the main job on the embedded default study."""
    from geocausal.demo import run_demo

    run_demo(out=Path(args.out), n_units=args.units, seed=args.seed, size=args.size,
             overwrite=args.overwrite)
    return 0


#: the package's own paper pipelines (never a ``paper/`` folder of the working directory)
PAPER_ROOT = Path(__file__).resolve().parents[1] / "paper"


def _paper_dir(name: str) -> Path:
    p = PAPER_ROOT / name / "pipeline.py"
    if not p.is_file():
        raise CliError(f"paper pipeline '{name}' not found at '{p}'; the pipelines ship with "
                       "a source checkout of geocausal")
    return p


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (mtime_ns, size) of every file under ``folder`` (marker excluded)."""
    from geocausal._safety import MARKER

    out: dict[str, tuple[int, int]] = {}
    for f in folder.rglob("*"):
        if f.is_file() and f.name != MARKER:
            st = f.stat()
            out[f.relative_to(folder).as_posix()] = (st.st_mtime_ns, st.st_size)
    return out


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def cmd_paper(args: argparse.Namespace) -> int:
    """``geocausal paper run NAME``: run a paper pipeline and print its reproduction table."""
    import time

    from geocausal.datasets import papers_dir

    if args.name not in PAPERS:
        raise CliError(f"unknown paper '{args.name}'; choose one of {list(PAPERS)}")
    path = _paper_dir(args.name)
    spec = importlib.util.spec_from_file_location(f"paper_{args.name}", path)
    if spec is None or spec.loader is None:
        raise CliError(f"cannot load '{path}'")
    data = getattr(args, "data", None)
    if data is not None:  # the paper's real data: the pipeline's data_paths.py reads it
        data = Path(data)
        if not data.is_dir():
            raise CliError(f"--data '{data}' is not a folder")
        path = path.with_name("data_paths.py")
        if not path.is_file():
            raise CliError(f"paper '{args.name}' has no real-data path ({path} is missing)")
        spec = importlib.util.spec_from_file_location(f"paper_{args.name}_data", path)
    module = importlib.util.module_from_spec(spec)
    target = Path(args.out) if args.out else papers_dir() / args.name
    out = prepare_output_dir(target, overwrite=args.overwrite).resolve()
    size = "paper size (--full)" if args.full else "CI size"
    print(f"paper {args.name}: {size}, seed {args.seed}")
    print(f"  pipeline: {path}")
    print(f"  output:   {out}" + ("" if args.out else "  (default folder; --out chooses another)"))
    print("[1/3] loading the pipeline", flush=True)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    before = _files(out)
    print(f"[2/3] running the pipeline ({'hours' if args.full else 'minutes'} at this size)",
          flush=True)
    t0 = time.perf_counter()
    if data is not None:
        module.run(data=data, out=out, seed=args.seed, full=args.full)
    else:
        module.run(full=args.full, out=out, seed=args.seed)
    after = _files(out)
    written = sorted(k for k, v in after.items() if before.get(k) != v)
    print(f"[3/3] done in {time.perf_counter() - t0:.1f} s; wrote {len(written)} files "
          f"under {out}:")
    for rel in written[:60]:
        print(f"  {rel}  ({_size(after[rel][1])})")
    if len(written) > 60:
        print(f"  ... and {len(written) - 60} more")
    return 0


#: plain-text descriptions and examples of ``geocausal --help`` and each subcommand's help
_DESCRIPTION = """\
geocausal: causal inference when outcomes, treatments or confounders are seen from space.

Commands: estimate an effect from a data manifest, extract image chips, embed chips with an
encoder, run the demo, run a paper pipeline. Outputs go only under --out and never replace a
file geocausal did not create unless --overwrite is given. Exit codes: 0 success, 2 bad input
(one line naming the field, column or file), 3 unexpected error (--debug shows the traceback).
The shipped studies are named 'demo', 'border_ndvi' and 'sentinel2_semisynthetic': give the
name as --manifest and their files are generated on first use in the user data folder
(GEOCAUSAL_DATA_DIR overrides where that is)."""

_EPILOG = """\
examples:
  geocausal demo --out results --units 200 --size 16
  geocausal estimate --design aipw --manifest demo --formula "y ~ d + x1 + x2" \\
                     --vcov cluster:country --out results/aipw
  geocausal extract --manifest demo --workers 2
  geocausal embed --cache CACHE.zarr --out emb.parquet --encoder cnn
  geocausal paper run r3d --out paper-r3d

'geocausal COMMAND --help' shows each command's options and examples."""

_COMMANDS: dict[str, tuple[str, str, str]] = {
    "estimate": (
        "estimate an effect from a manifest",
        "Estimate an effect from a data manifest (units, rasters, column roles) with one of\n"
        f"the designs: {', '.join(sorted(DESIGNS))}.\n"
        "Image features (per-chip summaries or learned embeddings) are extracted and aligned\n"
        "to the units by id. Writes DESIGN.csv (tidy table), DESIGN.json (the full result),\n"
        "tables and a figure under --out.",
        """examples:
  geocausal estimate --design aipw --manifest demo --formula "y ~ d + x1 + x2" \\
                     --vcov cluster:country --out results/aipw
  geocausal estimate --design aipw --manifest demo --formula "y ~ d + x1" --by funder
  geocausal estimate --design fe --manifest study.yaml --formula "y ~ d | unit + year" \\
                     --vcov cluster:unit
  geocausal estimate --design rdd --manifest study.yaml --formula "y ~ 1" \\
                     --running dist --cutoff 0
  geocausal estimate --design rdd --manifest border_ndvi --formula "ndvi ~ 1" \\
                     --running dist_border --out results/border
  geocausal estimate --design cate --manifest demo --formula "y ~ d + x1" \\
                     --set propensity=0.5 --set 'learner="dr"'
  geocausal estimate --design debias --manifest study.yaml --formula "yhat ~ d + x1" \\
                     --calibration calibration.csv
  geocausal estimate --design ppi --manifest study.yaml --formula "yhat ~ d" --truth y

--manifest takes a YAML file or a shipped study's name (demo, border_ndvi,
sentinel2_semisynthetic). A manifest 'distributions' column (e.g. border_ndvi's ndvi: the NDVI
pixels in each unit's buffer) is a distribution-valued outcome for --design rdd.
--set KEY=VALUE passes any other keyword of the design; VALUE is JSON (quote strings)."""),
    "extract": (
        "extract image chips for every unit and period",
        "Cut a chip around every unit for every period of a manifest into a resumable zarr\n"
        "cache (by default in .cache next to the manifest), optionally on a Dask cluster.",
        """examples:
  geocausal extract --manifest demo
  geocausal extract --manifest study.yaml --cache /data/chips --workers 4
  geocausal extract --manifest study.yaml --scheduler tcp://10.0.0.5:8786"""),
    "embed": (
        "embed chips with an encoder, write Parquet",
        "Train an image encoder on a chips cache (self-supervised, no outcome is used) and\n"
        "write one embedding row per unit and period to a Parquet file.",
        """examples:
  geocausal embed --cache CACHE.zarr --out emb.parquet --encoder cnn --epochs 5
  geocausal embed --cache CACHE.zarr --out emb.parquet --encoder random --epochs 0

CACHE.zarr is the cache path printed by 'geocausal extract'."""),
    "demo": (
        "run the embedded demo study end to end",
        "Generate a synthetic world with a known effect (multi-band GeoTIFFs, a units\n"
        "GeoPackage, a manifest), extract chips, learn image representations, and print the\n"
        "AIPW effect with a cluster-robust standard error beside the truth. Everything,\n"
        "including the generated data, is written under --out.",
        """examples:
  geocausal demo
  geocausal demo --out results --units 200 --size 16 --seed 1"""),
    "paper": (
        "paper pipelines",
        "Reproducible paper pipelines: each writes tables/, figures/ and provenance.json\n"
        "for one paper, at CI size by default ('geocausal paper run NAME').",
        """examples:
  geocausal paper run r3d --out paper-r3d
  geocausal paper run china_worldbank --full --out /data/china"""),
    "paper run": (
        "run a paper pipeline (CI size unless --full)",
        f"Run one of the paper pipelines:\n  {', '.join(PAPERS)}\n"
        "at CI size, or at paper size with --full. Prints its steps, and at the end every\n"
        "file it wrote. Without --out the outputs go to paper/NAME in the user data folder\n"
        "(GEOCAUSAL_DATA_DIR overrides it); the folder is printed first. The pipelines ship\n"
        "with a source checkout of geocausal.",
        """examples:
  geocausal paper run r3d
  geocausal paper run dml_panel --out paper-dml --seed 1
  geocausal paper run one_map_many_trials --full --out /data/one_map"""),
}


def _sub(sub, name: str, key: str | None = None) -> argparse.ArgumentParser:
    """A subcommand parser with its plain-text description and examples."""
    short, description, epilog = _COMMANDS[key or name]
    return sub.add_parser(name, help=short, description=description, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    p = _Parser(prog="geocausal", description=_DESCRIPTION, epilog=_EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an unexpected error (or set GEOCAUSAL_DEBUG=1)")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    e = _sub(sub, "estimate")
    e.add_argument("--design", required=True, help=f"one of {sorted(DESIGNS)}")
    e.add_argument("--manifest", required=True,
                   help="data manifest YAML, or a shipped study's name "
                        "(demo, border_ndvi, sentinel2_semisynthetic)")
    e.add_argument("--formula", required=True, help="e.g. 'y ~ treat + x1 | country'")
    e.add_argument("--out", default="results", help="output folder (default: results)")
    e.add_argument("--vcov", help="iid, hetero, or cluster:COL[,COL2]")
    e.add_argument("--images", default="summary", choices=["none", "summary", "learned"],
                   help="image features for the design (default: summary)")
    e.add_argument("--unit", help="unit id column (panels)")
    e.add_argument("--time", help="time column (panels)")
    e.add_argument("--running", help="running variable (rdd)")
    e.add_argument("--cutoff", type=_finite_float, help="cutoff of the running variable (rdd)")
    e.add_argument("--by", help="subgroup column(s), comma separated")
    e.add_argument("--calibration", metavar="FILE",
                   help="debias: held-out predictions and truths (CSV or Parquet; columns "
                        "named as the formula's outcome and 'truth', or --truth COLUMN)")
    e.add_argument("--truth", metavar="COLUMN",
                   help="ppi: column of labels (missing where unlabelled); debias: the truth "
                        "column of the calibration file; cate: the true CATE")
    e.add_argument("--folds", type=_int_at_least(2), help="cross-fitting folds")
    e.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed (default: 0)")
    e.add_argument("--workers", type=_int_at_least(1), help="local Dask workers for extraction")
    e.add_argument("--overwrite", action="store_true",
                   help="replace output files that geocausal did not create")
    e.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other keyword of the design (JSON values), repeatable")
    e.add_argument("--sensitivity", nargs="?", const="0.03,0.03", metavar="CF_Y,CF_D[,RHO]",
                   help="sensitivity to an omitted confounder (aipw, dml_panel: OVB bounds; "
                        "fe: partial R2 bounds): prints the bounds and robustness values and "
                        "writes <design>_sensitivity.csv and .png (default 0.03,0.03)")
    e.add_argument("--benchmark", action="append", metavar="GROUP",
                   help="with --sensitivity: benchmark against a control or 'images' "
                        "(refits without it; repeatable)")
    e.set_defaults(func=cmd_estimate)

    x = _sub(sub, "extract")
    x.add_argument("--manifest", required=True,
                   help="data manifest YAML, or a shipped study's name "
                        "(demo, border_ndvi, sentinel2_semisynthetic)")
    x.add_argument("--cache", help="cache folder (default: .cache next to the manifest)")
    x.add_argument("--workers", type=_int_at_least(1),
                   help="start a local Dask cluster with N workers")
    x.add_argument("--scheduler", help="address of a running Dask scheduler")
    x.add_argument("--threads", type=_int_at_least(1),
                   help="reader/writer threads of a local run (default: the CPU count)")
    x.add_argument("--task-mb", type=_positive_float, default=64.0, metavar="MB",
                   help="memory per task of units (default 64); lower it, or --threads, when "
                        "extraction says the tasks cannot fit in memory")
    x.add_argument("--quiet", action="store_true", help="no progress bar")
    x.add_argument("--overwrite", action="store_true",
                   help="replace whatever sits at the cache path, even if geocausal did not make it")
    x.set_defaults(func=cmd_extract)

    m = _sub(sub, "embed")
    m.add_argument("--cache", required=True, help="chips cache (from 'geocausal extract')")
    m.add_argument("--out", required=True, help="output Parquet file")
    m.add_argument("--encoder", default="cnn", help="cnn, vit, sequence or random")
    m.add_argument("--epochs", type=_int_at_least(0), default=5,
                   help="training epochs; 0 embeds with the untrained encoder (default: 5)")
    m.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed (default: 0)")
    m.add_argument("--block-units", type=_int_at_least(1),
                   help="units read per block (default: as many as fit the memory budget)")
    m.add_argument("--memory-budget",
                   help="memory chips may take, e.g. 2GB (default: $GEOCAUSAL_MEMORY_BUDGET "
                        "or 2GB)")
    m.add_argument("--workers", type=_int_at_least(1),
                   help="embed the blocks on a local Dask cluster with N workers")
    m.add_argument("--scheduler", help="address of a running Dask scheduler to embed on")
    m.add_argument("--overwrite", action="store_true",
                   help="replace an existing output file that geocausal did not write")
    m.set_defaults(func=cmd_embed)

    d = _sub(sub, "demo")
    d.add_argument("--out", default="results",
                   help="output folder: new, empty, or from an earlier demo (default: results)")
    d.add_argument("--units", type=_int_at_least(1), default=600,
                   help="number of units (default: 600)")
    d.add_argument("--size", type=_int_at_least(1), default=32, help="chip side in pixels")
    d.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed (default: 0)")
    d.add_argument("--overwrite", action="store_true",
                   help="write into a folder that holds files geocausal did not create")
    d.set_defaults(func=cmd_demo)

    pp = _sub(sub, "paper")
    psub = pp.add_subparsers(dest="paper_command", parser_class=_Parser)
    pr = _sub(psub, "run", "paper run")
    pr.add_argument("name", help=f"one of {list(PAPERS)}")
    pr.add_argument("--full", action="store_true", help="paper size")
    pr.add_argument("--out", help="output folder: new, empty, or from an earlier run "
                                  "(default: paper/NAME in the user data folder)")
    pr.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed (default: 0)")
    pr.add_argument("--data", help="folder with the paper's real data in its published schema "
                                   "(see paper/NAME/data_paths.py); default: the substitute data")
    pr.add_argument("--overwrite", action="store_true",
                    help="write into a folder that holds files geocausal did not create")
    pr.set_defaults(func=cmd_paper)
    return p


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {category.__name__}: {_one_line(message)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``geocausal`` console script; returns the exit code.

    0: success; 2: bad input or options (one line on stderr naming the problem); 3: an
    unexpected internal error (one line; ``--debug`` or ``GEOCAUSAL_DEBUG=1`` re-raises it
    with its traceback); 130: interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("GEOCAUSAL_DEBUG", "") not in ("", "0")
    parser = build_parser()
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning  # one line per warning, no source lines
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
            print(f"error: {_one_line(exc, 600)}", file=sys.stderr)
            return 2
        except OSError as exc:  # a path the user gave: missing, a folder, no permission
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            if debug:
                raise
            print(f"internal error: {type(exc).__name__}: {_one_line(exc, 200)} (a bug in "
                  "geocausal; rerun with --debug for the traceback and please report it)",
                  file=sys.stderr)
            return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
