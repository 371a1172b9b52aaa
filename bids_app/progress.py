"""Stage lines of a run: when each stage of each participant starts and ends, the time elapsed
and an estimate of what is left.

:class:`StageTracker` is Nipype's ``status_callback`` (``plugin_args``; it runs in the main
process whatever plugin runs the nodes, Linear and MultiProc alike): it maps each node to its
participant and stage (:func:`node_stage`) and logs on the ``nipype_brainrecon.progress``
logger (always shown on the terminal, and in the run's log file)::

    sub-01 betas: started (estimate 12 s)
    sub-01 betas: done in 9 s; elapsed 15 s, about 2 min 40 s left

What is left is the estimate of the stages not done (:mod:`nipype_brainrecon.bids_app.estimate`),
scaled by how long the finished stages took against their estimates, divided among the
participants run at once.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping

from nipype_brainrecon.bids_app.estimate import STAGES, format_seconds
from nipype_brainrecon.bids_app.logs import PROGRESS_LOGGER

__all__ = ["StageTracker", "node_stage", "stage_nodes"]

LOGGER = logging.getLogger(PROGRESS_LOGGER)

_SUBJECT = re.compile(r"sub_([A-Za-z0-9]+)_wf")
_BY_NAME = {
    "betas": "betas",
    "betas_out": "betas",
    "features": "features",
    "chunks": "reconstruction",
    "reconstruct": "reconstruction",
    "concatenate": "reconstruction",
    "both_features": "reconstruction",
    "shuffle": "reconstruction",
    "reconstruct_shuffled": "reconstruction",
    "evaluate": "evaluation",
    "ds_files": "report",
    "ds_sections": "report",
    "write_derivatives": "report",
    "report": "report",
}


def node_stage(fullname: str, where: str = "") -> tuple[str | None, str | None]:
    """``(participant, stage)`` of a node by its full name (``where``: its folder, for the
    subnodes of a MapNode, named ``_betas0``); ``None`` for what is not known and for the
    small nodes that run beside the stages (the writers ``ds_*`` of each stage's outputs,
    ``train_ids``), which would otherwise hold a finished stage open.

    >>> node_stage("brainrecon_wf.sub_01_wf.decoding_wf.fit_z")
    ('01', 'z decoder')
    >>> node_stage("_reconstruct0", "/w/brainrecon_wf/sub_02_wf/reconstruction_wf/reconstruct")
    ('02', 'reconstruction')
    >>> node_stage("brainrecon_wf.sub_01_wf.encoding_wf.fit")
    ('01', 'encoding')
    >>> node_stage("brainrecon_wf.sub_01_wf.ds_decoder_z")
    ('01', None)
    """
    parts = fullname.split(".")
    found = _SUBJECT.search(fullname) or _SUBJECT.search(str(where))
    subject = found.group(1) if found else None
    name = re.sub(r"\d+$", "", parts[-1].lstrip("_"))
    if "encoding_wf" in parts or name == "write_encoding":
        return subject, "encoding"
    if name in _BY_NAME:
        return subject, _BY_NAME[name]
    for target in ("z", "c"):
        if name.endswith(f"_{target}") and name.split("_")[0] in {
            "roi", "extract", "split", "fit", "predict", "decoder"
        }:  # fmt: skip
            return subject, f"{target} decoder"
    return subject, None


def stage_nodes(workflow) -> dict[tuple[str, str], int]:
    """``{(participant, stage): number of nodes}`` that a run of ``workflow`` executes
    (its nodes but Nipype's identity nodes, which it removes before running)."""
    from nipype.interfaces.utility import IdentityInterface

    counts: dict[tuple[str, str], int] = {}
    for name in workflow.list_node_names():
        node = workflow.get_node(name)
        if node is None or isinstance(node.interface, IdentityInterface):
            continue
        subject, stage = node_stage(f"{workflow.name}.{name}")
        if subject is not None and stage is not None:
            counts[subject, stage] = counts.get((subject, stage), 0) + 1
    return counts


class StageTracker:
    """Nipype ``status_callback`` logging a line at the start and the end of each stage.

    Parameters
    ----------
    nodes : mapping
        ``{(participant, stage): number of nodes}`` (:func:`stage_nodes`).
    estimates : mapping
        ``{participant: {stage: seconds}}``; a stage without one shows no estimate.
    parallel : int
        Participants run at the same time (what is left is shared among them).
    clock : callable
        Seconds now (tests pass a fake clock).
    """

    def __init__(
        self,
        nodes: Mapping[tuple[str, str], int],
        estimates: Mapping[str, Mapping[str, float]] | None = None,
        parallel: int = 1,
        clock=time.monotonic,
    ) -> None:
        self.left = dict(nodes)
        self.estimates = {k: dict(v) for k, v in (estimates or {}).items()}
        self.parallel = max(1, int(parallel))
        self.clock = clock
        self.started_at = clock()
        self.stage_start: dict[tuple[str, str], float] = {}
        self.done: dict[tuple[str, str], float] = {}
        self.failed: set[tuple[str, str]] = set()

    def __call__(self, node, status: str) -> None:
        """Nipype's callback: ``status`` is ``start``, ``end`` or ``exception``."""
        try:
            self.update(node.fullname, status, str(getattr(node, "base_dir", "") or ""))
        except Exception as exc:  # a progress line must never stop a run
            LOGGER.debug("progress: %s", exc)

    def update(self, fullname: str, status: str, where: str = "") -> None:
        """Account for one node's ``status``; log the stage lines it causes."""
        subject, stage = node_stage(fullname, where)
        if subject is None or stage is None:
            return
        key = (subject, stage)
        now = self.clock()
        if key not in self.stage_start:
            self.stage_start[key] = now
            estimate = self.estimates.get(subject, {}).get(stage)
            guess = f" (estimate {format_seconds(estimate)})" if estimate is not None else ""
            LOGGER.info("sub-%s %s: started%s", subject, stage, guess)
        if status == "exception":
            self.failed.add(key)
            LOGGER.info(
                "sub-%s %s: FAILED at %s after %s", subject, stage, fullname.split(".")[-1],
                format_seconds(now - self.stage_start[key]),
            )  # fmt: skip
            return
        if status != "end" or fullname.startswith("_"):
            return  # a MapNode's subnode: the MapNode itself ends the stage
        if key in self.left:
            self.left[key] -= 1
            if self.left[key] > 0:
                return
        if key in self.done:
            return
        self.done[key] = now - self.stage_start[key]
        LOGGER.info(
            "sub-%s %s: done in %s; elapsed %s, %s",
            subject,
            stage,
            format_seconds(self.done[key]),
            format_seconds(now - self.started_at),
            self.remaining_text(now),
        )

    def ratio(self) -> float:
        """Measured / estimated seconds of the finished stages (1 before any; within 0.2-10:
        a loaded machine, another machine than the benchmarks')."""
        measured = estimated = 0.0
        for (subject, stage), seconds in self.done.items():
            guess = self.estimates.get(subject, {}).get(stage)
            if guess:
                measured, estimated = measured + seconds, estimated + guess
        if estimated < 1.0:
            return 1.0
        return min(10.0, max(0.2, measured / estimated))

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds left (``None`` without estimates)."""
        if not self.estimates:
            return None
        now = self.clock() if now is None else now
        ratio, left = self.ratio(), 0.0
        for subject, stages in self.estimates.items():
            for stage, seconds in stages.items():
                key = (subject, stage)
                if key in self.done or (self.left and key not in self.left):
                    continue  # finished, or not a stage of this run
                spent = now - self.stage_start[key] if key in self.stage_start else 0.0
                left += max(0.0, ratio * seconds - spent)
        return left / min(self.parallel, max(1, len(self.estimates)))

    def remaining_text(self, now: float | None = None) -> str:
        left = self.remaining(now)
        if left is None:
            return "no estimate of what is left"
        return "nothing left" if left < 0.5 else f"about {format_seconds(left)} left"

    def stages_done(self, subject: str) -> Iterable[str]:
        """The stages of ``subject`` done, in :data:`STAGES` order."""
        return [s for s in STAGES if (subject, s) in self.done]
