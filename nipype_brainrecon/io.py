"""Writing outputs safely: whole or not at all."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import OutputError

LOGGER = logging.getLogger(__name__)


#: Test hook: seconds to pause between the two renames of a swap (forces the rename path).
SWAP_PAUSE_ENV = "BRAINRECON_TEST_SWAP_PAUSE"


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and move it to ``target`` only on success.

    If the body raises, the temporary directory is removed and ``target`` is untouched,
    so a failed run never leaves a half-written output. An existing ``target`` is replaced by
    :func:`swap_directory`, so a process killed at any moment leaves one complete version.

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
        recover_swaps(parent, target.name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise OutputError(
            f"{parent}: cannot create the output folder here ({exc.strerror})"
        ) from exc
    try:
        yield tmp
        tmp.chmod(0o755)
        swap_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False  # a file system or kernel without the flag: rename in two steps
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM (main thread) while a swap renames, so Ctrl-C lands after it."""
    import signal
    import threading

    held = {signal.SIGINT, signal.SIGTERM}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def old_path(target: str | os.PathLike, pid: int | None = None) -> Path:
    """Where :func:`swap_directory` keeps the previous ``target`` for a moment:
    ``.<name>.old-<pid>`` beside it."""
    target = Path(target)
    return target.with_name(f".{target.name}.old-{os.getpid() if pid is None else pid}")


def swap_directory(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the folder ``new`` at ``target``, replacing any previous one, so that a process
    killed at any moment leaves one complete version at ``target`` or (killed between two
    renames) the previous one at :func:`old_path`, which :func:`recover_swaps` puts back.

    On Linux both are exchanged in one ``renameat2(RENAME_EXCHANGE)`` call; elsewhere (or on a
    file system without it) ``target`` is renamed to ``.<name>.old-<pid>``, then ``new`` to
    ``target``. The previous version is removed afterwards. SIGINT and SIGTERM wait until all
    this is done (in the main thread), so a stop by signal leaves nothing beside ``target``.
    """
    new, target = Path(new), Path(target)
    pause = float(os.environ.get(SWAP_PAUSE_ENV) or 0)
    with _signals_held():
        if not os.path.lexists(target):
            os.replace(new, target)
            return
        if not pause and _exchange(new, target):
            shutil.rmtree(new, ignore_errors=True)  # now the previous version
            return
        old = old_path(target)
        os.replace(target, old)
        if pause:  # test hook: the moment a kill would lose both without the recovery
            print(f"brainrecon: swap paused: {target}", file=sys.stderr, flush=True)
            time.sleep(pause)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_swaps(folder: str | os.PathLike, name: str | None = None) -> list[str]:
    """Finish the swaps of processes that died in :func:`swap_directory` or
    :func:`atomic_directory` in ``folder`` (only those named ``name`` if given).

    A previous version ``.<name>.old-<pid>`` of a dead process is renamed back to ``<name>``
    when that is missing, else removed; its temporary ``.<name>.partial-<pid>-*`` folders are
    removed. Leftovers of live processes are left alone. Returns what was done, one line each.
    """
    folder = Path(folder)
    done = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return done
    for path in entries:
        match = _LEFTOVER.fullmatch(path.name)
        if not match or (name is not None and match["name"] != name):
            continue
        if _pid_alive(int(match["pid"])):
            continue  # still writing (or this process)
        target = folder / match["name"]
        if match["kind"] == "old" and not os.path.lexists(target):
            os.replace(path, target)
            done.append(f"{target}: restored the previous version from {path.name}")
        else:
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"{path}: removed the leftover of an interrupted write")
    for line in done:
        LOGGER.warning("%s", line)
    return done


_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<kind>old|partial)-(?P<pid>\d+)(-.*)?")


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
def output_lock(
    folder: str | os.PathLike, name: str, *, fix: str = "choose another output folder"
) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder/.<name>.lock`` so two runs cannot write one output.

    The lock is an advisory ``flock`` on a hidden file: the operating system drops it when the
    holder exits, even when it is killed, so a killed run never blocks the next one. The file
    holds the holder's process id and is removed on release; a file left by a killed holder is
    taken over with a warning naming its process. ``fix`` ends the message of a refusal.

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
                f"{folder}; wait for it to finish or {fix}"
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
    stale = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    if stale and stale != str(os.getpid()):
        LOGGER.warning(
            "%s: taking over the stale lock of process %s, which ended without releasing it",
            path,
            stale,
        )
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
