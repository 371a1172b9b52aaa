"""DataLad inputs and outputs, on local datasets made from the simulated data (no network).

The origin datasets are a raw BIDS dataset and fMRIPrep-like derivatives from the simulator,
every file annexed (so a clone without content cannot even read ``dataset_description.json``),
plus files a ``--task vision`` run of sub-01 must not fetch: a second task of sub-01 with its
own stimulus, an image no run shows, and everything of sub-02.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

datalad = pytest.importorskip("datalad", reason="datalad not installed (extra: datalad)")
dl = pytest.importorskip("datalad.api")

from nipype_brainrecon import __version__  # noqa: E402
from nipype_brainrecon import datalad as brd  # noqa: E402
from nipype_brainrecon.errors import BrainreconError, MissingInputError  # noqa: E402

try:
    brd.ensure_git_annex()
except BrainreconError as exc:  # pragma: no cover - depends on the machine
    pytest.skip(str(exc), allow_module_level=True)

PARTICIPANT = "01"
TASK = "vision"


@pytest.fixture(scope="module")
def git_env(tmp_path_factory):
    """A throwaway git identity; file:// clones allowed (for submodules too)."""
    home = tmp_path_factory.mktemp("gitconfig")
    config = home / "gitconfig"
    config.write_text(
        "[user]\n\tname = brainrecon tests\n\temail = tests@example.org\n"
        '[protocol "file"]\n\tallow = always\n[init]\n\tdefaultBranch = main\n'
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIT_CONFIG_GLOBAL", str(config))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        mp.delenv(brd.RECORDING_ENV, raising=False)
        datalad.cfg.reload(force=True)
        yield config
    datalad.cfg.reload(force=True)


def _noise_png(path: Path, seed: int) -> None:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _second_task(raw: Path, prep: Path) -> None:
    """sub-01 gets a 'localizer' run (distinct content) showing an image of its own."""
    import nibabel as nib
    import pandas as pd

    src = "sub-01_task-vision_run-02"
    dst = "sub-01_task-localizer_run-01"
    func = raw / "sub-01" / "func"
    _noise_png(raw / "stimuli" / "localizer.png", 1)
    _noise_png(raw / "stimuli" / "unused.png", 2)
    events = pd.read_csv(func / f"{src}_events.tsv", sep="\t")
    events["stim_file"] = "localizer.png"
    events.to_csv(func / f"{dst}_events.tsv", sep="\t", index=False)
    meta = json.loads((func / f"{src}_bold.json").read_text())
    meta["TaskName"] = "localizer"
    (func / f"{dst}_bold.json").write_text(json.dumps(meta, indent=2))
    for folder, name in (
        (func, "bold.nii.gz"),
        (prep / "sub-01" / "func", "space-T1w_desc-preproc_bold.nii.gz"),
    ):
        image = nib.load(folder / f"{src}_{name}")
        data = np.asanyarray(image.dataobj) + 1
        nib.save(nib.Nifti1Image(data, image.affine, image.header), folder / f"{dst}_{name}")
    pfunc = prep / "sub-01" / "func"
    for name in ("space-T1w_desc-brain_mask.nii.gz", "desc-confounds_timeseries.tsv"):
        shutil.copyfile(pfunc / f"{src}_{name}", pfunc / f"{dst}_{name}")
    meta = json.loads((pfunc / f"{src}_space-T1w_desc-preproc_bold.json").read_text())
    meta["TaskName"] = "localizer"
    (pfunc / f"{dst}_space-T1w_desc-preproc_bold.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def origin(git_env, tmp_path_factory):
    """Origin datasets ``raw`` and ``fmriprep`` with all content, every file annexed."""
    from nipype_brainrecon.synthetic.simulate import simulate_dataset

    root = tmp_path_factory.mktemp("origin")
    sim = simulate_dataset(
        root / "sim",
        n_subjects=2,
        n_runs=2,
        n_train=16,
        n_test=3,
        n_repeats=2,
        image_size=64,
        n_captions=1,
        seed=11,
    )
    raw, prep = root / "raw", root / "fmriprep"
    shutil.move(sim / "derivatives" / "fmriprep", prep)
    shutil.rmtree(sim / "derivatives")
    sim.rename(raw)
    _second_task(raw, prep)
    for path in (raw, prep):
        ds = dl.create(str(path), force=True, result_renderer="disabled")
        ds.save(message="import simulated data", result_renderer="disabled")
        assert not ds.repo.dirty
    return {"raw": raw, "fmriprep": prep}


@pytest.fixture
def clones(origin, tmp_path):
    """Fresh clones of both origins: names present, annexed content absent."""
    out = {}
    for name, src in origin.items():
        ds = dl.clone(source=str(src), path=str(tmp_path / name), result_renderer="disabled")
        out[name] = Path(ds.path)
    assert not (out["raw"] / "dataset_description.json").is_file()  # a broken link
    return out


def _tree(root: Path) -> list[Path]:
    return sorted(
        Path(folder, name)
        for folder, dirs, names in os.walk(root)
        if ".git" not in Path(folder).relative_to(root).parts
        for name in names
        if not name.startswith(".") and ".datalad" not in Path(folder).parts
    )


def _present(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in _tree(root) if p.is_file()}


def _expected_by_name(raw: Path, prep: Path) -> set[Path]:
    """What sub-01's vision runs need, written out by hand from the simulator's layout."""
    expected = {
        raw / "dataset_description.json",
        raw / "stimuli" / "captions.tsv",
        prep / "dataset_description.json",
        prep / "desc-visual_dseg.tsv",
        prep / "sub-01" / "anat" / "sub-01_space-T1w_desc-visual_dseg.nii.gz",
    }
    for run in ("01", "02"):
        stem = f"sub-01_task-vision_run-{run}"
        expected |= {
            raw / "sub-01" / "func" / f"{stem}_events.tsv",
            raw / "sub-01" / "func" / f"{stem}_bold.json",
        }
        for name in (
            "space-T1w_desc-preproc_bold.nii.gz",
            "space-T1w_desc-preproc_bold.json",
            "space-T1w_desc-brain_mask.nii.gz",
            "desc-confounds_timeseries.tsv",
        ):
            expected.add(prep / "sub-01" / "func" / f"{stem}_{name}")
    return expected


def _shown(origin_raw: Path, task: str = TASK) -> set[str]:
    import pandas as pd

    shown: set[str] = set()
    for events in (origin_raw / "sub-01" / "func").glob(f"*task-{task}_*_events.tsv"):
        shown |= set(pd.read_csv(events, sep="\t")["stim_file"].dropna())
    return shown


def test_files_needed_reads_names_only(clones):
    raw, prep = clones["raw"], clones["fmriprep"]
    needed = brd.files_needed(raw, "sub-01", derivatives=prep, task=TASK)
    # Events absent: the stimuli cannot be known yet, everything else is listed by name.
    assert set(needed) == _expected_by_name(raw, prep)
    assert not _present(raw) and not _present(prep)  # nothing was read or fetched
    # Every task with events by default: the localizer run and its sidecars join in.
    everything = set(brd.files_needed(raw, "01", derivatives=prep))
    extra = {p.name for p in everything - set(needed)}
    assert extra == {
        "sub-01_task-localizer_run-01_events.tsv",
        "sub-01_task-localizer_run-01_bold.json",
        "sub-01_task-localizer_run-01_space-T1w_desc-preproc_bold.nii.gz",
        "sub-01_task-localizer_run-01_space-T1w_desc-preproc_bold.json",
        "sub-01_task-localizer_run-01_space-T1w_desc-brain_mask.nii.gz",
        "sub-01_task-localizer_run-01_desc-confounds_timeseries.tsv",
    }


def test_prepare_inputs_fetches_only_one_participants_files(origin, clones, capsys):
    from nipype_brainrecon.bids import collect_participant

    raw, prep = clones["raw"], clones["fmriprep"]
    prepared = brd.prepare_inputs(raw, {"fmriprep": prep}, ["sub-01"], TASK, jobs=2)
    shown = _shown(origin["raw"])
    assert 0 < len(shown) < len(list((origin["raw"] / "stimuli").glob("*.png")))
    expected = _expected_by_name(raw, prep) | {raw / "stimuli" / s for s in shown}
    assert set(prepared.needed["01"]) == expected
    summary = prepared.summary
    # Ground truth from the origin: distinct contents of the needed files, by their bytes.
    contents = {}
    for path in expected:
        name = "raw" if raw in path.parents else "fmriprep"
        data = (origin[name] / path.relative_to(clones[name])).read_bytes()
        contents[hashlib.md5(data).hexdigest()] = len(data)
    assert summary["n_files"] == len(expected) == summary["n_needed"]
    assert summary["bytes"] == sum(contents.values())
    assert summary["n_present"] == 0
    print(
        f"\nfetched {summary['n_files']} files, {summary['bytes']} bytes in "
        f"{summary['seconds']:.2f} s; {brd.format_summary(summary)}"
    )

    # Everything needed is present; every other file is absent unless it shares its content
    # (and so its annex key) with a needed one.
    needed_keys = {Path(os.readlink(p)).name for p in expected}
    for root in (raw, prep):
        for path in _tree(root):
            rel = path.relative_to(root).as_posix()
            if path in expected:
                assert path.is_file(), rel
            elif Path(os.readlink(path)).name not in needed_keys:
                assert not path.is_file(), f"{rel} was fetched but is not needed"
    # In particular the other subject's and the other task's series and tables, the raw series
    # (not read), and the images the selected runs do not show.
    func1, func2 = Path("sub-01", "func"), Path("sub-02", "func")
    absent = [raw / func1 / f"sub-01_task-vision_run-{r}_bold.nii.gz" for r in ("01", "02")]
    absent += [raw / "stimuli" / "localizer.png", raw / "stimuli" / "unused.png"]
    absent += [raw / func1 / "sub-01_task-localizer_run-01_events.tsv"]
    absent += [prep / func1 / "sub-01_task-localizer_run-01_space-T1w_desc-preproc_bold.nii.gz"]
    for run in ("01", "02"):
        absent += [
            raw / func2 / f"sub-02_task-vision_run-{run}_events.tsv",
            raw / func2 / f"sub-02_task-vision_run-{run}_bold.nii.gz",
            prep / func2 / f"sub-02_task-vision_run-{run}_space-T1w_desc-preproc_bold.nii.gz",
            prep / func2 / f"sub-02_task-vision_run-{run}_desc-confounds_timeseries.tsv",
        ]
    assert all(p.is_symlink() and not p.is_file() for p in absent), [
        p.name for p in absent if p.is_file()
    ]
    assert prepared.summary["datasets"]["raw"]["absent"] > 0 and not prepared.complete

    # The reader now works on the partial clone, with the stimuli the runs show.
    inputs = collect_participant(prepared.bids_dir, "01", derivatives=prepared.fmriprep, task=TASK)
    assert [r.run for r in inputs.runs] == ["01", "02"]
    assert {p.name for p in inputs.stim_files} == shown

    again = brd.prepare_inputs(raw, {"fmriprep": prep}, ["01"], TASK)
    assert again.summary["n_files"] == 0 and again.summary["bytes"] == 0
    assert again.summary["n_present"] == len(expected)


def test_unfetchable_file_names_it_exit_66_nothing_written(clones, tmp_path, capsys):
    raw, prep = clones["raw"], clones["fmriprep"]
    lost = prep / "sub-01" / "func" / "sub-01_task-vision_run-02_space-T1w_desc-preproc_bold.nii.gz"
    others = [p for p in brd.files_needed(raw, "01", derivatives=prep, task=TASK) if p != lost]
    brd.get_files(prep, [p for p in others if prep in p.parents], jobs=2)
    subprocess.run(["git", "-C", str(prep), "remote", "remove", "origin"], check=True)
    before = {name: _present(root) for name, root in clones.items()}
    output_dir = tmp_path / "out"

    with pytest.raises(MissingInputError) as info:
        brd.prepare_inputs(raw, {"fmriprep": prep}, ["01"], TASK, clone_dir=output_dir)
    message = str(info.value)
    print("\n" + message)
    assert info.value.exit_code == 66
    assert message.startswith(str(lost)) and "\n" not in message
    assert "cannot be fetched" in message
    assert not lost.is_file()
    assert not output_dir.exists()
    assert _present(prep) == before["fmriprep"]
    from nipype_brainrecon.bids_app.cli import build_parser, main

    if "--datalad" in build_parser().format_help():  # once the CLI calls prepare_inputs
        argv = [str(raw), str(output_dir), "participant", "--participant-label", "01"]
        argv += ["--task", TASK, "--derivatives", f"fmriprep={prep}", "--model", "demo"]
        assert main(argv) == 66
        assert str(lost) in capsys.readouterr().err
        assert not output_dir.exists()
    for root in clones.values():
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True
        )
        assert status.stdout == ""


def test_get_files_errors_and_counts(clones, tmp_path):
    prep = clones["fmriprep"]
    assert brd.uses_datalad(prep) and brd.uses_datalad(prep / "sub-01" / "func")
    assert brd.uses_datalad(None, "https://example.org/ds.git")
    assert not brd.uses_datalad(tmp_path / "plain", None)
    with pytest.raises(MissingInputError, match="nope.nii.gz: file not found"):
        brd.get_files(prep, ["sub-01/nope.nii.gz"])
    files = ["dataset_description.json", "desc-visual_dseg.tsv"]
    summary = brd.get_files(prep, files, jobs=1)
    sizes = [os.path.getsize(prep / f) for f in files]
    assert summary["n_files"] == 2 and summary["bytes"] == sum(sizes)
    assert brd.get_files(prep, files)["n_present"] == 2


def test_ensure_dataset_clones_and_installs_subdatasets(origin, tmp_path, git_env):
    # A clone source (file:// URL) is cloned where asked, registered in a superdataset.
    superds = dl.create(str(tmp_path / "study"), result_renderer="disabled")
    target = tmp_path / "study" / "inputs" / "raw"
    got = brd.ensure_dataset(origin["raw"].as_uri(), target, superdataset=superds.path)
    assert got == target and brd.is_dataset(target)
    assert "inputs/raw" in superds.subdatasets(result_renderer="disabled", result_xfm="relpaths")
    assert brd.ensure_dataset(origin["raw"].as_uri(), target) == target  # already there
    # A registered subdataset that is not installed yet (empty folder) gets installed.
    fresh = dl.clone(superds.path, str(tmp_path / "copy"), result_renderer="disabled")
    sub = Path(fresh.path) / "inputs" / "raw"
    assert sub.is_dir() and not any(sub.iterdir())
    assert brd.ensure_dataset(sub) == sub and brd.is_dataset(sub)
    assert (sub / "dataset_description.json").is_symlink()
    # Plain folders pass through; missing ones are a missing input.
    assert brd.ensure_dataset(tmp_path) == tmp_path
    with pytest.raises(MissingInputError):
        brd.ensure_dataset(tmp_path / "absent")
    with pytest.raises(MissingInputError, match="cannot clone"):
        brd.ensure_dataset((tmp_path / "absent").as_uri(), tmp_path / "x")


def test_interfaces_get_and_save(clones, tmp_path, git_env, monkeypatch):
    from nipype_brainrecon.interfaces.datalad import DataladGet, DataladSave

    prep = clones["fmriprep"]
    wanted = ["desc-visual_dseg.tsv", "sub-01/anat/sub-01_space-T1w_desc-visual_dseg.nii.gz"]
    monkeypatch.chdir(tmp_path)
    result = DataladGet(dataset=str(prep), paths=wanted, jobs=2).run()
    files = result.outputs.files
    assert files == [str(prep / w) for w in wanted]
    assert result.outputs.n_files == 2
    assert result.outputs.n_bytes == sum(os.path.getsize(f) for f in files)
    other = (
        prep / "sub-01" / "func" / "sub-01_task-vision_run-01_space-T1w_desc-preproc_bold.nii.gz"
    )
    assert not other.is_file()

    out = dl.create(str(tmp_path / "results"), result_renderer="disabled")
    made = tmp_path / "scores.tsv"
    made.write_text("a\tb\n1\t2\n")
    inside = Path(out.path) / "notes.txt"
    inside.write_text("kept in place\n")
    result = DataladSave(
        dataset=out.path, in_files=[str(made), str(inside)], dest="sub-01", message="add scores"
    ).run()
    assert result.outputs.out_files == [str(Path(out.path) / "sub-01" / "scores.tsv"), str(inside)]
    assert result.outputs.commit == out.repo.get_hexsha()
    assert out.repo.format_commit("%s") == "add scores"
    assert not out.repo.dirty
    assert (Path(out.path) / "sub-01" / "scores.tsv").read_text() == made.read_text()


def test_run_record_parses_and_rerun_replays(tmp_path, git_env):
    out = brd.ensure_output_dataset(tmp_path / "out")
    assert brd.is_dataset(out)
    (out / "in.txt").write_text("3\n")
    brd.save_outputs(out, ["in.txt"], "input")
    # A deterministic command reading an input and writing an output (text2git: in git).
    script = "import sys; n=int(open('in.txt').read()); open('sq.bin','wb').write(bytes(k*n*n%256 for k in range(4096)))"
    command = [sys.executable, "-c", script]
    record = brd.record_run(
        out,
        command,
        inputs=["in.txt"],
        outputs=["sq.bin"],
        message="square it",
        info={"seed": 42, "participant": "01"},
    )
    assert record.commit == dl.Dataset(str(out)).repo.get_hexsha()
    assert record.message == "square it"
    again = brd.run_record(out)
    assert again.record == record.record
    rec = record.record
    assert rec["inputs"] == ["in.txt"] and rec["outputs"] == ["sq.bin"]
    assert rec["cmd"].startswith(sys.executable) and rec["exit"] == 0
    assert rec["brainrecon"]["version"] == __version__
    assert rec["brainrecon"]["seed"] == 42 and rec["brainrecon"]["external_inputs"] == []
    expected = bytes(k * 9 % 256 for k in range(4096))
    assert (out / "sq.bin").read_bytes() == expected
    assert (out / "sq.bin").is_symlink()  # binary content is annexed

    head = record.commit
    results = dl.rerun(dataset=str(out), result_renderer="disabled", return_type="list")
    assert any(r.get("action") == "run" and r.get("status") == "ok" for r in results)
    assert dl.Dataset(str(out)).repo.get_hexsha() == head  # same bytes: nothing to commit
    assert (out / "sq.bin").read_bytes() == expected

    # A command that already ran can be recorded without running it again.
    (out / "note.txt").write_text("made by hand\n")
    injected = brd.record_run(
        out, ["echo", "hi"], outputs=["note.txt"], execute=False, info={"seed": 1}
    )
    assert injected.record["cmd"] == "echo hi" and injected.record["brainrecon"]["seed"] == 1
    assert not dl.Dataset(str(out)).repo.dirty
    with pytest.raises(BrainreconError) as failed:
        brd.record_run(out, [sys.executable, "-c", "raise SystemExit(3)"], outputs=["x"])
    assert failed.value.exit_code == 3
    with pytest.raises(Exception, match="no DataLad run record"):
        brd.run_record(out, head + "~1")


def test_should_record_and_replay_argv(tmp_path, monkeypatch):
    from nipype_brainrecon.bids_app.cli import build_parser
    from nipype_brainrecon.bids_app.datalad_run import replay_argv

    out = tmp_path / "out"
    assert brd.should_record(None, out) is False
    assert brd.should_record(True, out) is True
    (out / ".git" / "annex").mkdir(parents=True)
    (out / ".datalad").mkdir()
    assert brd.should_record(None, out) is True and brd.should_record(False, out) is False
    monkeypatch.setenv(brd.RECORDING_ENV, "1")
    assert brd.should_record(True, out) is False

    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    parser = build_parser()
    args = parser.parse_args(
        [
            "out/sourcedata/raw",
            "out",
            "participant",
            "--participant-label",
            "01",
            "02",
            "--derivatives",
            "fmriprep=out/sourcedata/fmriprep",
            "--model",
            "model",
            "--samples",
            "1",
            "-vv",
            "--skip-bids-validation",
            "--roi-labels",
            "/elsewhere/labels.tsv",
        ]
    )
    argv = replay_argv(parser, args, root=out, participant="sub-02")
    tail = ["--no-datalad"] if "--no-datalad" in parser.format_help() else []
    assert argv == [
        "sourcedata/raw",
        ".",
        "participant",
        "--participant-label",
        "02",
        "--derivatives",
        "fmriprep=sourcedata/fmriprep",
        "--skip-bids-validation",
        "--roi-labels",
        "/elsewhere/labels.tsv",
        "--model",
        str(tmp_path / "model"),
        "--samples",
        "1",
        "-v",
        "-v",
        *tail,
    ]
    assert parser.parse_args(argv).participant_label == ["02"]
    assert brd.participant_outputs("sub-02")[:3] == [
        "sub-02",
        "sub-02.html",
        "logs/sub-02_summary.json",
    ]


@pytest.mark.slow
def test_participant_run_recorded_and_rerun_byte_identical(origin, tmp_path, git_env, capsys):
    """YODA: inputs cloned as subdatasets of the output; one ``datalad run`` per participant;
    ``datalad rerun`` replays it to the same bytes."""
    from nipype_brainrecon.bids_app.cli import build_parser
    from nipype_brainrecon.bids_app.datalad_run import run_recorded
    from nipype_brainrecon.diffusion.models import build_tiny_sd

    model = build_tiny_sd(tmp_path / "model", profile="demo")
    out = tmp_path / "out"
    prepared = brd.prepare_inputs(
        origin["raw"].as_uri(),
        {"fmriprep": origin["fmriprep"].as_uri()},
        ["01"],
        TASK,
        clone_dir=out / "sourcedata",
        superdataset=out,
        jobs=2,
    )
    raw, prep = prepared.bids_dir, prepared.fmriprep
    assert raw == out / "sourcedata" / "raw" and prep == out / "sourcedata" / "fmriprep"
    assert brd.is_dataset(out)  # made a dataset to register the input clones
    subdatasets = dl.Dataset(str(out)).subdatasets(
        result_renderer="disabled", result_xfm="relpaths"
    )
    assert sorted(subdatasets) == ["sourcedata/fmriprep", "sourcedata/raw"]
    print("\n" + brd.format_summary(prepared.summary))
    assert not any(f.is_file() for f in _tree(raw / "sub-02") if f.suffix == ".gz")

    parser = build_parser()
    args = parser.parse_args(
        [
            str(raw),
            str(out),
            "participant",
            "--participant-label",
            "01",
            "--task",
            TASK,
            "--derivatives",
            f"fmriprep={prep}",
            "--model",
            str(model),
            "--samples",
            "1",
            "--steps",
            "4",
            "--resolution",
            "128",
            "--random-seed",
            "7",
            "--skip-bids-validation",
            "--nprocs",
            "1",
        ]
    )
    code = run_recorded(parser, args, inputs=prepared, settings={"steps": 4})
    assert code == 0, capsys.readouterr().err[-2000:]
    ds = dl.Dataset(str(out))
    assert not ds.repo.dirty
    record = brd.run_record(out)
    rec = record.record
    assert record.message.endswith("participant sub-01")
    assert "--participant-label 01" in rec["cmd"] and " sourcedata/raw . participant" in rec["cmd"]
    assert rec["exit"] == 0 and rec["outputs"] == brd.participant_outputs("01")
    assert (
        "sourcedata/fmriprep/sub-01/func/sub-01_task-vision_run-02_space-T1w_desc-preproc_bold.nii.gz"
        in rec["inputs"]
    )
    assert not [p for p in rec["inputs"] if "sub-02" in p or "localizer" in p]
    info = rec["brainrecon"]
    assert info["version"] == __version__ and info["seed"] == 7 and info["participant"] == "01"
    assert info["sources"]["raw"]["id"] == dl.Dataset(str(origin["raw"])).id
    assert info["sources"]["raw"]["path"] == "sourcedata/raw"
    assert (
        info["sources"]["fmriprep"]["commit"]
        == dl.Dataset(str(origin["fmriprep"])).repo.get_hexsha()
    )

    outputs = [p for p in _tree(out) if "sourcedata" not in p.relative_to(out).parts]
    pngs = [p for p in outputs if p.suffix == ".png"]
    assert (out / "sub-01.html").is_file() and pngs
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in outputs}
    stamp = (out / "sub-01.html").stat().st_mtime_ns

    results = dl.rerun(dataset=str(out), result_renderer="disabled", return_type="list")
    assert any(r.get("action") == "run" and r.get("status") == "ok" for r in results)
    assert (out / "sub-01.html").stat().st_mtime_ns > stamp  # it did run again
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in digests}
    changed = sorted(str(p.relative_to(out)) for p in digests if after[p] != digests[p])
    assert not changed, f"rerun changed {changed}"
    assert ds.repo.get_hexsha() == record.commit  # nothing changed, so no new commit
    assert not ds.repo.dirty
    print(f"rerun reproduced {len(digests)} output files byte for byte ({len(pngs)} PNG)")


def test_files_needed_inheritance_sessions_and_explicit_rois(tmp_path):
    """Top-level and session-level sidecars, a session filter, explicit ROI files."""
    raw, prep = tmp_path / "raw", tmp_path / "prep"
    names = [
        raw / "dataset_description.json",
        raw / "task-vision_bold.json",  # applies to every vision run
        raw / "task-rest_bold.json",  # applies to none of them
        raw / "stimuli" / "captions.tsv",
        raw / "sub-01" / "sub-01_task-vision_bold.json",
        prep / "dataset_description.json",
        prep / "task-vision_space-T1w_desc-preproc_bold.json",
        prep / "my_dseg.tsv",
    ]
    for ses in ("a", "b"):
        func = raw / "sub-01" / f"ses-{ses}" / "func"
        pfunc = prep / "sub-01" / f"ses-{ses}" / "func"
        stem = f"sub-01_ses-{ses}_task-vision_run-1"
        names += [func / f"{stem}_bold.nii.gz", func / f"{stem}_events.tsv"]
        names += [raw / "sub-01" / f"ses-{ses}" / f"sub-01_ses-{ses}_task-vision_bold.json"]
        pstem = f"sub-01_ses-{ses}_task-vision_run-01"  # zero-padded in the derivatives
        names += [
            pfunc / f"{pstem}_space-T1w_desc-preproc_bold.nii.gz",
            pfunc / f"{pstem}_space-MNI_desc-preproc_bold.nii.gz",
            pfunc / f"{pstem}_space-T1w_desc-brain_mask.nii.gz",
            pfunc / f"{pstem}_desc-confounds_timeseries.tsv",
        ]
    names += [prep / "my_dseg.nii.gz"]
    for name in names:
        name.parent.mkdir(parents=True, exist_ok=True)
        name.touch()
    (raw / "sub-01" / "ses-b" / "func" / "sub-01_ses-b_task-vision_run-1_events.tsv").write_text(
        "onset\tduration\tstim_file\n0\t1\timg.png\n2\t1\tn/a\n4\t1\t../../outside.png\n"
    )
    (raw / "stimuli" / "img.png").touch()
    needed = brd.files_needed(
        raw,
        "01",
        derivatives=prep,
        session="b",
        roi_dseg=prep / "my_dseg.nii.gz",
        roi_labels=prep / "my_dseg.tsv",
    )
    rel = sorted(p.relative_to(tmp_path).as_posix() for p in needed)
    assert rel == [
        "prep/dataset_description.json",
        "prep/my_dseg.nii.gz",
        "prep/my_dseg.tsv",
        "prep/sub-01/ses-b/func/sub-01_ses-b_task-vision_run-01_desc-confounds_timeseries.tsv",
        "prep/sub-01/ses-b/func/sub-01_ses-b_task-vision_run-01_space-T1w_desc-brain_mask.nii.gz",
        "prep/sub-01/ses-b/func/sub-01_ses-b_task-vision_run-01_space-T1w_desc-preproc_bold.nii.gz",
        "prep/task-vision_space-T1w_desc-preproc_bold.json",
        "raw/dataset_description.json",
        "raw/stimuli/captions.tsv",
        "raw/stimuli/img.png",
        "raw/sub-01/ses-b/func/sub-01_ses-b_task-vision_run-1_events.tsv",
        "raw/sub-01/ses-b/sub-01_ses-b_task-vision_bold.json",
        "raw/sub-01/sub-01_task-vision_bold.json",
        "raw/task-vision_bold.json",
    ]
