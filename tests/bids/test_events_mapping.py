"""Events read as a dataset writes them: the stimulus column, its mapping to images, the trial rows
(--stim-column, --stim-map, --stim-template, --trial-filter), and fMRIPrep's --session-label and
--bids-filter-file.

The dataset is the simulator's, rewritten as many public datasets are: no ``stim_file`` column but
numeric ``stimulus_id`` values (zero-padded differently in the map), rest rows (``n/a``) and
one-back repeats (``trial_type == 'oneback'``) that show an image but are not trials. The truth is
the simulator's own events: the trials and their images must be exactly those, in order.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tree_digest

from nipype_brainrecon.bids import EventsSpec, collect_participant, map_events
from nipype_brainrecon.bids_app.cli import main
from nipype_brainrecon.errors import (
    EXIT_DATA,
    EXIT_NO_INPUT,
    EXIT_USAGE,
    DataError,
    MissingInputError,
    UsageError,
)
from nipype_brainrecon.synthetic.simulate import simulate_dataset

FUNC = "sub-01/func"
RUNS = ("01", "02")
FILTER = "trial_type == 'image'"
TEMPLATE = "stim-{value:04d}.png"
BASE = ["--participant-label", "01", "--model", "demo", "--skip-bids-validation", "--nprocs", "1"]


def _events(ds: Path, run: str) -> Path:
    return ds / FUNC / f"sub-01_task-vision_run-{run}_events.tsv"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    """The simulated dataset with rewritten events, and each run's true images in order."""
    root = tmp_path_factory.mktemp("mapping")
    ds = simulate_dataset(root / "ds", n_subjects=1, n_runs=2, seed=3, n_train=12, n_test=3)
    truth = {}
    for run in RUNS:
        original = pd.read_csv(_events(ds, run), sep="\t", dtype={"stim_file": str})
        truth[run] = original["stim_file"].tolist()
        ids = [int(re.search(r"\d+", name).group()) for name in truth[run]]
        rows = [
            (o, d, i, "image")
            for o, d, i in zip(original.onset, original.duration, ids, strict=True)
        ]
        for k, (onset, _, stim, _) in enumerate(list(rows)):
            if k % 3 == 1:  # a one-back repeat of the image just shown, in the gap after it
                rows.append((onset + 3.0, 0.5, stim, "oneback"))
            if k % 4 == 2:
                rows.append((onset + 3.5, 0.5, None, "rest"))
        table = pd.DataFrame(rows, columns=["onset", "duration", "stimulus_id", "trial_type"])
        table = table.sort_values("onset", kind="stable").astype({"stimulus_id": "Int64"})
        table.to_csv(_events(ds, run), sep="\t", index=False, na_rep="n/a")
    files = sorted(p.name for p in (ds / "stimuli").glob("stim-*.png"))
    stim_map = pd.DataFrame(
        {
            "value": [f"{int(re.search(r'[0-9]+', f).group()):03d}" for f in files],
            "stim_file": files,
        }
    )
    stim_map.to_csv(root / "stim_map.tsv", sep="\t", index=False)
    return ds, truth


@pytest.fixture
def ds(pristine, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine[0], tmp_path / "ds", symlinks=True))


@pytest.fixture
def stim_map(pristine) -> Path:
    return pristine[0].parent / "stim_map.tsv"


def _trials(inputs) -> dict[str, list[str]]:
    return {
        run.run: [p.name for p in run.events["stim_file"] if p is not None] for run in inputs.runs
    }


# ---------------------------------------------------------------------------------------------
# Reading the dataset
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("naming", ["map", "template"])
def test_collect_participant_maps_values_and_keeps_only_chosen_trials(
    naming, pristine, stim_map
) -> None:
    ds, truth = pristine
    how = {"stim_map": stim_map} if naming == "map" else {"stim_template": TEMPLATE}
    inputs = collect_participant(
        ds, "01", stim_column="stimulus_id", trial_filter=FILTER, require_captions=True, **how
    )
    assert _trials(inputs) == truth
    for run in inputs.runs:
        events = run.events
        assert all(p.parent == ds / "stimuli" and p.is_file() for p in inputs.stim_files)
        # one-back repeats and rest rows stay in the table, not as trials
        others = events[events["trial_type"] != "image"]
        assert len(others) > 0 and others["stim_file"].isna().all()
        assert (events["trial_type"] == "image").sum() == len(truth[run.run])
    assert inputs.events_spec.inputs() == {
        "stim_column": "stimulus_id",
        "trial_filter": FILTER,
        **({"stim_map": str(stim_map)} if naming == "map" else {"stim_template": TEMPLATE}),
    }


def test_without_the_filter_the_oneback_rows_are_trials(pristine, stim_map) -> None:
    ds, truth = pristine
    inputs = collect_participant(ds, "01", stim_column="stimulus_id", stim_map=stim_map)
    got = _trials(inputs)
    n_oneback = {r.run: int((r.events["trial_type"] == "oneback").sum()) for r in inputs.runs}
    assert {run: len(files) for run, files in got.items()} == {
        run: len(truth[run]) + n_oneback[run] for run in RUNS
    }
    assert got != truth


def test_default_events_are_read_as_before(tmp_path: Path) -> None:
    ds = simulate_dataset(tmp_path / "ds", n_subjects=1, n_runs=1, seed=3, n_train=12, n_test=3)
    truth = pd.read_csv(_events(ds, "01"), sep="\t")["stim_file"].tolist()
    inputs = collect_participant(ds, "01")
    assert inputs.events_spec.is_default and inputs.events_spec.inputs() == {}
    assert _trials(inputs) == {"01": truth}
    # the filter alone, on the default column, picks rows by any column
    inputs = collect_participant(ds, "01", trial_filter="onset < 30")
    onsets = pd.read_csv(_events(ds, "01"), sep="\t")["onset"]
    assert _trials(inputs) == {"01": [f for f, o in zip(truth, onsets, strict=True) if o < 30]}


def test_bids_filter_file_and_session_select_runs(pristine, tmp_path: Path) -> None:
    ds, truth = pristine
    spec = {"stim_column": "stimulus_id", "stim_template": TEMPLATE, "trial_filter": FILTER}
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"bold": {"run": 2, "datatype": "func"}, "t1w": {"run": 1}}))
    inputs = collect_participant(ds, "01", bids_filters=filters, **spec)
    assert _trials(inputs) == {"02": truth["02"]}
    inputs = collect_participant(ds, "01", bids_filters={"bold": {"run": ["1", "02"]}}, **spec)
    assert _trials(inputs) == truth
    inputs = collect_participant(ds, "01", bids_filters={"bold": {"session": None}}, **spec)
    assert _trials(inputs) == truth
    with pytest.raises(MissingInputError, match=r"no BOLD run matches --bids-filter-file"):
        collect_participant(ds, "01", bids_filters={"bold": {"task": "rest"}}, **spec)
    with pytest.raises(MissingInputError, match=r"session 'A' not found \(sessions: none\)") as e:
        collect_participant(ds, "01", session="ses-A", **spec)
    assert e.value.exit_code == EXIT_NO_INPUT and isinstance(e.value, UsageError)
    for content, words in (
        ({"bold": {"subject": "01"}}, "unknown bold entity 'subject'"),
        ({"bolds": {"run": 1}}, "unknown query 'bolds'"),
        ({"bold": {"run": 1.5}}, "give a label, a list of labels or null"),
        ({"bold": {"suffix": "T1w"}}, "does not name BOLD series"),
    ):
        with pytest.raises(UsageError, match=re.escape(words)):
            collect_participant(ds, "01", bids_filters=content, **spec)


def test_map_events_values_compare_as_numbers() -> None:
    table = pd.DataFrame(
        {
            "onset": [0.0, 4.0, 8.0, 12.0],
            "duration": [3.0] * 4,
            "code": ["7", "n/a", "0012", "7.0"],
            "kind": ["a", "a", "a", "b"],
        }
    )
    spec = EventsSpec("code", stim_template="img_{value:03d}.png", trial_filter="code > 7")
    assert map_events(table, spec, "x")["stim_file"].tolist() == [None, None, "img_012.png", None]
    spec = EventsSpec("code", trial_filter="kind == 'a'")
    assert map_events(table, spec, "x")["stim_file"].tolist() == ["7", None, "0012", None]
    with pytest.raises(DataError, match=r"value 'x1' does not fit --stim-template"):
        map_events(table.assign(code="x1"), EventsSpec("code", stim_template="{value:d}.png"), "x")
    with pytest.raises(UsageError, match="does not give True or False"):
        map_events(table, EventsSpec("code", trial_filter="onset + 1"), "x")
    for bad in ({"stim_template": "img_{id}.png"}, {"stim_template": "img_{value"}):
        with pytest.raises(UsageError, match="--stim-template"):
            EventsSpec("code", **bad)
    with pytest.raises(UsageError, match="not both"):
        EventsSpec("code", stim_map=Path(__file__), stim_template="{value}.png")


# ---------------------------------------------------------------------------------------------
# The GLM sees the same trials
# ---------------------------------------------------------------------------------------------
def test_betas_node_trials_are_the_mapped_trials(pristine, stim_map, tmp_path: Path) -> None:
    """The betas interface with the mapping options equals the GLM on hand-written events (the
    true ``stim_file`` on image rows, ``n/a`` elsewhere)."""
    from nipype_brainrecon.glm import estimate_single_trial_betas, load_events
    from nipype_brainrecon.interfaces.decoding import SingleTrialBetas

    ds, truth = pristine
    inputs = collect_participant(
        ds, "01", stim_column="stimulus_id", stim_map=stim_map, trial_filter=FILTER
    )
    run = inputs.runs[0]
    node = SingleTrialBetas(
        bold_file=str(run.bold),
        events_file=str(run.events_file),
        confounds_file=str(run.confounds),
        mask_file=str(run.mask),
        run_label="1",
        **inputs.events_spec.inputs(),
    )
    result = node.run(cwd=str(tmp_path))
    trials = pd.read_csv(result.outputs.trials_file, sep="\t", dtype={"stim_id": str})
    assert trials["stim_file"].tolist() == truth[run.run]
    assert trials["stim_id"].tolist() == [Path(f).stem for f in truth[run.run]]
    assert set(trials["trial_type"]) == {"image"}

    reference = pd.read_csv(run.events_file, sep="\t", na_values=["n/a"])
    reference["stim_file"] = pd.Series(dtype=object)
    image = (reference["trial_type"] == "image").to_numpy()
    reference.loc[image, "stim_file"] = truth[run.run]
    reference = reference.drop(columns="stimulus_id")
    assert load_events(run.events_file, inputs.events_spec)["stim_file"].tolist() == [
        f if isinstance(f, str) else None for f in reference["stim_file"]
    ]
    betas, expected = estimate_single_trial_betas(
        run.bold, reference, run.confounds, run.mask, run=1
    )
    import nibabel as nib

    got = np.asarray(nib.load(result.outputs.betas_file).dataobj)
    np.testing.assert_allclose(got, np.asarray(betas.dataobj), rtol=1e-6, atol=1e-6)
    pd.testing.assert_frame_equal(
        trials.drop(columns="run"), expected.drop(columns="run"), check_dtype=False
    )


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------
def _cli(ds: Path, out: Path, args, capsys) -> tuple[int, str]:
    before = tree_digest(ds)
    capsys.readouterr()
    code = main([str(ds), str(out), "participant", *BASE, *[str(a) for a in args]])
    err = capsys.readouterr().err
    assert tree_digest(ds) == before, "the input changed"
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("brainrecon: error: "), err
    return code, lines[0].removeprefix("brainrecon: error: ")


def test_cli_options_pass_preflight(pristine, tmp_path: Path, capsys, monkeypatch) -> None:
    """--stim-column/--stim-template/--trial-filter/--bids-filter-file reach
    collect_participant; the participant passes preflight (the workflow is stopped)."""
    from nipype.pipeline import engine as pe

    from nipype_brainrecon.bids_app import preflight

    ds, truth = pristine
    seen = {}
    check = preflight.check_participant

    def checked(participant, *args, **kwargs):
        check(participant, *args, **kwargs)  # raises on a failed check
        seen["trials"] = _trials(participant)

    def fake_run(self, **kwargs):
        seen["ran"] = True
        raise RuntimeError("stop here")

    monkeypatch.setattr(preflight, "check_participant", checked)
    monkeypatch.setattr(pe.Workflow, "run", fake_run)
    filters = _write(tmp_path / "filters.json", {"bold": {"run": "02"}})
    code = main(
        [str(ds), str(tmp_path / "out"), "participant", *BASE]
        + ["--stim-column", "stimulus_id", "--stim-template", TEMPLATE]
        + ["--trial-filter", FILTER, "--bids-filter-file", str(filters)]
    )
    assert code == 1 and seen["ran"]  # the stopped workflow counts as failed
    assert seen["trials"] == {"02": truth["02"]}


def test_cli_options_reach_the_betas_node(pristine, stim_map, tmp_path: Path, monkeypatch) -> None:
    """The workflow's GLM node reads the events as collect_participant did."""
    from nipype.pipeline import engine as pe

    ds, _ = pristine
    seen = {}
    keys = ("stim_column", "stim_map", "stim_template", "trial_filter")

    def fake_run(self, **kwargs):
        betas = self.get_node("sub_01_wf.decoding_wf.betas")
        seen.update({k: getattr(betas.inputs, k) for k in keys})
        raise RuntimeError("stop here")

    monkeypatch.setattr(pe.Workflow, "run", fake_run)
    args = ["--stim-column", "stimulus_id", "--stim-map", str(stim_map), "--trial-filter", FILTER]
    assert main([str(ds), str(tmp_path / "out"), "participant", *BASE, *args]) == 1
    assert seen["stim_column"] == "stimulus_id" and seen["trial_filter"] == FILTER
    assert seen["stim_map"] == str(stim_map)


def _drop_map_row(stim_map: Path, tmp_path: Path) -> tuple[Path, str]:
    table = pd.read_csv(stim_map, sep="\t", dtype=str)
    short = tmp_path / "short_map.tsv"
    table.iloc[1:].to_csv(short, sep="\t", index=False)
    return short, table["value"].iloc[0]


# name -> (extra args, exit code, the line starts with, words in the line)
BAD = {
    "unknown-column": (
        lambda ds, m, t: ["--stim-column", "stim_id"],
        EXIT_DATA,
        lambda ds, m, t: str(_events(ds, "01")),
        (
            "no stimulus column 'stim_id'",
            "onset, duration, stimulus_id, trial_type",
            "--stim-column",
        ),
    ),
    "map-missing-id": (
        lambda ds, m, t: ["--stim-column", "stimulus_id", "--stim-map", _drop_map_row(m, t)[0]],
        EXIT_DATA,
        lambda ds, m, t: str(t / "short_map.tsv"),
        ("no row for value", "stimulus_id of", "_events.tsv", "add a row"),
    ),
    "filter-selects-nothing": (
        lambda ds, m, t: (
            ["--stim-column", "stimulus_id", "--stim-template", TEMPLATE]
            + ["--trial-filter", "trial_type == 'images'"]
        ),
        EXIT_DATA,
        lambda ds, m, t: str(_events(ds, "01")),
        ("no row that --trial-filter", "selects", "nothing is a trial"),
    ),
    "filter-unknown-column": (
        lambda ds, m, t: (
            ["--stim-column", "stimulus_id", "--stim-template", TEMPLATE]
            + ["--trial-filter", "condition == 'image'"]
        ),
        EXIT_DATA,
        lambda ds, m, t: str(_events(ds, "01")),
        ("names a column this events table lacks", "condition"),
    ),
    "session-not-found": (
        lambda ds, m, t: ["--session-label", "02"],
        EXIT_NO_INPUT,
        lambda ds, m, t: str(ds / "sub-01"),
        ("session '02' not found (sessions: none)", "--session-label"),
    ),
    "malformed-filter": (
        lambda ds, m, t: ["--trial-filter", "trial_type = 'image'"],
        EXIT_USAGE,
        lambda ds, m, t: "--trial-filter",
        ("not a pandas query expression", "=="),
    ),
    "filter-file-unknown-key": (
        lambda ds, m, t: ["--bids-filter-file", _write(t / "f.json", {"func": {"run": 1}})],
        EXIT_USAGE,
        lambda ds, m, t: str(t / "f.json"),
        ("unknown query 'func'",),
    ),
    "filter-file-no-run": (
        lambda ds, m, t: ["--bids-filter-file", _write(t / "f.json", {"bold": {"run": 9}})],
        EXIT_NO_INPUT,
        lambda ds, m, t: str(ds / "sub-01"),
        ("no BOLD run matches --bids-filter-file", "run-01_bold.nii.gz"),
    ),
}


def _write(path: Path, content: dict) -> Path:
    path.write_text(json.dumps(content))
    return path


@pytest.fixture
def no_workflow(monkeypatch):
    from nipype.pipeline import engine as pe

    def refuse(self, *args, **kwargs):
        raise AssertionError("a workflow ran: the check did not stop the run")

    monkeypatch.setattr(pe.Workflow, "run", refuse)


@pytest.mark.parametrize("case", sorted(BAD))
def test_cli_bad_events_options(case, ds, stim_map, tmp_path, capsys, no_workflow) -> None:
    args, exit_code, start, words = BAD[case]
    out = tmp_path / "out"
    code, line = _cli(ds, out, args(ds, stim_map, tmp_path), capsys)
    assert code == exit_code, line
    assert line.startswith(start(ds, stim_map, tmp_path)), line
    for word in words:
        assert word in line, (word, line)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_cli_whole_participant_with_mapped_events(pristine, stim_map, tmp_path: Path) -> None:
    """The whole participant, fastest settings: the betas' trials are the true images."""
    ds, truth = pristine
    out = tmp_path / "out"
    args = ["--samples", "1", "--steps", "2", "--stim-column", "stimulus_id"]
    args += ["--stim-map", str(stim_map), "--trial-filter", FILTER, "-w", str(tmp_path / "w")]
    assert main([str(ds), str(out), "participant", *BASE, *args]) == 0
    tables = sorted(out.rglob("sub-01_task-vision_run-*_desc-lss_trials.tsv"))
    assert len(tables) == 2, sorted(p.relative_to(out) for p in out.rglob("*.tsv"))
    for table, run in zip(tables, RUNS, strict=True):
        trials = pd.read_csv(table, sep="\t", dtype=str)
        assert [Path(s).name for s in trials["stim_file"]] == truth[run]
