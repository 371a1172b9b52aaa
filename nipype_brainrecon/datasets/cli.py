"""Command line of ``python -m nipype_brainrecon.datasets``."""

from __future__ import annotations

from .haxby import haxby_to_bids


def main(argv: list[str] | None = None) -> int:
    """``python -m nipype_brainrecon.datasets haxby SOURCE OUT``: convert a real fixture."""
    import argparse
    import sys

    from ..errors import BrainreconError

    parser = argparse.ArgumentParser(
        prog="python -m nipype_brainrecon.datasets",
        description="Convert a real fixture into BIDS raw + fMRIPrep-like derivatives.",
    )
    parser.add_argument("dataset", choices=["haxby"], help="which fixture")
    parser.add_argument(
        "source", help="folder of the fixture (e.g. ../shared/data/haxby2001-pymvpa)"
    )
    parser.add_argument("out", help="new folder for the BIDS dataset")
    parser.add_argument("--flavor", choices=["25mm", "1slice"], default="25mm", help="which BOLD")
    args = parser.parse_args(argv)
    try:
        out = haxby_to_bids(args.source, args.out, flavor=args.flavor)
    except BrainreconError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {out}")
    return 0
