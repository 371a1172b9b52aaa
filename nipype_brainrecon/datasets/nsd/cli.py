"""Command line ``brainrecon-nsd NSD_ROOT OUT --subject 1 [--sessions 1-37] [--space func1pt8mm]
[--coco DIR] [--zscore-sessions]``."""

from __future__ import annotations

import argparse
import logging
import sys

from ...errors import EXIT_OK, BrainreconError
from .layout import SPACES
from .writer import nsd_to_bids


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``brainrecon-nsd``."""
    parser = argparse.ArgumentParser(
        prog="brainrecon-nsd",
        description="Convert one subject of the Natural Scenes Dataset (NSD) into a BIDS "
        "derivatives dataset of single-trial betas, stimuli, captions and atlases.",
    )
    parser.add_argument("nsd_root", help="local copy of the NSD release (holds nsddata/ ...)")
    parser.add_argument("out", help="new folder for the derivatives dataset")
    parser.add_argument("--subject", type=int, default=1, help="NSD subject, 1-8 (default 1)")
    parser.add_argument("--sessions", help="sessions, e.g. 1-37 or 1,3,5-7 (default: all)")
    parser.add_argument("--space", choices=SPACES, default="func1pt8mm", help="preparation")
    parser.add_argument(
        "--coco",
        help="folder of COCO's captions_train2017.json / captions_val2017.json "
        "(default NSD_ROOT/nsddata_stimuli/stimuli/nsd/annotations)",
    )
    parser.add_argument(
        "--zscore-sessions",
        action="store_true",
        help="z-score each voxel within its session instead of percent signal change",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the conversion; print one line and return a BIDS Apps exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = nsd_to_bids(
            args.nsd_root,
            args.out,
            subject=args.subject,
            sessions=args.sessions,
            space=args.space,
            coco_annotations=args.coco,
            zscore_sessions=args.zscore_sessions,
            overwrite=args.overwrite,
        )
    except BrainreconError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {out}")
    return EXIT_OK
