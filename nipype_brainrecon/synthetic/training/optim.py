"""What both training phases share: the learning-rate schedule and the loss records."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from .report import PhaseLog

__all__ = ["Log", "LossInterval", "lr_factor"]

#: Receives progress lines.
Log = Callable[[str], None]


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay from 1 to 0.1."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return 0.1 + 0.45 * (1.0 + math.cos(math.pi * progress))


class LossInterval:
    """Accumulates losses and records their mean every ``every`` steps."""

    def __init__(self, every: int, phase: str, log: Log | None) -> None:
        self.every, self.phase, self.log = every, phase, log
        self.total, self.count = 0.0, 0

    def add(self, phase_log: PhaseLog, step: int, loss: float, started: float) -> None:
        self.total += loss
        self.count += 1
        if (step + 1) % self.every == 0:
            self.flush(phase_log, step + 1, started)

    def flush(self, phase_log: PhaseLog, step: int, started: float) -> None:
        if not self.count:
            return
        mean = self.total / self.count
        phase_log.losses.append((int(step), float(mean)))
        if self.log is not None:
            self.log(f"{self.phase} step {step}: loss {mean:.5f} ({time.time() - started:.0f} s)")
        self.total, self.count = 0.0, 0
