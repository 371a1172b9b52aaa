"""``brainrecon``: the BIDS App command line (BIDS Apps spec, fMRIPrep's vocabulary)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from nipype_brainrecon import __version__
from nipype_brainrecon.bids.events import STIM_COLUMN
from nipype_brainrecon.bids_app.checks import (
    check_before_writing,
    one_line,
    plugin_settings,
    save_crash_file,
    validate_bids,
)
from nipype_brainrecon.config import DEFAULTS
from nipype_brainrecon.errors import (
    EXIT_FAILURE,
    EXIT_INVALID_BIDS,
    EXIT_OK,
    EXIT_USAGE,
    BrainreconError,
    InvalidDatasetError,
    MissingInputError,
    OutputError,
    UsageError,
)
from nipype_brainrecon.io import output_lock

LOGGER = logging.getLogger(__name__)

EPILOG = """\
examples:
  brainrecon /data/bids /data/derivatives/brainrecon participant --participant-label 01 \\
      --model CompVis/stable-diffusion-v1-4 --device cuda
  brainrecon /data/bids /data/derivatives/brainrecon group
  brainrecon /tmp/sim /tmp/out participant --model demo        # the shipped demo model

exit codes (BIDS Apps): 0 success, 1 failure, 16 invalid BIDS input, 64 usage error,
65 data error, 66 missing input, 73 cannot create output.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with the BIDS Apps usage exit code (64) instead of 2."""

    def error(self, message):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be a positive integer")
    return value


def _strength(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: strength must be in (0, 1]")
    return value


def _derivative(text: str) -> tuple[str, str]:
    if "=" in text:
        name, path = text.split("=", 1)
    else:
        name, path = Path(text).name or "fmriprep", text
    if not name or not path:
        raise argparse.ArgumentTypeError(f"{text}: give NAME=PATH")
    return name, path


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to document the CLI); defaults from the settings object."""
    D = DEFAULTS
    parser = _Parser(
        prog="brainrecon",
        description=(
            "Reconstruct seen images from fMRI (Takagi & Nishimoto, CVPR 2023) on fMRIPrep "
            "outputs: single-trial betas, ridge decoders of the diffusion latent z (early "
            "visual cortex) and caption embedding c (ventral cortex), latent-diffusion "
            "reconstruction and evaluation, written as a BIDS derivatives dataset."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "bids_dir", help="the raw BIDS dataset (read only): a folder, a DataLad dataset or its URL"
    )
    parser.add_argument("output_dir", type=Path, help="the derivatives dataset to write")
    parser.add_argument(
        "analysis_level", choices=["participant", "group"], help="processing stage to run"
    )
    parser.add_argument("--version", action="version", version=f"brainrecon {__version__}")
    g = parser.add_argument_group("selecting data")
    g.add_argument(
        "--participant-label",
        "--participant_label",
        nargs="+",
        metavar="LABEL",
        help="participants to process (with or without 'sub-'); default all",
    )
    g.add_argument("--task", help="task label (default: every task with stimulus events)")
    g.add_argument(
        "--derivatives",
        nargs="+",
        type=_derivative,
        metavar="NAME=PATH",
        help="fMRIPrep outputs (default: BIDS_DIR/derivatives/fmriprep)",
    )
    g.add_argument("--space", default="T1w", help="space of the preproc BOLD (default T1w)")
    g.add_argument(
        "--betas",
        type=Path,
        metavar="DIR",
        help="precomputed single-trial betas: a derivatives dataset of "
        "sub-<label>/func/*_betas.nii.gz + *_trials.tsv (no GLM; BIDS_DIR gives only the "
        "stimuli; see docs/betas.md)",
    )
    g.add_argument("--skip-bids-validation", action="store_true", help="do not run the validator")
    g.add_argument("--session-label", help="only runs of this session (with or without 'ses-')")
    g.add_argument(
        "--bids-filter-file",
        type=Path,
        metavar="FILE",
        help="fMRIPrep's JSON filter file; its 'bold' entities select the runs",
    )
    g = parser.add_argument_group("events: which rows are trials, which image each shows")
    g.add_argument(
        "--stim-column",
        default=STIM_COLUMN,
        metavar="NAME",
        help=f"events column naming each stimulus (default {STIM_COLUMN})",
    )
    g.add_argument(
        "--stim-map",
        type=Path,
        metavar="FILE",
        help="TSV with columns value, stim_file mapping the column's values to files in stimuli/",
    )
    g.add_argument(
        "--stim-template",
        metavar="FORMAT",
        help="file name of each value under stimuli/, e.g. 'img_{value:04d}.png'",
    )
    g.add_argument(
        "--trial-filter",
        metavar="EXPR",
        help="pandas query choosing the trial rows, e.g. \"trial_type == 'image'\"; other rows "
        "are nuisance events",
    )
    g = parser.add_argument_group("regions of interest")
    g.add_argument("--roi-dseg", type=Path, help="ROI segmentation (default: the fMRIPrep one)")
    g.add_argument("--roi-labels", type=Path, help="its label table (dseg.tsv)")
    g.add_argument("--z-roi", nargs="+", default=[D.decoding.z_roi], help="region(s) decoding z")
    g.add_argument("--c-roi", nargs="+", default=[D.decoding.c_roi], help="region(s) decoding c")
    g = parser.add_argument_group("decoding")
    g.add_argument("--betas-method", choices=["lss", "lsa"], default=D.glm.betas_method, help="GLM")
    g.add_argument(
        "--noise-model", choices=["ols", "ar1"], default=D.glm.noise_model, help="GLM noise"
    )
    g.add_argument(
        "--test-set", default=D.decoding.test_set, help="'repeats', 'column:<name>' or a list file"
    )
    g.add_argument(
        "--alphas", choices=["default", "paper"], default=D.decoding.alphas, help="ridge grid"
    )
    g.add_argument(
        "--cv-groups",
        choices=["run", "session", "none"],
        default=D.decoding.cv_groups,
        help="folds of the ridge alpha choice hold out whole runs or sessions; 'none': "
        f"{D.decoding.n_folds} contiguous folds (default: %(default)s)",
    )
    g.add_argument(
        "--resolution",
        type=_positive_int,
        help=f"image size for z (default {D.decoding.resolution})",
    )
    g = parser.add_argument_group("encoding analysis")
    g.add_argument(
        "--encoding",
        action="store_true",
        help="also fit voxel-wise encoding models (z, c, z_c, U-Net features) and write maps",
    )
    g.add_argument(
        "--encoding-blocks",
        nargs="*",
        default=list(D.encoding.blocks),
        metavar="BLOCK",
        help="U-Net blocks hooked for encoding features: down<i>, mid, up<i> (none: no U-Net)",
    )
    g.add_argument(
        "--encoding-steps",
        nargs="+",
        choices=["early", "middle", "late"],
        default=list(D.encoding.steps),
        help="denoising steps at which U-Net features are captured",
    )
    g = parser.add_argument_group("reconstruction")
    g.add_argument(
        "--model",
        default=D.reconstruction.model,
        help="diffusers folder or hub id; 'demo' = the small model shipped with the package",
    )
    g.add_argument(
        "--mode", choices=["z+c", "z", "c"], default=D.reconstruction.mode, help="conditioning"
    )
    g.add_argument(
        "--samples",
        type=_positive_int,
        default=D.reconstruction.n_samples,
        help="samples per image",
    )
    g.add_argument(
        "--steps",
        type=_positive_int,
        default=D.reconstruction.num_inference_steps,
        help="DDIM steps",
    )
    g.add_argument(
        "--strength", type=_strength, default=D.reconstruction.strength, help="img2img strength"
    )
    g.add_argument(
        "--guidance", type=float, default=D.reconstruction.guidance_scale, help="guidance scale"
    )
    g.add_argument(
        "--random-seed", type=int, default=D.seed, help="seed of everything random (0 to 2**32-1)"
    )
    g.add_argument("--device", help="torch device: cpu, cuda, cuda:1 (default: auto)")
    g.add_argument(
        "--reconstruction-jobs",
        type=_positive_int,
        default=D.reconstruction.n_chunks,
        metavar="N",
        help="split the test images into N reconstruction jobs that MultiProc or a cluster "
        "runs in parallel (same outputs as one job)",
    )
    g = parser.add_argument_group("DataLad")
    g.add_argument(
        "--datalad",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="save each participant's outputs in OUTPUT_DIR as a DataLad dataset with a "
        "`datalad run` record (default: when OUTPUT_DIR already is a dataset)",
    )
    g = parser.add_argument_group("performance")
    g.add_argument("-w", "--work-dir", type=Path, help="Nipype working directory")
    g.add_argument("--nprocs", "--nthreads", type=_positive_int, help="processes (MultiProc)")
    g.add_argument("--omp-nthreads", type=_positive_int, default=1, help="threads per process")
    g.add_argument("--mem", "--mem-gb", type=float, help="memory budget in GB")
    g.add_argument("--use-plugin", type=Path, help="Nipype plugin YAML (plugin, plugin_args)")
    g.add_argument("--feature-cache", type=Path, help="stimulus feature cache folder")
    g.add_argument("-v", "--verbose", action="count", default=0, help="more output (-vv)")
    g.add_argument(
        "--notrack",
        action="store_true",
        help="accepted and ignored: brainrecon sends no usage data (for fMRIPrep wrappers)",
    )
    return parser


def _model_path(model: str) -> str:
    if model == "demo":
        from nipype_brainrecon.diffusion.models import demo_model_path

        return str(demo_model_path())
    path = Path(model)
    return str(path.absolute()) if path.exists() else model


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


def _plugin_settings(args) -> dict:
    """:func:`~nipype_brainrecon.bids_app.checks.plugin_settings` (old name, still imported by
    tests/integration/test_slurm.py)."""
    return plugin_settings(args)


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
    plugin = _plugin_settings(args)
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
