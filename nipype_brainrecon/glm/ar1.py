"""AR(1) noise model: prewhitening, and the Yule-Walker coefficient from residual sums."""

from __future__ import annotations

import numpy as np


def whiten(x: np.ndarray, rho: float) -> np.ndarray:
    """AR(1) prewhitening as nilearn's ARModel (time on axis 0): x[t] - rho * x[t-1], x[0] kept."""
    out = x.copy()
    out[1:] -= rho * x[:-1]
    return out


def whiten_rows_transposed(f: np.ndarray, rho: float) -> np.ndarray:
    """Rows of ``f @ W`` for the whitening matrix W (time on axis 1), so that f W y = (f W) y."""
    out = f.copy()
    out[:, :-1] -= rho * f[:, 1:]
    return out


def lag_sum(x: np.ndarray) -> np.ndarray:
    """x[t] + x[t-1] neighbours along time (axis 0): the operator of sum_t a_t b_{t+1} + a_{t+1} b_t."""
    out = np.zeros_like(x)
    out[:-1] += x[1:]
    out[1:] += x[:-1]
    return out


def ar1_from_sums(sse: np.ndarray, lag: np.ndarray, n: int) -> np.ndarray:
    """Yule-Walker AR(1) coefficient from residual sums (nilearn's normalisation)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (lag / (n - 1)) / (sse / n)
    return np.where(sse > 0, rho, 0.0)
