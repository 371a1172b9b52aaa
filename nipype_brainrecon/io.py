"""Writing outputs safely: whole or not at all."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import OutputError


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and move it to ``target`` only on success.

    If the body raises, the temporary directory is removed and ``target`` is untouched,
    so a failed run never leaves a half-written output.

    Parameters
    ----------
    target : path
        The directory to create.
    overwrite : bool
        Replace an existing ``target``; otherwise an existing non-empty one is an error.

    Yields
    ------
    pathlib.Path
        The temporary directory to write into (a sibling of ``target``).
    """
    target = Path(target).absolute()
    if target.exists() and not overwrite and (not target.is_dir() or any(target.iterdir())):
        raise OutputError(f"{target}: output already exists; choose a new folder or remove it")
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=parent))
    except OSError as exc:
        raise OutputError(
            f"{parent}: cannot create the output folder here ({exc.strerror})"
        ) from exc
    try:
        yield tmp
        tmp.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""

    def fill(fd: int, tmp: Path) -> None:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    return _atomic_file(path, fill)


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Have ``write`` fill a temporary file next to ``path``, then rename it to ``path``
    atomically (for writers that take a file name, such as safetensors' ``save_file``)."""

    def fill(fd: int, tmp: Path) -> None:
        os.close(fd)
        write(tmp)

    return _atomic_file(path, fill)


def _atomic_file(path: str | os.PathLike, fill: Callable[[int, Path], None]) -> Path:
    """A temporary file next to ``path`` (descriptor and name) filled by ``fill``, renamed to
    ``path``; removed on any failure (an OSError becomes an OutputError naming ``path``)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:  # no folder, or none writable: the same error as a failed write
        raise OutputError(f"{path}: cannot write ({_reason(exc)}); {_fix(exc)}") from exc
    try:
        fill(fd, Path(tmp))
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"{path}: cannot write ({_reason(exc)}); {_fix(exc)}") from exc
        raise
    return path


@contextlib.contextmanager
def removed_on_failure(path: str | os.PathLike) -> Iterator[None]:
    """Remove ``path`` (an output just written) if the block fails, so that outputs which
    belong together (an image and its table, tensors and their sidecar) appear together."""
    try:
        yield
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _fix(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free disk space (or raise the quota) or choose another output folder"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make the folder writable or choose another output folder"
    return "check the output folder"


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, name: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder/.<name>.lock`` so two runs cannot write one output.

    The lock is an advisory ``flock`` on a hidden file: the operating system drops it when the
    holder exits, even when it is killed, so a killed run never blocks the next one. The file
    holds the holder's process id and is removed on release.

    Raises
    ------
    OutputError
        Another process holds the lock (its process id is in the message), or the lock file
        cannot be created.
    """
    import fcntl

    folder = Path(folder)
    path = folder / f".{name}.lock"
    for _ in range(5):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"{path}: cannot create the lock file ({_reason(exc)})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise OutputError(f"{path}: cannot lock ({_reason(exc)})") from exc
            raise OutputError(
                f"{path}: another brainrecon run (process {holder}) is writing {name} in "
                f"{folder}; wait for it to finish or choose another output folder"
            ) from exc
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the file was removed by the previous holder in between: try again
    else:  # pragma: no cover - needs five lost races in a row
        raise OutputError(f"{path}: cannot take the lock; try again")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # still holding the lock, so nobody else is using this file
        os.close(fd)  # closing the descriptor releases the lock


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))
