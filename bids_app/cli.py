"""``brainrecon``: the BIDS App command line (BIDS Apps spec, fMRIPrep's vocabulary)."""

from __future__ import annotations

import contextlib
import logging
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from nipype_brainrecon.bids_app.checks import (
    check_before_writing,
    one_line,
    plugin_settings,
    save_crash_file,
    validate_bids,
)
from nipype_brainrecon.bids_app.parser import EPILOG, build_parser  # noqa: F401 (API)
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
from nipype_brainrecon.io import output_lock

LOGGER = logging.getLogger(__name__)


def _model_path(model: str) -> str:
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


def _collect_participants(args, labels, fmriprep, settings):
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
            check_participant(participant, settings, mem_gb=args.mem)
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


def _failure_report(output_dir: Path, label: str, started: float) -> None:
    """A report of a failed participant that links the crash files of this run."""
    from nipype_brainrecon.reports import write_participant_report

    logs = output_dir / "logs"
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
            errors.append({"message": f"{node.strip()} failed", "crash_file": str(crash)})
    if not errors:
        errors = [f"the workflow of sub-{label} did not finish; see the log"]
    try:
        write_participant_report(
            {"subject": label, "errors": errors},
            output_dir / f"sub-{label}.html",
            figures_dir=logs / f"sub-{label}_figures",
        )
    except Exception as exc:  # the run already failed; a report must not hide why
        LOGGER.warning("sub-%s: failure report not written (%s)", label, exc)


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
    participants, input_errors = _collect_participants(args, labels, fmriprep, settings)
    if not participants:
        raise MissingInputError(f"{args.bids_dir}: no participant to process")
    init_output_dataset(
        args.output_dir,
        bids_dir=args.bids_dir,
        derivatives={
            "betas" if args.betas is not None else "fmriprep": participants[0].derivatives,
            **derivatives,
        },
        settings=settings,
    )
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="brainrecon-work-"))
    work_dir = work_dir.absolute()
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
                )
            ]
        )
    plugin = plugin_settings(args)
    node_args = plugin.pop("node_args", {})
    set_node_sbatch_args(root, plugin["plugin"], **node_args)
    started = time.time()
    failed = []
    try:
        root.run(**plugin)
    except RuntimeError as exc:
        failed.append(str(exc))
    if not failed and str(plugin["plugin"]).endswith("Graph"):
        # SLURMGraph/SGEGraph/PBSGraph return once every job is submitted with its dependencies.
        print(
            f"participant level submitted to {plugin['plugin']}; outputs appear in "
            f"{args.output_dir} when the jobs end; keep the work directory {work_dir}"
        )
        return EXIT_OK
    for participant in participants:
        label = participant.participant
        report = args.output_dir / f"sub-{label}.html"
        state = "done" if report.exists() and report.stat().st_mtime >= started - 1 else "FAILED"
        if state == "FAILED":
            failed.append(label)
            _failure_report(args.output_dir, label, started)
        print(f"sub-{label}: {state}; report: {report}")
    print(f"participant level finished in {time.time() - started:.0f} s")
    for label, exc in input_errors.items():
        print(f"sub-{label}: NOT RUN ({exc})")
    if failed or input_errors:
        crashes = f"; crash files in {args.output_dir / 'logs'}" if failed else ""
        n_failed = sum(p.participant in failed for p in participants) + len(input_errors)
        print(
            f"error: {max(n_failed, 1)} participant(s) failed{crashes}",
            file=sys.stderr,
        )
        return EXIT_FAILURE if failed else next(iter(input_errors.values())).exit_code
    if not args.work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    return EXIT_OK


def run_group(args) -> int:
    """Gather per-subject metrics into one table and a group report."""
    from nipype_brainrecon.reports.group import write_group_outputs

    out = write_group_outputs(args.output_dir, participants=args.participant_label)
    print(f"group table: {out['table']}; report: {out['report']}")
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


def configure_logging(verbose: int) -> None:
    """Messages of the ``nipype_brainrecon`` logger tree on stderr: warnings, ``-v`` info,
    ``-vv`` debug."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    logging.getLogger(__name__).setLevel(level)


def _run(parser, args, command: str, logs: list) -> int:
    """Check, prepare and run one analysis level; ``logs`` gets OUTPUT_DIR/logs once it is
    known not to lie inside the inputs (where an unexpected error may be saved)."""
    check_before_writing(args)
    if args.analysis_level == "participant" and args.betas is not None:
        from nipype_brainrecon.bids_app.preflight import check_betas_dataset

        if args.encoding:
            raise UsageError(
                "--encoding with --betas: the encoding maps need the fMRIPrep brain masks; "
                "run the encoding analysis on the BOLD route (without --betas)"
            )
        args.participant_label = check_betas_dataset(args.betas, args.participant_label)
    logs.append(args.output_dir / "logs")
    prepared = record = None
    if args.analysis_level == "participant":
        prepared, record = _prepare_datalad(args)
    args.bids_dir = Path(args.bids_dir)
    _check_paths(args.bids_dir, args.output_dir)
    if args.analysis_level == "group":
        with output_lock(args.output_dir, "group"):
            return run_group(args)
    if not args.skip_bids_validation:
        if prepared is not None and not prepared.complete:
            LOGGER.warning(
                "%s: content of some files is not present (DataLad); BIDS validation skipped",
                args.bids_dir,
            )
        else:
            validate_bids(args.bids_dir)
    if record:
        from nipype_brainrecon.bids_app.datalad_run import run_recorded

        return run_recorded(parser, args, inputs=prepared, settings=_settings(args))
    with _participant_locks(args):
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
        return _run(parser, args, command, logs)
    except BrainreconError as exc:
        print(f"brainrecon: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("brainrecon: interrupted", file=sys.stderr)
        return EXIT_FAILURE
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
