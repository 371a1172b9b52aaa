"""``python -m nipype_brainrecon.datasets.nsd NSD_ROOT OUT ...``: see :func:`.cli.main`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
