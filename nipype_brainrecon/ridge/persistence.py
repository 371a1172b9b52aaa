"""Saving and loading decoders: safetensors (arrays) plus a JSON sidecar (provenance and shapes),
both written atomically and checked against each other on loading; never pickled."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import DataError, MissingInputError, UsageError
from ..io import atomic_write_text, atomic_write_with, removed_on_failure
from .decoder import RidgeDecoder

#: Version of the safetensors + JSON decoder format written by :func:`save_decoder`.
DECODER_FORMAT_VERSION = 1
_FORMAT_KEY = "BrainreconRidgeDecoder"

_TENSORS = ("coef", "intercept", "voxel_mask", "mean", "scale", "alphas", "alpha_grid", "cv_scores")


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def _save_tensors(tensors: dict[str, np.ndarray], path: Path) -> None:
    """safetensors' ``save_file``, which writes from the arrays' own memory (no serialised
    copy); its I/O failures come back as the OSError they were (e.g. a full disk)."""
    import re

    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    try:
        save_file(tensors, path, metadata={_FORMAT_KEY: str(DECODER_FORMAT_VERSION)})
    except SafetensorError as exc:
        code = re.search(r"os error (\d+)", str(exc))
        number = int(code.group(1)) if code else 0
        raise OSError(number, os.strerror(number) if code else str(exc)) from exc


def save_decoder(
    decoder: RidgeDecoder, path_stem: str | Path, metadata: Mapping[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write a decoder as ``<stem>.safetensors`` (arrays) and ``<stem>.json`` (sidecar).

    Parameters
    ----------
    decoder : RidgeDecoder
        The decoder to save.
    path_stem : path
        Output path without extension (an extension ``.safetensors``/``.json`` is dropped).
    metadata : mapping, optional
        Extra JSON-serialisable provenance (ROI, model id, seed ...), merged over
        ``decoder.metadata`` and stored under ``"Metadata"`` in the sidecar.

    Returns
    -------
    tuple of pathlib.Path
        The safetensors and JSON paths. Both are written atomically.
    """
    tensors_path, sidecar_path = _paths(path_stem)
    meta = {**decoder.metadata, **(metadata or {})}
    try:
        meta_text = json.dumps(meta, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"metadata for {sidecar_path}: not JSON-serialisable ({exc})") from exc
    # Written from the arrays' memory; the fitted coefficients are in column order, so they
    # are copied once into row order.
    tensors = {name: np.ascontiguousarray(getattr(decoder, name)) for name in _TENSORS}
    counts = decoder.alpha_counts()
    sidecar = {
        _FORMAT_KEY: DECODER_FORMAT_VERSION,
        "SoftwareVersion": __version__,
        "NVoxels": decoder.n_voxels,
        "NVoxelsUsed": decoder.n_voxels_used,
        "NVoxelsDropped": decoder.n_voxels_dropped,
        "TargetShape": list(decoder.target_shape),
        "NTargets": decoder.n_targets,
        "NSamples": decoder.n_samples,
        "NFolds": decoder.n_folds,
        "FitIntercept": decoder.fit_intercept,
        "DType": str(decoder.coef.dtype),
        "CVScore": "negative mean squared error, averaged over folds",
        "AlphaGrid": [float(x) for x in decoder.alpha_grid],
        "AlphaCounts": {f"{k:g}": v for k, v in counts.items()},
        "Metadata": json.loads(meta_text),
    }
    # Each file is written whole or not at all (an OutputError naming it, with the fix); a
    # sidecar that cannot be written takes its tensors with it.
    atomic_write_with(tensors_path, lambda tmp: _save_tensors(tensors, tmp))
    with removed_on_failure(tensors_path):
        atomic_write_text(sidecar_path, json.dumps(sidecar, indent=2) + "\n")
    return tensors_path, sidecar_path


def load_decoder(path: str | Path) -> RidgeDecoder:
    """Read a decoder written by :func:`save_decoder` and check it.

    Parameters
    ----------
    path : path
        The ``.safetensors`` or ``.json`` file, or their common stem.

    Returns
    -------
    RidgeDecoder
        With ``metadata`` from the sidecar; ``cv_mean_scores`` is not stored (None).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    tensors_path, sidecar_path = _paths(path)
    for required in (tensors_path, sidecar_path):
        if not required.is_file():
            raise MissingInputError(
                f"{required}: decoder file not found; save it with save_decoder"
            )
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{sidecar_path}: not valid JSON ({exc}); re-save the decoder") from exc
    if not isinstance(sidecar, dict) or sidecar.get(_FORMAT_KEY) != DECODER_FORMAT_VERSION:
        found = sidecar.get(_FORMAT_KEY) if isinstance(sidecar, dict) else None
        raise DataError(
            f"{sidecar_path}: decoder format {found!r}, this version reads "
            f"{DECODER_FORMAT_VERSION}; re-save the decoder with this version"
        )
    try:
        arrays = load(tensors_path.read_bytes())
    except (SafetensorError, ValueError, OSError) as exc:
        raise DataError(f"{tensors_path}: not a readable safetensors file ({exc})") from exc
    missing = [name for name in _TENSORS if name not in arrays]
    if missing:
        raise DataError(f"{tensors_path}: missing arrays {missing}; re-save the decoder")

    def fail(what: str) -> DataError:
        return DataError(f"{tensors_path}: {what}; the file does not match {sidecar_path.name}")

    try:
        target_shape = tuple(int(s) for s in sidecar["TargetShape"])
        n_voxels = int(sidecar["NVoxels"])
        n_targets = int(sidecar["NTargets"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{sidecar_path}: missing or bad field {exc}; re-save the decoder") from exc
    coef, mask = arrays["coef"], arrays["voxel_mask"]
    if coef.dtype not in (np.float32, np.float64) or coef.ndim != 2:
        raise fail(f"coef must be a float32/float64 matrix, found {coef.dtype} {coef.shape}")
    if mask.dtype != np.bool_ or mask.shape != (n_voxels,):
        raise fail(
            f"voxel_mask must be bool of shape ({n_voxels},), found {mask.dtype} {mask.shape}"
        )
    n_used = int(mask.sum())
    if math.prod(target_shape) != n_targets or coef.shape != (n_used, n_targets):
        raise fail(f"coef has shape {coef.shape}, expected ({n_used}, {n_targets})")
    expected = {
        "intercept": (n_targets,),
        "mean": (n_used,),
        "scale": (n_used,),
        "alphas": (n_targets,),
        "cv_scores": (n_targets,),
    }
    for name, shape in expected.items():
        arr = arrays[name]
        if arr.shape != shape or not np.issubdtype(arr.dtype, np.floating):
            raise fail(f"{name} must be floating of shape {shape}, found {arr.dtype} {arr.shape}")
    grid = arrays["alpha_grid"]
    if grid.ndim != 1 or grid.size == 0 or not np.issubdtype(grid.dtype, np.floating):
        raise fail(f"alpha_grid must be a non-empty float vector, found {grid.dtype} {grid.shape}")
    if np.any(arrays["scale"] <= 0):
        raise fail("scale has non-positive values")
    return RidgeDecoder(
        coef=coef,
        intercept=arrays["intercept"],
        voxel_mask=mask,
        mean=arrays["mean"],
        scale=arrays["scale"],
        alphas=arrays["alphas"],
        alpha_grid=grid,
        cv_scores=arrays["cv_scores"],
        target_shape=target_shape,
        fit_intercept=bool(sidecar.get("FitIntercept", True)),
        n_folds=int(sidecar.get("NFolds", 0)),
        n_samples=int(sidecar.get("NSamples", 0)),
        metadata=dict(sidecar.get("Metadata") or {}),
    )
