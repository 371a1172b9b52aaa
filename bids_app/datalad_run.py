"""``brainrecon --datalad``: run each participant of a BIDS App call under ``datalad run``.

The command-line side of :mod:`nipype_brainrecon.datalad`: :func:`replay_argv` turns the parsed
arguments into the command that redoes one participant from the output dataset's root, and
:func:`run_recorded` records one such run per participant (:func:`~nipype_brainrecon.datalad.record_run`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nipype_brainrecon import __version__
from nipype_brainrecon.datalad import (
    PreparedInputs,
    ensure_output_dataset,
    participant_outputs,
    prepare_inputs,
    record_run,
)
from nipype_brainrecon.datalad.repo import is_url
from nipype_brainrecon.errors import BrainreconError

__all__ = ["brainrecon_command", "replay_argv", "run_recorded"]


def brainrecon_command() -> list[str]:
    """How to call the ``brainrecon`` program in a record: its name when ``PATH`` finds this
    installation's, else its absolute path, else ``python -m``."""
    beside = Path(sys.executable).parent / "brainrecon"
    on_path = shutil.which("brainrecon")
    if on_path and beside.exists() and Path(on_path).resolve() == beside.resolve():
        return ["brainrecon"]
    if beside.exists():
        return [str(beside)]
    if on_path:
        return ["brainrecon"]
    return [sys.executable, "-m", "nipype_brainrecon.bids_app.cli"]


_PATH_DESTS = {
    "bids_dir",
    "output_dir",
    "betas",
    "roi_dseg",
    "roi_labels",
    "use_plugin",
    "feature_cache",
    "work_dir",
}


def _where(value: Any, base: Path, root: Path) -> str:
    """A path argument as the recorded command gives it: relative to ``root`` when inside it
    (``root`` itself is ``.``), absolute otherwise; clone URLs as they are."""
    if is_url(os.fspath(value)):
        return os.fspath(value)
    full = Path(os.path.abspath(base / Path(value)))
    if full == root:
        return "."
    if root in full.parents:
        return full.relative_to(root).as_posix()
    return str(full)


def _option_args(
    action: argparse.Action, flag: str, value: Any, *, base: Path, root: Path
) -> list[str]:
    """The command-line words that give option ``action`` the (non-default) ``value``."""
    dest = action.dest
    if isinstance(action, argparse._CountAction):
        return [action.option_strings[0]] * int(value)
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return [flag]
    if isinstance(action, argparse.BooleanOptionalAction):
        return [flag if value else "--no-" + flag[2:]]
    values = value if isinstance(value, (list, tuple)) and action.nargs else [value]
    rendered = []
    for item in values:
        if dest == "derivatives" and isinstance(item, tuple):
            rendered.append(f"{item[0]}={_where(item[1], base, root)}")
        elif dest in _PATH_DESTS:
            rendered.append(_where(item, base, root))
        elif dest == "model" and os.path.exists(base / str(item)):
            rendered.append(_where(item, base, root))
        else:
            rendered.append(str(item))
    return [flag, *rendered]


def replay_argv(
    parser: Any,
    args: Any,
    *,
    root: str | os.PathLike,
    participant: str,
    cwd: str | os.PathLike | None = None,
) -> list[str]:
    """The command-line arguments that redo ``args`` for one participant, from ``root``.

    ``datalad run`` executes at the dataset root, so path arguments are rewritten: relative to
    ``root`` when inside it (the output dataset becomes ``.``; input subdatasets become
    ``sourcedata/...``), absolute otherwise. ``--participant-label`` becomes ``participant``;
    ``--datalad`` is dropped and ``--no-datalad`` added when the parser knows it, so that a
    ``datalad rerun`` does not wrap itself again.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The BIDS App's parser.
    args : argparse.Namespace
        What it parsed.
    root : path
        The output dataset.
    participant : str
        The one participant of the record.
    cwd : path, optional
        The folder relative paths in ``args`` are relative to (default: the current one).
    """
    from nipype_brainrecon.bids import normalize_participant_label

    base = Path(cwd).absolute() if cwd is not None else Path.cwd()
    root = Path(root).absolute()

    positional: list[str] = []
    options: list[str] = []
    known = {s for a in parser._actions for s in a.option_strings}
    for action in parser._actions:
        dest = action.dest
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        if dest == "datalad":
            continue
        value = getattr(args, dest, None)
        if not action.option_strings:
            if dest == "analysis_level":
                positional.append("participant")
            elif value is not None:
                positional.append(_where(value, base, root) if dest in _PATH_DESTS else str(value))
            continue
        flag = next((s for s in action.option_strings if s.startswith("--")), None)
        flag = flag or action.option_strings[0]
        if dest == "participant_label":
            options += [flag, normalize_participant_label(participant)]
            continue
        if value is None or value == action.default:
            continue
        options += _option_args(action, flag, value, base=base, root=root)
    if "--no-datalad" in known:
        options.append("--no-datalad")
    return positional + options


def run_recorded(
    parser: Any,
    args: Any,
    *,
    inputs: PreparedInputs | None = None,
    settings: Mapping[str, Any] | None = None,
) -> int:
    """Run the participant level once per participant under ``datalad run``; return the exit.

    The output folder becomes a dataset (:func:`ensure_output_dataset`); each participant's
    command (:func:`replay_argv`, with ``--no-datalad``) runs with its input files and outputs
    declared, and its commit carries the run record with the package version, the seed and the
    input datasets' ids and commits.

    Parameters
    ----------
    parser, args
        The BIDS App's parser and parsed arguments (``args.output_dir``,
        ``args.participant_label``, ``args.random_seed`` are read).
    inputs : PreparedInputs, optional
        From :func:`prepare_inputs` (default: prepared here from ``args``).
    settings : mapping, optional
        Run settings stored in the record.
    """
    if inputs is None:
        inputs = prepare_inputs(
            args.bids_dir,
            dict(args.derivatives) if getattr(args, "derivatives", None) else None,
            args.participant_label,
            getattr(args, "task", None),
            space=getattr(args, "space", "T1w"),
            roi_dseg=getattr(args, "roi_dseg", None),
            roi_labels=getattr(args, "roi_labels", None),
        )
    out = ensure_output_dataset(args.output_dir)
    sources = {}
    for name, meta in inputs.summary["datasets"].items():
        entry = {k: v for k, v in meta.items() if k != "absent"}
        path = Path(entry["path"])
        if out in path.parents:  # a subdataset: where it is in the output, not on this machine
            entry["path"] = path.relative_to(out).as_posix()
        sources[name] = entry
    for label in inputs.summary["participants"]:
        command = [*brainrecon_command(), *replay_argv(parser, args, root=out, participant=label)]
        info = {
            "participant": label,
            "seed": getattr(args, "random_seed", None),
            "settings": dict(settings or {}),
            "sources": sources,
        }
        try:
            record = record_run(
                out,
                command,
                inputs=inputs.needed.get(label, []),
                outputs=participant_outputs(label),
                message=f"brainrecon {__version__}: participant sub-{label}",
                info=json.loads(json.dumps(info, default=str)),
            )
        except BrainreconError as exc:
            print(f"brainrecon: error: sub-{label}: {exc}", file=sys.stderr)
            return exc.exit_code
        state = f"saved in {record.commit[:10]}" if record.commit else "no change"
        print(f"sub-{label}: {state} (datalad run record in {out})")
    return 0
