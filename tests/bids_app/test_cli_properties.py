"""Property test of the command line: whatever the events, stimulus names and option values,
``brainrecon`` answers with a BIDS Apps exit code, one error line and no traceback, and never
writes into its input.

Hypothesis generates an edit of a one-subject simulated dataset (a column dropped, a cell
replaced by arbitrary text, a stimulus renamed to an arbitrary name, or nothing) and option
values (seed, samples, strength, memory, device, test set), then runs ``brainrecon ...
participant --dry-run``, which goes through every check and the participant preflight (events,
stimuli, ROIs, test set, model) without running a node. Invariants:

* the exit code is 0 or one of 16, 64, 65, 66, 73 (1 would be an unforeseen error: a bug);
* an error ends in exactly one ``brainrecon: error:`` line on stderr (argparse's usage lines may
  precede it for 64), and no ``Traceback`` appears anywhere;
* the input dataset is byte-identical and OUT and the work folder are not created.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import tree_digest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nipype_brainrecon.bids_app.cli import main
from nipype_brainrecon.synthetic.simulate import simulate_dataset

EVENTS = "sub-01/func/sub-01_task-vision_run-01_events.tsv"
CODES = {0, 16, 64, 65, 66, 73}

PROPERTY = settings(
    max_examples=80,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r\x00"),
    max_size=12,
)
_name = st.from_regex(r"[A-Za-z0-9_\-\. ]{1,12}", fullmatch=True)
_edit = st.one_of(
    st.just(("none", None, None)),
    st.tuples(st.just("drop"), st.sampled_from(["onset", "duration", "stim_file"]), st.none()),
    st.tuples(st.just("cell"), st.sampled_from(["onset", "duration", "stim_file"]), _text),
    st.tuples(st.just("rename"), _name, st.none()),
)
_options = st.fixed_dictionaries(
    {},
    optional={
        "--random-seed": st.integers(-3, 2**33).map(str),
        "--samples": st.integers(-1, 6).map(str),
        "--strength": st.one_of(st.floats(-1, 2), st.just(float("nan"))).map(str),
        "--mem": st.one_of(st.floats(-1, 64), st.sampled_from([float("nan"), float("inf")])).map(
            str
        ),
        "--device": st.sampled_from(["cpu", "cuda", "cuda:7", "bogus"]),
        "--test-set": st.sampled_from(["repeats", "column:trial_type", "column:nope", "x.txt"]),
    },
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return simulate_dataset(
        tmp_path_factory.mktemp("properties") / "ds",
        n_subjects=1,
        n_runs=1,
        seed=5,
        n_train=10,
        n_test=3,
    )


def _apply(ds: Path, edit: tuple) -> None:
    kind, what, value = edit
    events_file = ds / EVENTS
    events = pd.read_csv(events_file, sep="\t", dtype=str, keep_default_na=False)
    if kind == "drop":
        events = events.drop(columns=[what])
    elif kind == "cell":
        events.loc[len(events) // 2, what] = value
    elif kind == "rename":
        old = events.loc[0, "stim_file"]
        new = str(Path(old).with_name(what + Path(old).suffix))
        if (ds / "stimuli" / new).exists() or new == old:
            return
        (ds / "stimuli" / old).rename(ds / "stimuli" / new)
        events["stim_file"] = events["stim_file"].replace(old, new)
        captions = ds / "stimuli" / "captions.tsv"
        table = pd.read_csv(captions, sep="\t", dtype=str, keep_default_na=False)
        table["stim_file"] = table["stim_file"].replace(old, new)
        table.to_csv(captions, sep="\t", index=False)
    events.to_csv(events_file, sep="\t", index=False)


@PROPERTY
@given(edit=_edit, options=st.one_of(st.just({}), _options))  # half: the edit alone
def test_cli_invariants(pristine, tmp_path_factory, capsys, edit, options):
    base = tmp_path_factory.mktemp("case")
    ds = Path(shutil.copytree(pristine, base / "ds", symlinks=True))
    _apply(ds, edit)
    before = tree_digest(ds)
    out, work = base / "out", base / "work"
    args = [str(ds), str(out), "participant", "--participant-label", "01", "--model", "demo"]
    args += ["--skip-bids-validation", "--dry-run", "-w", str(work)]
    for option, value in options.items():
        args += [option, value]
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    captured = capsys.readouterr()
    event(f"exit {code}")  # the spread of answers, in --hypothesis-show-statistics
    assert code in CODES, (code, captured.err)
    assert "Traceback" not in captured.err + captured.out
    if code != 0:
        lines = captured.err.strip().splitlines()
        errors = [ln for ln in lines if ln.startswith("brainrecon: error:")]
        assert len(errors) == 1 and lines[-1] == errors[0], captured.err
        if code != 64:
            assert len(lines) == 1, captured.err
    assert tree_digest(ds) == before
    assert not out.exists() and not work.exists()
