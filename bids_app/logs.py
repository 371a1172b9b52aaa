"""Logging of ``brainrecon``: one timestamped line per message, on the terminal and in a file.

One configuration for every logger a run uses: the ``nipype_brainrecon`` tree, Nipype's own
loggers (``nipype.workflow``, ``nipype.interface``, ``nipype.utils``) and the libraries'.
Their records all go to the root logger's handlers, which are ours:

* the terminal (stderr): warnings; ``-v`` adds information, ``-vv`` debugging; the stage lines
  of :mod:`nipype_brainrecon.bids_app.progress` always;
* the run's log file, ``OUTPUT_DIR/logs/sub-<label>_<date>.log`` (``group_<date>.log`` at the
  group level), kept by :func:`run_log` and created by :func:`start_run_logs` once the run
  writes its outputs: everything of level information and above (debugging with ``-vv``),
  whatever the terminal shows.

Nipype adds a handler of its own (stdout) to the ``nipype`` logger when it is imported; its
records also reach the root's handler, so each of its lines was printed twice. That handler is
removed here: each line is written once by each of our handlers.

>>> record = logging.LogRecord("nipype_brainrecon.ridge", logging.INFO, "", 0, "fit", None, None)
>>> record.created = 0.0
>>> Formatter(utc=True).format(record)
'1970-01-01 00:00:00 INFO    ridge: fit'
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "PROGRESS_LOGGER",
    "Formatter",
    "ParticipantFilter",
    "configure_logging",
    "crash_files",
    "exclude_from_git",
    "log_file_name",
    "run_log",
    "start_run_logs",
]

#: The logger of the stage lines, shown on the terminal at every verbosity.
PROGRESS_LOGGER = "nipype_brainrecon.progress"
_NIPYPE = ("nipype.workflow", "nipype.interface", "nipype.utils", "nipype.filemanip")
_OURS = "_brainrecon_handler"  # attribute marking the handlers this module installed


class Formatter(logging.Formatter):
    """``2026-12-06 10:15:00 INFO    name: message``; continuation lines indented.

    The ``nipype_brainrecon.`` prefix of our loggers' names is left out (``ridge``,
    ``bids_app.cli``); other names (``nipype.workflow``) are kept.
    """

    def __init__(self, utc: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(shortname)s: %(message)s")
        self.default_time_format = "%Y-%m-%d %H:%M:%S"
        self.default_msec_format = None
        if utc:
            self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        record.shortname = record.name.removeprefix("nipype_brainrecon.")
        text = super().format(record)
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return "\n    ".join(ln.strip() if i else ln for i, ln in enumerate(lines))

    def formatTime(self, record, datefmt=None):  # noqa: N802 - logging API
        return time.strftime(datefmt or self.default_time_format, self.converter(record.created))


class _TerminalFilter(logging.Filter):
    """The terminal's share: records at ``level`` and above, and every stage line; not those
    logged with ``extra={"file_only": True}`` (lines the command prints itself)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "file_only", False):
            return False
        return record.levelno >= self.level or record.name == PROGRESS_LOGGER


class ParticipantFilter(logging.Filter):
    """Leave out of one participant's log the records that name only other participants.

    A record naming ``sub-<label>`` or Nipype's ``sub_<label>_wf`` of one of ``others`` and not
    ``label``, or naming none and logged inside another participant's node folder (a node's own
    lines, which name only the node), belongs to another participant's log; every other record
    is kept.

    >>> f = ParticipantFilter("01", ["01", "02"])
    >>> def rec(msg):
    ...     return logging.LogRecord("x", logging.INFO, "", 0, msg, None, None)
    >>> [f.filter(rec(m)) for m in ("sub-01 betas", "[Node] sub_02_wf.fit_z", "starting")]
    [True, False, True]
    """

    def __init__(self, label: str, labels: Iterable[str]) -> None:
        super().__init__()
        self.mine = (f"sub-{label}", f"sub_{label}_wf")
        self.others = tuple(
            key for other in labels if other != label for key in (f"sub-{other}", f"sub_{other}_wf")
        )

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.others:
            return True
        text = record.getMessage()
        if any(k in text for k in self.mine):
            return True
        if any(k in text for k in self.others):
            return False
        # A node's own lines ("[Node] Executing "fit_z"", a warning of the science code)
        # name no participant: they are logged in the node's folder, .../sub_<label>_wf/...
        try:
            where = os.getcwd()
        except OSError:
            return True
        return not any(f"{os.sep}{k}" in where for k in self.others if k.endswith("_wf"))


def _levels(verbose: int) -> dict[str, int]:
    """Logger levels: ours and nipype.workflow at information (debugging with ``-vv``), so that
    the log file has them; Nipype's interface and utils loggers at warnings unless ``-vv``."""
    detail = logging.DEBUG if verbose >= 2 else logging.INFO
    quiet = logging.INFO if verbose >= 2 else logging.WARNING
    return {
        "nipype_brainrecon": detail,
        PROGRESS_LOGGER: logging.INFO,
        "nipype.workflow": detail,
        "nipype.interface": quiet,
        "nipype.utils": quiet,
        "nipype.filemanip": quiet,
    }


def configure_logging(verbose: int = 0, stream=None) -> logging.Handler:
    """Route every logger to one terminal handler; return it.

    Parameters
    ----------
    verbose : int
        ``-v`` count: the terminal shows warnings (0), information (1) or debugging (2+); the
        stage lines always.
    stream : file, optional
        The terminal (default ``sys.stderr`` at the time of each write).

    Calling it again replaces the handler installed before (no line is printed twice).
    """
    import nipype  # noqa: F401 - its import installs the handler removed below

    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OURS, False) == "terminal":
            root.removeHandler(handler)  # ours from an earlier call
    nipype_logger = logging.getLogger("nipype")
    for handler in list(nipype_logger.handlers):
        nipype_logger.removeHandler(handler)  # Nipype's stdout copy of every line
    nipype_logger.propagate = True
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(Formatter())
    handler.addFilter(_TerminalFilter(logging.WARNING - 10 * min(max(verbose, 0), 2)))
    setattr(handler, _OURS, "terminal")
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name, level in _levels(verbose).items():
        logging.getLogger(name).setLevel(level)
    return handler


class _StderrHandler(logging.StreamHandler):
    """A stream handler on whatever ``sys.stderr`` is when it writes (pytest swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def log_file_name(prefix: str, when: float | None = None) -> str:
    """``<prefix>_<YYYYMMDD-HHMMSS>.log`` in local time; a run's file never has a former
    run's name (see :func:`run_log` for two runs started in one second).

    >>> log_file_name("sub-01", 0.0).startswith("sub-01_19")
    True
    """
    return f"{prefix}_{time.strftime('%Y%m%d-%H%M%S', time.localtime(when))}.log"


def _new_file(folder: Path, prefix: str, when: float) -> Path:
    """A new file named by :func:`log_file_name` (``-2``, ``-3`` ... when taken)."""
    base = log_file_name(prefix, when)[: -len(".log")]
    for k in range(1, 1000):
        path = folder / (f"{base}.log" if k == 1 else f"{base}-{k}.log")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: no free name for {base}.log")


class _RunLogHandler(logging.Handler):
    """The log file of one run: records are kept in memory until :func:`start_run_logs`
    creates the file (so a run stopped by a check before it writes anything leaves no file),
    then written as they come."""

    def __init__(self, folder: Path, prefix: str, when: float) -> None:
        super().__init__()
        self.folder, self.prefix, self.when = folder, prefix, when
        self.buffer: list[logging.LogRecord] | None = []
        self.file: logging.FileHandler | None = None
        self.path: Path | None = None

    def start(self) -> Path:
        if self.file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            exclude_from_git(self.folder.parent)
            self.path = _new_file(self.folder, self.prefix, self.when)
            self.file = logging.FileHandler(self.path, encoding="utf-8")
            self.file.setFormatter(self.formatter)
            for record in self.buffer or []:
                self.file.handle(record)
            self.buffer = None
        return self.path

    def emit(self, record: logging.LogRecord) -> None:
        if self.file is not None:
            self.file.handle(record)
        elif self.buffer is not None and len(self.buffer) < 10_000:
            self.buffer.append(record)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        super().close()


def exclude_from_git(output_dir: str | os.PathLike) -> bool:
    """When ``output_dir`` is a Git (DataLad) repository, list ``logs/*.log`` in its
    ``.git/info/exclude`` (local, not part of the dataset's content): the run logs differ from
    run to run, and an untracked one would leave the dataset dirty for ``datalad rerun``.
    Returns whether the line is there."""
    dot_git = Path(output_dir) / ".git"
    if dot_git.is_file():  # a submodule or worktree: "gitdir: <path>"
        text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
        if not text.startswith("gitdir:"):
            return False
        dot_git = (dot_git.parent / text.removeprefix("gitdir:").strip()).resolve()
    if not dot_git.is_dir():
        return False
    exclude = dot_git / "info" / "exclude"
    line = "/logs/*.log"
    try:
        lines = exclude.read_text(encoding="utf-8").splitlines() if exclude.exists() else []
        if line not in lines:
            exclude.parent.mkdir(parents=True, exist_ok=True)
            with exclude.open("a", encoding="utf-8") as handle:
                handle.write(("\n" if lines and lines[-1] else "") + line + "\n")
    except OSError:
        return False
    return True


def start_run_logs(prefixes: Iterable[str] | None = None) -> dict[str, Path]:
    """Create the files of the run logs kept by :func:`run_log` (the run is about to write
    its outputs), all or those of ``prefixes``; ``{prefix: path}``."""
    wanted = None if prefixes is None else set(prefixes)
    return {
        h.prefix: h.start()
        for h in logging.getLogger().handlers
        if isinstance(h, _RunLogHandler) and (wanted is None or h.prefix in wanted)
    }


@contextlib.contextmanager
def run_log(
    logs_dir: str | os.PathLike,
    prefixes: Iterable[str],
    verbose: int = 0,
    labels: Iterable[str] | None = None,
    start: bool = False,
) -> Iterator[None]:
    """Keep the records of a run for one new log file per prefix in ``logs_dir`` while inside.

    Parameters
    ----------
    logs_dir : path
        ``OUTPUT_DIR/logs`` (made if absent when the files are created).
    prefixes : iterable of str
        ``sub-<label>`` (one file each) or ``group``.
    verbose : int
        ``-vv`` adds debugging records to the files.
    labels : iterable of str, optional
        The participants of this run: each ``sub-<label>`` file leaves out the records naming
        only another one (:class:`ParticipantFilter`).
    start : bool
        Create the files now; else when :func:`start_run_logs` is called (never, if the run
        stops before: nothing is written).

    The files are named by :func:`log_file_name` with the time of entry; a new file never
    replaces an existing one (a failed run's log sits beside the good run's files, which it
    leaves untouched).
    """
    folder = Path(logs_dir)
    when = time.time()
    labels = list(labels or [])
    root = logging.getLogger()
    handlers = []
    try:
        for prefix in prefixes:
            handler = _RunLogHandler(folder, prefix, when)
            handler.setFormatter(Formatter())
            handler.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
            if prefix.startswith("sub-") and labels:
                handler.addFilter(ParticipantFilter(prefix.removeprefix("sub-"), labels))
            root.addHandler(handler)
            handlers.append(handler)
        if start:
            start_run_logs()
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


def crash_files(logs_dir: str | os.PathLike, since: float) -> list[Path]:
    """Nipype's crash files in ``logs_dir`` written at ``since`` (a time stamp) or later."""
    found = []
    for path in sorted(Path(logs_dir).glob("crash-*")):
        try:
            if path.stat().st_mtime >= since - 1:
                found.append(path)
        except OSError:
            continue
    return found
