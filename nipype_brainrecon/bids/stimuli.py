"""Stimulus paths: a ``stim_file`` entry resolved safely inside ``stimuli/``."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError, MissingInputError


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def resolve_stim_file(
    value: str, stimuli_dir: Path, *, dataset_dir: Path, source: Path, must_exist: bool = True
) -> Path:
    """Turn a ``stim_file`` entry (relative to ``stimuli/``) into an absolute path, safely.

    The entry must name a file inside ``stimuli_dir`` once ``..`` is resolved; when it is a symbolic
    link, its target must lie inside ``stimuli_dir`` or ``dataset_dir`` (git-annex keeps file
    content under the dataset's ``.git/annex``). Returns the path inside ``stimuli_dir`` (links not
    followed).

    Raises
    ------
    DataError
        The entry is absolute, leaves ``stimuli/`` or links outside the dataset.
    MissingInputError
        ``must_exist`` and the file is absent.
    """
    text = str(value).strip()
    if not text:
        raise DataError(f"{source}: empty stim_file entry; name a file relative to stimuli/")
    if any(ord(ch) < 32 for ch in text):
        raise DataError(
            f"{source}: stim_file {text!r} holds control characters; name a file relative to "
            "stimuli/"
        )
    if Path(text).is_absolute() or text.startswith(("/", "\\")):
        raise DataError(
            f"{source}: stim_file {text!r} is an absolute path; give it relative to {stimuli_dir}"
        )
    stimuli_dir = Path(os.path.abspath(stimuli_dir))
    candidate = Path(os.path.normpath(stimuli_dir / text))
    if candidate == stimuli_dir or not _is_within(candidate, stimuli_dir):
        raise DataError(
            f"{source}: stim_file {text!r} points outside {stimuli_dir}; "
            "stimuli must live in stimuli/"
        )
    try:
        candidate.lstat()
    except FileNotFoundError:
        pass
    except OSError as exc:  # e.g. a name too long for the file system
        raise DataError(
            f"{source}: stim_file {text[:80]!r} cannot be used as a file name ({exc.strerror})"
        ) from exc
    if must_exist and not candidate.is_file():
        if candidate.is_symlink():
            raise MissingInputError(
                f"{candidate}: stimulus is a broken link (from {source}); get its content "
                "(e.g. datalad get)"
            )
        raise MissingInputError(f"{candidate}: stimulus not found (named in {source})")
    if candidate.exists() or candidate.is_symlink():
        target = candidate.resolve()
        if not (
            _is_within(target, stimuli_dir.resolve()) or _is_within(target, dataset_dir.resolve())
        ):
            raise DataError(
                f"{candidate}: links to {target}, outside the dataset (named in {source}); "
                "copy the image into stimuli/"
            )
    return candidate
