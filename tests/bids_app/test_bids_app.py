"""The BIDS App command line: help, exit codes, and a full participant + group run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import file_digests

from nipype_brainrecon import __version__
from nipype_brainrecon.bids_app.cli import build_parser, main
from nipype_brainrecon.synthetic.simulate import simulate_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return simulate_dataset(tmp_path_factory.mktemp("bids") / "sim", n_subjects=1, seed=5)


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--participant-label",
        "--task",
        "--derivatives",
        "--roi-dseg",
        "--z-roi",
        "--c-roi",
        "--betas",
        "--model",
        "--samples",
        "--steps",
        "--strength",
        "--guidance",
        "--mode",
        "--random-seed",
        "--work-dir",
        "--nprocs",
        "--omp-nthreads",
        "--cv-groups",
        "--mem",
        "--use-plugin",
        "--device",
        "--skip-bids-validation",
        "--version",
        "--verbose",
        "exit codes",
    ):
        assert option in text, option


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"brainrecon {__version__}"


def _run(args, capsys):
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_usage_errors_exit_64(dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(dataset), str(tmp_path / "out"), "everything"])
    assert exc.value.code == 64
    with pytest.raises(SystemExit) as exc:
        main([str(dataset), str(tmp_path / "out"), "participant", "--strength", "2"])
    assert exc.value.code == 64
    capsys.readouterr()
    code, err = _run(
        [
            dataset,
            tmp_path / "out",
            "participant",
            "--participant-label",
            "sub-99",
            "--skip-bids-validation",
            "--model",
            "demo",
        ],
        capsys,
    )
    assert code == 64 and "99" in err and "01" in err
    assert len(err.strip().splitlines()) == 1


def test_invalid_dataset_exit_16(tmp_path, capsys):
    not_bids = tmp_path / "notbids"
    not_bids.mkdir()
    (not_bids / "data.txt").write_text("hello")
    code, err = _run([not_bids, tmp_path / "out", "participant"], capsys)
    assert code == 16 and "dataset_description.json" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_validator_errors_exit_16(dataset, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    (broken / "sub-01" / "func" / "not_a_bids_name.txt").write_text("x")
    code, err = _run([broken, tmp_path / "out", "participant"], capsys)
    assert code == 16 and "validator" in err


def test_missing_fmriprep_exit_66(dataset, tmp_path, capsys):
    copy = tmp_path / "nofmriprep"
    shutil.copytree(dataset, copy)
    shutil.rmtree(copy / "derivatives" / "fmriprep")
    before = file_digests(copy)
    args = [copy, tmp_path / "out", "participant", "--skip-bids-validation", "--model", "demo"]
    code, err = _run(args, capsys)
    assert code == 66 and "fmriprep" in err
    assert file_digests(copy) == before


def test_output_inside_input_exit_73(dataset, tmp_path, capsys):
    before = file_digests(dataset)
    code, err = _run([dataset, dataset / "sub-01" / "out", "participant"], capsys)
    assert code == 73 and "inside the input" in err
    assert file_digests(dataset) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_exit_73_as_user(dataset, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, err = _run([dataset, locked / "out", "participant"], capsys)
    assert code == 73


def test_unwritable_output_exit_73(dataset, tmp_path, capsys):
    # A path below a regular file cannot be created, whoever runs the test.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = _run([dataset, blocker / "out", "participant"], capsys)
    assert code == 73 and "cannot write" in err


def test_plugin_file_errors(dataset, tmp_path, capsys):
    plugin = tmp_path / "plugin.yml"
    plugin.write_text("plugin_args: {n_procs: 2}\n")
    code, err = _run(
        [
            dataset,
            tmp_path / "out",
            "participant",
            "--skip-bids-validation",
            "--use-plugin",
            plugin,
        ],
        capsys,
    )
    assert code == 64 and "plugin" in err


def test_console_script_help():
    exe = Path(sys.executable).parent / "brainrecon"
    if not exe.exists():
        pytest.skip("brainrecon console script not installed in this environment")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "BIDS" in proc.stdout
    proc = subprocess.run([str(exe), "x"], capture_output=True, text=True)
    assert proc.returncode == 64


def test_derivatives_description(tmp_path):
    from nipype_brainrecon.derivatives import init_output_dataset

    out = init_output_dataset(
        tmp_path / "out", bids_dir=tmp_path, derivatives={"fmriprep": tmp_path / "f"}, settings={}
    )
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Version"] == __version__
    assert "raw" in desc["DatasetLinks"] and desc["SourceDatasets"]
    assert "Takagi" in (out / "logs" / "CITATION.md").read_text()
