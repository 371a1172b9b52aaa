"""Portable provenance: no absolute path of the running machine in any output of a run.

Inputs are named by ``bids:<dataset>:<path>`` URIs (the BIDS derivatives convention), whose
dataset names (``raw``, ``fmriprep``) ``dataset_description.json`` maps to locations relative to
the output dataset (``DatasetLinks``); outputs by paths relative to the output dataset; models by
hub id, or a local folder by its name and a hash of its weights
(:func:`nipype_brainrecon.diffusion.identity.model_identity`); other paths in the settings and
the command line relative to the output dataset.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .layout import bids_uri

#: Name of the raw dataset in ``bids:`` URIs and ``DatasetLinks``.
RAW = "raw"

Datasets = Mapping[str, "str | os.PathLike"]


def relative_location(path: str | os.PathLike, start: str | os.PathLike | None) -> str:
    """``path`` relative to the folder ``start`` (POSIX separators); its name alone when there is
    no relative path (no ``start``, another drive).

    >>> relative_location("/data/study/bids", "/data/study/out")
    '../bids'
    >>> relative_location("/data/study/bids", None)
    'bids'
    """
    if start is None:
        return Path(path).name
    try:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(start))
    except ValueError:  # another drive
        return Path(path).name
    return Path(rel).as_posix()


def model_name(model: Any) -> Any:
    """A model as provenance records it: a hub id as given; a local folder as
    ``<folder name>@sha256:<hash of its weights>`` (never its path).

    >>> model_name("CompVis/stable-diffusion-v1-4")
    'CompVis/stable-diffusion-v1-4'
    """
    if not isinstance(model, (str, os.PathLike)) or not os.fspath(model):
        return model
    text = os.fspath(model)
    if Path(text).expanduser().is_dir():
        from ..diffusion.identity import model_identity

        return model_identity(text)
    return Path(text).name if os.path.isabs(text) else text


def _portable_value(value: Any, root: str | os.PathLike | None) -> Any:
    if isinstance(value, os.PathLike) or (isinstance(value, str) and os.path.isabs(value)):
        return relative_location(value, root)
    if isinstance(value, Mapping):
        return {k: _portable_value(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_portable_value(v, root) for v in value]
    return value


def portable_settings(
    settings: Mapping[str, Any], root: str | os.PathLike | None = None
) -> dict[str, Any]:
    """A run's settings as provenance records them: ``model`` by :func:`model_name`, every other
    absolute path relative to ``root`` (the output dataset; its name alone without ``root``).

    Applying it twice changes nothing.
    """
    out = {k: _portable_value(v, root) for k, v in settings.items() if k != "model"}
    if "model" in settings:
        out["model"] = model_name(settings["model"])
        return {k: out[k] for k in settings}  # in the given order
    return out


#: Options whose value is a model: recorded by :func:`model_name`, not by a path.
MODEL_OPTIONS = ("--model",)


def portable_command(command: str, root: str | os.PathLike | None) -> str:
    """The command line with each absolute path (also in ``--option=/path``) made relative to
    ``root``, and a local ``--model`` folder named by :func:`model_name` (a path relative to
    ``root`` would change when the dataset moves and the model does not).

    >>> portable_command("brainrecon /data/bids /data/out participant -w=/data/work", "/data/out")
    'brainrecon ../bids . participant -w=../work'
    """
    if not command:
        return command
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    out = []
    previous = ""
    for word in words:
        option, eq, value = word.partition("=") if word.startswith("-") else ("", "", word)
        if (option if eq else previous) in MODEL_OPTIONS and (eq or not option):
            value = model_name(value)
        if isinstance(value, str) and os.path.isabs(value):
            value = relative_location(value, root)
        out.append(f"{option}{eq}{value}")
        previous = word
    return shlex.join(out)


def dataset_name(root: str | os.PathLike) -> str:
    """``Name`` in a dataset's ``dataset_description.json`` (its folder name when absent)."""
    try:
        name = json.loads((Path(root) / "dataset_description.json").read_text()).get("Name")
    except (OSError, ValueError, AttributeError):
        name = None
    return str(name) if name else Path(os.path.abspath(root)).name


def dataset_links(datasets: Datasets, root: str | os.PathLike) -> dict[str, dict[str, str]]:
    """``{name: {"Name", "URL"}}`` of each input dataset, located relative to ``root``."""
    return {
        name: {"Name": dataset_name(path), "URL": relative_location(path, root)}
        for name, path in datasets.items()
    }


def source_uri(
    path: str | os.PathLike, datasets: Datasets, root: str | os.PathLike | None = None
) -> str:
    """``bids:<dataset>:<path>`` of an input file, in the innermost of ``datasets`` holding it
    (fMRIPrep derivatives inside ``raw/derivatives`` are named ``fmriprep``); a file in none of
    them is given relative to ``root``.

    >>> source_uri("/d/bids/derivatives/fmriprep/sub-01/func/x.nii.gz",
    ...            {"raw": "/d/bids", "fmriprep": "/d/bids/derivatives/fmriprep"})
    'bids:fmriprep:sub-01/func/x.nii.gz'
    """
    text = os.fspath(path)
    if text.startswith("bids:"):
        return text
    full = os.path.abspath(text)
    holders = []
    for name, dataset_root in datasets.items():
        top = os.path.abspath(dataset_root)
        if full == top or full.startswith(top.rstrip(os.sep) + os.sep):
            holders.append((len(top), name, top))
    if not holders:
        return relative_location(full, root)
    _, name, top = max(holders, key=lambda h: h[0])
    return bids_uri(full, top, name)


def resolve_uri(
    value: str | os.PathLike, datasets: Mapping[str, str], root: str | os.PathLike
) -> str:
    """The file a provenance path names on this machine: a ``bids:`` URI through ``datasets``
    (``{name: location relative to root}``), a relative path under ``root``; absolute paths as
    given.

    >>> resolve_uri("bids:raw:stimuli/a.png", {"raw": "../bids"}, "/d/out")
    '/d/bids/stimuli/a.png'
    """
    text = os.fspath(value)
    if text.startswith("bids:"):
        name, _, rel = text[len("bids:") :].partition(":")
        if name in datasets:
            text = os.path.join(os.fspath(datasets[name]), rel)
    return os.path.normpath(os.path.join(os.fspath(root), text))
