"""Save and reload results: ``est.save(path)`` and ``gc.load(path)``, with no code run on load.

The file is a zip archive of one JSON document (``result.json``) and NumPy arrays
(``arrays/<k>.npy``, read with ``np.load(..., allow_pickle=False)``). Never a pickle: loading a
file runs no code from it. What the format holds, exactly (values, dtypes, indexes, names,
read-only flags):

* numbers (NaN and infinities included), strings, booleans, None, lists, tuples, sets, dicts
  with any such keys, read-only mappings;
* NumPy arrays and scalars of numeric, boolean, complex, datetime, timedelta and fixed-width
  string dtypes; object arrays element by element;
* pandas DataFrames, Series and indexes (RangeIndex, MultiIndex, categorical, nullable and
  other extension dtypes), timestamps, dates, paths;
* geocausal's own dataclasses (:class:`~geocausal.results.estimate.Estimate`,
  :class:`~geocausal.results.estimate.EstimateSet`,
  :class:`~geocausal.inference.variance.VarianceRule`, the diagnostics' result objects), field
  by field. On load a class is looked up only in ``geocausal`` modules and must be a
  dataclass; it is rebuilt without calling its constructor, as pickle would, but from data only.

Anything else (a fitted scikit-learn model, a user's object) is replaced by a :class:`NotSaved`
marker that names its type, with one :class:`~geocausal.errors.NotSavedWarning` that counts
them and says where they were. ``gc.cate``'s fitted model has its own ``save``
(:meth:`geocausal.designs.cate_model.CateModel.save`).

Examples
--------
>>> import tempfile, numpy as np, pandas as pd
>>> from pathlib import Path
>>> from geocausal.results.estimate import Estimate
>>> est = Estimate.from_influence({"d": 0.5}, np.random.default_rng(0).normal(size=50),
...                               diagnostics={"table": pd.DataFrame({"a": [1, 2]})})
>>> path = save(est, Path(tempfile.mkdtemp()) / "est.gcr")
>>> back = load(path)
>>> back.params.equals(est.params), back.diagnostics["table"].equals(est.diagnostics["table"])
(True, True)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import io
import json
import math
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePath
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError, NotSavedWarning

FORMAT = "geocausal-result"
VERSION = 1
_JSON = "result.json"
_NUMPY_KINDS = "biufcMmSU"  # dtypes np.save writes without pickle


@dataclasses.dataclass(frozen=True)
class NotSaved:
    """Marker left by :func:`save` where an object could not be stored safely.

    Attributes
    ----------
    type_name : str
        Module and class of the object that was not saved.
    text : str
        Its ``repr``, shortened.
    """

    type_name: str
    text: str = ""

    def __repr__(self) -> str:
        return f"NotSaved({self.type_name})"


# ----------------------------------------------------------------------------- encoding
class _Writer:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.skipped: list[str] = []

    def array(self, arr: np.ndarray) -> dict[str, Any]:
        name = f"arrays/{len(self.arrays)}.npy"
        self.arrays[name] = arr
        return {"$t": "nd", "f": name, "ro": not arr.flags.writeable}

    def values(self, values: Any, where: str) -> Any:
        """A column / index / array of values, keeping its dtype."""
        if isinstance(values, pd.Categorical) or isinstance(
                getattr(values, "dtype", None), pd.CategoricalDtype):
            cat = pd.Categorical(values)
            return {"$t": "cat", "codes": self.array(np.asarray(cat.codes)),
                    "categories": self.index(cat.categories, where),
                    "ordered": bool(cat.ordered)}
        if isinstance(values, pd.api.extensions.ExtensionArray) and not isinstance(
                values, pd.arrays.NumpyExtensionArray):
            obj = np.asarray(values.astype(object))
            return {"$t": "ext", "dtype": str(values.dtype),
                    "v": [None if _isna(v) else self.encode(v, where) for v in obj]}
        arr = np.asarray(values)
        return self.ndarray(arr, where)

    def ndarray(self, arr: np.ndarray, where: str) -> dict[str, Any]:
        if arr.dtype.kind in _NUMPY_KINDS and not arr.dtype.hasobject and arr.dtype.names is None:
            return self.array(arr)
        flat = [self.encode(v, f"{where}[{j}]") for j, v in enumerate(arr.ravel())]
        return {"$t": "ndobj", "shape": list(arr.shape), "v": flat,
                "ro": not arr.flags.writeable}

    def index(self, idx: pd.Index, where: str) -> dict[str, Any]:
        if isinstance(idx, pd.RangeIndex):
            return {"$t": "range", "start": idx.start, "stop": idx.stop, "step": idx.step,
                    "name": self.encode(idx.name, where)}
        if isinstance(idx, pd.MultiIndex):
            return {"$t": "multi",
                    "levels": [self.index(idx.get_level_values(j), where)
                               for j in range(idx.nlevels)],
                    "names": [self.encode(n, where) for n in idx.names]}
        return {"$t": "index", "v": self.values(idx.array if not isinstance(idx.dtype, np.dtype)
                                                else idx.to_numpy(), where),
                "dtype": str(idx.dtype), "name": self.encode(idx.name, where)}

    def _field(self, obj: Any, name: str, where: str) -> Any:
        value = getattr(obj, name)
        if name == "fitted" and value is not None and _is_estimate(obj):
            # fitted models are an explicit handle, never saved (and not warned about): a
            # marker names their type; they have their own save (gc.cate: CateModel.save)
            cls = type(value)
            return {"$t": "notsaved", "type": f"{cls.__module__}.{cls.__qualname__}",
                    "text": "fitted models are not saved with the estimate"}
        return self.encode(value, f"{where}.{name}")

    def encode(self, obj: Any, where: str) -> Any:  # noqa: C901 - one dispatch table
        if obj is None or isinstance(obj, bool | str):
            return obj
        if isinstance(obj, int) and not isinstance(obj, np.integer | bool):
            return obj if type(obj) is int else {"$t": "int", "v": int(obj)}
        if isinstance(obj, float) and type(obj) is float:
            return obj if math.isfinite(obj) else {"$t": "float", "v": repr(obj)}
        if isinstance(obj, np.generic):
            if obj.dtype.kind in _NUMPY_KINDS:
                return {"$t": "npscalar", "a": self.array(np.asarray(obj))}
            return self.encode(obj.item(), where)
        if isinstance(obj, np.ndarray):
            return self.ndarray(obj, where)
        if isinstance(obj, pd.DataFrame):
            return {"$t": "frame", "columns": self.index(obj.columns, where),
                    "index": self.index(obj.index, where),
                    "data": [self.values(obj.iloc[:, j].array if not isinstance(
                        obj.dtypes.iloc[j], np.dtype) else obj.iloc[:, j].to_numpy(),
                        f"{where}[{obj.columns[j]!r}]") for j in range(obj.shape[1])]}
        if isinstance(obj, pd.Series):
            vals = obj.array if not isinstance(obj.dtype, np.dtype) else obj.to_numpy()
            return {"$t": "series", "v": self.values(vals, where),
                    "index": self.index(obj.index, where), "name": self.encode(obj.name, where)}
        if isinstance(obj, pd.Index):
            return self.index(obj, where)
        if isinstance(obj, pd.Timestamp):
            return {"$t": "timestamp", "v": obj.isoformat()}
        if isinstance(obj, pd.Timedelta):
            return {"$t": "timedelta", "v": int(obj.value)}
        if isinstance(obj, _dt.datetime):
            return {"$t": "datetime", "v": obj.isoformat()}
        if isinstance(obj, _dt.date):
            return {"$t": "date", "v": obj.isoformat()}
        if isinstance(obj, PurePath):
            return {"$t": "path", "v": str(obj)}
        if isinstance(obj, list):
            return [self.encode(v, f"{where}[{j}]") for j, v in enumerate(obj)]
        if isinstance(obj, tuple) and type(obj) is tuple:
            return {"$t": "tuple", "v": [self.encode(v, f"{where}[{j}]")
                                         for j, v in enumerate(obj)]}
        if isinstance(obj, set | frozenset):
            items = sorted(obj, key=repr)
            return {"$t": "frozenset" if isinstance(obj, frozenset) else "set",
                    "v": [self.encode(v, where) for v in items]}
        if isinstance(obj, dict | MappingProxyType) or _is_frozen_mapping(obj):
            kind = ("dict" if isinstance(obj, dict) else
                    "proxy" if isinstance(obj, MappingProxyType) else "frozen")
            keys = list(obj.keys())
            return {"$t": kind, "k": [self.encode(k, where) for k in keys],
                    "v": [self.encode(obj[k], f"{where}[{k!r}]") for k in keys]}
        if isinstance(obj, NotSaved):
            return {"$t": "notsaved", "type": obj.type_name, "text": obj.text}
        cls = type(obj)
        if (dataclasses.is_dataclass(obj) and cls.__module__.split(".")[0] == "geocausal"
                and "<locals>" not in cls.__qualname__ and not getattr(cls, "_not_saved", False)):
            return {"$t": "dc", "cls": f"{cls.__module__}:{cls.__qualname__}",
                    "fields": {f.name: self._field(obj, f.name, where)
                               for f in dataclasses.fields(obj)}}
        name = f"{cls.__module__}.{cls.__qualname__}"
        self.skipped.append(f"{where} ({name})")
        text = repr(obj)
        return {"$t": "notsaved", "type": name, "text": text[:200]}


def _isna(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _is_frozen_mapping(obj: Any) -> bool:
    from geocausal.results.estimate import FrozenMapping

    return isinstance(obj, FrozenMapping)


def _is_estimate(obj: Any) -> bool:
    from geocausal.results.estimate import Estimate

    return isinstance(obj, Estimate)


def _root_name(result: Any) -> str:
    return type(result).__name__


def to_bytes(result: Any) -> bytes:
    """The saved form of ``result`` as bytes (what :func:`save` writes).

    Examples
    --------
    >>> import pandas as pd
    >>> from geocausal.results.estimate import Estimate
    >>> e = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.25]]))
    >>> float(from_bytes(to_bytes(e)).std_errors["d"])
    0.5
    """
    from geocausal.results.estimate import Estimate, EstimateSet

    if not isinstance(result, Estimate | EstimateSet):
        raise DataError(f"save takes an Estimate or EstimateSet, got {type(result).__name__}")
    w = _Writer()
    root = w.encode(result, _root_name(result))
    if w.skipped:
        shown = "; ".join(w.skipped[:5]) + ("; ..." if len(w.skipped) > 5 else "")
        warnings.warn(
            f"{len(w.skipped)} object(s) cannot be saved safely and were replaced by NotSaved "
            f"markers: {shown}. Fitted models have their own save (gc.cate: "
            "est.fitted.save(path); formerly est.diagnostics['model'])", NotSavedWarning, stacklevel=3)
    doc = {"format": FORMAT, "version": VERSION, "kind": _root_name(result),
           "geocausal_version": _geocausal_version(), "root": root}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_JSON, json.dumps(doc, allow_nan=False))
        for name, arr in w.arrays.items():
            b = io.BytesIO()
            np.save(b, np.ascontiguousarray(arr) if arr.ndim else arr, allow_pickle=False)
            zf.writestr(name, b.getvalue())
    return buf.getvalue()


def _geocausal_version() -> str | None:
    from geocausal.results.estimate import _version

    return _version("geocausal")


def save(result: Any, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write an Estimate or EstimateSet to ``path`` (a zip of JSON and ``.npy`` arrays).

    Parameters
    ----------
    result
        The result to save.
    path
        The file to write (any name; ``.gcr`` is a good suffix). Its folder must exist.
    overwrite
        Replace an existing file; without it an existing ``path`` is a :class:`DataError`.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> from pathlib import Path
    >>> from geocausal.results.estimate import Estimate
    >>> e = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.25]]))
    >>> p = save(e, Path(tempfile.mkdtemp()) / "e.gcr")
    >>> float(load(p).params["d"])
    1.0
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"save path '{path}' is a folder; give a file name such as "
                        f"'{path / 'result.gcr'}'")
    if path.exists() and not overwrite:
        raise DataError(f"'{path}' exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise DataError(f"the folder of '{path}' does not exist; create it first")
    data = to_bytes(result)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------- decoding
class _Reader:
    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.names = set(zf.namelist())

    def array(self, node: Mapping[str, Any]) -> np.ndarray:
        name = node.get("f")
        if not isinstance(name, str) or name not in self.names or not name.startswith("arrays/"):
            raise DataError(f"saved result refers to a missing array {name!r}; the file is "
                            "damaged")
        try:
            arr = np.load(io.BytesIO(self.zf.read(name)), allow_pickle=False)
        except ValueError as err:
            raise DataError(f"array {name} of the saved result cannot be read without running "
                            f"code (object arrays are refused): {err}") from None
        if node.get("ro"):
            arr.setflags(write=False)
        return arr

    def values(self, node: Any) -> Any:
        t = node.get("$t") if isinstance(node, dict) else None
        if t == "cat":
            codes = self.array(node["codes"])
            cats = self.index(node["categories"])
            return pd.Categorical.from_codes(codes, categories=cats, ordered=node["ordered"])
        if t == "ext":
            dtype = pd.api.types.pandas_dtype(_checked_dtype(node["dtype"]))
            vals = [pd.NA if v is None else self.decode(v) for v in node["v"]]
            return pd.array(vals, dtype=dtype)
        return self.decode(node)

    def index(self, node: Mapping[str, Any]) -> pd.Index:
        t = node.get("$t")
        if t == "range":
            return pd.RangeIndex(node["start"], node["stop"], node["step"],
                                 name=self.decode(node["name"]))
        if t == "multi":
            levels = [self.index(n) for n in node["levels"]]
            return pd.MultiIndex.from_arrays(levels, names=[self.decode(n) for n in node["names"]])
        if t == "index":
            vals = self.values(node["v"])
            dtype = node.get("dtype")
            if isinstance(vals, np.ndarray) and vals.dtype == object:
                return pd.Index(vals, name=self.decode(node["name"]), dtype=object)
            return pd.Index(vals, name=self.decode(node["name"]),
                            dtype=None if dtype is None else _checked_dtype(dtype))
        raise DataError(f"saved result has an index of unknown kind {t!r}")

    def decode(self, node: Any) -> Any:  # noqa: C901 - one dispatch table
        if node is None or isinstance(node, bool | int | float | str):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict) or "$t" not in node:
            raise DataError("saved result has a malformed entry; the file is damaged or not "
                            "written by geocausal")
        t = node["$t"]
        if t == "float":
            if node["v"] not in ("nan", "inf", "-inf"):
                raise DataError(f"saved result has a bad float {node['v']!r}")
            return float(node["v"])
        if t == "int":
            return int(node["v"])
        if t == "nd":
            return self.array(node)
        if t == "npscalar":
            return self.array(node["a"])[()]
        if t == "ndobj":
            arr = np.empty(len(node["v"]), dtype=object)
            for j, v in enumerate(node["v"]):
                arr[j] = self.decode(v)
            arr = arr.reshape(node["shape"])
            if node.get("ro"):
                arr.setflags(write=False)
            return arr
        if t == "frame":
            cols = self.index(node["columns"])
            idx = self.index(node["index"])
            data = [self.values(v) for v in node["data"]]
            if len(data) != len(cols):
                raise DataError("saved frame has as many columns as names; the file is damaged")
            out = pd.DataFrame({j: pd.Series(v, index=idx, copy=False)
                                for j, v in enumerate(data)}, index=idx)
            out.columns = cols
            return out
        if t == "series":
            return pd.Series(self.values(node["v"]), index=self.index(node["index"]),
                             name=self.decode(node["name"]), copy=False)
        if t in ("range", "multi", "index"):
            return self.index(node)
        if t == "timestamp":
            return pd.Timestamp(node["v"])
        if t == "timedelta":
            return pd.Timedelta(int(node["v"]), unit="ns")
        if t == "datetime":
            return _dt.datetime.fromisoformat(node["v"])
        if t == "date":
            return _dt.date.fromisoformat(node["v"])
        if t == "path":
            return Path(node["v"])
        if t == "tuple":
            return tuple(self.decode(v) for v in node["v"])
        if t in ("set", "frozenset"):
            vals = [self.decode(v) for v in node["v"]]
            return frozenset(vals) if t == "frozenset" else set(vals)
        if t in ("dict", "proxy", "frozen"):
            d = {_hashable(self.decode(k)): self.decode(v) for k, v in zip(node["k"], node["v"])}
            if t == "proxy":
                return MappingProxyType(d)
            if t == "frozen":
                from geocausal.results.estimate import FrozenMapping

                return FrozenMapping(d)
            return d
        if t == "notsaved":
            return NotSaved(str(node["type"]), str(node.get("text", "")))
        if t == "dc":
            return self.dataclass(node)
        raise DataError(f"saved result has an entry of unknown kind {t!r}; it was written by a "
                        "newer geocausal or is damaged")

    def dataclass(self, node: Mapping[str, Any]) -> Any:
        cls = _resolve(node.get("cls"))
        fields = node.get("fields")
        names = {f.name for f in dataclasses.fields(cls)}
        # a field added later with a default (Estimate.tables, .fitted) may be absent
        optional = {f.name for f in dataclasses.fields(cls)
                    if f.default is not dataclasses.MISSING
                    or f.default_factory is not dataclasses.MISSING}
        if (not isinstance(fields, dict) or not set(fields) <= names
                or not names - optional <= set(fields)):
            raise DataError(f"saved {cls.__name__} has fields {sorted(fields or {})}, this "
                            f"geocausal expects {sorted(names)}; load it with the geocausal "
                            "version that wrote it")
        obj = object.__new__(cls)
        for f in dataclasses.fields(cls):
            if f.name in fields:
                value = self.decode(fields[f.name])
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = f.default
            object.__setattr__(obj, f.name, value)
        if hasattr(obj, "_make_readonly"):
            obj._make_readonly()  # Estimate: params, vcov, tables ... read-only again
        return obj


def _hashable(k: Any) -> Any:
    if isinstance(k, list):
        return tuple(_hashable(v) for v in k)
    return k


def _checked_dtype(s: Any) -> str:
    if not isinstance(s, str) or len(s) > 64:
        raise DataError(f"saved result has a bad dtype {s!r}")
    return s


def _resolve(spec: Any) -> type:
    """A geocausal dataclass from ``"module:Qual.Name"``; anything else is refused."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise DataError(f"saved result names a class {spec!r} in a bad form")
    module, qual = spec.split(":")
    if module.split(".")[0] != "geocausal" or "<" in qual:
        raise DataError(f"saved result names class {spec!r} outside geocausal; refused "
                        "(loading runs no code from other packages)")
    try:
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise DataError(f"saved result names class {spec!r}, which this geocausal does not "
                        "have; load it with the version that wrote it") from None
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        raise DataError(f"saved result names {spec!r}, which is not a geocausal result class; "
                        "refused")
    return obj


def from_bytes(data: bytes) -> Any:
    """Read what :func:`to_bytes` wrote. Runs no code from ``data``."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DataError("not a saved geocausal result (not a zip archive); write one with "
                        "est.save(path)") from None
    with zf:
        if _JSON not in zf.namelist():
            raise DataError(f"not a saved geocausal result: no {_JSON} inside")
        try:
            doc = json.loads(zf.read(_JSON))
        except (ValueError, UnicodeDecodeError) as err:
            raise DataError(f"{_JSON} of the saved result is not valid JSON: {err}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise DataError("not a saved geocausal result (format field missing)")
        if doc.get("version") != VERSION:
            raise DataError(f"saved result has format version {doc.get('version')!r}; this "
                            f"geocausal reads version {VERSION}")
        out = _Reader(zf).decode(doc["root"])
    from geocausal.results.estimate import Estimate, EstimateSet

    if not isinstance(out, Estimate | EstimateSet):
        raise DataError("the saved file does not hold an Estimate or EstimateSet")
    return out


def load(path: str | Path) -> Any:
    """Read an Estimate or EstimateSet written by ``est.save(path)``. Runs no code from it.

    Parameters
    ----------
    path
        The file :func:`save` wrote.

    Returns
    -------
    Estimate or EstimateSet
        Equal to the saved one: params, vcov, influence, curve, diagnostics, provenance,
        cluster data and variance rule (so ``with_vcov`` works as before saving). Objects that
        could not be saved are :class:`NotSaved` markers.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from geocausal.results.estimate import Estimate
    >>> g = np.repeat(np.arange(40), 5)
    >>> e = Estimate.from_influence({"d": 1.0}, np.random.default_rng(0).normal(size=200),
    ...                             cluster_data={"g": g})
    >>> back = load(e.save(Path(tempfile.mkdtemp()) / "e.gcr"))
    >>> back.with_vcov({"cluster": "g"}).vcov.equals(e.with_vcov({"cluster": "g"}).vcov)
    True
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no saved result at '{path}'")
    return from_bytes(path.read_bytes())
