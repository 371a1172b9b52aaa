"""The argument parser of ``brainrecon`` (BIDS Apps spec, fMRIPrep's vocabulary); defaults from
:data:`nipype_brainrecon.config.DEFAULTS`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nipype_brainrecon import __version__
from nipype_brainrecon.bids.events import STIM_COLUMN
from nipype_brainrecon.config import DEFAULTS
from nipype_brainrecon.errors import (
    EXIT_USAGE,
)

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

    def parse_known_args(self, args=None, namespace=None):
        namespace, rest = super().parse_known_args(args, namespace)
        if getattr(namespace, "paper", False):
            for option, value in PAPER_PRESET.items():
                given = getattr(namespace, option)
                if given != value and given != self.get_default(option):
                    flag = "--" + option.replace("_", "-")  # only alphas, cv_groups can clash
                    self.error(f"--paper sets {flag} {value}; drop {flag} {given}")
                setattr(namespace, option, value)
        return namespace, rest


#: What ``--paper`` sets: the authors' ridge (himalaya's RidgeCV with its defaults: no
#: intercept, KFold(5) without shuffling, their 7 alphas); see docs/method_differences.md.
PAPER_PRESET = {"alphas": "paper", "fit_intercept": False, "cv_groups": "none"}


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
        "--no-intercept",
        dest="fit_intercept",
        action="store_false",
        default=D.decoding.fit_intercept,
        help="ridge without intercept on standardised voxels, as the authors' (himalaya's default)",
    )
    g.add_argument(
        "--paper",
        action="store_true",
        help="the authors' ridge exactly: --alphas paper --no-intercept --cv-groups none "
        "(K contiguous folds; see docs/method_differences.md)",
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
    g.add_argument(
        "--encoding-banded",
        action="store_true",
        help="fit the joint z+c encoding model by banded ridge, one penalty per feature space, "
        "so unique variance is not biased by a shared penalty (docs/encoding.md)",
    )
    g = parser.add_argument_group("reconstruction")
    g.add_argument(
        "--model",
        default=D.reconstruction.model,
        help="diffusers folder, or hub id pinned as ID@REVISION (a branch, tag or commit; "
        "default main), resolved in the local Hugging Face cache and recorded as ID@<commit> "
        "(docs/models.md); 'demo' = the small model shipped with the package",
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
    g.add_argument(
        "-w",
        "--work-dir",
        type=Path,
        help="Nipype working directory, kept after the run: rerunning the same command with "
        "the same -w resumes a stopped run (default: ./work, or OUTPUT_DIR_work when ./work "
        "would lie inside OUTPUT_DIR)",
    )
    g.add_argument("--nprocs", "--nthreads", type=_positive_int, help="processes (MultiProc)")
    g.add_argument("--omp-nthreads", type=_positive_int, default=1, help="threads per process")
    g.add_argument("--mem", "--mem-gb", type=float, help="memory budget in GB")
    g.add_argument("--use-plugin", type=Path, help="Nipype plugin YAML (plugin, plugin_args)")
    g.add_argument("--feature-cache", type=Path, help="stimulus feature cache folder")
    g.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more output on the terminal: -v information, -vv debugging (the log file "
        "OUTPUT_DIR/logs/sub-<label>_<date>.log always has the information)",
    )
    g.add_argument(
        "--dry-run",
        "--estimate",
        action="store_true",
        help="print the plan (participants, stages, data sizes) with time and memory estimates "
        "per stage for this dataset and machine; write nothing",
    )
    g.add_argument(
        "--notrack",
        action="store_true",
        help="accepted and ignored: brainrecon sends no usage data (for fMRIPrep wrappers)",
    )
    return parser
