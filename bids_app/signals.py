"""Stopping a run on SIGINT (Ctrl-C) or SIGTERM: promptly, cleanly, resumably.

:func:`stop_on_signals` installs handlers for the length of a run. The first signal raises
:class:`Interrupted` (a ``KeyboardInterrupt``) in the main process, which unwinds the run: the
outputs being written are removed (they are only moved into OUTPUT_DIR whole, see
:mod:`nipype_brainrecon.io`), the locks are released, and every child process (Nipype's
MultiProc workers) is terminated, then killed if still alive after a grace period. Worker
processes that inherited the handler leave SIGINT (Ctrl-C reaches the whole process group) to
the main process and die at once on SIGTERM. A call that swallows the interrupt (Nipype's MapNode
does) is interrupted again until it lets go (:func:`interruptible`). A second signal forces: the
children are killed and the process exits at once.

The exit code is 128 + the signal's number: 130 for SIGINT, 143 for SIGTERM. Rerunning the same
command with the same work folder (``-w``) resumes: finished steps are not redone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "GRACE_SECONDS",
    "Interrupted",
    "interruptible",
    "remove_stop_crash_files",
    "resume_message",
    "stop_on_signals",
    "terminate_children",
]

#: Seconds children get to end after SIGTERM before they are killed.
GRACE_SECONDS = 5.0
#: Seconds between two raises of a signal a call swallowed (see :func:`interruptible`).
REDELIVER_SECONDS = 0.5
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: What the watchdog raises the stop again with (ignored by default, so harmless elsewhere).
_REDELIVER = signal.SIGURG
#: Loggers silenced once a stop begins.
_QUIET = ("concurrent.futures", "nipype.workflow")


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; ``exit_code`` is 128 + its number."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + self.signum
        super().__init__(f"stopped by {self.name}")


def terminate_children(grace: float = GRACE_SECONDS) -> int:
    """SIGTERM every descendant process, SIGKILL those alive after ``grace`` seconds.

    Returns how many there were.
    """
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return 0
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.send_signal(signal.SIGKILL if grace <= 0 else signal.SIGTERM)
    _, alive = psutil.wait_procs(children, timeout=max(grace, 0.1))
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=2)
    return len(children)


class _State:
    """What the handlers of one :func:`stop_on_signals` block share."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.received: list[int] = []
        self.inside = 0  # depth of interruptible() blocks
        self.watchdog: threading.Thread | None = None


_STATE: _State | None = None
#: When the last stop began (time.time()), for remove_stop_crash_files.
_STOPPED_AT: float | None = None


def _watch(state: _State, signum: int) -> None:
    """Raise the signal again in the main thread every ``REDELIVER_SECONDS`` while it is still
    inside an :func:`interruptible` block (the first one was swallowed)."""
    main = threading.main_thread().ident
    while True:
        time.sleep(REDELIVER_SECONDS)
        if not state.inside or _STATE is not state:
            return
        # a signal of its own (never merged with a second Ctrl-C); a real one: it also wakes
        # a blocking call
        signal.pthread_kill(main, _REDELIVER)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Around a call that may swallow a ``KeyboardInterrupt`` (Nipype's MapNode runs its
    subnodes in a generator whose ``finally: yield`` drops it): once a signal is received, it is
    raised again in the main thread until it gets out, and raised at the end if the call
    returns anyway."""
    state = _STATE
    if state is None:
        yield
        return
    state.inside += 1
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the interrupt swallowed, turned into a failure
        if state.received:
            raise Interrupted(state.received[0]) from exc
        raise
    finally:
        state.inside -= 1
    if state.received:
        raise Interrupted(state.received[0])


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Handle SIGINT and SIGTERM as described in this module for the body of the block.

    Only the main thread of the main process can install handlers; elsewhere (a thread, as in
    some tests) the block runs with the handlers it has.
    """
    global _STATE
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    state = _State()

    def handler(signum, frame):
        global _STOPPED_AT
        if os.getpid() != state.owner:  # a forked worker: the main process decides
            if signum != signal.SIGINT:  # SIGTERM (from the main process): end now
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        state.received.append(signum)
        if len(state.received) == 1:
            _STOPPED_AT = time.time()
        if len(state.received) > 1:
            signal.pthread_sigmask(signal.SIG_BLOCK, set(_SIGNALS))  # nothing interrupts this
            state.inside = 0  # and the watchdog stops
            name = signal.Signals(signum).name
            print(f"brainrecon: {name} again: stopping at once", file=sys.stderr, flush=True)
            terminate_children(grace=0)
            os._exit(128 + state.received[0])
        # the workers are about to be stopped and the nodes interrupted: no "BrokenProcessPool"
        # or node-crash tracebacks on the terminal (the one line comes at the end)
        for name in _QUIET:
            logging.getLogger(name).disabled = True
        if state.inside:
            state.watchdog = threading.Thread(target=_watch, args=(state, signum), daemon=True)
            # The watchdog starts with SIGINT/SIGTERM blocked, so the kernel delivers a second
            # Ctrl-C to the main thread: one landing on the sleeping watchdog would not wake
            # the main thread's blocking call, and nothing would force.
            unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, set(_SIGNALS))
            try:
                state.watchdog.start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        raise Interrupted(signum)

    def again(signum, frame):  # from the watchdog
        if state.inside and state.received and os.getpid() == state.owner:
            raise Interrupted(state.received[0])

    previous = {sig: signal.signal(sig, handler) for sig in _SIGNALS}
    previous[_REDELIVER] = signal.signal(_REDELIVER, again)
    _STATE = state
    try:
        yield
    except KeyboardInterrupt:
        terminate_children()
        raise
    finally:
        _STATE = None
        state.inside = 0
        if not state.received:
            for sig, old in previous.items():
                signal.signal(sig, old)
            for name in _QUIET:
                logging.getLogger(name).disabled = False
        # else the handler stays, until the process exits: a late repeat from the watchdog is
        # ignored, and another Ctrl-C while the run winds down still forces


def remove_stop_crash_files(logs_dir: str | os.PathLike | None) -> list[Path]:
    """Remove the crash files Nipype wrote in ``logs_dir`` for the nodes the last stop
    interrupted (written since the signal, naming :class:`Interrupted` or the process pool its
    workers' end broke): a stop is not a crash. Other crash files are kept."""
    if logs_dir is None or not Path(logs_dir).is_dir() or _STOPPED_AT is None:
        return []
    since = _STOPPED_AT - 1
    markers = (f"{Interrupted.__module__}.Interrupted", "BrokenProcessPool")
    removed = []
    for crash in Path(logs_dir).glob("crash-*"):
        try:
            if crash.stat().st_mtime < since:
                continue
            if any(m in crash.read_text(errors="replace") for m in markers):
                crash.unlink()
                removed.append(crash)
        except OSError:
            continue
    return removed


def resume_message(exc: KeyboardInterrupt, work_dir: str | os.PathLike | None) -> tuple[str, int]:
    """The one line a stopped run prints, and its exit code (130 for a plain Ctrl-C)."""
    name = getattr(exc, "name", "SIGINT")
    code = getattr(exc, "exit_code", 128 + signal.SIGINT)
    if work_dir is None:
        return f"brainrecon: stopped by {name}; nothing was written", code
    return (
        f"brainrecon: stopped by {name}; outputs not finished were not written; to resume, "
        f"run the same command again with -w {work_dir} (finished steps are kept there)",
        code,
    )
