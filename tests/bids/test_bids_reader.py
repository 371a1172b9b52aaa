"""collect_participant on small datasets built here in the layout the simulator writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import set_cell, tree_digest

from nipype_brainrecon.bids import (
    collect_participant,
    normalize_participant_label,
    read_captions,
    resolve_stim_file,
)
from nipype_brainrecon.errors import (
    DataError,
    InvalidDatasetError,
    MissingInputError,
    UsageError,
)

TR = 1.5
N_VOLUMES = 6
GRID = (4, 4, 3)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
N_STIMULI = 4
N_RUNS = 2


def _save(data: np.ndarray, path: Path, *, tr: float | None = None) -> None:
    image = nib.Nifti1Image(data, AFFINE)
    image.header.set_xyzt_units(xyz="mm", t="sec")
    if tr is not None:
        image.header.set_zooms((2.0, 2.0, 2.0, tr))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)


def _json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))


def _tsv(path: Path, table: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(table).to_csv(path, sep="\t", index=False, na_rep="n/a")


def stim_name(k: int) -> str:
    return f"stim-{k:04d}.png"


def build_dataset(
    root: Path, *, subjects: tuple[str, ...] = ("01",), session: str | None = None
) -> Path:
    """A tiny raw + fMRIPrep-like dataset following the layout contract (sub, ses, task, run...)."""
    rng = np.random.default_rng(0)
    _json(
        root / "dataset_description.json",
        {
            "Name": "reader test",
            "BIDSVersion": "1.10.0",
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["Test"],
        },
    )
    (root / "README").write_text("Tiny dataset for the reader tests.\n")
    _tsv(root / "participants.tsv", {"participant_id": [f"sub-{s}" for s in subjects]})
    _json(root / "task-vision_bold.json", {"TaskName": "vision"})
    stimuli = root / "stimuli"
    stimuli.mkdir()
    for k in range(1, N_STIMULI + 1):
        (stimuli / stim_name(k)).write_bytes(b"\x89PNG fake image %d" % k)
    _tsv(
        stimuli / "captions.tsv",
        {
            "stim_file": [stim_name(k) for k in range(1, N_STIMULI + 1) for _ in range(2)],
            "caption": [
                f"caption {j} of image {k}" for k in range(1, N_STIMULI + 1) for j in (1, 2)
            ],
        },
    )
    deriv = root / "derivatives" / "fmriprep"
    _json(
        deriv / "dataset_description.json",
        {
            "Name": "fMRIPrep-like",
            "BIDSVersion": "1.10.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "test"}],
        },
    )
    _tsv(deriv / "desc-visual_dseg.tsv", {"index": [1, 2], "name": ["early", "ventral"]})
    dseg = np.zeros(GRID, dtype=np.uint8)
    dseg[:2, :, 0] = 1
    dseg[2:, :, 1] = 2
    mask = np.ones(GRID, dtype=np.uint8)
    for sub in subjects:
        ses_dir = f"ses-{session}/" if session else ""
        ses_ent = f"_ses-{session}" if session else ""
        _save(
            dseg,
            deriv / f"sub-{sub}/{ses_dir}anat/sub-{sub}{ses_ent}_space-T1w_desc-visual_dseg.nii.gz",
        )
        _json(
            deriv / f"sub-{sub}/{ses_dir}anat/sub-{sub}{ses_ent}_space-T1w_desc-visual_dseg.json",
            {"SpatialReference": "orig"},
        )
        for run in range(1, N_RUNS + 1):
            prefix = f"sub-{sub}{ses_ent}_task-vision_run-{run:02d}"
            func = root / f"sub-{sub}/{ses_dir}func"
            bold = rng.normal(100, 1, GRID + (N_VOLUMES,)).astype(np.float32)
            _save(bold, func / f"{prefix}_bold.nii.gz", tr=TR)
            _json(func / f"{prefix}_bold.json", {"RepetitionTime": TR, "TaskName": "vision"})
            _tsv(
                func / f"{prefix}_events.tsv",
                {
                    "onset": [0.0, 3.0, 6.0],
                    "duration": [1.0, 1.0, 1.0],
                    "trial_type": ["image", "image", "image"],
                    "stim_file": [stim_name(run), stim_name(run + 2), stim_name(run)],
                },
            )
            dfunc = deriv / f"sub-{sub}/{ses_dir}func"
            _save(bold, dfunc / f"{prefix}_space-T1w_desc-preproc_bold.nii.gz", tr=TR)
            _json(
                dfunc / f"{prefix}_space-T1w_desc-preproc_bold.json",
                {
                    "RepetitionTime": TR,
                    "TaskName": "vision",
                    "SkullStripped": True,
                    "SpatialReference": "orig",
                },
            )
            _save(mask, dfunc / f"{prefix}_space-T1w_desc-brain_mask.nii.gz")
            _json(
                dfunc / f"{prefix}_space-T1w_desc-brain_mask.json",
                {"Type": "Brain", "SpatialReference": "orig"},
            )
            _tsv(
                dfunc / f"{prefix}_desc-confounds_timeseries.tsv",
                {name: rng.normal(0, 0.1, N_VOLUMES) for name in ("trans_x", "rot_x")},
            )
    return root


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return build_dataset(tmp_path / "ds")


def test_collects_every_run_with_all_pieces(dataset: Path) -> None:
    deriv = dataset / "derivatives" / "fmriprep"
    before = tree_digest(dataset)
    inputs = collect_participant(dataset, "sub-01")
    assert tree_digest(dataset) == before  # reading leaves the input untouched

    assert inputs.participant == "01"
    assert inputs.bids_dir == dataset.absolute()
    assert inputs.derivatives == deriv.absolute()
    assert [run.run for run in inputs.runs] == ["01", "02"]
    for number, run in enumerate(inputs.runs, start=1):
        prefix = f"sub-01_task-vision_run-{number:02d}"
        assert run.name == prefix
        assert run.raw_bold == dataset / "sub-01" / "func" / f"{prefix}_bold.nii.gz"
        assert run.bold == deriv / "sub-01/func" / f"{prefix}_space-T1w_desc-preproc_bold.nii.gz"
        assert run.mask == deriv / "sub-01/func" / f"{prefix}_space-T1w_desc-brain_mask.nii.gz"
        assert run.confounds == deriv / "sub-01/func" / f"{prefix}_desc-confounds_timeseries.tsv"
        assert run.events_file == dataset / "sub-01" / "func" / f"{prefix}_events.tsv"
        assert run.repetition_time == TR
        assert run.n_volumes == N_VOLUMES
        assert run.task == "vision" and run.session is None
        assert run.events["onset"].tolist() == [0.0, 3.0, 6.0]
        expected = [stim_name(number), stim_name(number + 2), stim_name(number)]
        assert run.events["stim_file"].tolist() == [dataset / "stimuli" / s for s in expected]
        assert all(p.is_absolute() and p.is_file() for p in run.events["stim_file"])
    shown = sorted(dataset / "stimuli" / stim_name(k) for k in range(1, N_STIMULI + 1))
    assert inputs.stim_files == shown
    assert inputs.captions == {
        p: [f"caption {j} of image {int(p.stem[5:])}" for j in (1, 2)] for p in shown
    }
    assert inputs.captions_file == dataset / "stimuli" / "captions.tsv"
    assert inputs.roi_dseg == deriv / "sub-01/anat/sub-01_space-T1w_desc-visual_dseg.nii.gz"
    assert inputs.roi_labels == {1: "early", 2: "ventral"}
    assert inputs.roi_labels_file == deriv / "desc-visual_dseg.tsv"
    assert inputs.tasks == ["vision"]


def test_label_with_or_without_prefix(dataset: Path) -> None:
    a = collect_participant(dataset, "01")
    b = collect_participant(str(dataset), "sub-01", task="vision")
    assert [r.bold for r in a.runs] == [r.bold for r in b.runs]
    assert normalize_participant_label(" sub-A1 ") == "A1"
    with pytest.raises(UsageError, match="sub-0_1"):
        normalize_participant_label("sub-0_1")


def test_only_the_requested_participant_is_read(tmp_path: Path) -> None:
    ds = build_dataset(tmp_path / "ds", subjects=("01", "02"))
    # Another participant's broken derivatives do not matter.
    shutil.rmtree(ds / "derivatives/fmriprep/sub-02/func")
    inputs = collect_participant(ds, "01")
    assert {r.entities["sub"] for r in inputs.runs} == {"01"}
    with pytest.raises(MissingInputError, match="sub-02_task-vision_run-01_space-T1w_desc-preproc"):
        collect_participant(ds, "02")


def test_sessions(tmp_path: Path) -> None:
    ds = build_dataset(tmp_path / "ds", session="A")
    inputs = collect_participant(ds, "01", session="ses-A")
    assert [r.session for r in inputs.runs] == ["A", "A"]
    assert (
        inputs.runs[0].bold.name
        == "sub-01_ses-A_task-vision_run-01_space-T1w_desc-preproc_bold.nii.gz"
    )
    assert inputs.roi_dseg.name == "sub-01_ses-A_space-T1w_desc-visual_dseg.nii.gz"
    with pytest.raises(UsageError, match="session 'B' not found.*A"):
        collect_participant(ds, "01", session="B")
    # A second session with its own segmentation: ambiguous unless a session is chosen.
    anat = ds / "derivatives/fmriprep/sub-01"
    shutil.copytree(anat / "ses-A", anat / "ses-B")
    for path in sorted((anat / "ses-B").rglob("*ses-A*")):
        path.rename(path.with_name(path.name.replace("ses-A", "ses-B")))
    shutil.copytree(ds / "sub-01/ses-A", ds / "sub-01/ses-B")
    for path in sorted((ds / "sub-01/ses-B").rglob("*ses-A*")):
        path.rename(path.with_name(path.name.replace("ses-A", "ses-B")))
    with pytest.raises(DataError, match="several ROI segmentations"):
        collect_participant(ds, "01")
    inputs = collect_participant(ds, "01", session="B")
    assert [r.session for r in inputs.runs] == ["B", "B"]
    assert inputs.roi_dseg.name == "sub-01_ses-B_space-T1w_desc-visual_dseg.nii.gz"


def test_explicit_derivatives_and_roi(dataset: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "fmriprep"
    shutil.move(dataset / "derivatives" / "fmriprep", moved)
    roi = tmp_path / "my_rois.nii.gz"
    data = np.zeros(GRID, dtype=np.int16)
    data[0, 0, 0] = 7
    _save(data, roi)
    labels = tmp_path / "my_rois.tsv"
    _tsv(labels, {"index": [7], "name": ["v4"]})
    inputs = collect_participant(dataset, "01", derivatives=moved, roi_dseg=roi, roi_labels=labels)
    assert inputs.derivatives == moved
    assert inputs.runs[0].bold.parent == moved / "sub-01" / "func"
    assert inputs.roi_dseg == roi and inputs.roi_labels == {7: "v4"}


def test_label_table_beside_the_dseg_wins(dataset: Path) -> None:
    anat = dataset / "derivatives/fmriprep/sub-01/anat"
    _tsv(anat / "sub-01_space-T1w_desc-visual_dseg.tsv", {"index": [1, 2], "name": ["v1", "vt"]})
    inputs = collect_participant(dataset, "01")
    assert inputs.roi_labels == {1: "v1", 2: "vt"}


def test_captions_optional_when_asked(dataset: Path) -> None:
    (dataset / "stimuli" / "captions.tsv").unlink()
    inputs = collect_participant(dataset, "01", require_captions=False)
    assert inputs.captions == {} and inputs.captions_file is None


def test_na_stim_file_rows_are_kept_as_none(dataset: Path) -> None:
    events = dataset / "sub-01/func/sub-01_task-vision_run-01_events.tsv"
    table = pd.read_csv(events, sep="\t")
    table.loc[1, "stim_file"] = None
    table.to_csv(events, sep="\t", index=False, na_rep="n/a")
    run = collect_participant(dataset, "01").runs[0]
    assert run.events["stim_file"].tolist()[1] is None
    assert run.events["stim_file"].tolist()[0] == dataset / "stimuli" / stim_name(1)


def test_link_inside_the_dataset_is_accepted(dataset: Path) -> None:
    # git-annex keeps content under .git/annex/objects and links to it.
    store = dataset / ".git" / "annex" / "objects" / "XX"
    store.mkdir(parents=True)
    image = dataset / "stimuli" / stim_name(1)
    shutil.move(image, store / "content")
    image.symlink_to(os.path.relpath(store / "content", image.parent))
    run = collect_participant(dataset, "01").runs[0]
    assert run.events["stim_file"][0] == image  # the name in stimuli/, link not followed


# --- every bad input: (change to the dataset, error class, text the message must contain) -----

Mutation = Callable[[Path, Path], None]
RUN2 = "sub-01_task-vision_run-02"


def _rm(rel: str) -> Mutation:
    return lambda ds, tmp: (ds / rel).unlink()


def _events(edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Mutation:
    def mutate(ds: Path, tmp: Path) -> None:
        path = ds / f"sub-01/func/{RUN2}_events.tsv"
        edit(pd.read_csv(path, sep="\t")).to_csv(path, sep="\t", index=False, na_rep="n/a")

    return mutate


def _link_outside(ds: Path, tmp: Path) -> None:
    outside = tmp / "outside.png"
    outside.write_bytes(b"not yours")
    (ds / "stimuli" / "evil.png").symlink_to(outside)
    _events(set_cell("stim_file", 0, "evil.png"))(ds, tmp)


def _no_runs(ds: Path, tmp: Path) -> None:
    for path in (ds / "sub-01" / "func").iterdir():
        path.unlink()


def _drop_tr(ds: Path, tmp: Path) -> None:
    for path in ds.rglob(f"{RUN2}*bold.json"):
        meta = json.loads(path.read_text())
        meta.pop("RepetitionTime")
        path.write_text(json.dumps(meta))


def _short_confounds(ds: Path, tmp: Path) -> None:
    path = ds / f"derivatives/fmriprep/sub-01/func/{RUN2}_desc-confounds_timeseries.tsv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")


def _bad_mask(ds: Path, tmp: Path) -> None:
    path = ds / f"derivatives/fmriprep/sub-01/func/{RUN2}_space-T1w_desc-brain_mask.nii.gz"
    _save(np.ones((5, 4, 3), dtype=np.uint8), path)


def _unnamed_label(ds: Path, tmp: Path) -> None:
    _tsv(ds / "derivatives/fmriprep/desc-visual_dseg.tsv", {"index": [1], "name": ["early"]})


def _uncaptioned(ds: Path, tmp: Path) -> None:
    path = ds / "stimuli" / "captions.tsv"
    table = pd.read_csv(path, sep="\t")
    table[table.stim_file != stim_name(4)].to_csv(path, sep="\t", index=False)


def _bad_json(ds: Path, tmp: Path) -> None:
    (ds / "dataset_description.json").write_text("{not json")


def _bad_sidecar(ds: Path, tmp: Path) -> None:
    (ds / f"sub-01/func/{RUN2}_bold.json").write_text('{"RepetitionTime": 1.5,')


BAD_INPUTS: dict[str, tuple[Mutation, type[Exception], str]] = {
    "no dataset_description": (
        _rm("dataset_description.json"),
        InvalidDatasetError,
        "dataset_description.json",
    ),
    "broken dataset_description": (_bad_json, InvalidDatasetError, "dataset_description.json"),
    "broken sidecar": (_bad_sidecar, InvalidDatasetError, f"{RUN2}_bold.json"),
    "derivatives not BIDS": (
        _rm("derivatives/fmriprep/dataset_description.json"),
        InvalidDatasetError,
        "fmriprep",
    ),
    "no runs": (_no_runs, MissingInputError, "no BOLD runs"),
    "no preproc bold": (
        _rm(f"derivatives/fmriprep/sub-01/func/{RUN2}_space-T1w_desc-preproc_bold.nii.gz"),
        MissingInputError,
        f"{RUN2}_space-T1w_desc-preproc_bold.nii.gz",
    ),
    "no mask": (
        _rm(f"derivatives/fmriprep/sub-01/func/{RUN2}_space-T1w_desc-brain_mask.nii.gz"),
        MissingInputError,
        f"{RUN2}_space-T1w_desc-brain_mask.nii.gz",
    ),
    "no confounds": (
        _rm(f"derivatives/fmriprep/sub-01/func/{RUN2}_desc-confounds_timeseries.tsv"),
        MissingInputError,
        f"{RUN2}_desc-confounds_timeseries.tsv",
    ),
    "no events": (_rm(f"sub-01/func/{RUN2}_events.tsv"), MissingInputError, f"{RUN2}_events.tsv"),
    "no stim_file column": (
        _events(lambda t: t.drop(columns="stim_file")),
        DataError,
        f"{RUN2}_events.tsv",
    ),
    "no onset column": (
        _events(lambda t: t.drop(columns="onset")),
        DataError,
        f"{RUN2}_events.tsv",
    ),
    "no duration column": (_events(lambda t: t.drop(columns="duration")), DataError, "duration"),
    "non-numeric onset": (_events(set_cell("onset", 1, "soon")), DataError, f"{RUN2}_events.tsv"),
    "stimulus absent": (
        _events(set_cell("stim_file", 0, "stim-0099.png")),
        MissingInputError,
        "stim-0099.png",
    ),
    "stimulus escapes": (
        _events(set_cell("stim_file", 0, "../dataset_description.json")),
        DataError,
        f"{RUN2}_events.tsv",
    ),
    "stimulus escapes in a sub-folder": (
        _events(set_cell("stim_file", 0, "a/../../README")),
        DataError,
        "outside",
    ),
    "stimulus absolute": (
        _events(set_cell("stim_file", 0, "/etc/hostname")),
        DataError,
        "absolute",
    ),
    "stimulus links outside": (_link_outside, DataError, "evil.png"),
    "no captions table": (_rm("stimuli/captions.tsv"), MissingInputError, "captions.tsv"),
    "image without captions": (_uncaptioned, DataError, stim_name(4)),
    "no dseg": (
        _rm("derivatives/fmriprep/sub-01/anat/sub-01_space-T1w_desc-visual_dseg.nii.gz"),
        MissingInputError,
        "sub-01_space-T1w_desc-visual_dseg.nii.gz",
    ),
    "no label table": (
        _rm("derivatives/fmriprep/desc-visual_dseg.tsv"),
        MissingInputError,
        "desc-visual_dseg.tsv",
    ),
    "unnamed label": (_unnamed_label, DataError, "desc-visual_dseg.tsv"),
    "no RepetitionTime": (_drop_tr, InvalidDatasetError, f"{RUN2}_bold.nii.gz"),
    "confounds too short": (_short_confounds, DataError, f"{RUN2}_desc-confounds_timeseries.tsv"),
    "mask off grid": (_bad_mask, DataError, f"{RUN2}_space-T1w_desc-brain_mask.nii.gz"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_a_clear_error(case: str, dataset: Path, tmp_path: Path) -> None:
    mutate, error, text = BAD_INPUTS[case]
    mutate(dataset, tmp_path)
    before = tree_digest(dataset)
    with pytest.raises(error) as info:
        collect_participant(dataset, "01")
    message = str(info.value)
    assert text in message
    assert "\n" not in message
    assert type(info.value) is error  # not a broader class
    assert tree_digest(dataset) == before


def test_unknown_participant_lists_the_existing_ones(tmp_path: Path) -> None:
    ds = build_dataset(tmp_path / "ds", subjects=("01", "02"))
    with pytest.raises(UsageError, match=r"participant '03' not found \(participants: 01, 02\)"):
        collect_participant(ds, "sub-03")


def test_participant_absent_from_derivatives(dataset: Path) -> None:
    shutil.rmtree(dataset / "derivatives/fmriprep/sub-01")
    with pytest.raises(MissingInputError, match="absent from the derivatives"):
        collect_participant(dataset, "01")


def test_unknown_task_lists_the_existing_ones(dataset: Path) -> None:
    with pytest.raises(UsageError, match=r"task 'rest' not found \(tasks: vision\)"):
        collect_participant(dataset, "01", task="rest")


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="nowhere"):
        collect_participant(tmp_path / "nowhere", "01")


def test_resolve_stim_file_rules(tmp_path: Path) -> None:
    stimuli = tmp_path / "stimuli"
    (stimuli / "sub").mkdir(parents=True)
    (stimuli / "sub" / "a.png").write_bytes(b"a")
    source = tmp_path / "events.tsv"
    kwargs = {"dataset_dir": tmp_path, "source": source}
    assert resolve_stim_file("sub/./a.png", stimuli, **kwargs) == stimuli / "sub" / "a.png"
    assert resolve_stim_file("sub/../sub/a.png", stimuli, **kwargs) == stimuli / "sub" / "a.png"
    with pytest.raises(DataError, match="outside"):
        resolve_stim_file("..", stimuli, **kwargs)
    with pytest.raises(DataError, match="empty"):
        resolve_stim_file("  ", stimuli, **kwargs)
    # A linked folder that leaves the dataset is refused as well.
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b.png").write_bytes(b"b")
    (stimuli / "linked").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DataError, match="outside the dataset"):
        resolve_stim_file("linked/b.png", stimuli, **kwargs)
    assert (
        resolve_stim_file("missing.png", stimuli, must_exist=False, **kwargs)
        == stimuli / "missing.png"
    )


def test_captions_long_format(tmp_path: Path) -> None:
    stimuli = tmp_path / "stimuli"
    _tsv(
        stimuli / "captions.tsv",
        {
            "stim_file": ["a.png", "b.png", "a.png", "b.png"],
            "caption": ["a one", "b one", "a two", None],
        },
    )
    captions = read_captions(stimuli / "captions.tsv", stimuli, dataset_dir=tmp_path)
    assert captions == {stimuli / "a.png": ["a one", "a two"], stimuli / "b.png": ["b one"]}
    _tsv(stimuli / "captions.tsv", {"stim_file": ["a.png"], "text": ["a"]})
    with pytest.raises(DataError, match="caption"):
        read_captions(stimuli / "captions.tsv", stimuli, dataset_dir=tmp_path)


def _validator() -> Path | None:
    path = Path(sys.executable).parent / "bids-validator-deno"
    return path if path.exists() else None


def test_builder_layout_passes_the_bids_validator(dataset: Path) -> None:
    """The names this test (and the simulator) use are valid BIDS, raw and derivatives."""
    validator = _validator()
    if validator is None:
        pytest.skip("bids-validator-deno not installed in this environment")
    (dataset / "derivatives/fmriprep/.bidsignore").write_text("*_desc-confounds_timeseries.*\n")
    for root in (dataset, dataset / "derivatives" / "fmriprep"):
        result = subprocess.run(
            [str(validator), "--format", "json", str(root)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        issues = json.loads(result.stdout)["issues"]["issues"]
        errors = sorted(
            {(i["code"], i.get("location", "")) for i in issues if i["severity"] == "error"}
        )
        assert result.returncode == 0, errors


# --- the simulator's datasets ---------------------------------------------------------------

SIM = {"n_subjects": 2, "n_runs": 2, "n_train": 8, "n_test": 2, "n_repeats": 2, "tr": 1.5}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    simulate = pytest.importorskip("nipype_brainrecon.synthetic.simulate")
    out = tmp_path_factory.mktemp("sim") / "ds"
    return simulate.simulate_dataset(out, image_size=32, n_captions=2, seed=3, **SIM)


def test_pybids_indexes_a_simulated_dataset(simulated: Path) -> None:
    from bids import BIDSLayout

    layout = BIDSLayout(simulated, derivatives=True)  # validating: only BIDS names are indexed
    subjects = [f"{k:02d}" for k in range(1, SIM["n_subjects"] + 1)]
    assert layout.get_subjects() == subjects
    assert layout.get_tasks() == ["vision"]
    for sub in subjects:
        raw = layout.get(subject=sub, suffix="bold", extension=".nii.gz", scope="raw")
        preproc = layout.get(subject=sub, desc="preproc", suffix="bold", extension=".nii.gz")
        assert len(raw) == len(preproc) == SIM["n_runs"]
        assert layout.get_metadata(raw[0].path)["RepetitionTime"] == SIM["tr"]


def test_collect_participant_on_a_simulated_dataset(simulated: Path) -> None:
    before = tree_digest(simulated)
    n_images = SIM["n_train"] + SIM["n_test"]
    n_trials = SIM["n_train"] + SIM["n_test"] * SIM["n_repeats"]
    for k in range(1, SIM["n_subjects"] + 1):
        inputs = collect_participant(simulated, f"sub-{k:02d}")
        assert [run.run for run in inputs.runs] == [f"{r:02d}" for r in range(1, SIM["n_runs"] + 1)]
        for run in inputs.runs:
            for path in (run.raw_bold, run.bold, run.mask, run.confounds, run.events_file):
                assert path.is_file() and f"sub-{k:02d}_task-vision_run-{run.run}" in path.name
            assert run.repetition_time == SIM["tr"]
            assert run.n_volumes == nib.load(run.bold).shape[3]
            assert all(p.parent == inputs.stimuli_dir for p in run.events["stim_file"])
        assert sum(len(run.events) for run in inputs.runs) == n_trials
        assert len(inputs.stim_files) == n_images
        assert set(inputs.captions) == set(inputs.stim_files)
        assert all(len(c) == 2 for c in inputs.captions.values())
        assert inputs.roi_labels[1] == "early" and inputs.roi_labels[2] == "ventral"
        dseg = np.asanyarray(nib.load(inputs.roi_dseg).dataobj)
        assert dseg.shape == nib.load(inputs.runs[0].bold).shape[:3]
        assert {1, 2} <= set(np.unique(dseg).tolist())
    assert tree_digest(simulated) == before
