"""The demo's whole output set (participant, group, logs, reports) as a lab would share it.

``brainrecon-demo`` runs once in a temporary folder (one simulated participant, one sample per
image: about a minute on 2 CPU cores). Then:

* no file of the output holds the temporary folder's path (where the inputs, the outputs and
  the Nipype work folder are), the home folder or this checkout's path, as text or as a
  ``file://`` URI; except the run's diagnostic log, ``logs/sub-<label>_<date>.log``, which
  quotes Nipype's node folders in the work folder (as Nipype's crash files do;
  ``conftest.is_run_log``);
* ``bids-validator-deno`` exits 0 on it and checks at least ``VALIDATED_FLOOR`` files. The demo
  output has 7 files the validator checks (``dataset_description.json``, ``README.md``,
  ``.bidsignore``, two ROI masks and their sidecars; ``.bidsignore`` hid all but 3 before the
  names followed BIDS); the floor is that count minus a margin of 1;
* the same output with a mask renamed as before (no ``task`` entity in ``func/``) fails the
  validator: the masks really are checked, not hidden.

The table of ignored patterns in ``docs/outputs.md`` is checked against the ``.bidsignore`` the
app writes (a fast test).
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import is_run_log

from nipype_brainrecon.derivatives import BIDSIGNORE

REPO_ROOT = Path(__file__).resolve().parents[2]
VALIDATED_FLOOR = 6
#: Text outputs the leak search must have read (the whole output set of the demo).
TEXT_KINDS = {".json", ".tsv", ".html", ".md", ".toml", ".svg", ".bidsignore"}


def _validator() -> str | None:
    beside = Path(sys.executable).parent / "bids-validator-deno"
    return str(beside) if beside.is_file() else shutil.which("bids-validator-deno")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from nipype_brainrecon.bids_app.demo import main

    base = tmp_path_factory.mktemp("demo")
    folder = base / "brainrecon-demo"
    assert main([str(folder), "--subjects", "1", "--samples", "1", "--nprocs", "1"]) == 0
    return {"base": base, "out": folder / "out", "work": folder / "work"}


def _machine_paths(base: Path) -> set[str]:
    from nipype_brainrecon.diffusion.models import demo_model_path

    paths = {str(base), str(base.resolve()), str(REPO_ROOT), str(demo_model_path())}
    home = Path.home()
    if len(home.parts) > 1:
        paths |= {str(home), str(home.resolve())}
    return paths


def _contents(file: Path) -> bytes:
    data = file.read_bytes()
    if file.name.endswith(".gz"):
        data += gzip.decompress(data)
    return data


def _leaks(root: Path, machine: set[str]) -> tuple[list[str], set[str]]:
    """``file: path`` for each machine path found in any file under ``root`` (text or binary,
    gzip content too; not the run's diagnostic log), and the kinds of text files read."""
    found, kinds = [], set()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        if is_run_log(file.relative_to(root)):
            continue
        kinds.add(file.suffix or file.name)
        data = _contents(file)
        for path in machine:
            for form in (path, Path(path).as_uri()):
                if form.encode() in data:
                    found.append(f"{file.relative_to(root)}: {form}")
    return found, kinds & TEXT_KINDS


@pytest.mark.slow
def test_no_machine_path_in_any_output(demo):
    out = demo["out"]
    machine = _machine_paths(demo["base"])
    found, kinds = _leaks(out, machine)
    assert found == []
    assert kinds == TEXT_KINDS, f"text outputs missing: {TEXT_KINDS - kinds}"
    assert (out / "group.html").is_file() and (out / "logs" / "CITATION.md").is_file()
    # The search finds what it looks for: Nipype's work folder records absolute paths.
    work_found, _ = _leaks(demo["work"], {str(demo["base"])})
    assert work_found


def _validate(folder: Path, exe: str, report: Path) -> tuple[int, dict]:
    proc = subprocess.run(
        [exe, "--format", "json", "-o", str(report), str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, json.loads(report.read_text())


@pytest.mark.slow
def test_validator_checks_the_derivatives(demo, tmp_path):
    exe = _validator()
    if not exe:
        pytest.skip("bids-validator-deno is not installed (pip install bids-validator-deno)")
    out = demo["out"]
    code, result = _validate(out, exe, tmp_path / "report.json")
    errors = [i for i in result["issues"]["issues"] if i.get("severity") == "error"]
    assert code == 0 and errors == []
    checked = result["summary"]["totalFiles"]
    on_disk = sum(1 for p in out.rglob("*") if p.is_file())
    print(f"\nbids-validator-deno: {checked} files checked, {on_disk - checked} ignored")
    assert checked >= VALIDATED_FLOOR
    assert result["summary"]["subjects"] == ["01"]
    assert result["summary"]["dataTypes"] == ["func"]

    # A mask named as before (no task entity in func/) is an error: the masks are checked.
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    mask = next((broken / "sub-01" / "func").glob("*_label-early_mask.nii.gz"))
    mask.rename(mask.with_name(re.sub(r"_task-[^_]+", "", mask.name)))
    code, result = _validate(broken, exe, tmp_path / "broken.json")
    flagged = {i["location"] for i in result["issues"]["issues"] if i["severity"] == "error"}
    assert code == 16 and "/sub-01/func/sub-01_space-T1w_label-early_mask.nii.gz" in flagged


def _documented_patterns() -> list[str]:
    """First-column patterns of the table under "What the validator checks" in docs/outputs.md."""
    text = (REPO_ROOT / "docs" / "outputs.md").read_text()
    section = text.split("## What the validator checks", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [p for row in rows for p in re.findall(r"`([^`]+)`", row.split("|")[1])]


def test_every_ignored_pattern_is_justified_in_the_docs():
    written = [
        line for line in BIDSIGNORE.splitlines() if line.strip() and not line.startswith("#")
    ]
    documented = _documented_patterns()
    assert sorted(documented) == sorted(written)
    assert len(set(written)) == len(written) >= 5
    # Masks are data the validator checks: never hidden again.
    assert not [p for p in written if "mask" in p]


def test_recorded_command_names_a_local_model_by_identity(tmp_path):
    """A model folder outside the output dataset would be a relative path that changes when
    the dataset moves (``../../model`` from one place, ``../../../model`` from another)."""
    from nipype_brainrecon.derivatives import model_name, portable_command
    from nipype_brainrecon.diffusion.models import demo_model_path

    model = demo_model_path()
    identity = model_name(model)
    assert re.fullmatch(r"demo_model@sha256:[0-9a-f]{16}", identity)
    for out in (tmp_path / "a" / "out", tmp_path / "b" / "c" / "out"):
        for form in (["--model", str(model)], [f"--model={model}"]):
            command = " ".join(["brainrecon", str(out.parent / "bids"), str(out), *form])
            recorded = portable_command(command, out)
            assert recorded.startswith("brainrecon ../bids . --model")
            assert recorded.endswith(identity) and str(model) not in recorded
    assert portable_command("brainrecon in out --model demo", "/x") == (
        "brainrecon in out --model demo"
    )
