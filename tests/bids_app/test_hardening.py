"""The catalogue of bad inputs (docs/errors.md): each answered by one clear message and exit code.

Every ``CLI`` row changes a copy of a small simulated dataset (or the options), runs the
``brainrecon`` command line in this process and checks: the BIDS Apps exit code, one
``brainrecon: error:`` line naming the file at fault, no output written, and the input dataset
byte-identical afterwards (:func:`tree_digest` before and after). The ``API`` rows check the
library functions the workflow nodes call, for bad inputs only visible inside a run.

Also here: safe loading (no pickle, no remote code, no network) and a hypothesis fuzz test of
the events / captions / stimulus-path parsing.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import set_cell, tree_digest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nipype_brainrecon.bids import read_captions, read_events, resolve_stim_file
from nipype_brainrecon.bids_app.cli import main
from nipype_brainrecon.diffusion.models import demo_model_path
from nipype_brainrecon.errors import (
    EXIT_CANT_CREATE,
    EXIT_DATA,
    EXIT_INVALID_BIDS,
    EXIT_NO_INPUT,
    EXIT_USAGE,
    BrainreconError,
    DataError,
    MissingInputError,
)
from nipype_brainrecon.io import output_lock
from nipype_brainrecon.synthetic.simulate import simulate_dataset

RUN1 = "sub-01_task-vision_run-01"
EVENTS = f"sub-01/func/{RUN1}_events.tsv"
EVENTS2 = "sub-01/func/sub-01_task-vision_run-02_events.tsv"
FMRIPREP = "derivatives/fmriprep"
PREPROC = f"{FMRIPREP}/sub-01/func/{RUN1}_space-T1w_desc-preproc_bold.nii.gz"
MASK = f"{FMRIPREP}/sub-01/func/{RUN1}_space-T1w_desc-brain_mask.nii.gz"
CONFOUNDS = f"{FMRIPREP}/sub-01/func/{RUN1}_desc-confounds_timeseries.tsv"
DSEG = f"{FMRIPREP}/sub-01/anat/sub-01_space-T1w_desc-visual_dseg.nii.gz"
CAPTIONS = "stimuli/captions.tsv"
BASE_ARGS = ["--model", "demo", "--skip-bids-validation", "--nprocs", "1"]


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """One subject, two runs, 40 training images shown once and 6 test images shown 3 times."""
    return simulate_dataset(
        tmp_path_factory.mktemp("hardening") / "ds",
        n_subjects=1,
        n_runs=2,
        seed=3,
        n_train=40,
        n_test=6,
    )


@pytest.fixture
def ds(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the dataset, free to break."""
    return Path(shutil.copytree(pristine, tmp_path / "ds", symlinks=True))


def _events(ds: Path, rel: str = EVENTS) -> pd.DataFrame:
    return pd.read_csv(ds / rel, sep="\t", dtype={"stim_file": str})


def _write_events(ds: Path, table: pd.DataFrame, rel: str = EVENTS) -> None:
    table.to_csv(ds / rel, sep="\t", index=False, na_rep="n/a")


def _edit_events(edit: Callable[[pd.DataFrame], pd.DataFrame], rel: str = EVENTS):
    def mutate(ds: Path, tmp: Path) -> None:
        _write_events(ds, edit(_events(ds, rel)), rel)

    return mutate


def _rm(rel: str):
    def mutate(ds: Path, tmp: Path) -> None:
        path = ds / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return mutate


def _garbage(rel: str, data: bytes = b"this is not an image at all" * 10):
    def mutate(ds: Path, tmp: Path) -> None:
        (ds / rel).write_bytes(data)

    return mutate


def _first_stimulus(ds: Path) -> Path:
    return ds / "stimuli" / _events(ds)["stim_file"].dropna().iloc[0]


# --------------------------------------------------------------------------------------------
# The catalogue: command-line rows
# --------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One bad input: how to make it, what the user must see."""

    mutate: Callable[[Path, Path], object] | None
    code: int
    says: tuple[str, ...]
    args: tuple[str, ...] = ()
    labels: tuple[str, ...] = ("01",)
    extra: dict = field(default_factory=dict)


def _not_bids(ds: Path, tmp: Path) -> dict:
    folder = tmp / "notbids"
    folder.mkdir()
    (folder / "data.txt").write_text("hello")
    return {"bids": folder}


def _bids_absent(ds: Path, tmp: Path) -> dict:
    return {"bids": tmp / "nowhere"}


def _grid_differs(ds: Path, tmp: Path) -> None:
    img = nib.load(ds / MASK)
    data = np.ones(tuple(s + 1 for s in img.shape[:3]), dtype=np.uint8)
    nib.save(nib.Nifti1Image(data, img.affine), ds / MASK)


def _bold_3d(ds: Path, tmp: Path) -> None:
    img = nib.load(ds / PREPROC)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine), ds / PREPROC)


def _overlap(table: pd.DataFrame) -> pd.DataFrame:
    table["onset"] = table["onset"].astype(float)
    table.loc[1, "onset"] = table.loc[0, "onset"] + 0.5
    return table


def _not_an_image(ds: Path, tmp: Path) -> None:
    (ds / "stimuli" / "notes.png").write_text("shopping list: milk, eggs\n")
    captions = pd.read_csv(ds / CAPTIONS, sep="\t")
    row = pd.DataFrame({"stim_file": ["notes.png"], "caption": ["a note"]})
    pd.concat([captions, row]).to_csv(ds / CAPTIONS, sep="\t", index=False)
    _edit_events(set_cell("stim_file", 0, "notes.png"))(ds, tmp)


def _symlink_out(ds: Path, tmp: Path) -> None:
    outside = tmp / "secret.png"
    outside.write_bytes(b"not yours")
    (ds / "stimuli" / "evil.png").symlink_to(outside)
    _edit_events(set_cell("stim_file", 0, "evil.png"))(ds, tmp)


def _captions_header_only(ds: Path, tmp: Path) -> None:
    (ds / CAPTIONS).write_text("stim_file\tcaption\n")


def _captions_blank(ds: Path, tmp: Path) -> None:
    table = pd.read_csv(ds / CAPTIONS, sep="\t")
    table["caption"] = "   "
    table.to_csv(ds / CAPTIONS, sep="\t", index=False)


def _captions_latin1(ds: Path, tmp: Path) -> None:
    text = (ds / CAPTIONS).read_text(encoding="utf-8")
    (ds / CAPTIONS).write_bytes(text.replace("a ", "a caf\u00e9 ", 1).encode("latin-1"))


def _empty_roi(ds: Path, tmp: Path) -> None:
    img = nib.load(ds / DSEG)
    data = np.asarray(img.dataobj).copy()
    data[data == 1] = 0  # label 1 ('early') keeps its row in the table but loses its voxels
    nib.save(nib.Nifti1Image(data, img.affine, img.header), ds / DSEG)


def _truncated_png(ds: Path, tmp: Path) -> None:
    path = _first_stimulus(ds)
    path.write_bytes(path.read_bytes()[:60])


def _all_events(ds: Path) -> list[tuple[str, pd.DataFrame]]:
    return [(rel, _events(ds, rel)) for rel in (EVENTS, EVENTS2)]


def _no_repeats(ds: Path, tmp: Path) -> None:
    seen: set[str] = set()
    for rel, table in _all_events(ds):
        keep = []
        for stim in table["stim_file"]:
            keep.append(stim not in seen)
            seen.add(stim)
        _write_events(ds, table[keep], rel)


def _few_trials(ds: Path, tmp: Path) -> None:
    tables = _all_events(ds)
    counts = pd.concat([t for _, t in tables])["stim_file"].value_counts()
    singles = 0
    for rel, table in tables:
        keep = []
        for stim in table["stim_file"]:
            repeated = counts[stim] > 1
            keep.append(repeated or singles < 3)
            singles += not repeated and singles < 3
        _write_events(ds, table[keep], rel)


def _model_copy(tmp: Path) -> Path:
    return Path(shutil.copytree(demo_model_path(), tmp / "model"))


def _model_without_unet(ds: Path, tmp: Path) -> dict:
    model = _model_copy(tmp)
    shutil.rmtree(model / "unet")
    return {"args": ["--model", str(model)]}


def _model_other_latent(ds: Path, tmp: Path) -> dict:
    model = _model_copy(tmp)
    config = json.loads((model / "vae" / "config.json").read_text())
    config["latent_channels"] = 8
    (model / "vae" / "config.json").write_text(json.dumps(config))
    return {"args": ["--model", str(model)]}


def _model_pickle_weights(ds: Path, tmp: Path) -> dict:
    model = _model_copy(tmp)
    for weights in (model / "vae").glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    return {"args": ["--model", str(model)]}


def _output_inside(ds: Path, tmp: Path) -> dict:
    return {"out": ds / "sub-01" / "out"}


def _output_below_file(ds: Path, tmp: Path) -> dict:
    (tmp / "afile").write_text("x")
    return {"out": tmp / "afile" / "out"}


def _no_tr(ds: Path, tmp: Path) -> None:
    for path in ds.rglob(f"{RUN1}*bold.json"):
        meta = json.loads(path.read_text())
        meta.pop("RepetitionTime", None)
        path.write_text(json.dumps(meta))


def _short_confounds(ds: Path, tmp: Path) -> None:
    lines = (ds / CONFOUNDS).read_text().splitlines()
    (ds / CONFOUNDS).write_text("\n".join(lines[:-3]) + "\n")


CLI_CASES: dict[str, Case] = {
    "no-dataset-description": Case(
        _rm("dataset_description.json"), EXIT_INVALID_BIDS, ("dataset_description.json",)
    ),
    "not-a-bids-dataset": Case(_not_bids, EXIT_INVALID_BIDS, ("notbids", "not a BIDS dataset")),
    "bids-dir-absent": Case(_bids_absent, EXIT_NO_INPUT, ("nowhere", "not found")),
    "broken-dataset-description": Case(
        _garbage("dataset_description.json", b"{not json"),
        EXIT_INVALID_BIDS,
        ("dataset_description.json", "not valid JSON"),
    ),
    "participant-not-found": Case(
        None, EXIT_USAGE, ("participant '99' not found", "participants: 01"), labels=("99",)
    ),
    "participant-label-invalid": Case(
        None, EXIT_USAGE, ("sub-0_1", "letters and digits"), labels=("sub-0_1",)
    ),
    "no-fmriprep-derivatives": Case(_rm(FMRIPREP), EXIT_NO_INPUT, ("fmriprep", "not found")),
    "derivatives-not-bids": Case(
        _rm(f"{FMRIPREP}/dataset_description.json"),
        EXIT_INVALID_BIDS,
        ("fmriprep", "dataset_description.json"),
    ),
    "participant-not-in-derivatives": Case(
        _rm(f"{FMRIPREP}/sub-01"), EXIT_NO_INPUT, ("sub-01", "absent from the derivatives")
    ),
    "wrong-space": Case(
        None,
        EXIT_NO_INPUT,
        (f"{RUN1}_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz", "not found"),
        args=("--space", "MNI152NLin2009cAsym"),
    ),
    "bold-mask-grids-differ": Case(_grid_differs, EXIT_DATA, (Path(MASK).name, "not on the grid")),
    "bold-3d": Case(_bold_3d, EXIT_DATA, (Path(PREPROC).name, "expected 4")),
    "no-repetition-time": Case(
        _no_tr, EXIT_INVALID_BIDS, (f"{RUN1}_bold.nii.gz", "RepetitionTime")
    ),
    "confounds-rows": Case(
        _short_confounds, EXIT_DATA, (Path(CONFOUNDS).name, "one row per volume")
    ),
    "corrupt-nifti": Case(_garbage(PREPROC), EXIT_DATA, ("cannot read the BOLD or mask image",)),
    "corrupt-dseg": Case(_garbage(DSEG), EXIT_DATA, (Path(DSEG).name, "cannot read")),
    "events-missing-column": Case(
        _edit_events(lambda t: t.drop(columns="stim_file")),
        EXIT_DATA,
        (Path(EVENTS).name, "lacks column(s) stim_file"),
    ),
    "events-non-numeric-onset": Case(
        _edit_events(set_cell("onset", 2, "soon")), EXIT_DATA, (Path(EVENTS).name, "non-numeric")
    ),
    "events-negative-onset": Case(
        _edit_events(set_cell("onset", 0, -4.0)), EXIT_DATA, (Path(EVENTS).name, "negative onset")
    ),
    "events-overlapping-onsets": Case(
        _edit_events(_overlap), EXIT_DATA, (Path(EVENTS).name, "overlap")
    ),
    "events-beyond-run": Case(
        _edit_events(set_cell("onset", 3, 100000.0)),
        EXIT_DATA,
        (Path(EVENTS).name, "after the end of the run"),
    ),
    "stim-file-missing": Case(
        _edit_events(set_cell("stim_file", 0, "stim-9999.png")),
        EXIT_NO_INPUT,
        ("stim-9999.png", "stimulus not found", Path(EVENTS).name),
    ),
    "stim-file-not-an-image": Case(_not_an_image, EXIT_DATA, ("notes.png", "not a readable image")),
    "stim-file-parent-escape": Case(
        _edit_events(set_cell("stim_file", 0, "../../etc/passwd")),
        EXIT_DATA,
        ("../../etc/passwd", "outside", Path(EVENTS).name),
    ),
    "stim-file-absolute": Case(
        _edit_events(set_cell("stim_file", 0, "/etc/passwd")),
        EXIT_DATA,
        ("/etc/passwd", "absolute"),
    ),
    "stim-file-symlink-out": Case(_symlink_out, EXIT_DATA, ("evil.png", "outside the dataset")),
    "captions-missing": Case(_rm(CAPTIONS), EXIT_NO_INPUT, ("captions.tsv", "not found")),
    "captions-header-only": Case(
        _captions_header_only, EXIT_DATA, ("captions.tsv", "have no caption")
    ),
    "captions-blank": Case(_captions_blank, EXIT_DATA, ("captions.tsv", "have no caption")),
    "captions-zero-bytes": Case(
        _garbage(CAPTIONS, b""), EXIT_DATA, ("captions.tsv", "cannot be read")
    ),
    "captions-not-utf8": Case(
        _captions_latin1, EXIT_DATA, ("captions.tsv", "cannot be read", "utf-8")
    ),
    "captions-missing-column": Case(
        _garbage(CAPTIONS, b"stim_file\ttext\nstim-0001.png\tx\n"),
        EXIT_DATA,
        ("captions.tsv", "lacks column(s) caption"),
    ),
    "corrupt-png": Case(_truncated_png, EXIT_DATA, ("stimuli", "not a readable image")),
    "empty-roi": Case(_empty_roi, EXIT_DATA, (Path(DSEG).name, "the ROI is empty")),
    "unknown-roi": Case(
        None, EXIT_USAGE, ("--z-roi V9", "desc-visual_dseg.tsv"), args=("--z-roi", "V9")
    ),
    "fewer-trials-than-folds": Case(
        _few_trials, EXIT_DATA, ("3 training trial(s) for 5 cross-validation folds",)
    ),
    "no-repeats-no-test-list": Case(
        _no_repeats, EXIT_DATA, ("no stimulus is shown more than once", "give a test list")
    ),
    "test-list-missing": Case(
        None, EXIT_NO_INPUT, ("test.txt", "not found"), args=("--test-set", "test.txt")
    ),
    "model-folder-missing": Case(
        None,
        EXIT_NO_INPUT,
        ("no-such-model", "model folder not found"),
        args=("--model", "/no-such-model"),
    ),
    "model-missing-unet": Case(
        _model_without_unet, EXIT_NO_INPUT, ("model", "component 'unet' missing")
    ),
    "model-other-latent-size": Case(
        _model_other_latent, EXIT_DATA, ("vae/config.json", "latent_channels 8", "UNet expects")
    ),
    "model-pickle-weights-only": Case(
        _model_pickle_weights, EXIT_NO_INPUT, ("vae", "no .safetensors weights")
    ),
    "output-inside-input": Case(_output_inside, EXIT_CANT_CREATE, ("inside the input",)),
    "output-unwritable": Case(_output_below_file, EXIT_CANT_CREATE, ("afile", "cannot write")),
    "mem-budget-too-small": Case(
        None,
        EXIT_USAGE,
        ("--mem 0.01", "decoder of sub-01 needs about", "raise --mem"),
        args=("--mem", "0.01"),
    ),
}


def _call(ds: Path, tmp: Path, case: Case, capsys) -> tuple[int, str, Path]:
    extra = (case.mutate(ds, tmp) if case.mutate else None) or {}
    bids = extra.get("bids", ds)
    out = extra.get("out", tmp / "out")
    argv = [str(bids), str(out), "participant", "--participant-label", *case.labels]
    argv += [*BASE_ARGS, *case.args, *extra.get("args", [])]
    before = tree_digest(ds)
    capsys.readouterr()
    code = main(argv)
    assert tree_digest(ds) == before  # the input is untouched
    return code, capsys.readouterr().err, out


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("brainrecon: error:")]


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_bad_input(name: str, ds: Path, tmp_path: Path, capsys) -> None:
    case = CLI_CASES[name]
    work = tmp_path / "case"
    work.mkdir()
    cwd = os.getcwd()
    os.chdir(work)  # relative paths (test lists) resolve here, not in the repository
    try:
        code, err, out = _call(ds, work, case, capsys)
    finally:
        os.chdir(cwd)
    errors = _error_lines(err)
    assert code == case.code, err
    assert len(errors) == 1, err  # one message
    for text in case.says:
        assert text in errors[0], (text, errors[0])
    if out.is_dir() and not out.is_relative_to(ds):
        assert not [p for p in out.rglob("*")], "no partial output"


def test_cli_full_disk(ds: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """ENOSPC while writing the first output file: exit 73, nothing left, input intact."""
    out = tmp_path / "out"
    real_fdopen = os.fdopen

    class _Full:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return handle
        return _Full(handle) if target.startswith(str(out)) else handle

    monkeypatch.setattr(os, "fdopen", fdopen)
    before = tree_digest(ds)
    code = main([str(ds), str(out), "participant", "--participant-label", "01", *BASE_ARGS])
    monkeypatch.undo()
    errors = _error_lines(capsys.readouterr().err)
    assert code == EXIT_CANT_CREATE
    assert len(errors) == 1 and "No space left on device" in errors[0]
    assert "free disk space" in errors[0] and "dataset_description.json" in errors[0]
    assert not [p for p in out.rglob("*") if p.is_file()], "no partial output"
    assert tree_digest(ds) == before


def test_cli_two_runs_same_output(ds: Path, tmp_path: Path, capsys) -> None:
    """A second run on the same subject and output folder is refused while the first runs."""
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from nipype_brainrecon.io import output_lock
                with output_lock({str(out)!r}, "sub-01"):
                    print("locked", flush=True)
                    time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = tree_digest(ds)
        code = main([str(ds), str(out), "participant", "--participant-label", "01", *BASE_ARGS])
        errors = _error_lines(capsys.readouterr().err)
        assert code == EXIT_CANT_CREATE
        assert len(errors) == 1
        assert "another brainrecon run" in errors[0] and f"process {holder.pid}" in errors[0]
        assert tree_digest(ds) == before
        assert [p.name for p in out.iterdir()] == [".sub-01.lock"]  # only the other run's lock
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its holder (even killed): the next run may go
    with output_lock(out, "sub-01") as lock:
        assert lock.read_text().strip() == str(os.getpid())
    assert not (out / ".sub-01.lock").exists()


def test_lock_is_per_subject(tmp_path: Path) -> None:
    with output_lock(tmp_path, "sub-01"), output_lock(tmp_path, "sub-02"):
        pass
    with output_lock(tmp_path, "sub-01"):
        with pytest.raises(BrainreconError, match="another brainrecon run") as info:
            with output_lock(tmp_path, "sub-01"):
                pass
        assert info.value.exit_code == EXIT_CANT_CREATE


def test_one_participant_with_bad_inputs_does_not_stop_the_other(tmp_path: Path, monkeypatch):
    """Inputs of sub-02 fail the checks: sub-01 still runs and the exit code says so."""
    ran = []
    bids = simulate_dataset(tmp_path / "two", n_subjects=2, n_runs=2, seed=3, n_train=40, n_test=6)
    (bids / "sub-02" / "func" / "sub-02_task-vision_run-01_events.tsv").write_text("onset\n1\n")

    def fake_run(self, **kwargs):  # the workflow itself is tested in test_hardening_resume
        ran.extend(sorted(n for n in self.list_node_names() if n.endswith("report")))
        raise RuntimeError("stop here")

    from nipype.pipeline import engine as pe

    monkeypatch.setattr(pe.Workflow, "run", fake_run)
    code = main([str(bids), str(tmp_path / "out"), "participant", *BASE_ARGS])
    assert ran == ["sub_01_wf.report"]
    assert code == 1  # the workflow of sub-01 "failed" here; without it, sub-02's 65 is returned


# --------------------------------------------------------------------------------------------
# The catalogue: library rows (bad inputs only visible inside a run)
# --------------------------------------------------------------------------------------------
def _glm_inputs(pristine: Path, tmp_path: Path, edit: Callable[[np.ndarray], None]):
    img = nib.load(pristine / PREPROC)
    data = np.asarray(img.dataobj).astype(np.float32)
    edit(data)
    bold = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(data, img.affine, img.header), bold)
    return bold, pristine / EVENTS, pristine / CONFOUNDS, pristine / MASK


def _mask_voxels(pristine: Path) -> tuple[np.ndarray, ...]:
    return np.nonzero(np.asarray(nib.load(pristine / MASK).dataobj) > 0)


@pytest.mark.parametrize("kind", ["nan", "inf", "constant"])
def test_api_bad_voxels_warn_with_count(kind: str, pristine: Path, tmp_path: Path) -> None:
    from nipype_brainrecon.glm import estimate_single_trial_betas

    idx = tuple(axis[:7] for axis in _mask_voxels(pristine))

    def edit(data: np.ndarray) -> None:
        if kind == "constant":
            data[idx] = 50.0
        else:
            data[idx + (slice(2, 4),)] = np.nan if kind == "nan" else np.inf

    bold, events, confounds, mask = _glm_inputs(pristine, tmp_path, edit)
    with pytest.warns(UserWarning, match=r"7 of \d+ mask voxels are NaN or constant"):
        betas, table = estimate_single_trial_betas(bold, events, confounds, mask)
    assert table.attrs["n_dropped_voxels"] == 7
    assert np.isfinite(np.asarray(betas.dataobj)).all()


def test_api_every_voxel_constant(pristine: Path, tmp_path: Path) -> None:
    from nipype_brainrecon.glm import estimate_single_trial_betas

    bold, events, confounds, mask = _glm_inputs(pristine, tmp_path, lambda d: d.fill(1.0))
    with pytest.raises(DataError, match="every voxel in the mask is NaN or constant"):
        estimate_single_trial_betas(bold, events, confounds, mask)


def _decoder(tmp_path: Path, n_voxels: int = 30, **metadata) -> Path:
    from nipype_brainrecon.ridge import fit_ridge_cv, save_decoder

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, n_voxels)).astype(np.float32)
    y = x[:, :4] @ rng.normal(size=(4, 6)).astype(np.float32)
    decoder = fit_ridge_cv(x, y, alphas=[1.0, 10.0], n_folds=4, backend="numpy")
    weights, _ = save_decoder(decoder, tmp_path / "target-z_roi-early_decoder", metadata)
    return weights


def test_api_decoder_from_another_subject(tmp_path: Path) -> None:
    """Voxel count mismatch: the message names the decoder, its subject and ROI."""
    from nipype_brainrecon.interfaces.decoding import PredictDecoder

    weights = _decoder(tmp_path, subject="02", roi="early")
    test = tmp_path / "test_data.npy"
    np.save(test, np.zeros((5, 31), np.float32))
    stimuli = tmp_path / "test_stimuli.tsv"
    pd.DataFrame({"stim_id": [f"s{i}" for i in range(5)]}).to_csv(stimuli, sep="\t", index=False)
    node = PredictDecoder(decoder_file=str(weights), test_data_file=str(test))
    node.inputs.test_stimuli_file = str(stimuli)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(DataError) as info:
            node.run()
    finally:
        os.chdir(cwd)
    message = str(info.value)
    assert weights.name in message and "30 voxels" in message and "31" in message
    assert "subject 02" in message and "ROI early" in message


def test_api_corrupt_safetensors_decoder(tmp_path: Path) -> None:
    from nipype_brainrecon.ridge import load_decoder

    weights = _decoder(tmp_path)
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(DataError, match="not a readable safetensors file"):
        load_decoder(weights)


def test_api_decoder_sidecar_version(tmp_path: Path) -> None:
    from nipype_brainrecon.ridge import load_decoder

    weights = _decoder(tmp_path)
    sidecar = weights.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["BrainreconRidgeDecoder"] = "999"
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="decoder format '999'.*re-save"):
        load_decoder(weights)


def test_api_decoder_wrong_dtype_and_shape(tmp_path: Path) -> None:
    from safetensors.numpy import load, save

    from nipype_brainrecon.ridge import load_decoder

    weights = _decoder(tmp_path)
    arrays = load(weights.read_bytes())
    bad = dict(arrays, coef=arrays["coef"].astype(np.int32))
    weights.write_bytes(save(bad))
    with pytest.raises(DataError, match="coef must be a float32/float64 matrix"):
        load_decoder(weights)
    bad = dict(arrays, intercept=arrays["intercept"][:-1])
    weights.write_bytes(save(bad))
    with pytest.raises(DataError, match="intercept must be floating of shape"):
        load_decoder(weights)


def test_api_corrupt_model_weights(tmp_path: Path) -> None:
    from nipype_brainrecon.diffusion.models import load_vae

    model = _model_copy(tmp_path)
    weights = next((model / "vae").glob("*.safetensors"))
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(BrainreconError) as info:
        load_vae(model, device="cpu")
    assert "vae" in str(info.value)


def test_api_fewer_trials_than_folds() -> None:
    from nipype_brainrecon.ridge import fit_ridge_cv

    with pytest.raises(DataError, match="3 training samples for 5 folds"):
        fit_ridge_cv(np.ones((3, 4)) + np.eye(3, 4), np.ones((3, 2)), n_folds=5)


def test_api_corrupt_png_in_evaluation(tmp_path: Path) -> None:
    from nipype_brainrecon.evaluation import load_images

    bad = tmp_path / "stim-0001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(DataError, match="stim-0001.png: cannot be read as an image"):
        load_images([bad], size=(16, 16))
    with pytest.raises(MissingInputError, match="seen image not found"):
        load_images([tmp_path / "absent.png"], size=(16, 16))


def test_api_reconstruct_with_other_latent_size(tmp_path: Path) -> None:
    """Latents decoded for another model (8 channels) are refused before any denoising."""
    from nipype_brainrecon.diffusion import reconstruct
    from nipype_brainrecon.diffusion.models import load_pipeline

    pipe = load_pipeline(demo_model_path(), device="cpu")
    channels = pipe.vae.config.latent_channels
    side = 8
    z = np.zeros((1, channels * 2, side, side), np.float32)
    c = np.zeros((1, 77, pipe.text_encoder.config.hidden_size), np.float32)
    with pytest.raises(DataError, match=r"z: expected latents of shape \(n_images, 4, h, w\)"):
        reconstruct(pipe, z=z, c=c, stim_ids=["a"], num_inference_steps=2, n_samples=1)


# --------------------------------------------------------------------------------------------
# Safe loading
# --------------------------------------------------------------------------------------------
SOURCE_DIRS = [
    Path(__file__).resolve().parents[2] / d for d in ("nipype_brainrecon", "workflows", "bids_app")
]


def _sources() -> list[Path]:
    return [p for d in SOURCE_DIRS for p in d.rglob("*.py")]


def test_no_pickle_no_remote_code_in_the_sources() -> None:
    offenders = []
    for path in _sources():
        text = path.read_text()
        for bad in (
            "allow_pickle=True",
            "import pickle",
            "pickle.load",
            "trust_remote_code=True",
            "weights_only=False",
            "joblib.load",
        ):
            if bad in text:
                offenders.append(f"{path.name}: {bad}")
        for line in text.splitlines():
            if "torch.load(" in line and "weights_only=True" not in line:
                offenders.append(f"{path.name}: {line.strip()}")
    assert not offenders


def test_np_load_refuses_pickles(tmp_path: Path) -> None:
    """Arrays a user may hand over (.npy) are read with allow_pickle=False: objects refused."""
    from nipype_brainrecon.features import cache_read

    evil = tmp_path / "evil.npy"
    np.save(evil, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert cache_read(evil) is None  # an unreadable cache entry is recomputed, never unpickled
    with pytest.raises(ValueError, match="allow_pickle"):
        np.load(evil, allow_pickle=False)


def test_model_loads_never_use_remote_code(monkeypatch) -> None:
    from diffusers import AutoencoderKL, StableDiffusionImg2ImgPipeline
    from transformers import CLIPTextModel

    from nipype_brainrecon.diffusion import models

    seen: dict[str, dict] = {}

    class Stop(Exception):
        pass

    def spy(name):
        def from_pretrained(*args, **kwargs):
            seen[name] = kwargs
            raise Stop

        return from_pretrained

    monkeypatch.setattr(StableDiffusionImg2ImgPipeline, "from_pretrained", spy("pipe"))
    monkeypatch.setattr(AutoencoderKL, "from_pretrained", spy("vae"))
    monkeypatch.setattr(CLIPTextModel, "from_pretrained", spy("text"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for loader in (models.load_pipeline, models.load_vae, models.load_text_encoder):
        with pytest.raises(Stop):
            loader(demo_model_path(), device="cpu")
    assert seen["pipe"]["trust_remote_code"] is False
    for kwargs in seen.values():
        assert kwargs.get("trust_remote_code", False) is False
        assert kwargs["use_safetensors"] is True
        assert kwargs["local_files_only"] is True  # a local folder never reaches the hub


def test_local_model_loads_without_network(no_network, monkeypatch) -> None:
    from nipype_brainrecon.diffusion.models import load_text_encoder, load_vae

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    load_vae(demo_model_path(), device="cpu")
    load_text_encoder(demo_model_path(), device="cpu")
    assert no_network == []


def test_hub_id_offline_never_reaches_the_network(no_network, monkeypatch, tmp_path) -> None:
    from nipype_brainrecon.diffusion.models import load_vae

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MissingInputError, match="not in the local Hugging Face cache"):
        load_vae("someone/not-cached-model", device="cpu")
    assert no_network == []


# --------------------------------------------------------------------------------------------
# Fuzzing the parsers: nothing but the documented errors
# --------------------------------------------------------------------------------------------
_CELL = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["n/a", "", " ", "NaN", "inf", "-0", "1e400", "\u00e9", "\t", '"']),
    st.text(max_size=12),
)
_PATHS = st.one_of(
    st.sampled_from(
        [
            "stim-0001.png",
            "../stim-0001.png",
            "../../etc/passwd",
            "/etc/passwd",
            "a/../stim-0001.png",
            "link.png",
            "sub/",
            ".",
            "..",
            "\\\\server\\share",
            "stim-0001.png/x",
            "x" * 300,
            "a\x00b",
        ]
    ),
    st.text(max_size=40),
    st.lists(st.sampled_from(["..", ".", "stim-0001.png", "sub", "", "~"]), max_size=5).map(
        "/".join
    ),
)


@pytest.fixture(scope="module")
def fuzz_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "ds"
    (root / "stimuli" / "sub").mkdir(parents=True)
    (root / "stimuli" / "stim-0001.png").write_bytes(b"png")
    (root / "stimuli" / "link.png").symlink_to("/etc/hostname")
    (root / "dataset_description.json").write_text("{}")
    return root


def _assert_documented(call: Callable[[], object]) -> object:
    try:
        return call()
    except BrainreconError as exc:
        message = str(exc)
        assert message and "\n" not in message.strip()
        assert exc.exit_code in (EXIT_DATA, EXIT_NO_INPUT)
        return None


FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(value=_PATHS)
def test_fuzz_stim_paths(fuzz_dataset: Path, value: str) -> None:
    stimuli = fuzz_dataset / "stimuli"
    result = _assert_documented(
        lambda: resolve_stim_file(
            value, stimuli, dataset_dir=fuzz_dataset, source=Path("events.tsv"), must_exist=False
        )
    )
    if result is not None:
        assert Path(os.path.normpath(result)).is_relative_to(stimuli)
        if Path(result).exists():
            assert Path(result).resolve().is_relative_to(fuzz_dataset.resolve())


@FUZZ
@given(
    columns=st.lists(
        st.sampled_from(["onset", "duration", "stim_file", "trial_type", "x"]),
        min_size=0,
        max_size=5,
    ),
    rows=st.lists(st.lists(st.one_of(_CELL, _PATHS), min_size=5, max_size=5), max_size=6),
)
def test_fuzz_events(fuzz_dataset: Path, columns: list[str], rows: list[list[str]]) -> None:
    path = fuzz_dataset / "events.tsv"
    lines = ["\t".join(columns)] + ["\t".join(row[: max(1, len(columns))]) for row in rows]
    path.write_text("\n".join(lines) + "\n", errors="surrogatepass")
    table = _assert_documented(
        lambda: read_events(path, fuzz_dataset / "stimuli", dataset_dir=fuzz_dataset)
    )
    if table is not None:
        assert {"onset", "duration", "stim_file"} <= set(table.columns)
        assert (table["onset"] >= 0).all() and np.isfinite(table["onset"]).all()


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), st.lists(st.tuples(_PATHS, _CELL), max_size=6)))
def test_fuzz_captions(fuzz_dataset: Path, data) -> None:
    path = fuzz_dataset / "captions.tsv"
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        body = "".join(f"{a}\t{b}\n" for a, b in data)
        path.write_bytes(("stim_file\tcaption\n" + body).encode("utf-8", "surrogatepass"))
    captions = _assert_documented(
        lambda: read_captions(path, fuzz_dataset / "stimuli", dataset_dir=fuzz_dataset)
    )
    if captions is not None:
        for stim, texts in captions.items():
            assert stim.is_relative_to(fuzz_dataset / "stimuli")
            assert all(t.strip() for t in texts)
