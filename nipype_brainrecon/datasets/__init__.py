"""Real fMRI fixtures turned into the inputs the project reads.

* :func:`haxby_to_bids` lays out PyMVPA's copy of Haxby et al. (2001), subject 1, as a raw BIDS
  dataset plus an fMRIPrep-like derivatives dataset, the layout
  :func:`nipype_brainrecon.bids.collect_participant` reads.
* :func:`load_miyawaki` reads the V1 "figure image" session of Miyawaki et al. (2008).
* :func:`nsd_to_bids` converts one subject of the Natural Scenes Dataset (NSD) into a derivatives
  dataset of single-trial betas (``brainrecon-nsd``; package :mod:`.nsd`, docs/nsd.md).

No Nipype here: plain functions on paths and arrays. ``python -m nipype_brainrecon.datasets haxby
SOURCE OUT`` runs the conversion.

Modules: :mod:`.haxby` (:func:`haxby_to_bids` and the files it writes), :mod:`.haxby_sources`
(PyMVPA's runs, masks and TR, checked), :mod:`.haxby_confounds` (fMRIPrep-named confounds),
:mod:`.miyawaki` (:func:`load_miyawaki`), :mod:`.common` (BIDS writing helpers), :mod:`.cli`
(the command line).
"""

from __future__ import annotations

from .cli import main
from .haxby import HAXBY_TASK, haxby_to_bids
from .haxby_confounds import HAXBY_MOTION_ORDER
from .miyawaki import load_miyawaki
from .nsd import nsd_to_bids

__all__ = [
    "HAXBY_TASK",
    "HAXBY_MOTION_ORDER",
    "haxby_to_bids",
    "load_miyawaki",
    "main",
    "nsd_to_bids",
]
