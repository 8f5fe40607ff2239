"""The Dask client helper: a local cluster by default, any scheduler address when given.

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

import numbers
import os
from collections.abc import Iterator
from contextlib import contextmanager

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
