"""Splitting work into consecutive batches (rows of a network call, target chunks of a solver),
and the progress bar over the items they process."""

from __future__ import annotations

from collections.abc import Iterator


def batches(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices covering ``range(n)``, each at most ``size`` long (at least 1).

    Index a sequence with them for its items (``items[s]``), or ``range(n)[s]`` for indices.

    >>> [(s.start, s.stop) for s in batches(5, 2)]
    [(0, 2), (2, 4), (4, 5)]
    >>> list(batches(0, 3))
    []
    """
    size = max(1, int(size))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def progress_bar(total: int, desc: str, enabled: bool, unit: str = "image"):
    """A tqdm bar over ``total`` items (``unit``: images by default); silent when disabled or
    empty.

    A terminal that reports no size (a pseudo-terminal with none set) gets 80 × 24, where
    tqdm would draw nothing.
    """
    import shutil

    from tqdm.auto import tqdm

    sized = shutil.get_terminal_size((0, 0)).columns > 0
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=not enabled or total == 0,
        ncols=None if sized else 80,
        nrows=None if sized else 24,
    )
