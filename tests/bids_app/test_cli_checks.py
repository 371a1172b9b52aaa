"""The command line refuses before any node runs, never writes into its inputs, never shows a
traceback (docs/errors.md, "Checked before anything is written").

Each CLI case runs ``brainrecon`` in this process on a small simulated dataset and checks: the
BIDS Apps exit code, exactly one stderr line ``brainrecon: error: <path or option>: ...``
naming the path or option, no traceback, ``OUTPUT_DIR`` not created (or unchanged) and the input
tree byte-identical (:func:`tree_digest`). Every case stops before the participant's workflow.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import tree_digest

from nipype_brainrecon.bids_app.checks import (
    MAX_SEED,
    check_options,
    check_written_paths,
    input_datasets,
    nipype_plugins,
    plugin_settings,
)
from nipype_brainrecon.bids_app.cli import build_parser, main
from nipype_brainrecon.bids_app.preflight import check_output_labels
from nipype_brainrecon.derivatives import label
from nipype_brainrecon.errors import (
    EXIT_CANT_CREATE,
    EXIT_DATA,
    EXIT_FAILURE,
    EXIT_USAGE,
    DataError,
    OutputError,
)
from nipype_brainrecon.synthetic.simulate import simulate_dataset

BASE = ["--participant-label", "01", "--model", "demo", "--skip-bids-validation", "--nprocs", "1"]
EVENTS = "sub-01/func/sub-01_task-vision_run-01_events.tsv"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return simulate_dataset(
        tmp_path_factory.mktemp("checks") / "ds",
        n_subjects=1,
        n_runs=1,
        seed=3,
        n_train=12,
        n_test=3,
    )


@pytest.fixture
def ds(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "ds", symlinks=True))


@pytest.fixture(autouse=True)
def no_workflow(monkeypatch):
    """Should a check regress, the run stops at the workflow instead of running a participant."""
    from nipype.pipeline import engine as pe

    def refuse(self, *args, **kwargs):
        raise AssertionError("a workflow ran: the check did not stop the run")

    monkeypatch.setattr(pe.Workflow, "run", refuse)


def _cli(ds: Path, out: Path, args, capsys) -> tuple[int, str]:
    """Run the command; check the input is untouched; return the code and the one stderr line."""
    before = tree_digest(ds)
    capsys.readouterr()
    code = main([str(ds), str(out), "participant", *BASE, *[str(a) for a in args]])
    err = capsys.readouterr().err
    assert tree_digest(ds) == before, "the input changed"
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("brainrecon: error: "), err
    return code, lines[0].removeprefix("brainrecon: error: ")


# ---------------------------------------------------------------------------------------------
# 1. Written paths vs inputs (exit 73)
# ---------------------------------------------------------------------------------------------
def _file(tmp: Path) -> Path:
    (tmp / "afile").write_text("x")
    return tmp / "afile"


# name -> (OUTPUT_DIR, extra args, path the message starts with, words in the message)
WRITTEN = {
    "out-is-fmriprep": (
        lambda ds, tmp: ds / "derivatives" / "fmriprep",
        lambda ds, tmp: [],
        lambda ds, tmp: ds / "derivatives" / "fmriprep",
        ("input derivatives dataset", "derivatives/brainrecon"),
    ),
    "out-inside-fmriprep-subject": (
        lambda ds, tmp: ds / "derivatives" / "fmriprep" / "sub-01" / "out",
        lambda ds, tmp: [],
        lambda ds, tmp: ds / "derivatives" / "fmriprep" / "sub-01" / "out",
        ("input derivatives dataset",),
    ),
    "out-inside-given-derivatives": (
        lambda ds, tmp: tmp / "fp" / "brainrecon",
        lambda ds, tmp: ["--derivatives", f"fmriprep={tmp / 'fp'}"],
        lambda ds, tmp: tmp / "fp" / "brainrecon",
        ("input derivatives dataset", "fp/brainrecon"),
    ),
    "out-is-derivatives-folder": (
        lambda ds, tmp: ds / "derivatives",
        lambda ds, tmp: [],
        lambda ds, tmp: ds / "derivatives",
        ("output inside the input dataset",),
    ),
    "work-inside-bids": (
        lambda ds, tmp: tmp / "out",
        lambda ds, tmp: ["-w", ds / "work"],
        lambda ds, tmp: ds / "work",
        ("-w/--work-dir inside the input dataset", "outside the inputs"),
    ),
    "work-under-bids-derivatives": (
        lambda ds, tmp: tmp / "out",
        lambda ds, tmp: ["--work-dir", ds / "derivatives" / "work"],
        lambda ds, tmp: ds / "derivatives" / "work",
        ("-w/--work-dir inside the input dataset",),
    ),
    "work-inside-output": (
        lambda ds, tmp: tmp / "out",
        lambda ds, tmp: ["-w", tmp / "out" / "work"],
        lambda ds, tmp: tmp / "out" / "work",
        ("-w/--work-dir inside OUTPUT_DIR", "land in the derivatives"),
    ),
    "work-is-output": (
        lambda ds, tmp: tmp / "out",
        lambda ds, tmp: ["-w", tmp / "out"],
        lambda ds, tmp: tmp / "out",
        ("-w/--work-dir inside OUTPUT_DIR",),
    ),
    "work-is-a-file": (
        lambda ds, tmp: tmp / "out",
        lambda ds, tmp: ["-w", _file(tmp)],
        lambda ds, tmp: tmp / "afile",
        ("-w/--work-dir is a file", "give a folder"),
    ),
    "cache-inside-fmriprep": (
        lambda ds, tmp: tmp / "out",
        lambda ds, tmp: ["--feature-cache", ds / "derivatives" / "fmriprep" / "cache"],
        lambda ds, tmp: ds / "derivatives" / "fmriprep" / "cache",
        ("--feature-cache inside the input dataset",),
    ),
    "cache-is-a-file": (
        lambda ds, tmp: tmp / "out",
        lambda ds, tmp: ["--feature-cache", _file(tmp)],
        lambda ds, tmp: tmp / "afile",
        ("--feature-cache is a file",),
    ),
}


@pytest.mark.parametrize("name", list(WRITTEN))
def test_written_paths_inside_inputs_refused(name, ds, tmp_path, capsys):
    make_out, make_args, at_fault, says = WRITTEN[name]
    out, args, at_fault = make_out(ds, tmp_path), make_args(ds, tmp_path), at_fault(ds, tmp_path)
    existed = out.exists()
    code, line = _cli(ds, out, args, capsys)
    assert code == EXIT_CANT_CREATE, line
    assert line.startswith(f"{at_fault}: "), line
    for words in says:
        assert words in line, (words, line)
    assert out.exists() == existed  # OUTPUT_DIR not created (an input one is checked above)


def test_new_folder_under_bids_derivatives_allowed(ds, tmp_path, capsys):
    """OUT = BIDS/derivatives/brainrecon is the BIDS convention: the run goes on (here to the
    next check, an unknown participant); the only change in BIDS_DIR is that empty folder."""
    out = ds / "derivatives" / "brainrecon"
    check_written_paths(
        ds, out, work_dir=tmp_path / "work", feature_cache=tmp_path / "c", inputs=input_datasets(ds)
    )
    before = tree_digest(ds)
    code = main([str(ds), str(out), "participant", "--participant-label", "99", *BASE[2:]])
    assert code == EXIT_USAGE and "participant '99' not found" in capsys.readouterr().err
    assert tree_digest(ds) == {**before, "derivatives/brainrecon": "dir"}


def test_input_datasets_default_and_given(tmp_path):
    bids = tmp_path / "bids"
    assert input_datasets(bids) == [bids.resolve() / "derivatives" / "fmriprep"]
    given = input_datasets(bids, [("fmriprep", tmp_path / "fp"), ("x", "rel")], tmp_path / "b")
    assert given == [
        (tmp_path / "fp").resolve(),
        Path("rel").absolute(),
        (tmp_path / "b").resolve(),
    ]
    assert input_datasets(None) == []
    with pytest.raises(OutputError, match="input derivatives dataset"):
        check_written_paths(None, tmp_path / "fp" / "o", inputs=given)


# ---------------------------------------------------------------------------------------------
# 2. Option values (exit 64)
# ---------------------------------------------------------------------------------------------
def _plugin(tmp: Path, name: str) -> Path:
    path = tmp / "plugin.yml"
    path.write_text(f"plugin: {name}\nplugin_args: {{n_procs: 2}}\n")
    return path


def _no_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _one_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


# name -> (args, start of the message, words in it, environment)
OPTIONS = {
    "seed-negative": (["--random-seed", "-1"], "--random-seed -1", ("4294967295",), None),
    "seed-too-large": (["--random-seed", str(2**32)], f"--random-seed {2**32}", ("0 to",), None),
    "device-unknown": (["--device", "gpu0"], "--device gpu0", ("not a torch device",), None),
    "device-cuda-unusable": (
        ["--device", "cuda"],
        "--device cuda",
        ("CUDA is not usable here; use --device cpu",),
        _no_cuda,
    ),
    "device-cuda-index": (["--device", "cuda:3"], "--device cuda:3", ("1 CUDA device",), _one_gpu),
    "plugin-unknown": (None, "plugin.yml", ("'Foo' is not a Nipype plugin", "MultiProc"), None),
    "mem-zero": (["--mem", "0"], "--mem 0", ("not a positive memory budget",), None),
    "mem-negative": (["--mem", "-2"], "--mem -2", ("not a positive memory budget",), None),
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_bad_option_values_refused(name, ds, tmp_path, capsys, monkeypatch):
    args, starts, says, env = OPTIONS[name]
    if env:
        env(monkeypatch)
    if args is None:
        args = ["--use-plugin", _plugin(tmp_path, "Foo")]
    out = tmp_path / "out"
    code, line = _cli(ds, out, args, capsys)
    assert code == EXIT_USAGE, line
    assert line.startswith(starts) or line.startswith(f"{tmp_path / starts}: "), line
    for words in says:
        assert words in line, (words, line)
    assert not out.exists()


def test_good_option_values_pass(tmp_path):
    parser = build_parser()
    for seed in ("0", str(MAX_SEED)):
        check_options(
            parser.parse_args(["b", "o", "participant", "--random-seed", seed, "--model", "demo"])
        )
    plugin = _plugin(tmp_path, "Linear")
    args = parser.parse_args(
        ["b", "o", "participant", "--device", "cpu", "--mem", "0.5", "--model", "demo"]
    )
    args.use_plugin = plugin
    check_options(args)
    assert plugin_settings(args)["plugin"] == "Linear"
    assert {"Linear", "MultiProc", "LegacyMultiProc", "SLURM", "SLURMGraph", "SGE", "PBS"} <= set(
        nipype_plugins()
    )


# ---------------------------------------------------------------------------------------------
# 3. --notrack
# ---------------------------------------------------------------------------------------------
def test_notrack_accepted(ds, tmp_path, capsys):
    assert build_parser().parse_args(["b", "o", "participant", "--notrack"]).notrack is True
    assert build_parser().parse_args(["b", "o", "participant"]).notrack is False
    out = tmp_path / "out"
    code = main([str(ds), str(out), "participant", "--notrack", "--mem", "0"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and err.startswith("brainrecon: error: --mem 0"), err  # parsed on


# ---------------------------------------------------------------------------------------------
# 4. The last guard: an unexpected error
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("logs_exist", [True, False])
def test_unexpected_error_one_line_and_crash_file(logs_exist, ds, tmp_path, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom\n  on two lines")

    monkeypatch.setattr("nipype_brainrecon.bids.collect_participant", boom)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    out = tmp_path / "out"
    if logs_exist:
        (out / "logs").mkdir(parents=True)
    code, line = _cli(ds, out, [], capsys)
    assert code == EXIT_FAILURE
    head, _, crash = line.partition("; details in ")
    assert head == "unexpected RuntimeError: boom on two lines", line
    crash = Path(crash)
    assert crash.parent == (out / "logs" if logs_exist else temp), line
    text = crash.read_text()
    assert "Traceback" in text and "RuntimeError: boom" in text and "in boom" in text
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == (
        ["logs", f"logs/{crash.name}"] if logs_exist else []
    )


def test_keyboard_interrupt_kept(ds, tmp_path, capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("nipype_brainrecon.bids.collect_participant", interrupt)
    capsys.readouterr()
    code = main([str(ds), str(tmp_path / "out"), "participant", *BASE])
    err = capsys.readouterr().err
    assert code == 130 and err.count("\n") == 1 and "stopped by SIGINT" in err


# ---------------------------------------------------------------------------------------------
# 5. One output label per stimulus (exit 65)
# ---------------------------------------------------------------------------------------------
def test_check_output_labels():
    files = [Path("s/stim-1.png"), Path("s/b/stim-2.jpg"), Path("s/Stim-1.png")]
    assert check_output_labels(files) == {
        "stim1": Path("s/stim-1.png"),
        "stim2": Path("s/b/stim-2.jpg"),
        "Stim1": Path("s/Stim-1.png"),
    }
    with pytest.raises(DataError, match=r"s/a/x-1\.png and s/b/x_1\.png get .* 'x1'; rename one"):
        check_output_labels([Path("s/b/x_1.png"), Path("s/a/x-1.png")])
    with pytest.raises(DataError, match="'x'"):  # names without a letter or digit
        check_output_labels([Path("s/-.png"), Path("s/_.png")])


def test_stimuli_with_one_output_label_refused(ds, tmp_path, capsys):
    events = pd.read_csv(ds / EVENTS, sep="\t", dtype={"stim_file": str})
    other = events["stim_file"].iloc[1]
    twin = other.replace("-", "_")  # stim-0008.png -> stim_0008.png: both label stim0008
    assert twin != other and label(Path(twin).stem) == label(Path(other).stem)
    shutil.copy(ds / "stimuli" / other, ds / "stimuli" / twin)
    captions = pd.read_csv(ds / "stimuli" / "captions.tsv", sep="\t")
    extra = pd.DataFrame({"stim_file": [twin], "caption": ["a twin"]})
    pd.concat([captions, extra]).to_csv(ds / "stimuli" / "captions.tsv", sep="\t", index=False)
    events.loc[0, "stim_file"] = twin
    events.to_csv(ds / EVENTS, sep="\t", index=False, na_rep="n/a")
    out = tmp_path / "out"
    code, line = _cli(ds, out, [], capsys)
    assert code == EXIT_DATA, line
    first, second = sorted([other, twin])
    expected = f"{first} and .*/{second} get the same output label '{label(Path(other).stem)}'"
    assert line.startswith(str(ds)) and re.search(expected, line), line
    assert line.endswith("; rename one")
    assert not out.exists() or not any(out.iterdir())


def test_uncached_hub_model_refused_before_anything_runs(ds, tmp_path, capsys, monkeypatch):
    """Offline, a hub id missing from the local cache is refused with 66 once the dataset is
    validated, before any node runs: nothing written (it once ran the betas first and failed
    with 1)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    before = tree_digest(ds)
    out, work = tmp_path / "out", tmp_path / "work"
    args = [str(ds), str(out), "participant", *BASE, "-w", str(work)]
    args[args.index("demo")] = "brainrecon-tests/absent-model"
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err
    assert code == 66 and err.count("\n") == 1
    assert "--model brainrecon-tests/absent-model: " in err and "huggingface-cli download" in err
    assert not out.exists() or not any(out.iterdir())  # at most the empty folder
    assert not work.exists() and tree_digest(ds) == before


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG of a few bytes that declares ``width`` x ``height`` pixels (a decompression bomb:
    PIL reads the size from the header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_stimulus_refused_with_65(ds, tmp_path, capsys):
    """A 15000 x 15000 PNG stimulus (bytes on disk, GBs decoded) is named in one line with 65
    before anything is written (it used to end in a DecompressionBombError traceback)."""
    events = pd.read_csv(ds / EVENTS, sep="\t")
    stim = ds / "stimuli" / events["stim_file"].dropna().iloc[0]
    _png_header(stim, 15000, 15000)
    before = tree_digest(ds)
    out, work = tmp_path / "out", tmp_path / "work"
    capsys.readouterr()
    code = main([str(ds), str(out), "participant", *BASE, "-w", str(work)])
    err = capsys.readouterr().err
    assert code == EXIT_DATA and err.count("\n") == 1, err
    assert stim.name in err and "too large to decode" in err
    assert tree_digest(ds) == before and not work.exists()
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))
