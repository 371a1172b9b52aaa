"""The vectorised fits: LSS and LSA models as fixed linear filters of the data, and the
voxel-chunked fit (OLS, or AR(1) refits binned by coefficient)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .ar1 import ar1_from_sums, lag_sum, whiten, whiten_rows_transposed

# Work arrays per voxel chunk stay near this many float64 values.
_CHUNK_ELEMENTS = 4_000_000


def _orth_basis(x: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the column space of ``x`` (rank-revealing, like a pseudo-inverse)."""
    if x.shape[1] == 0:
        return x
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    keep = s > s.max() * max(x.shape) * np.finfo(float).eps
    return u[:, keep]


def _project_out(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    return x - q @ (q.T @ x)


class TrialModel:
    """Voxel-independent part of a single-trial fit: betas = data (voxels × scans) @ filter.T."""

    def filter(self, rho: float) -> np.ndarray:  # trials × scans
        raise NotImplementedError

    def ar1(self, yt: np.ndarray) -> np.ndarray:  # trials × voxels (or 1 × voxels)
        raise NotImplementedError


class LssModel(TrialModel):
    """LSS for trials sharing one nuisance space, all trials solved together.

    After the nuisance space is projected out, trial j's model holds 2m columns (its own m basis
    regressors and the sum of the other trials' ones); its main beta is a fixed linear filter of the
    data, so all trials' betas are one matrix product.
    """

    def __init__(self, own: np.ndarray, raw: np.ndarray, nuisance: np.ndarray):
        n_trials, n, m = own.shape
        # Column bank: own columns of every trial, then raw derivative columns (raw main == own).
        bank = [own.transpose(1, 0, 2).reshape(n, n_trials * m)]
        self.own_idx = np.arange(n_trials * m).reshape(n_trials, m)
        self.raw_idx = self.own_idx.copy()
        if m > 1:
            bank.append(raw[:, :, 1:].transpose(1, 0, 2).reshape(n, n_trials * (m - 1)))
            extra = np.arange(n_trials * (m - 1)).reshape(n_trials, m - 1)
            self.raw_idx[:, 1:] = n_trials * m + extra
        self.bank = np.concatenate(bank, axis=1)
        self.nuisance = nuisance
        self._filters: dict[float, np.ndarray] = {}
        self.q, self.proj, self.design, self.gram_inv = self._solve(0.0)
        self._ar = None

    def combine(self, bank_values: np.ndarray) -> np.ndarray:
        """Per-trial rows [own columns, sum of others' raw columns] from rows of bank columns."""
        own = bank_values[self.own_idx]
        raw = bank_values[self.raw_idx]
        return np.concatenate([own, raw.sum(axis=0, keepdims=True) - raw], axis=1)

    def _solve(self, rho: float):
        bank, nuisance = self.bank, self.nuisance
        if rho:
            bank, nuisance = whiten(bank, rho), whiten(nuisance, rho)
        q = _orth_basis(nuisance)
        proj = _project_out(q, bank)
        design = self.combine(proj.T)  # trials × 2m × scans
        gram_inv = np.linalg.pinv(design @ design.transpose(0, 2, 1), hermitian=True)
        return q, proj, design, gram_inv

    def filter(self, rho: float) -> np.ndarray:
        if rho not in self._filters:
            _, _, design, gram_inv = (
                self._solve(rho) if rho else (None, None, self.design, self.gram_inv)
            )
            filt = np.einsum("tp,tpn->tn", gram_inv[:, 0, :], design)
            self._filters[rho] = whiten_rows_transposed(filt, rho) if rho else filt
        return self._filters[rho]

    def ar1(self, yt: np.ndarray) -> np.ndarray:
        """Each trial model's OLS-residual AR(1) coefficient, in closed form from data products."""
        if self._ar is None:
            q = self.q
            bank_sym = lag_sum(self.proj)
            ops = np.concatenate([self.proj, bank_sym, q, lag_sum(q)], axis=1)
            cross = self.design[:, :, :-1] @ self.design[:, :, 1:].transpose(0, 2, 1)
            self._ar = (ops, bank_sym.T @ q, q[:-1].T @ q[1:], cross)
        ops, sym_q, q_lag, cross = self._ar
        n = yt.shape[1]
        nb, k = self.proj.shape[1], self.q.shape[1]
        prod = (yt @ ops).T
        c = self.combine(prod[:nb])  # D^T e (the projected design is orthogonal to the nuisance)
        z = prod[2 * nb : 2 * nb + k]  # Q^T y
        gamma = np.einsum("tpq,tqv->tpv", self.gram_inv, c)
        # e = y - Q z: its sum of squares and lag-1 sum.
        ee = np.einsum("vn,vn->v", yt, yt) - (z * z).sum(0)
        lag_y = np.einsum("vn,vn->v", yt[:, :-1], yt[:, 1:])
        lag_e = lag_y - (z * prod[2 * nb + k :]).sum(0) + np.einsum("kv,kl,lv->v", z, q_lag, z)
        # r = e - D gamma.
        sym = self.combine(prod[nb : 2 * nb] - sym_q @ z)  # (D_{t+1} + D_{t-1})^T e
        sse = ee[None, :] - np.einsum("tpv,tpv->tv", gamma, c)
        lag = lag_e[None, :] - np.einsum("tpv,tpv->tv", gamma, sym)
        lag += np.einsum("tpv,tpq,tqv->tv", gamma, cross, gamma)
        return ar1_from_sums(sse, lag, n)


class LsaModel(TrialModel):
    """LSA: every trial's columns in one model with the nuisance regressors."""

    def __init__(self, own: np.ndarray, nuisance: np.ndarray):
        n_trials, n, self.m = own.shape
        self.trials_x = own.transpose(1, 0, 2).reshape(n, n_trials * self.m)
        self.nuisance = nuisance
        self.q = _orth_basis(nuisance)
        self.proj = _project_out(self.q, self.trials_x)
        self.pinv = np.linalg.pinv(self.proj)
        self._filters = {0.0: self.pinv[:: self.m]}

    def filter(self, rho: float) -> np.ndarray:
        if rho not in self._filters:
            q = _orth_basis(whiten(self.nuisance, rho))
            pinv = np.linalg.pinv(_project_out(q, whiten(self.trials_x, rho)))
            self._filters[rho] = whiten_rows_transposed(pinv[:: self.m], rho)
        return self._filters[rho]

    def ar1(self, yt: np.ndarray) -> np.ndarray:
        e = yt - (yt @ self.q) @ self.q.T
        r = e - (e @ self.pinv.T) @ self.proj.T
        sse = np.einsum("vn,vn->v", r, r)
        lag = np.einsum("vn,vn->v", r[:, :-1], r[:, 1:])
        return ar1_from_sums(sse, lag, yt.shape[1])[None, :]


def fit_betas(
    model: TrialModel,
    y: np.ndarray,
    mean: np.ndarray,
    n_trials: int,
    noise_model: str,
    bins: int,
    bar: Any = None,
) -> np.ndarray:
    """Betas (trials × voxels) of voxel-major data ``y`` (voxels × scans), in voxel chunks
    (``bar``, a progress bar, advances by each chunk's voxels)."""
    n_vox, n = y.shape
    chunk = max(256, _CHUNK_ELEMENTS // (n + 8 * n_trials))
    out = np.empty((n_trials, n_vox))
    for start in range(0, n_vox, chunk):
        sl = slice(start, min(n_vox, start + chunk))
        # Centring changes no beta (a constant is in every model) and keeps the sums accurate.
        yt = y[sl].astype(np.float64) - mean[sl, None]
        if noise_model == "ols":
            out[:, sl] = (yt @ model.filter(0.0).T).T
            if bar is not None:
                bar.update(sl.stop - sl.start)
            continue
        # nilearn's binning: truncation towards zero to a multiple of 1 / bins.
        level = np.trunc(model.ar1(yt) * bins).astype(np.int32)
        level = np.broadcast_to(level, (n_trials, yt.shape[0])).ravel()
        order = np.argsort(level, kind="stable")
        sorted_levels = level[order]
        edges = np.flatnonzero(np.diff(sorted_levels)) + 1
        block = np.empty((n_trials, yt.shape[0]))
        for pairs in np.split(order, edges):
            rows, vox = np.divmod(pairs, yt.shape[0])
            cols, local = np.unique(vox, return_inverse=True)
            rho = float(level[pairs[0]]) / bins
            betas = yt[cols] @ model.filter(rho).T  # voxels × trials
            block[rows, vox] = betas[local, rows]
        out[:, sl] = block
        if bar is not None:
            bar.update(sl.stop - sl.start)
    return out
