"""Working memory: how many targets a chunk holds, pieces of a sorted index set, and the
buffers reused from one chunk to the next."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np


class Scratch:
    """Working arrays reused from one target chunk to the next (numpy), one buffer per role,
    grown when a larger array is asked for."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def take(self, role: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An uninitialised C-ordered array of ``shape``, in the buffer of ``role``."""
        size = math.prod(shape)
        buffer = self._buffers.get(role)
        if buffer is None or buffer.size < size or buffer.dtype != dtype:
            buffer = self._buffers[role] = np.empty(size, dtype=dtype)
        return buffer[:size].reshape(shape)


def index_chunks(idx: np.ndarray, chunk: int) -> Iterator[slice | np.ndarray]:
    """Consecutive pieces of the sorted indices ``idx``; a run without gaps as a slice (a view)."""
    for start in range(0, idx.size, chunk):
        part = idx[start : start + chunk]
        if part[-1] - part[0] + 1 == part.size:
            yield slice(int(part[0]), int(part[-1]) + 1)
        else:
            yield part


def chunk_of(budget: int, per_target: int, t: int, chunk_size: int | None) -> int:
    """Targets per chunk: ``chunk_size`` when given, else as many as ``budget`` bytes hold at
    ``per_target`` bytes each, evened out over the chunks."""
    if chunk_size:
        return int(chunk_size)
    widest = max(1, min(t, budget // max(1, per_target)))
    n_chunks = -(-t // widest)
    return -(-t // n_chunks)  # equal chunks (no narrow last one), none wider than the budget
