"""DataLad datasets as inputs and outputs: fetch only what a participant needs, record runs.

Inputs (a raw BIDS dataset and fMRIPrep derivatives) may be DataLad datasets whose annexed
content is absent (a fresh ``datalad clone``): the files are then symbolic links into
``.git/annex`` that cannot be read. :func:`prepare_inputs` installs what is missing, works out
from file names alone which files the selected participants, tasks and runs need
(:func:`files_needed`), gets those in parallel (:func:`get_files`) and leaves every other file
absent. Only then can :func:`nipype_brainrecon.bids.collect_participant` read headers and tables.

Outputs: :func:`ensure_output_dataset` makes the derivatives folder a DataLad dataset and
:func:`record_run` runs one participant's command under ``datalad run`` (or records one that
already ran), so that the commit carries a machine-readable run record that ``datalad rerun``
replays; :func:`run_record` reads it back. See ``docs/datalad.md`` for the YODA layout. The
command-line side (the record of a ``brainrecon`` call, from its parsed arguments) is
:mod:`nipype_brainrecon.bids_app.datalad_run`.

Everything here uses the DataLad Python API and the real git-annex. The PyPI wheel
``git-annex`` installs the program beside the Python interpreter, which this package puts on
``PATH`` when it is not already there.

Modules
-------
repo
    git-annex and the DataLad API; datasets versus plain folders; dataset identity.
install
    Clone a source or install a registered subdataset (no content).
needed
    :func:`files_needed`: the files one participant reads, from BIDS file names.
get
    :func:`get_files`: get annexed content in parallel and count what moved.
prepare
    :func:`prepare_inputs`: all of the above for a run; :func:`format_summary`.
outputs
    The output dataset: create it, save into it, what a participant writes.
provenance
    :func:`record_run` (``datalad run``), :func:`run_record`, :func:`should_record`.
"""

from .get import get_files
from .install import ensure_dataset
from .needed import files_needed
from .outputs import SHARED_OUTPUTS, ensure_output_dataset, participant_outputs, save_outputs
from .prepare import PreparedInputs, format_summary, prepare_inputs
from .provenance import RECORD_KEY, RECORDING_ENV, RunRecord, record_run, run_record, should_record
from .repo import ensure_git_annex, is_dataset, uses_datalad

__all__ = [
    "PreparedInputs",
    "RECORDING_ENV",
    "RECORD_KEY",
    "RunRecord",
    "SHARED_OUTPUTS",
    "ensure_dataset",
    "ensure_git_annex",
    "ensure_output_dataset",
    "files_needed",
    "format_summary",
    "get_files",
    "is_dataset",
    "participant_outputs",
    "prepare_inputs",
    "record_run",
    "run_record",
    "save_outputs",
    "should_record",
    "uses_datalad",
]
