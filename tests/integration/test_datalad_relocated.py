"""``datalad rerun`` of a ``brainrecon --datalad`` participant run from a clone at another path.

The output dataset is made where a lab made it (inputs cloned as subdatasets under
``sourcedata/``, one ``datalad run`` record for the participant), then cloned to another folder
(another depth, another name) as a collaborator would, and the record is replayed there: the
subdatasets are installed and the run's inputs fetched from their sources, the participant is
computed again in a fresh work folder, and every output file must equal the original's byte for
byte (text and annexed binary alike), so the rerun commits nothing. Before provenance was
portable, 7 text files changed here (absolute paths of the dataset).

On local datasets made from the simulator (no network); a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import is_run_log

datalad = pytest.importorskip("datalad", reason="datalad not installed (extra: datalad)")
dl = pytest.importorskip("datalad.api")

from nipype_brainrecon import datalad as brd  # noqa: E402
from nipype_brainrecon.errors import BrainreconError  # noqa: E402

try:
    brd.ensure_git_annex()
except BrainreconError as exc:  # pragma: no cover - depends on the machine
    pytest.skip(str(exc), allow_module_level=True)

pytestmark = pytest.mark.slow

TASK = "vision"


@pytest.fixture
def git_env(tmp_path, monkeypatch):
    """A throwaway git identity; file:// clones allowed (for submodules too)."""
    config = tmp_path / "gitconfig"
    config.write_text(
        "[user]\n\tname = brainrecon tests\n\temail = tests@example.org\n"
        '[protocol "file"]\n\tallow = always\n[init]\n\tdefaultBranch = main\n'
    )
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv(brd.RECORDING_ENV, raising=False)
    datalad.cfg.reload(force=True)
    yield config
    monkeypatch.undo()
    datalad.cfg.reload(force=True)


def _origins(root: Path) -> dict[str, Path]:
    """The raw and fMRIPrep datasets of one simulated participant, as DataLad datasets."""
    from nipype_brainrecon.synthetic.simulate import simulate_dataset

    sim = simulate_dataset(
        root / "sim",
        n_subjects=1,
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
    for path in (raw, prep):
        ds = dl.create(str(path), force=True, result_renderer="disabled")
        ds.save(message="import simulated data", result_renderer="disabled")
    return {"raw": raw, "fmriprep": prep}


def _outputs(root: Path) -> dict[str, str]:
    """sha256 of every output file (not the input subdatasets, not DataLad's own files, not
    the run logs)."""
    out = {}
    for folder, dirs, names in os.walk(root):
        rel = Path(folder).relative_to(root)
        dirs[:] = [d for d in dirs if not (rel == Path(".") and d in (".git", "sourcedata"))]
        if rel.parts[:1] == (".datalad",):
            continue
        for name in names:
            if rel == Path(".") and name in (".gitattributes", ".gitmodules"):
                continue
            if is_run_log(rel / name):
                continue
            path = Path(folder, name)
            out[(rel / name).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_rerun_in_a_relocated_clone_is_byte_identical(tmp_path, git_env, capsys):
    from nipype_brainrecon.bids_app.cli import build_parser
    from nipype_brainrecon.bids_app.datalad_run import run_recorded
    from nipype_brainrecon.diffusion.models import build_tiny_sd

    origin = _origins(tmp_path / "origin")
    model = build_tiny_sd(tmp_path / "model", profile="demo")
    out = tmp_path / "lab" / "study-brainrecon"
    prepared = brd.prepare_inputs(
        origin["raw"].as_uri(),
        {"fmriprep": origin["fmriprep"].as_uri()},
        ["01"],
        TASK,
        clone_dir=out / "sourcedata",
        superdataset=out,
        jobs=2,
    )
    parser = build_parser()
    argv = [str(prepared.bids_dir), str(out), "participant", "--participant-label", "01"]
    argv += ["--task", TASK, "--derivatives", f"fmriprep={prepared.fmriprep}"]
    argv += ["--model", str(model), "--samples", "1", "--steps", "4", "--resolution", "128"]
    argv += ["--random-seed", "7", "--skip-bids-validation", "--nprocs", "1"]
    code = run_recorded(parser, parser.parse_args(argv), inputs=prepared, settings={"steps": 4})
    assert code == 0, capsys.readouterr().err[-2000:]
    record = brd.run_record(out)
    original = _outputs(out)
    assert "sub-01.html" in original and any(k.endswith(".png") for k in original)
    assert any(k.endswith("_mask.nii.gz") for k in original)

    # A collaborator's clone, elsewhere: text in git, annexed content and subdatasets absent.
    moved = tmp_path / "elsewhere" / "deeper" / "copy"
    dl.clone(source=str(out), path=str(moved), result_renderer="disabled")
    assert not (moved / "sourcedata" / "raw" / "dataset_description.json").exists()
    stamp = (moved / "sub-01.html").stat().st_mtime_ns

    results = dl.rerun(
        dataset=str(moved), revision=record.commit, result_renderer="disabled", return_type="list"
    )
    assert any(r.get("action") == "run" and r.get("status") == "ok" for r in results)
    assert (moved / "sub-01.html").stat().st_mtime_ns > stamp  # it did run again
    assert (moved / "sourcedata" / "raw" / "dataset_description.json").is_file()
    again = _outputs(moved)
    assert sorted(again) == sorted(original)
    changed = sorted(rel for rel in original if again[rel] != original[rel])
    assert changed == [], f"rerun from {moved} changed {changed}"
    clone = dl.Dataset(str(moved))
    assert clone.repo.get_hexsha() == record.commit  # same bytes: nothing to commit
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=moved,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert [line for line in status if not is_run_log(Path(line[3:]))] == []
    print(f"rerun in a relocated clone reproduced {len(original)} output files byte for byte")
