"""The ``brainrecon-simulate`` command: options, error reporting and exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..._version import __version__
from ...errors import BrainreconError, MissingInputError, UsageError
from .config import DEFAULT_N_TEST, DEFAULT_N_TRAIN, DEFAULT_REALISM, NULL_MODES
from .dataset import simulate_dataset
from .presets import PRESETS, preset_options

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}; see brainrecon-simulate --help")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="brainrecon-simulate",
        description="Write a simulated BIDS dataset (raw + fMRIPrep-like derivatives + ground "
        "truth) for trying and testing nipype-brainrecon.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  brainrecon-simulate sim\n"
        "  brainrecon-simulate sim --subjects 1 --runs 2 --snr 1.0 --seed 3\n"
        "  brainrecon-simulate sim --snr inf                  # noiseless\n"
        "  brainrecon-simulate sim --stimuli my_images/       # images + captions.tsv\n"
        "  brainrecon-simulate sim --hrf-mismatch 1 --physio-fraction 0.2 --noise-fwhm 1.5\n"
        "  brainrecon-simulate sim --null permuted            # labels carry no information\n"
        "  brainrecon-simulate sim --preset harder            # all realism options on\n\n"
        "exit codes: 0 ok, 64 bad option, 65 bad stimuli table, 66 missing stimuli, "
        "73 cannot create the output",
    )
    parser.add_argument("out", metavar="OUT", help="new output folder (absent or empty)")
    parser.add_argument(
        "--subjects", metavar="N", type=_positive_int, default=2, help="subjects (default 2)"
    )
    parser.add_argument(
        "--runs", metavar="N", type=_positive_int, default=3, help="runs per subject (default 3)"
    )
    parser.add_argument("--seed", metavar="S", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--snr",
        metavar="X",
        type=float,
        default=1.0,
        help="std of stimulus signal / std of noise per voxel and run; inf = noiseless (default 1)",
    )
    _add_design_options(parser)
    _add_stimulus_options(parser)
    parser.add_argument(
        "--trial-variability",
        metavar="X",
        type=float,
        default=0.1,
        help="trial-to-trial amplitude variability, relative (default 0.1)",
    )
    _add_realism_options(parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    return parser


def _add_design_options(parser: argparse.ArgumentParser) -> None:
    """--train, --test, --repeats, --tr."""
    parser.add_argument(
        "--train",
        metavar="N",
        type=_positive_int,
        default=None,
        help=f"training images, shown once (default {DEFAULT_N_TRAIN}; with --stimuli: the rest)",
    )
    parser.add_argument(
        "--test",
        metavar="N",
        type=_positive_int,
        default=DEFAULT_N_TEST,
        help="test images (default 20)",
    )
    parser.add_argument(
        "--repeats",
        metavar="N",
        type=_positive_int,
        default=3,
        help="presentations per test image (default 3)",
    )
    parser.add_argument(
        "--tr", metavar="SECONDS", type=float, default=2.0, help="repetition time in s (default 2)"
    )


def _add_stimulus_options(parser: argparse.ArgumentParser) -> None:
    """--stimuli, --image-size, --captions."""
    parser.add_argument(
        "--stimuli",
        metavar="DIR",
        default=None,
        help="use these images (folder with captions.tsv: stim_file, caption) instead of "
        "generated scenes",
    )
    parser.add_argument(
        "--image-size",
        metavar="PX",
        type=_positive_int,
        default=128,
        help="side of generated images, and of user images for the simulated responses, px (default 128)",
    )
    parser.add_argument(
        "--captions",
        metavar="N",
        type=_positive_int,
        default=5,
        help="captions per generated image (default 5)",
    )


def _unique_fraction(text: str) -> tuple[str, tuple[float, float]]:
    roi, _, pair = text.partition(":")
    try:
        uz, uc = (float(v) for v in pair.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give ROI:UZ,UC, e.g. early:0.5,0.1") from None
    return roi, (uz, uc)


def _add_realism_options(parser: argparse.ArgumentParser) -> None:
    """Realism the analysis does not assume (docs/simulation.md)."""
    group = parser.add_argument_group(
        "realism the analysis does not assume (docs/simulation.md; --preset oracle: all off)"
    )
    add = group.add_argument
    d = DEFAULT_REALISM
    add(
        "--preset",
        choices=tuple(PRESETS),
        default="default",
        help="set the options below together: oracle = all 0 (the GLM's HRF, nuisance inside "
        "the confounds' span, white noise, every voxel responding at one SNR: the earlier "
        "defaults); harder = the defaults; options given explicitly win (default: default)",
    )
    add(
        "--hrf-mismatch",
        metavar="S",
        type=float,
        default=d["hrf_mismatch"],
        help="SD in s of HRF delay/undershoot around Glover's, by ROI and voxel "
        f"(default {d['hrf_mismatch']:g})",
    )
    add(
        "--physio-fraction",
        metavar="X",
        type=float,
        default=d["physio_fraction"],
        help="share of noise variance from respiration, cardiac and 1/f noise outside the "
        f"confounds' span (default {d['physio_fraction']:g})",
    )
    add(
        "--noise-fwhm",
        metavar="VOXELS",
        type=float,
        default=d["noise_fwhm"],
        help=f"FWHM of the spatial smoothing of the noise, voxels (default {d['noise_fwhm']:g})",
    )
    add(
        "--nonresponsive-fraction",
        metavar="X",
        type=float,
        default=d["nonresponsive_fraction"],
        help="share of each ROI's voxels with no stimulus response "
        f"(default {d['nonresponsive_fraction']:g})",
    )
    add(
        "--snr-spread",
        metavar="X",
        type=float,
        default=d["snr_spread"],
        help=f"SD of log of per-voxel SNR multipliers (default {d['snr_spread']:g})",
    )
    add(
        "--unique-fractions",
        metavar="ROI:UZ,UC",
        nargs="+",
        type=_unique_fraction,
        default=[],
        help="mixed tuning: every voxel of ROI (early, ventral) has unique z / unique c "
        "fractions UZ, UC of its stimulus variance, the rest shared (default: off)",
    )
    add(
        "--null",
        choices=NULL_MODES,
        default="none",
        help="null data: snr0 = no stimulus signal, permuted = stimulus labels permuted "
        "(default none)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``brainrecon-simulate``; returns the exit code."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.preset != "default":  # the preset's values become defaults: explicit ones win
            parser.set_defaults(**preset_options(args.preset))
            args = parser.parse_args(argv)
        stimuli_dir = args.stimuli
        if stimuli_dir is not None and not Path(stimuli_dir).is_dir():
            raise MissingInputError(
                f"--stimuli {stimuli_dir}: folder not found; give an existing one"
            )
        out = simulate_dataset(
            args.out,
            n_subjects=args.subjects,
            n_runs=args.runs,
            seed=args.seed,
            snr=args.snr,
            n_train=args.train,
            n_test=args.test,
            n_repeats=args.repeats,
            tr=args.tr,
            stimuli_dir=stimuli_dir,
            image_size=args.image_size,
            n_captions=args.captions,
            trial_variability=args.trial_variability,
            hrf_mismatch=args.hrf_mismatch,
            physio_fraction=args.physio_fraction,
            noise_fwhm=args.noise_fwhm,
            nonresponsive_fraction=args.nonresponsive_fraction,
            snr_spread=args.snr_spread,
            null=args.null,
            unique_fractions=dict(args.unique_fractions),
        )
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    except BrainreconError as exc:
        print(f"brainrecon-simulate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if not args.quiet:
        print(f"brainrecon-simulate: wrote {out}")
    return 0
