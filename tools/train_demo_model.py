#!/usr/bin/env python
"""Train the demo latent diffusion model shipped in nipype_brainrecon/data/demo_model.

Usage: python tools/train_demo_model.py OUT_DIR [--seed 0] [--minutes 30] [--threads N]

The defaults reproduce the shipped model (same seed and thread count on the same kind of CPU give
bit-identical weights). See docs/demo_model.md.
"""

from __future__ import annotations

import argparse
import sys

from nipype_brainrecon.errors import BrainreconError
from nipype_brainrecon.synthetic.training import DemoTrainingConfig, train_demo_model


def main(argv: list[str] | None = None) -> int:
    defaults = DemoTrainingConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="model folder to create (diffusers layout)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="training seed")
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="wall-clock cap; phases stop early when reached (then not bit-reproducible)",
    )
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch threads")
    parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps)
    parser.add_argument("--unet-steps", type=int, default=defaults.unet_steps)
    parser.add_argument("--n-scenes", type=int, default=defaults.n_scenes)
    parser.add_argument("--resolution", type=int, default=defaults.resolution)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    args = parser.parse_args(argv)
    try:
        config = DemoTrainingConfig(
            seed=args.seed,
            max_minutes=args.minutes,
            threads=args.threads,
            vae_steps=args.vae_steps,
            unet_steps=args.unet_steps,
            resolution=args.resolution,
            n_scenes=args.n_scenes,
        )
        train_demo_model(args.out_dir, config, overwrite=args.overwrite, log=print)
    except BrainreconError as exc:
        print(f"train_demo_model: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
