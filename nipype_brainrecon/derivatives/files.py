"""Writing files into a derivatives dataset: JSON sidecars, copies, provenance."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from ..io import atomic_write_text
from .layout import PIPELINE_NAME
from .portable import portable_settings


def write_json(path: str | os.PathLike, content: Mapping[str, Any]) -> Path:
    """Write a JSON sidecar atomically (sorted keys, 2-space indent)."""
    return atomic_write_text(
        path, json.dumps(content, indent=2, sort_keys=True, default=str) + "\n"
    )


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a file into the derivatives (creating folders); returns the destination."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.partial")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst


def provenance(
    settings: Mapping[str, Any], root: str | os.PathLike | None = None
) -> dict[str, Any]:
    """What every sidecar records of the software and the run's settings.

    The settings are portable (:func:`~.portable.portable_settings`): the model by its hub id
    or folder identity, other paths relative to ``root`` (the output dataset).
    """
    return {
        "SoftwareName": PIPELINE_NAME,
        "SoftwareVersion": __version__,
        "Settings": portable_settings(settings, root),
    }


def sidecar_of(path: Path) -> Path:
    """``x.json`` beside ``x.nii.gz`` (or any other extension)."""
    name = path.name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else path.stem
    return path.with_name(stem + ".json")
