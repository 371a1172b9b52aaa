"""``brainrecon``: the BIDS App command line (BIDS Apps spec, fMRIPrep's vocabulary)."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from nipype_brainrecon.bids_app.checks import (
    check_before_writing,
    check_model_revision,
    one_line,
    plugin_settings,
    save_crash_file,
    validate_bids,
)
from nipype_brainrecon.bids_app.parser import EPILOG, build_parser  # noqa: F401 (API)
from nipype_brainrecon.bids_app.signals import (
    interruptible,
    remove_stop_crash_files,
    resume_message,
    stop_on_signals,
)
from nipype_brainrecon.bids_app.workdir import default_work_dir, work_folder
from nipype_brainrecon.config import DEFAULTS
from nipype_brainrecon.errors import (
    EXIT_FAILURE,
    EXIT_INVALID_BIDS,
    EXIT_OK,
    BrainreconError,
    InvalidDatasetError,
    MissingInputError,
    OutputError,
    UsageError,
)
from nipype_brainrecon.io import output_lock, recover_swaps

LOGGER = logging.getLogger(__name__)


def _model_path(model: str) -> str:
    """The folder the run loads: the demo model, a local folder, or a hub id (``ID@REVISION``)
    resolved to its snapshot in the Hugging Face cache (recorded as ``ID@<commit>``)."""
    if model == "demo":
        from nipype_brainrecon.diffusion.models import demo_model_path

        return str(demo_model_path())
    path = Path(model)
    if path.exists():
        return str(path.absolute())
    from nipype_brainrecon.diffusion.models import resolve_model

    return resolve_model(model)


def _check_paths(bids_dir: Path, output_dir: Path) -> None:
    """The input exists and is a BIDS dataset; OUTPUT_DIR can be created and written."""
    if not bids_dir.is_dir():
        raise MissingInputError(f"{bids_dir}: BIDS dataset folder not found")
    if not (bids_dir / "dataset_description.json").is_file():
        raise InvalidDatasetError(f"{bids_dir}: not a BIDS dataset (no dataset_description.json)")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-")
        probe.close()
    except OSError as exc:
        raise OutputError(f"{output_dir}: cannot write here ({exc.strerror})") from exc


def _settings(args) -> dict:
    model = _model_path(args.model)
    resolution = args.resolution
    if resolution is None:
        resolution = DEFAULTS.decoding.resolution
        if args.model == "demo":
            from nipype_brainrecon.diffusion.models import native_resolution

            resolution = native_resolution(model)
    # The demo model draws the simulator's stimuli, whose captions name object colours and a
    # background: the weights-free "scene" metric scores that semantic content.
    extractors = list(DEFAULTS.evaluation.extractors)
    if args.model == "demo":
        extractors.append("scene")
    return {
        "extractors": extractors,
        "betas_method": "precomputed" if getattr(args, "betas", None) else args.betas_method,
        "noise_model": args.noise_model,
        "resolution": resolution,
        "test_set": args.test_set,
        "alphas": args.alphas,
        "cv_groups": args.cv_groups,
        "fit_intercept": args.fit_intercept,
        "z_roi": args.z_roi if len(args.z_roi) > 1 else args.z_roi[0],
        "c_roi": args.c_roi if len(args.c_roi) > 1 else args.c_roi[0],
        "model": model,
        "mode": args.mode,
        "n_samples": args.samples,
        "strength": args.strength,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "seed": args.random_seed,
        "device": args.device,
        "n_chunks": args.reconstruction_jobs,
        "feature_cache": str(args.feature_cache.absolute()) if args.feature_cache else None,
        "encoding": args.encoding,
        "encoding_blocks": list(args.encoding_blocks),
        "encoding_steps": list(args.encoding_steps),
        "encoding_banded": args.encoding_banded,
    }


def _betas_collector(args):
    """``collect_participant``'s stand-in for ``--betas``: the participant from the betas
    dataset (betas, trials, ROI segmentation), stimuli and captions from BIDS_DIR; no BOLD,
    events, confounds or masks. Options of the BOLD route are accepted and not used."""
    from nipype_brainrecon.bids.betas import collect_precomputed_betas

    def collect(bids_dir, label, *, task=None, session=None, space=None, **options):
        return collect_precomputed_betas(
            args.betas,
            label,
            bids_dir=bids_dir,
            task=task,
            session=session,
            space=space,
            roi_dseg=options.get("roi_dseg"),
            roi_labels=options.get("roi_labels"),
        )

    return collect


def _precomputed(participant) -> tuple[dict | None, dict | None]:
    """``precomputed_betas`` and ``datasets`` of a participant collected from ``--betas``
    (``None, None`` for the BOLD route)."""
    runs = participant.runs
    if not all(hasattr(run, "betas_file") for run in runs):
        return None, None
    betas = {
        "betas_files": [str(r.betas_file) for r in runs],
        "trials_files": [str(r.trials_file) for r in runs],
    }
    return betas, {"raw": str(participant.bids_dir), "betas": str(participant.derivatives)}


def _collect_participants(args, labels, fmriprep, settings, sizes=None):
    """Collect and pre-flight check each participant; one with bad inputs does not stop the others.

    Returns the participants to run and ``{label: error}`` of those left out. With a single
    participant (or when every one fails) the first error is raised as is.
    """
    from nipype_brainrecon.bids import collect_participant
    from nipype_brainrecon.bids_app.preflight import check_participant

    if getattr(args, "betas", None) is not None:
        collect_participant = _betas_collector(args)

    participants, errors = [], {}
    for label in labels:
        try:
            participant = collect_participant(
                args.bids_dir,
                label,
                derivatives=fmriprep,
                task=args.task,
                space=args.space,
                roi_dseg=args.roi_dseg,
                roi_labels=args.roi_labels,
                session=args.session_label,
                bids_filters=args.bids_filter_file,
                stim_column=args.stim_column,
                stim_map=args.stim_map,
                stim_template=args.stim_template,
                trial_filter=args.trial_filter,
            )
            checked = check_participant(participant, settings, mem_gb=args.mem)
            if sizes is not None:  # the data's sizes, for the time estimates
                sizes[participant.participant] = checked
        except BrainreconError as exc:
            if len(labels) == 1:
                raise
            name = str(label).strip().removeprefix("sub-")
            print(f"brainrecon: error: sub-{name}: {exc}", file=sys.stderr)
            errors[name] = exc
            continue
        participants.append(participant)
    if not participants and errors:
        raise next(iter(errors.values()))
    return participants, errors


def failure_report_path(output_dir: Path, label: str) -> Path:
    """Where the report of a failed participant goes: ``sub-<label>.html`` when the participant
    has no outputs yet, else ``logs/sub-<label>_failed-<UTC time>.html`` beside the previous
    outputs, which a failed rerun leaves as they were."""
    if not any((output_dir / name).exists() for name in (f"sub-{label}", f"sub-{label}.html")):
        return output_dir / f"sub-{label}.html"
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return output_dir / "logs" / f"sub-{label}_failed-{stamp}.html"


def _failure_report(output_dir: Path, label: str, started: float) -> Path | None:
    """A report of a failed participant that links the crash files of this run (its path,
    :func:`failure_report_path`; None if it could not be written)."""
    from nipype_brainrecon.reports import crash_message, write_participant_report

    logs = output_dir / "logs"
    out_html = failure_report_path(output_dir, label)
    errors = []
    for crash in sorted(logs.glob("crash-*")):
        try:
            if crash.stat().st_mtime < started - 1:
                continue
            text = crash.read_text(errors="replace")
        except OSError:
            continue
        if f"sub_{label}_wf" in text:
            node = next((ln for ln in text.splitlines() if ln.startswith("Node:")), "a node")
            error = crash_message(text)  # the one-line error, shown in the report
            message = f"{node.strip()} failed" + (f": {error}" if error else "")
            errors.append({"message": message, "crash_file": str(crash)})
    if not errors:
        errors = [f"the workflow of sub-{label} did not finish; see the log"]
    try:
        write_participant_report(
            {"subject": label, "errors": errors},
            out_html,
            figures_dir=logs / f"{out_html.stem}_figures",
            root=output_dir,
        )
    except Exception as exc:  # the run already failed; a report must not hide why
        LOGGER.warning("sub-%s: failure report not written (%s)", label, exc)
        return None
    return out_html


def run_participant(args, command: str) -> int:
    """Collect inputs, build and run each participant's workflow; write derivatives."""
    from nipype import config as nipype_config
    from nipype.pipeline import engine as pe

    from nipype_brainrecon.bids import list_participants
    from nipype_brainrecon.derivatives import init_output_dataset
    from nipype_brainrecon.workflows.cluster import set_node_sbatch_args
    from nipype_brainrecon.workflows.participant import init_participant_wf

    derivatives = dict(args.derivatives or [])
    fmriprep = derivatives.get("fmriprep") or next(iter(derivatives.values()), None)
    labels = args.participant_label or list_participants(args.bids_dir)
    settings = _settings(args)
    checked: dict = {}  # each participant's sizes, for the time estimates
    participants, input_errors = _collect_participants(args, labels, fmriprep, settings, checked)
    if not participants:
        raise MissingInputError(f"{args.bids_dir}: no participant to process")

    def init_dataset() -> None:
        init_output_dataset(
            args.output_dir,
            bids_dir=args.bids_dir,
            derivatives={
                "betas" if args.betas is not None else "fmriprep": participants[0].derivatives,
                **derivatives,
            },
            settings=settings,
        )

    # A rerun refreshes the top-level files (CITATION, settings) only once a participant has
    # succeeded with these settings; a new OUTPUT_DIR gets them first.
    rerun = (args.output_dir / "dataset_description.json").exists()
    if not rerun:
        init_dataset()
    work_dir = Path(os.path.abspath(args.work_dir or default_work_dir(args.output_dir)))
    nipype_config.update_config(
        {
            "execution": {
                "hash_method": "content",
                "crashdump_dir": str((args.output_dir / "logs").absolute()),
                "crashfile_format": "txt",
                "remove_unnecessary_outputs": False,
                "stop_on_first_crash": False,
            },
            "logging": {"workflow_level": "INFO" if args.verbose else "WARNING"},
        }
    )
    root = pe.Workflow(name="brainrecon_wf", base_dir=str(work_dir))
    for participant in participants:
        precomputed, datasets = _precomputed(participant)
        root.add_nodes(
            [
                init_participant_wf(
                    participant,
                    output_dir=args.output_dir.absolute(),
                    settings=settings,
                    precomputed_betas=precomputed,
                    command=command,
                    omp_nthreads=args.omp_nthreads,
                    datasets=datasets,
                    progress=sys.stderr.isatty(),  # tqdm bars on a terminal, not in logs/CI
                )
            ]
        )
    _write_outputs_every_run(root)
    plugin = plugin_settings(args)
    node_args = plugin.pop("node_args", {})
    set_node_sbatch_args(root, plugin["plugin"], **node_args)
    _start_logs(args, root, plugin, participants, checked, settings, command, work_dir)
    started = time.time()
    failed = []
    try:
        with interruptible():  # Nipype may swallow a Ctrl-C: raised again until it gets out
            root.run(**plugin)
    except RuntimeError as exc:
        failed.append(str(exc))
    if not failed and str(plugin["plugin"]).endswith("Graph"):
        if rerun:
            init_dataset()
        # SLURMGraph/SGEGraph/PBSGraph return once every job is submitted with its dependencies.
        print(
            f"participant level submitted to {plugin['plugin']}; outputs appear in "
            f"{args.output_dir} when the jobs end; keep the work directory {work_dir}"
        )
        return EXIT_OK
    failed += _participant_states(args.output_dir, participants, started)
    if rerun and any(p.participant not in failed for p in participants):
        init_dataset()
    print(f"participant level finished in {time.time() - started:.0f} s")
    for label, exc in input_errors.items():
        print(f"sub-{label}: NOT RUN ({exc})")
    if failed or input_errors:
        crashes = _crash_text(args.output_dir / "logs", started, work_dir) if failed else ""
        n_failed = sum(p.participant in failed for p in participants) + len(input_errors)
        print(
            f"error: {max(n_failed, 1)} participant(s) failed{crashes}",
            file=sys.stderr,
        )
        return EXIT_FAILURE if failed else next(iter(input_errors.values())).exit_code
    return EXIT_OK


def _start_logs(args, root, plugin, participants, checked, settings, command, work_dir):
    """Create the run's log files (``logs/sub-<label>_<date>.log``) and attach the stage lines
    with their time estimates (:mod:`nipype_brainrecon.bids_app.plan`)."""
    from nipype_brainrecon import __version__
    from nipype_brainrecon.bids_app.logs import PROGRESS_LOGGER, start_run_logs
    from nipype_brainrecon.bids_app.plan import attach_stage_lines

    shown = logging.getLogger(PROGRESS_LOGGER)  # on the terminal at every verbosity
    for prefix, path in start_run_logs(f"sub-{p.participant}" for p in participants).items():
        shown.info("%s: log file %s", prefix, path)
    LOGGER.info("brainrecon %s: %s", __version__, command, extra={"file_only": True})
    LOGGER.info("work folder: %s", work_dir, extra={"file_only": True})
    estimates = attach_stage_lines(
        root,
        plugin,
        participants,
        checked,
        settings,
        threads=args.omp_nthreads,
        parallel=args.nprocs or os.cpu_count() or 1,
    )
    for label, stages in estimates.items():
        total = sum(s.seconds for s in stages)
        LOGGER.info("sub-%s: estimated %.0f s in all (%s)", label, total, ", ".join(
            f"{s.stage} {s.seconds:.0f} s" for s in stages
        ), extra={"file_only": True})  # fmt: skip


def _crash_text(logs_dir: Path, started: float, work_dir: Path) -> str:
    """``; crash files: ...; work folder kept: ...`` for the error line of a failed run."""
    from nipype_brainrecon.bids_app.logs import crash_files

    crashes = crash_files(logs_dir, started)
    names = ", ".join(str(c) for c in crashes) if crashes else f"none in {logs_dir}"
    text = f"; crash files: {names}; work folder kept: {work_dir}"
    LOGGER.error("participant level failed%s", text, extra={"file_only": True})
    return text


def _write_outputs_every_run(workflow) -> None:
    """The nodes that write into OUTPUT_DIR (the assembly of ``sub-<label>/``, the report, the
    encoding maps) run on every run, even when their inputs are cached in the work folder: a
    rerun with the same ``-w`` rewrites the outputs it reports. Other nodes stay cached."""
    from nipype_brainrecon.interfaces.derivatives import AssembleDerivatives
    from nipype_brainrecon.interfaces.encoding import WriteEncodingDerivatives
    from nipype_brainrecon.interfaces.reports import ParticipantReport

    writers = (AssembleDerivatives, ParticipantReport, WriteEncodingDerivatives)
    for name in workflow.list_node_names():
        node = workflow.get_node(name)
        if isinstance(node.interface, writers):
            node.overwrite = True


def _participant_states(output_dir: Path, participants, started: float) -> list[str]:
    """Print each participant's state; write a failure report for those that failed (their
    labels are returned). Done: the report was written by this run."""
    failed = []
    for participant in participants:
        label = participant.participant
        report = output_dir / f"sub-{label}.html"
        state = "done" if report.exists() and report.stat().st_mtime >= started - 1 else "FAILED"
        if state == "FAILED":
            failed.append(label)
            report = _failure_report(output_dir, label, started) or report
        print(f"sub-{label}: {state}; report: {report}")
    return failed


def run_group(args) -> int:
    """Gather per-subject metrics into one table and a group report."""
    from nipype_brainrecon.reports.group import write_group_outputs

    LOGGER.info("group level of %s", args.output_dir, extra={"file_only": True})
    out = write_group_outputs(args.output_dir, participants=args.participant_label)
    print(f"group table: {out['table']}; report: {out['report']}")
    LOGGER.info(
        "group table: %s; report: %s", out["table"], out["report"], extra={"file_only": True}
    )
    return EXIT_OK


def _prepare_datalad(args):
    """Install and get DataLad inputs (before anything reads them); whether to record."""
    from nipype_brainrecon import datalad

    derivatives = dict(args.derivatives or [])
    record = datalad.should_record(args.datalad, args.output_dir)
    if not (record or datalad.uses_datalad(args.bids_dir, *derivatives.values())):
        return None, record
    prepared = datalad.prepare_inputs(
        args.bids_dir,
        derivatives or None,
        args.participant_label,
        args.task,
        space=args.space,
        roi_dseg=args.roi_dseg,
        roi_labels=args.roi_labels,
        clone_dir=args.output_dir / "sourcedata",
        superdataset=args.output_dir if record else None,
        jobs=args.nprocs or 4,
    )
    print(datalad.format_summary(prepared.summary))
    args.bids_dir = prepared.bids_dir
    if args.derivatives:
        args.derivatives = list(prepared.derivatives.items())
    return prepared, record


@contextlib.contextmanager
def _participant_locks(args):
    """One lock per participant in OUTPUT_DIR: two runs never write one subject at once."""
    from nipype_brainrecon.bids import list_participants, normalize_participant_label

    labels = args.participant_label or list_participants(args.bids_dir)
    with contextlib.ExitStack() as stack:
        for label in sorted({normalize_participant_label(label) for label in labels}):
            stack.enter_context(output_lock(args.output_dir, f"sub-{label}"))
        yield


def _run_logs(args, prefixes=None):
    """The run's log files in OUTPUT_DIR/logs: ``group`` (created now) or one per participant
    (``sub-<label>``, created by the run once its checks passed)."""
    from nipype_brainrecon.bids import list_participants, normalize_participant_label
    from nipype_brainrecon.bids_app.logs import run_log

    if prefixes is not None:
        return run_log(args.output_dir / "logs", prefixes, args.verbose, start=True)
    labels = args.participant_label or list_participants(args.bids_dir)
    labels = sorted({normalize_participant_label(label) for label in labels})
    logs = args.output_dir / "logs"
    return run_log(logs, [f"sub-{label}" for label in labels], args.verbose, labels=labels)


def configure_logging(verbose: int) -> None:
    """Timestamped lines of every logger (ours, Nipype's) once each on stderr: warnings, ``-v``
    info, ``-vv`` debug, stage lines always (:mod:`nipype_brainrecon.bids_app.logs`)."""
    from nipype_brainrecon.bids_app.logs import configure_logging as configure

    configure(verbose)


def _dry_run(args) -> int:
    """``--dry-run``: check the inputs, print the plan with time and memory estimates per
    stage (:mod:`nipype_brainrecon.bids_app.plan`); nothing is written."""
    from nipype_brainrecon.bids import list_participants
    from nipype_brainrecon.bids_app.plan import estimate_run, format_plan, participant_sizes

    args.bids_dir = Path(args.bids_dir)
    if not (args.bids_dir / "dataset_description.json").is_file():
        raise MissingInputError(
            f"{args.bids_dir}: not a local BIDS dataset (--dry-run reads a folder; "
            "get a DataLad dataset first)"
        )
    if args.analysis_level == "group":
        print(f"plan: the group level gathers the participants' metrics in {args.output_dir} "
              "(seconds); nothing is written")  # fmt: skip
        return EXIT_OK
    derivatives = dict(args.derivatives or [])
    fmriprep = derivatives.get("fmriprep") or next(iter(derivatives.values()), None)
    labels = args.participant_label or list_participants(args.bids_dir)
    settings, checked = _settings(args), {}
    participants, errors = _collect_participants(args, labels, fmriprep, settings, checked)
    sizes = {p.participant: participant_sizes(p, checked[p.participant]) for p in participants}
    estimates = estimate_run(sizes, settings, threads=args.omp_nthreads)
    parallel = args.nprocs or os.cpu_count() or 1
    print(format_plan(estimates, sizes, settings, parallel=parallel, work_dir=args.work_dir))
    for label, exc in errors.items():  # as a run would say it: one error line each
        print(f"brainrecon: error: sub-{label}: {exc}", file=sys.stderr)
    return next(iter(errors.values())).exit_code if errors else EXIT_OK


def _run(parser, args, command: str, logs: list) -> int:
    """Check, prepare and run one analysis level; ``logs`` gets OUTPUT_DIR/logs once it is
    known not to lie inside the inputs (where an unexpected error may be saved)."""
    if args.analysis_level == "participant" and args.work_dir is None:
        args.work_dir = default_work_dir(args.output_dir)  # persistent: a stopped run resumes
        args.work_option = "the default work folder (give another with -w/--work-dir)"
    check_before_writing(args)
    if args.analysis_level == "participant" and args.betas is not None:
        from nipype_brainrecon.bids_app.preflight import check_betas_dataset

        if args.encoding:
            raise UsageError(
                "--encoding with --betas: the encoding maps need the fMRIPrep brain masks; "
                "run the encoding analysis on the BOLD route (without --betas)"
            )
        args.participant_label = check_betas_dataset(args.betas, args.participant_label)
    if getattr(args, "dry_run", False):
        return _dry_run(args)
    logs.append(args.output_dir / "logs")
    prepared = record = None
    if args.analysis_level == "participant":
        prepared, record = _prepare_datalad(args)
    args.bids_dir = Path(args.bids_dir)
    _check_paths(args.bids_dir, args.output_dir)
    if args.analysis_level == "group":
        with output_lock(args.output_dir, "group"), _run_logs(args, ["group"]):
            return run_group(args)
    if not args.skip_bids_validation:
        if prepared is not None and not prepared.complete:
            LOGGER.warning(
                "%s: content of some files is not present (DataLad); BIDS validation skipped",
                args.bids_dir,
            )
        else:
            validate_bids(args.bids_dir)
    check_model_revision(args.model)  # the dataset first: its errors are the more basic ones
    if record:
        from nipype_brainrecon.bids_app.datalad_run import run_recorded

        return run_recorded(parser, args, inputs=prepared, settings=_settings(args))
    with _participant_locks(args), work_folder(args.work_dir), _run_logs(args):
        recover_swaps(args.output_dir)  # a previous run killed while replacing outputs
        return run_participant(args, command)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``brainrecon``; returns the BIDS Apps exit code.

    Every error ends as one ``brainrecon: error:`` line on stderr: a :class:`BrainreconError`
    with its exit code, anything unforeseen with exit code 1 and its traceback saved to a crash
    file (in OUTPUT_DIR/logs when that exists, else a temporary file).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    command, logs = None, []
    try:
        configure_logging(args.verbose)
        command = shlex.join(["brainrecon", *(sys.argv[1:] if argv is None else argv)])
        with stop_on_signals():
            return _run(parser, args, command, logs)
    except BrainreconError as exc:
        print(f"brainrecon: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # SIGINT or SIGTERM (bids_app.signals): 130 or 143
        remove_stop_crash_files(logs[0] if logs else None)
        line, code = resume_message(exc, getattr(args, "work_dir", None))
        print(line, file=sys.stderr)
        return code
    except Exception as exc:  # the last guard: no traceback reaches the user
        crash = save_crash_file(exc, logs[0] if logs else None, command)
        where = f"details in {crash}" if crash else "no crash file could be written"
        print(
            f"brainrecon: error: unexpected {type(exc).__name__}: {one_line(exc)}; {where}",
            file=sys.stderr,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["EXIT_INVALID_BIDS", "build_parser", "main", "validate_bids"]
