"""Reading a participant's inputs: raw BIDS (events, stimuli, captions) and fMRIPrep derivatives.

The layout read here (see the project docs) is::

    BIDS_DIR/dataset_description.json
    BIDS_DIR/stimuli/<images>, stimuli/captions.tsv     (columns stim_file, caption; long format)
    BIDS_DIR/sub-<label>/[ses-<s>/]func/*_bold.nii.gz, *_events.tsv (onset, duration, stim_file)
    DERIVATIVES/sub-<label>/[ses-<s>/]func/*_space-<space>_desc-preproc_bold.nii.gz
                                          *_space-<space>_desc-brain_mask.nii.gz
                                          *_desc-confounds_timeseries.tsv
    DERIVATIVES/sub-<label>/[ses-<s>/]anat/*_space-<space>_desc-<roi_desc>_dseg.nii.gz
    DERIVATIVES/desc-<roi_desc>_dseg.tsv                  (columns index, name)

Every failure raises one of :mod:`nipype_brainrecon.errors` with a one-line message naming the file
at fault. Nothing is written into the input datasets.

Modules: :mod:`.participant` (:func:`collect_participant`), :mod:`.inputs` (the
:class:`RunInputs` and :class:`ParticipantInputs` it returns), :mod:`.runs` (one run's files,
repetition time and headers), :mod:`.layout` (labels, dataset checks, the pybids index, entities),
:mod:`.tables` (events and captions tables), :mod:`.stimuli` (``stim_file`` paths), :mod:`.dseg`
(the ROI segmentation and its labels), :mod:`.events` (:class:`EventsSpec`: the stimulus column,
its mapping to images, which rows are trials), :mod:`.filters` (fMRIPrep's BIDS filter file),
:mod:`.tsv` (reading a BIDS table).
"""

from __future__ import annotations

from .dseg import read_roi_labels
from .events import STIM_COLUMN, EventsSpec, map_events
from .filters import read_bids_filters
from .inputs import ParticipantInputs, RunInputs
from .layout import list_participants, normalize_participant_label
from .participant import SessionNotFoundError, collect_participant
from .runs import check_images
from .stimuli import resolve_stim_file
from .tables import EVENTS_COLUMNS, read_captions, read_events

__all__ = [
    "EVENTS_COLUMNS",
    "STIM_COLUMN",
    "EventsSpec",
    "ParticipantInputs",
    "RunInputs",
    "SessionNotFoundError",
    "check_images",
    "collect_participant",
    "list_participants",
    "map_events",
    "normalize_participant_label",
    "read_bids_filters",
    "read_captions",
    "read_events",
    "read_roi_labels",
    "resolve_stim_file",
]
