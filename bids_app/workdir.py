"""The work folder of a participant-level run: where it is by default, and its lock.

Without ``-w/--work-dir`` the work folder is ``./work`` in the current folder (fMRIPrep's
habit), kept after the run, so that a run stopped by Ctrl-C, a kill or a crash resumes where it
stopped when the same command is run again from the same folder. When ``./work`` would lie
inside OUTPUT_DIR (a command run at the output dataset's root, as ``datalad run`` does), the
default is ``<OUTPUT_DIR>_work`` beside it instead.

One run at a time uses a work folder: :func:`work_folder` holds a lock (``.brainrecon.lock``,
an advisory ``flock`` the system drops when its holder dies) for the whole run; a second run is
refused with exit 73 naming the holder's process id, and the file a killed run left behind is
taken over with a warning.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from nipype_brainrecon.io import output_lock

__all__ = ["DEFAULT_WORK_DIR", "LOCK_NAME", "default_work_dir", "work_folder"]

#: The work folder without ``-w``, relative to the current folder.
DEFAULT_WORK_DIR = Path("work")
#: ``<work>/.<LOCK_NAME>.lock`` is held while a run uses the work folder.
LOCK_NAME = "brainrecon"


def default_work_dir(output_dir: str | os.PathLike) -> Path:
    """``./work`` (absolute), or ``<OUTPUT_DIR>_work`` when ``./work`` lies inside OUTPUT_DIR."""
    work = Path.cwd() / DEFAULT_WORK_DIR
    out = Path(os.path.abspath(output_dir))
    if work == out or out in work.parents:
        return out.with_name(f"{out.name}_work")
    return work


@contextlib.contextmanager
def work_folder(work_dir: str | os.PathLike) -> Iterator[Path]:
    """Create (if needed) and lock ``work_dir`` for one run; yield its absolute path.

    A folder this call created is removed again if it is still empty at the end (a run
    refused before any node ran leaves nothing behind).

    Raises
    ------
    OutputError
        Another run holds the lock (exit 73, its process id in the message), or the folder
        cannot be created.
    """
    work = Path(os.path.abspath(work_dir))
    created = not work.exists()
    try:
        with output_lock(work, LOCK_NAME, fix="give this run another -w/--work-dir"):
            yield work
    finally:
        if created:
            with contextlib.suppress(OSError):
                work.rmdir()  # only when empty
