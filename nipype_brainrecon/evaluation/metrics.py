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

Both are computed with one matrix product instead of the O(N²) loop of correlations. In both,
two correlations within :data:`TIE_TOLERANCE` of each other tie and count one half, so that BLAS
rounding never decides a comparison, and a constant feature vector correlates 0 with everything
(a constant prediction scores exactly 0.5). :func:`two_way_identification_loop` is the reference
loop of both rules. :func:`identification_with_null` adds the permutation null (from
:func:`identification_gain`, all permutations at once) and a bootstrap CI over images
(:mod:`.nulls`).

Also here: :func:`correlation_distance` (1 - Pearson r between the features of an original and
its reconstruction; lower is better), as MindEye reports it for EfficientNet-B1 and SwAV, and
the per-target and pattern correlations of :func:`decoding_scores`.
"""

from __future__ import annotations

import numpy as np

from ..config import DEFAULTS
from ..errors import DataError
from .nulls import assignment_scorer, bootstrap_ci, permutation_null

CHANCE_TWO_WAY = 0.5
IDENTIFICATION_RULES = ("takagi", "mindeye")
#: Two correlations closer than this tie (each counts one half): far above the rounding of a
#: matrix product (~1e-16 per unit of r), far below any difference that means something.
TIE_TOLERANCE = 1e-12


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


def _identification_rows(x: np.ndarray, what: str) -> np.ndarray:
    """Standardised rows for identification; a constant row becomes zeros (r = 0 with all)."""
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise DataError(f"{what}: NaN or infinite features; identification needs finite values")
    constant = (x == x[..., :1]).all(axis=-1)  # exact: no rounding can hide a constant row
    x = x - x.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    x = x / np.where(constant[..., None], 1.0, norm)
    x[constant] = 0.0
    return x


def identification_correlations(originals: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """Pearson r of every original with every sample of every reconstruction.

    Parameters
    ----------
    originals : ndarray (n_images, ...)
    reconstructions : ndarray (n_images, ...) or (n_images, n_samples, ...)
        As for :func:`two_way_identification`.

    Returns
    -------
    ndarray (n_images, n_images, n_samples)
        ``corr[i, j, s]`` = r(original ``i``, sample ``s`` of reconstruction ``j``); 0 where
        either feature vector is constant (its correlation is undefined: every comparison
        involving it ties).
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
    o = _identification_rows(orig2, "originals")
    r = _identification_rows(recon3.reshape(n * n_samples, -1), "reconstructions")
    return (o @ r.T).reshape(n, n, n_samples)


def _check_rule(rule: str) -> None:
    if rule not in IDENTIFICATION_RULES:
        raise DataError(f"unknown identification rule {rule!r}; use 'takagi' or 'mindeye'")


def _half_wins(own: np.ndarray, other: np.ndarray) -> np.ndarray:
    """2 where ``other`` is lower than ``own`` by more than the tolerance, 1 for a tie, else 0."""
    lower = other < own - TIE_TOLERANCE
    tie = ~lower & (other <= own + TIE_TOLERANCE)
    return 2 * lower.astype(np.int64) + tie


def identification_from_correlations(corr: np.ndarray, rule: str = "takagi") -> np.ndarray:
    """Per-image two-way identification from :func:`identification_correlations`' array."""
    _check_rule(rule)
    n = corr.shape[0]
    off_diagonal = ~np.eye(n, dtype=bool)
    if rule == "takagi":
        m = corr.mean(axis=2)
        half = np.where(off_diagonal, _half_wins(np.diag(m)[:, None], m), 0).sum(axis=1)
        return (half / 2) / (n - 1)
    # MindEye, reconstruction j (sample s): own = corr[j, j, s]; others = corr[i, j, s], i != j.
    own = np.einsum("jjs->js", corr)[None, :, :]
    half = np.where(off_diagonal[:, :, None], _half_wins(own, corr), 0).sum(axis=0)
    return (half / 2).mean(axis=1) / (n - 1)


def two_way_identification(
    originals: np.ndarray, reconstructions: np.ndarray, *, rule: str = "takagi"
) -> np.ndarray:
    """Per-image two-way identification accuracy (chance 0.5); ties count one half.

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

    Notes
    -----
    Two correlations within :data:`TIE_TOLERANCE` of each other tie and count one half, so
    BLAS rounding never decides a comparison; a constant feature vector correlates 0 with
    everything, so a constant prediction ties everywhere and scores exactly 0.5.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> orig = rng.standard_normal((20, 50))
    >>> float(two_way_identification(orig, orig + 0.1 * rng.standard_normal((20, 50))).mean())
    1.0
    >>> float(two_way_identification(orig, np.ones((20, 50))).mean())
    0.5
    """
    _check_rule(rule)
    return identification_from_correlations(
        identification_correlations(originals, reconstructions), rule
    )


def _row_half_ranks(rows: np.ndarray) -> np.ndarray:
    """For each row and entry: 2 × (entries lower beyond tolerance) + (other entries tied)."""
    out = np.empty(rows.shape, dtype=np.int64)
    for k, x in enumerate(rows):  # one sort per row; the same comparisons as _half_wins
        xs = np.sort(x)
        lower = np.searchsorted(xs, x - TIE_TOLERANCE, side="left")
        lower_or_tied = np.searchsorted(xs, x + TIE_TOLERANCE, side="right")
        out[k] = lower + lower_or_tied - 1  # 2·lower + (tied - itself)
    return out


def identification_gain(corr: np.ndarray, rule: str = "takagi") -> tuple[np.ndarray, int]:
    """What each image would score with each reconstruction: the permutation null's input.

    Parameters
    ----------
    corr : ndarray (n, n, n_samples)
        From :func:`identification_correlations`.
    rule : {"takagi", "mindeye"}

    Returns
    -------
    gain : ndarray of int (n, n)
        ``gain[i, c]``: image ``i``'s comparisons won, in halves (ties 1, wins 2), when
        reconstruction ``c`` is given as its own; the diagonal gives
        :func:`identification_from_correlations` (``gain[i, i] / denominator``).
    denominator : int
        ``2 (n - 1)`` (Takagi) or ``2 n_samples (n - 1)`` (MindEye).
    """
    _check_rule(rule)
    n, _, n_samples = corr.shape
    if rule == "takagi":
        return _row_half_ranks(corr.mean(axis=2)), 2 * (n - 1)
    # column c of sample s: corr[:, c, s]; the image given reconstruction c is the row.
    half = _row_half_ranks(corr.transpose(1, 2, 0).reshape(n * n_samples, n))
    return half.reshape(n, n_samples, n).sum(axis=1).T, 2 * n_samples * (n - 1)


def identification_with_null(
    originals: np.ndarray,
    reconstructions: np.ndarray,
    *,
    rule: str = "takagi",
    n_permutations: int = DEFAULTS.evaluation.n_permutations,
    n_boot: int = DEFAULTS.evaluation.n_boot,
    seed: int = DEFAULTS.evaluation.resampling_seed,
) -> tuple[np.ndarray, dict[str, float]]:
    """Per-image two-way identification, with its permutation null and bootstrap CI.

    The null permutes which reconstruction belongs to which original (the columns of the
    correlation matrix), all ``n_permutations`` at once; the CI resamples the images.

    Returns
    -------
    per_image : ndarray (n_images,)
        As :func:`two_way_identification`.
    stats : dict
        ``null_p95`` (95th percentile of the null means), ``p_value`` ((1 + #{null >=
        observed}) / (1 + n_permutations)), ``ci_low``, ``ci_high`` (95 % percentile bootstrap
        interval of the mean over images).
    """
    _check_rule(rule)
    corr = identification_correlations(originals, reconstructions)
    resampling = dict(n_permutations=n_permutations, n_boot=n_boot, seed=seed)
    return _identification_and_null(corr, rule, **resampling)


def _identification_and_null(
    corr: np.ndarray, rule: str, **resampling: int
) -> tuple[np.ndarray, dict[str, float]]:
    """:func:`identification_with_null` from :func:`identification_correlations`' array."""
    per_image = identification_from_correlations(corr, rule)
    gain, denominator = identification_gain(corr, rule)
    return per_image, assignment_with_null(gain, denominator, per_image, **resampling)


def assignment_with_null(
    gain: np.ndarray,
    denominator: float,
    per_item: np.ndarray,
    *,
    n_permutations: int = DEFAULTS.evaluation.n_permutations,
    n_boot: int = DEFAULTS.evaluation.n_boot,
    seed: int = DEFAULTS.evaluation.resampling_seed,
) -> dict[str, float]:
    """Permutation null and bootstrap CI of a score that is a mean over items of
    ``gain[i, assigned[i]] / denominator`` (``per_item``: each item's own term).

    Returns ``null_p95``, ``p_value``, ``ci_low``, ``ci_high`` as
    :func:`identification_with_null`.
    """
    null = permutation_null(
        assignment_scorer(gain, denominator), len(gain), n_permutations=n_permutations, seed=seed
    )
    ci = bootstrap_ci(per_item, n_boot=n_boot, seed=seed)
    return {"null_p95": null.p95, "p_value": null.p_value, "ci_low": ci.low, "ci_high": ci.high}


def target_correlation_gain(
    truth: np.ndarray, predicted: np.ndarray, chunk: int = 4096
) -> tuple[np.ndarray, float]:
    """The mean per-target r as an assignment score, for its permutation null.

    With columns centred and scaled to unit norm over the test items, target ``j``'s r is
    ``sum_i zt[i, j] zp[i, j]``. So ``gain[i, c] = sum_j zt[i, j] zp[c, j]`` over the targets
    whose columns are not constant, and ``denominator`` their number over ``n``, give the
    mean per-target r when prediction ``c`` is assigned to item ``i`` (the identity gives
    ``nanmean(per_target_correlation)``). Columns are taken ``chunk`` at a time, so memory stays
    at (n, chunk) beside the (n, n) result.
    """
    t = np.asarray(truth, dtype=np.float64).reshape(len(truth), -1)
    p = np.asarray(predicted, dtype=np.float64).reshape(len(predicted), -1)
    gain = np.zeros((len(t), len(t)))
    n_valid = 0
    for start in range(0, t.shape[1], chunk):
        tc = t[:, start : start + chunk] - t[:, start : start + chunk].mean(axis=0)
        pc = p[:, start : start + chunk] - p[:, start : start + chunk].mean(axis=0)
        t_norm, p_norm = np.linalg.norm(tc, axis=0), np.linalg.norm(pc, axis=0)
        ok = (t_norm > 0) & (p_norm > 0)
        n_valid += int(ok.sum())
        gain += (tc[:, ok] / t_norm[ok]) @ (pc[:, ok] / p_norm[ok]).T
    return gain, n_valid / len(t)


def _pearson_or_zero(a: np.ndarray, b: np.ndarray) -> float:
    """``np.corrcoef``'s r, 0 where either vector is constant (as the vectorised code)."""
    if np.all(a == a[0]) or np.all(b == b[0]):
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _half_win(own: float, other: float) -> int:
    if other < own - TIE_TOLERANCE:
        return 2
    return 1 if other <= own + TIE_TOLERANCE else 0


def two_way_identification_loop(
    originals: np.ndarray, reconstructions: np.ndarray, rule: str = "takagi"
) -> np.ndarray:
    """Reference implementation of both rules: the O(N²) loop of ``np.corrcoef`` calls.

    Kept for tests and benchmarks; use :func:`two_way_identification` for work. Ties and
    constant vectors are treated as there.
    """
    _check_rule(rule)
    n = len(originals)
    orig = [np.ravel(o).astype(np.float64) for o in originals]
    recon = np.asarray(reconstructions, dtype=np.float64).reshape(n, -1, orig[0].size)
    r = [[[_pearson_or_zero(orig[i], s) for s in recon[j]] for j in range(n)] for i in range(n)]
    acc = np.zeros(n)
    for i in range(n):
        if rule == "takagi":
            own = np.mean(r[i][i])
            half = sum(_half_win(own, np.mean(r[i][j])) for j in range(n) if j != i)
            acc[i] = (half / 2) / (n - 1)
        else:  # reconstruction i, each sample: r with its original against r with the others
            halves = [
                sum(_half_win(r[i][i][s], r[k][i][s]) for k in range(n) if k != i)
                for s in range(recon.shape[1])
            ]
            acc[i] = np.mean(np.array(halves) / 2) / (n - 1)
    return acc


def _prefixed(prefix: str, stats: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{k}": float(v) for k, v in stats.items()}


def _target_r_null(t: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Permutation null (test labels permuted) and bootstrap CI of the mean per-target r; the
    CI resamples each item's term with the standardisation of the whole test set held fixed."""
    gain, denominator = target_correlation_gain(t, p)
    if denominator == 0:  # every column constant: no r, no null
        return dict.fromkeys(("null_p95", "p_value", "ci_low", "ci_high"), float("nan"))
    return assignment_with_null(gain, denominator, np.diag(gain) / denominator)


def _pattern_r_null(corr: np.ndarray) -> dict[str, float]:
    """Permutation null and bootstrap CI of the mean pattern r (r of item i's true and
    predicted vectors) from :func:`identification_correlations`' array (one sample); a
    constant vector correlates 0, as in identification."""
    rows = corr[:, :, 0]
    return assignment_with_null(rows, 1.0, np.diag(rows))


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
        vectors), ``identification`` (two-way, Takagi's rule, chance 0.5), each with
        ``<score>_null_p95``, ``<score>_p_value`` (permutation null: test labels permuted) and
        ``<score>_ci_low`` / ``_high`` (bootstrap over stimuli; see
        :func:`identification_with_null`), where ``<score>`` is ``target_r``, ``pattern_r``
        or ``identification``; and with a baseline
        ``baseline_pattern_r_mean`` (a constant prediction cannot identify anything, so its
        identification is the chance level by construction and is not reported).
    """
    n = len(truth)
    t = np.asarray(truth, dtype=np.float64).reshape(n, -1)
    p = np.asarray(predicted, dtype=np.float64).reshape(n, -1)
    target_r = per_target_correlation(t, p)
    pattern_r = np.diag(correlation_matrix(p, t))
    corr = identification_correlations(t, p)  # identification and the pattern r's null share it
    ident, stats = _identification_and_null(corr, "takagi")
    scores = {
        "n_stimuli": int(n),
        "n_targets": int(t.shape[1]),
        "target_r_mean": float(np.nanmean(target_r)),
        "target_r_chance": 0.0,
        **_prefixed("target_r", _target_r_null(t, p)),
        "pattern_r_mean": float(pattern_r.mean()),
        **_prefixed("pattern_r", _pattern_r_null(corr)),
        "identification": float(ident.mean()),
        "identification_chance": CHANCE_TWO_WAY,
        **_prefixed("identification", stats),
    }
    if baseline is not None:
        b = np.broadcast_to(np.asarray(baseline, dtype=np.float64).reshape(1, -1), t.shape)
        scores["baseline"] = "mean training feature"
        scores["baseline_pattern_r_mean"] = float(np.diag(correlation_matrix(b, t)).mean())
    return scores
