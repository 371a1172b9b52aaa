"""Scores for decoded features and reconstructions, always with their chance level.

Two-way identification (chance 0.5) follows two published rules:

``"takagi"``
    Takagi & Nishimoto 2023: for each original image *i*, Pearson r between its features and
    each of its samples, averaged over samples, is compared with the same quantity for every
    other image *j*'s samples; the score of *i* is the fraction of *j* with a lower r.
``"mindeye"``
    MindEye / Brain-Diffuser: for each reconstruction, r with its own original is compared with r
    with every other original; the score is the fraction of other originals that correlate less
    (averaged over samples when there are several).

Both are computed with one matrix product instead of the O(N²) loop of correlations.

Also here: :func:`correlation_distance` (1 - Pearson r between the features of an original and
its reconstruction; lower is better), as MindEye reports it for EfficientNet-B1 and SwAV, and
the per-target and pattern correlations of :func:`decoding_scores`.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError

CHANCE_TWO_WAY = 0.5


def _standardise_rows(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(norm == 0):
        raise DataError(f"{what}: a feature vector is constant, so its correlation is undefined")
    return x / norm


def correlation_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between every row of ``a`` (n, d) and every row of ``b`` (m, d) → (n, m).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    >>> correlation_matrix(a, a).round(6).tolist()
    [[1.0, -1.0], [-1.0, 1.0]]
    """
    a2 = np.asarray(a).reshape(len(a), -1)
    b2 = np.asarray(b).reshape(len(b), -1)
    if a2.shape[1] != b2.shape[1]:
        raise DataError(f"feature sizes differ: {a2.shape[1]} vs {b2.shape[1]}")
    return _standardise_rows(a2, "first set") @ _standardise_rows(b2, "second set").T


def per_target_correlation(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson r over samples for each target (column); NaN where a column is constant.

    The one per-target correlation of the package (decoding scores, encoding models).

    Parameters
    ----------
    y_true, y_pred : array-like, shape ``(n_samples, ...)``
        Same shapes; trailing dimensions are flattened into targets.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(n_targets,)``; NaN where either column is constant.

    Examples
    --------
    >>> per_target_correlation([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0]],
    ...                        [[2.0, 1.0], [4.0, 1.0], [6.0, 1.0]])
    array([ 1., nan])
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim == 0:
        raise DataError(f"shapes differ: true {t.shape} vs predicted {p.shape}")
    t = t.reshape(len(t), -1)
    p = p.reshape(len(p), -1)
    t = t - t.mean(axis=0)
    p = p - p.mean(axis=0)
    denom = np.sqrt((t * t).sum(axis=0) * (p * p).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (t * p).sum(axis=0) / denom, np.nan)


def row_standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre rows and divide by their norm; also return which rows were constant."""
    x = x - x.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    constant = norm[..., 0] == 0
    return x / np.where(norm == 0, 1.0, norm), constant


def correlation_distance(originals: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """1 - Pearson r between each original's features and those of its reconstruction(s).

    The distance MindEye reports for EfficientNet-B1 and SwAV features
    (``scipy.spatial.distance.correlation`` per pair); lower is better, 1 for unrelated vectors.

    Parameters
    ----------
    originals : ndarray (n, d)
    reconstructions : ndarray (n, d) or (n, n_samples, d)

    Returns
    -------
    ndarray (n,) or (n, n_samples)
    """
    o = np.asarray(originals, dtype=np.float64)
    o = o.reshape(len(o), -1)
    r = np.asarray(reconstructions, dtype=np.float64)
    had_samples = r.ndim == 3
    r3 = r if had_samples else r.reshape(len(r), 1, -1)
    if len(r3) != len(o) or r3.shape[-1] != o.shape[1]:
        raise DataError(f"feature shapes differ: originals {o.shape}, reconstructions {r.shape}")
    o_std, o_const = row_standardise(o)
    r_std, r_const = row_standardise(r3)
    if o_const.any() or r_const.any():
        raise DataError("a feature vector is constant, so its correlation distance is undefined")
    d = 1.0 - np.einsum("id,isd->is", o_std, r_std)
    return d if had_samples else d[:, 0]


def two_way_identification(
    originals: np.ndarray, reconstructions: np.ndarray, *, rule: str = "takagi"
) -> np.ndarray:
    """Per-image two-way identification accuracy (chance 0.5).

    Parameters
    ----------
    originals : ndarray (n_images, ...)
        Features of the seen images.
    reconstructions : ndarray (n_images, ...) or (n_images, n_samples, ...)
        Features of the reconstructions (or decoded features), in the same image order.
        With 2 dimensions beyond ``n_images`` give ``n_samples`` explicitly as axis 1.
    rule : {"takagi", "mindeye"}
        Which published rule to apply (see the module docstring).

    Returns
    -------
    ndarray (n_images,)
        Accuracy per image; its mean is the reported score.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> orig = rng.standard_normal((20, 50))
    >>> float(two_way_identification(orig, orig + 0.1 * rng.standard_normal((20, 50))).mean())
    1.0
    """
    orig = np.asarray(originals)
    recon = np.asarray(reconstructions)
    n = len(orig)
    if n < 2:
        raise DataError("two-way identification needs at least 2 images")
    if len(recon) != n:
        raise DataError(f"{len(recon)} reconstructions for {n} originals")
    orig2 = orig.reshape(n, -1)
    if recon.reshape(n, -1).shape[1] == orig2.shape[1]:
        recon3 = recon.reshape(n, 1, -1)
    else:
        recon3 = recon.reshape(n, recon.shape[1], -1)
    n_samples = recon3.shape[1]
    if recon3.shape[2] != orig2.shape[1]:
        raise DataError(
            f"feature sizes differ: originals {orig2.shape[1]}, reconstructions {recon3.shape[2]}"
        )
    o = _standardise_rows(orig2, "originals")
    r = _standardise_rows(recon3.reshape(n * n_samples, -1), "reconstructions")
    # corr[i, j, s] = r(original i, sample s of reconstruction j)
    corr = (o @ r.T).reshape(n, n, n_samples)
    off_diagonal = ~np.eye(n, dtype=bool)
    if rule == "takagi":
        m = corr.mean(axis=2)
        own = np.diag(m)[:, None]
        return ((m < own) & off_diagonal).sum(axis=1) / (n - 1)
    if rule == "mindeye":
        # For reconstruction j (sample s): own = corr[j, j, s]; others = corr[i, j, s], i != j.
        own = np.einsum("jjs->js", corr)[None, :, :]
        wins = (corr < own) & off_diagonal[:, :, None]
        return wins.sum(axis=0).mean(axis=1) / (n - 1)
    raise DataError(f"unknown identification rule {rule!r}; use 'takagi' or 'mindeye'")


def two_way_identification_loop(originals: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """Reference implementation of Takagi's rule: the O(N²) loop of ``np.corrcoef`` calls.

    Kept for tests and benchmarks; use :func:`two_way_identification` for work.
    """
    n = len(originals)
    recon = np.asarray(reconstructions).reshape(n, -1, np.asarray(originals[0]).size)
    acc = np.zeros(n)
    for i in range(n):
        o = np.ravel(originals[i])
        own = np.mean([np.corrcoef(o, s)[0, 1] for s in recon[i]])
        lower = 0
        for j in range(n):
            if j != i:
                other = np.mean([np.corrcoef(o, s)[0, 1] for s in recon[j]])
                lower += other < own
        acc[i] = lower / (n - 1)
    return acc


def decoding_scores(
    truth: np.ndarray, predicted: np.ndarray, *, baseline: np.ndarray | None = None
) -> dict:
    """Scores of decoded features on test stimuli, with chance levels and a trivial baseline.

    Parameters
    ----------
    truth, predicted : ndarray (n_stimuli, ...)
        True and decoded features, rows in the same stimulus order.
    baseline : ndarray (...), optional
        A constant prediction (the mean training feature) scored the same way.

    Returns
    -------
    dict
        ``target_r_mean`` (mean over targets of Pearson r across stimuli; chance 0),
        ``pattern_r_mean`` (mean over stimuli of r between predicted and true feature
        vectors), ``identification`` (two-way, chance 0.5), and with a baseline
        ``baseline_pattern_r_mean`` (a constant prediction cannot identify anything, so its
        identification is the chance level by construction and is not reported).
    """
    n = len(truth)
    t = np.asarray(truth, dtype=np.float64).reshape(n, -1)
    p = np.asarray(predicted, dtype=np.float64).reshape(n, -1)
    target_r = per_target_correlation(t, p)
    pattern_r = np.diag(correlation_matrix(p, t))
    scores = {
        "n_stimuli": int(n),
        "n_targets": int(t.shape[1]),
        "target_r_mean": float(np.nanmean(target_r)),
        "target_r_chance": 0.0,
        "pattern_r_mean": float(pattern_r.mean()),
        "identification": float(two_way_identification(t, p).mean()),
        "identification_chance": CHANCE_TWO_WAY,
    }
    if baseline is not None:
        b = np.broadcast_to(np.asarray(baseline, dtype=np.float64).reshape(1, -1), t.shape)
        scores["baseline"] = "mean training feature"
        scores["baseline_pattern_r_mean"] = float(np.diag(correlation_matrix(b, t)).mean())
    return scores
