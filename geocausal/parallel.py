"""The Dask client helper: a local cluster by default, any scheduler address when given.

Examples
--------
>>> with dask_client(workers=None) as client:
...     client is None
True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def dask_client(address: str | None = None, workers: int | None = None) -> Iterator:
    """Yield a ``dask.distributed.Client``, or ``None`` when neither argument is given.

    Parameters
    ----------
    address
        A scheduler address such as ``"tcp://10.0.0.1:8786"``.
    workers
        Start a ``LocalCluster`` with this many single-threaded worker processes.
    """
    if address is None and not workers:
        yield None
        return
    from dask.distributed import Client, LocalCluster

    if address is not None:
        client = Client(address)
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                           dashboard_address=None)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
