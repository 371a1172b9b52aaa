"""Threads that obey: the heavy interfaces run inside :func:`limit_threads`.

A Nipype node declares ``n_procs`` so that MultiProc and cluster plugins reserve that many
cores; the libraries it calls (OpenBLAS / MKL through numpy and scipy, OpenMP, torch's intra-op
pool) would still start one thread per core of the machine. As in fMRIPrep (``omp_nthreads``),
the workflows pass the same number to the node's ``num_threads`` input, and the interface runs
its numerical work inside :func:`limit_threads`, which caps every thread pool loaded in the
process (threadpoolctl) and torch's own pool, then restores them. What was observed inside the
limit is written to ``threads.json`` (the ``threads_file`` output), so a run shows what it used.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nipype.interfaces.base import File, traits


def num_threads_trait() -> traits.Int:
    """The ``num_threads`` input of a heavy interface (the workflows set it to ``omp_nthreads``)."""
    return traits.Int(
        1,
        usedefault=True,
        desc="threads of BLAS, OpenMP and torch while the node computes (omp_nthreads); "
        "0: leave the libraries' own settings",
    )


def threads_file_trait() -> File:
    """The ``threads_file`` output: the threads observed inside the limit (JSON)."""
    return File(exists=True, desc="threads requested and observed in BLAS, OpenMP, torch (JSON)")


def observe_threads() -> dict[str, Any]:
    """The thread counts in force now: torch's pool and every pool threadpoolctl finds.

    Returns
    -------
    dict
        ``torch`` (``torch.get_num_threads()``) and ``pools``: one entry per loaded library
        (``user_api`` ``blas`` or ``openmp``, ``internal_api``, ``prefix``, ``num_threads``).
    """
    import torch
    from threadpoolctl import threadpool_info

    pools = [
        {k: info.get(k) for k in ("user_api", "internal_api", "prefix", "num_threads")}
        for info in threadpool_info()
    ]
    return {"torch": int(torch.get_num_threads()), "pools": pools}


@contextmanager
def limit_threads(n: int | None) -> Iterator[dict[str, Any]]:
    """Cap BLAS, OpenMP and torch threads at ``n`` inside the block, then restore them.

    numpy, scipy's linear algebra and torch are imported first so that the thread pools they
    bring are loaded, and so limited, before the block runs (threadpoolctl limits only the
    libraries loaded when the limit starts).

    Parameters
    ----------
    n : int or None
        Threads per pool; ``None`` or a value below 1 leaves every setting as it is (the
        pools are still observed).

    Yields
    ------
    dict
        Filled when the block ends, still inside the limit: ``requested`` and what
        :func:`observe_threads` saw then (``torch``, ``pools``).

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with limit_threads(1) as used:
    ...     torch.get_num_threads()
    1
    >>> used["torch"], {p["num_threads"] for p in used["pools"]}
    (1, {1})
    >>> torch.get_num_threads() == before
    True
    """
    import numpy  # noqa: F401  (loads its BLAS)
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS)
    import torch
    from threadpoolctl import threadpool_limits

    limit = int(n) if n is not None and int(n) >= 1 else None
    record: dict[str, Any] = {"requested": limit}
    before = torch.get_num_threads()
    with threadpool_limits(limits=limit):
        if limit is not None:
            torch.set_num_threads(limit)
        try:
            yield record
            record.update(observe_threads())
        finally:
            torch.set_num_threads(before)


def write_threads_file(record: dict[str, Any], folder: str | Path) -> str:
    """Write the record of :func:`limit_threads` as ``threads.json`` in ``folder``.

    Returns
    -------
    str
        The path written.
    """
    path = Path(folder) / "threads.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return str(path)
