"""Run records: run a command under ``datalad run`` (or record one that ran), read records back.

The record's ``brainrecon`` field (:data:`RECORD_KEY`) carries the package version and the
caller's provenance (seed, participant, input datasets); :data:`RECORDING_ENV` marks a command
that :func:`record_run` runs, so that it never records itself again (:func:`should_record`).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import BrainreconError, DataError, OutputError
from .repo import datalad_api, is_dataset, quiet, result_message

#: Set while :func:`record_run` executes a command, so that a CLI started by it never wraps
#: itself in a second ``datalad run``.
RECORDING_ENV = "BRAINRECON_DATALAD_RECORDING"
#: The namespace of brainrecon's fields in a DataLad run record.
RECORD_KEY = "brainrecon"


@dataclass(frozen=True)
class RunRecord:
    """A DataLad run record: the commit and its parsed JSON.

    Attributes
    ----------
    commit : str or None
        The commit that holds it (None when the command changed nothing).
    message : str
        The commit subject line.
    record : dict
        ``cmd``, ``inputs``, ``outputs``, ``exit``, ``dsid``, ``pwd``, ``chain`` and
        ``brainrecon`` (version, seed, participant, sources, ...).
    """

    commit: str | None
    message: str
    record: dict[str, Any]

    @property
    def exit_code(self) -> int:
        return int(self.record.get("exit", 0) or 0)


@contextmanager
def _recording() -> Any:
    previous = os.environ.get(RECORDING_ENV)
    os.environ[RECORDING_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(RECORDING_ENV, None)
        else:
            os.environ[RECORDING_ENV] = previous


def _split_paths(items: Iterable[str | os.PathLike], root: Path) -> tuple[list[str], list[str]]:
    """Paths inside ``root`` (relative, POSIX) and outside it (absolute)."""
    inside, outside = [], []
    for item in items:
        full = Path(os.path.abspath(item if Path(item).is_absolute() else root / item))
        if full == root or root in full.parents:
            inside.append(full.relative_to(root).as_posix())
        else:
            outside.append(str(full))
    return inside, outside


def _raise_run_failure(root: Path, failed: list[dict[str, Any]]) -> None:
    """The error for a failed ``datalad run``: the command's exit code, or a failed record."""
    run_failure = next((r for r in failed if r.get("action") == "run"), failed[0])
    code = run_failure.get("exit_code")
    if code:
        error = BrainreconError(
            f"{root}: the recorded command failed with exit code {code} "
            f"({result_message(run_failure)}); nothing was saved"
        )
        error.exit_code = int(code)
        raise error
    raise OutputError(f"{root}: cannot record the run ({result_message(run_failure)})")


@quiet()
def record_run(
    dataset: str | os.PathLike,
    command: str | Sequence[str],
    *,
    inputs: Iterable[str | os.PathLike] = (),
    outputs: Iterable[str | os.PathLike] = (),
    message: str | None = None,
    info: Mapping[str, Any] | None = None,
    execute: bool = True,
) -> RunRecord:
    """Run ``command`` with ``datalad run`` in ``dataset`` (or record one that already ran).

    The command runs at the dataset root. Inputs inside the dataset (e.g. input subdatasets
    under ``sourcedata/``) are got first and listed in the record, so ``datalad rerun`` on a
    fresh clone gets exactly them; inputs outside are listed under ``brainrecon.external_inputs``.
    Declared outputs are unlocked first and saved after.

    Parameters
    ----------
    dataset : path
        An installed dataset (see :func:`ensure_output_dataset`).
    command : str or sequence of str
        The command (a sequence is quoted with :func:`shlex.join`).
    inputs, outputs : iterable of path
        Absolute, or relative to the dataset root.
    message : str, optional
        Commit subject (default: the command, shortened).
    info : mapping, optional
        Extra provenance stored under the record's ``brainrecon`` key (e.g. seed, settings);
        the package version is always added.
    execute : bool
        False records a command that already produced the outputs (``datalad run --inject``
        semantics): nothing runs, the outputs are saved with the record.

    Returns
    -------
    RunRecord

    Raises
    ------
    OutputError
        The dataset is not installed or the record cannot be saved.
    BrainreconError
        The command failed; its exit code is kept (``exit_code``) and nothing is saved.
    """
    root = Path(dataset).absolute()
    if not is_dataset(root):
        raise OutputError(f"{root}: not a DataLad dataset; create it first (datalad create)")
    dl = datalad_api()
    from datalad.core.local.run import run_command

    ins, external_ins = _split_paths(inputs, root)
    outs, external_outs = _split_paths(outputs, root)
    if external_outs:
        raise OutputError(f"{external_outs[0]}: output outside the dataset {root}")
    cmd = command if isinstance(command, str) else shlex.join(list(command))
    extra = {
        RECORD_KEY: {
            "version": __version__,
            **dict(info or {}),
            "external_inputs": external_ins,
        }
    }
    ds = dl.Dataset(str(root))
    before = ds.repo.get_hexsha()
    with _recording():
        results = list(
            run_command(
                cmd,
                dataset=ds,
                inputs=ins,
                outputs=outs,
                message=message,
                extra_info=extra,
                explicit=True,
                inject=not execute,
            )
        )
    failed = [r for r in results if r.get("status") in ("error", "impossible")]
    if failed:
        _raise_run_failure(root, failed)
    after = ds.repo.get_hexsha()
    if after == before:
        return RunRecord(None, message or cmd, {"cmd": cmd, "inputs": ins, "outputs": outs})
    return run_record(root, after)


def run_record(dataset: str | os.PathLike, commit: str = "HEAD") -> RunRecord:
    """Read the DataLad run record of ``commit`` in ``dataset``.

    Raises
    ------
    DataError
        The commit carries no run record (or an unreadable one).
    """
    root = Path(dataset).absolute()
    dl = datalad_api()
    from datalad.local.rerun import get_run_info

    ds = dl.Dataset(str(root))
    try:
        sha = ds.repo.get_hexsha(commit)
        text = ds.repo.format_commit("%B", sha)
        subject, record = get_run_info(ds, text)
    except ValueError as exc:
        raise DataError(f"{root}: commit {commit} has an unreadable run record ({exc})") from exc
    if record is None:
        raise DataError(f"{root}: commit {commit} has no DataLad run record")
    return RunRecord(sha, subject, record)


def should_record(flag: bool | None, output_dir: str | os.PathLike) -> bool:
    """Whether the BIDS App should record its runs with DataLad.

    ``flag`` is ``--datalad`` (True), ``--no-datalad`` (False) or neither (None: record when
    ``output_dir`` already is a dataset). Never inside a command that :func:`record_run` runs.
    """
    if os.environ.get(RECORDING_ENV):
        return False
    if flag is not None:
        return bool(flag)
    return is_dataset(output_dir)
