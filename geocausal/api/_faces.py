"""What every face shares: the published signature hides ``**deprecated``.

The command line and ``spec_curve`` pass only the keywords a face lists, and ``help()`` shows
only the current vocabulary; the old keywords still work, each with a FutureWarning naming its
new spelling.

Examples
--------
>>> import inspect
>>> @public_signature
... def face(formula, data, *, seed=0, **deprecated):
...     return seed
>>> list(inspect.signature(face).parameters)
['formula', 'data', 'seed']
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def public_signature(fn: F) -> F:
    """Hide ``**deprecated`` (any ``**kwargs``) from ``inspect.signature(fn)``."""
    sig = inspect.signature(fn)
    fn.__signature__ = sig.replace(parameters=[  # type: ignore[attr-defined]
        p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD])
    return fn
