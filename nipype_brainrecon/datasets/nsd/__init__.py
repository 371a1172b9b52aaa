"""The Natural Scenes Dataset (NSD; Allen et al. 2022) as a derivatives dataset of single-trial
betas that the BIDS App reads with ``--betas``.

:func:`nsd_to_bids` converts one subject, session by session; ``brainrecon-nsd`` is its command
line (:func:`main`). See docs/nsd.md.

Modules: :mod:`.layout` (the release's paths), :mod:`.trials` (design + behaviour -> trials),
:mod:`.betas` (int16 x 300 -> float32 percent signal change, streamed), :mod:`.stimuli`
(``imgBrick`` -> PNG), :mod:`.captions` (COCO 2017 captions), :mod:`.atlases` (atlases -> dseg),
:mod:`.writer` (the dataset), :mod:`.cli`.
"""

from __future__ import annotations

from .cli import main
from .layout import ATLASES, BETA_SCALE, NsdLayout
from .trials import stim_file
from .writer import BETAS_DESC, nsd_to_bids, parse_sessions

__all__ = [
    "ATLASES",
    "BETAS_DESC",
    "BETA_SCALE",
    "NsdLayout",
    "main",
    "nsd_to_bids",
    "parse_sessions",
    "stim_file",
]
