"""``python -m nipype_brainrecon.synthetic.simulate``: the ``brainrecon-simulate`` command."""

import sys

from .cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
