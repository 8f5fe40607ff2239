"""The Dask client helper: a local cluster by default, any scheduler address when given.

:func:`parallel_map` runs one function over many inputs serially, on local processes or on a
Dask cluster (``scheduler=ADDRESS`` or a ``client``) with the same code and the same, ordered,
results: Monte Carlo replications, bootstrap chunks and extraction tasks use it.
:class:`ScriptParser` and :func:`add_parallel_arguments` give every script the same
``--workers N`` / ``--scheduler ADDRESS`` flags, where a bad value (``--workers 0``) exits 2 with
one line.

Examples
--------
>>> with dask_client(workers=None) as client:
...     client is None
True
>>> with dask_client(workers=-1) as client:
...     pass
Traceback (most recent call last):
...
geocausal.errors.DataError: workers=-1: give a positive number of worker processes (or none to run serially)
"""

from __future__ import annotations

import argparse
import numbers
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from geocausal.errors import DataError

#: seconds to wait for a scheduler given by address before giving up (the environment
#: variable ``GEOCAUSAL_CONNECT_TIMEOUT`` overrides it)
CONNECT_TIMEOUT_S = 5.0


def connect_timeout(timeout: float | None = None) -> float:
    """The scheduler connect timeout: ``timeout``, else ``$GEOCAUSAL_CONNECT_TIMEOUT``, else 5 s.

    Examples
    --------
    >>> connect_timeout(2)
    2.0
    """
    source = "timeout"
    if timeout is None:
        env = os.environ.get("GEOCAUSAL_CONNECT_TIMEOUT")
        timeout, source = (env, "GEOCAUSAL_CONNECT_TIMEOUT") if env else (CONNECT_TIMEOUT_S, "")
    try:
        value = float(timeout)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise DataError(f"{source}={timeout!r}: give a positive number of seconds")
    return value


def check_workers(workers: int | None) -> int | None:
    """Validate a number of worker processes: ``None`` (run serially) or an integer >= 1.

    Examples
    --------
    >>> check_workers(4), check_workers(None)
    (4, None)
    """
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise DataError(f"workers={workers!r}: give a positive number of worker processes "
                        "(or none to run serially)")
    return int(workers)


def connect(address: str, timeout: float | None = None):
    """A ``dask.distributed.Client`` connected to the scheduler at ``address``.

    Raises
    ------
    DataError
        The address is malformed or no scheduler answers there within ``timeout`` seconds
        (default: :func:`connect_timeout`).
    """
    from dask.distributed import Client

    timeout = connect_timeout(timeout)
    if not isinstance(address, str) or not address.strip():
        raise DataError(f"scheduler={address!r}: give an address such as tcp://10.0.0.1:8786")
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot reach the Dask scheduler at '{address}' within {timeout:g} s "
                        f"({reason[:120]}); check the address and that the scheduler is "
                        "running") from None


@contextmanager
def dask_client(address: str | None = None, workers: int | None = None,
                timeout: float | None = None) -> Iterator:
    """Yield a ``dask.distributed.Client``, or ``None`` when neither argument is given.

    Parameters
    ----------
    address
        A scheduler address such as ``"tcp://10.0.0.1:8786"``.
    workers
        Start a ``LocalCluster`` with this many single-threaded worker processes (>= 1).
    timeout
        Seconds to wait for the scheduler at ``address`` (default: :func:`connect_timeout`).

    Raises
    ------
    DataError
        ``workers`` is not a positive integer, or the scheduler cannot be reached in time.
    """
    workers = check_workers(workers)
    if address is None and workers is None:
        yield None
        return
    if address is not None:
        client = connect(address, timeout)
        try:
            yield client
        finally:
            client.close()
        return
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def parallel_map(fn: Callable[[Any], Any], items: Iterable[Any], *, workers: int | None = None,
                 scheduler: str | None = None, client: Any = None, desc: str | None = None,
                 progress: bool = True) -> list:
    """``[fn(item) for item in items]``, serially, on local processes or on Dask.

    Parameters
    ----------
    fn
        A picklable (module-level) function of one argument.
    items
        Its inputs; the results come back in this order whatever ran them.
    workers
        Local worker processes (``None`` or 1: serial).
    scheduler
        Address of a Dask scheduler: the items run on its workers.
    client
        A ``dask.distributed.Client`` already connected (takes precedence).
    desc, progress
        Progress bar label and switch.

    Raises
    ------
    DataError
        ``workers`` is not a positive integer, or the scheduler cannot be reached.

    Examples
    --------
    >>> parallel_map(abs, [-1, 2, -3], progress=False)
    [1, 2, 3]
    >>> parallel_map(abs, [1], workers=0)
    Traceback (most recent call last):
    ...
    geocausal.errors.DataError: workers=0: give a positive number of worker processes (or none to run serially)
    """
    from geocausal._progress import progress as bar

    workers = check_workers(workers)
    items = list(items)
    if client is None and scheduler is not None:
        with dask_client(scheduler) as c:
            return parallel_map(fn, items, client=c, desc=desc, progress=progress)
    if client is not None:
        from dask.distributed import as_completed

        futures = client.map(fn, items, pure=False)
        for _ in bar(as_completed(futures), total=len(futures), desc=desc, enabled=progress):
            pass
        return client.gather(futures)
    if workers is None or workers == 1 or len(items) < 2:
        return [fn(item) for item in bar(items, desc=desc, enabled=progress)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # forking a process that runs JAX's threads can deadlock: start fresh interpreters then
    ctx = multiprocessing.get_context("spawn" if "jax" in sys.modules else None)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        return list(bar(pool.map(fn, items, chunksize=max(1, len(items) // (8 * workers))),
                        total=len(items), desc=desc, enabled=progress))


def worker_count(text: str) -> int:
    """An argparse type for ``--workers``: an integer >= 1.

    Examples
    --------
    >>> worker_count("4")
    4
    >>> worker_count("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 0 is below 1; give a positive number of workers
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1; give a positive number of "
                                         "workers")
    return value


worker_count.__name__ = "positive integer"


class ScriptParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr and exit status 2."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        sys.stderr.write(f"error: {self.prog}: {message}\n")
        raise SystemExit(2)


def add_parallel_arguments(parser: argparse.ArgumentParser, *, default_workers: int | None = 1
                           ) -> argparse.ArgumentParser:
    """Add ``--workers N`` (local processes, >= 1) and ``--scheduler ADDRESS`` (Dask).

    Examples
    --------
    >>> p = add_parallel_arguments(ScriptParser(prog="mc"))
    >>> a = p.parse_args(["--workers", "3"]); (a.workers, a.scheduler)
    (3, None)
    """
    parser.add_argument("--workers", type=worker_count, default=default_workers,
                        help="local worker processes (>= 1)")
    parser.add_argument("--scheduler", default=None,
                        help="address of a running Dask scheduler (tcp://host:8786): run the "
                             "work on its workers")
    return parser
