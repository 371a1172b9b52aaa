"""A whole participant + group run of the BIDS App with the shipped demo model.

Checks the derivatives validate, the same seed gives byte-identical derivatives, the group table
has one row per subject, and the subject report shows every image in headless Chromium.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import OUTPUT_SUFFIXES, file_digests

from nipype_brainrecon.bids_app.cli import main
from nipype_brainrecon.synthetic.simulate import simulate_dataset

pytestmark = pytest.mark.slow

ARGS = ["--model", "demo", "--samples", "2", "--nprocs", "2", "--skip-bids-validation"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("app")
    bids = simulate_dataset(base / "bids", n_subjects=2, seed=11)
    outs = []
    for k in (1, 2):
        out = base / f"out{k}"
        args = [str(bids), str(out), "participant", "--participant-label", "01", *ARGS]
        assert main([*args, "-w", str(base / f"work{k}")]) == 0
        outs.append(out)
    assert main([str(bids), str(outs[0]), "participant", "--participant-label", "02", *ARGS]) == 0
    assert main([str(bids), str(outs[0]), "group"]) == 0
    return bids, outs


def test_outputs_validate(runs):
    exe = shutil.which("bids-validator-deno") or str(
        Path(sys.executable).parent / "bids-validator-deno"
    )
    if not Path(exe).exists():
        pytest.skip("bids-validator-deno not installed")
    out = runs[1][0]
    proc = subprocess.run([exe, str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_same_seed_same_derivatives(runs):
    out1, out2 = runs[1]
    first = {k: v for k, v in file_digests(out1, OUTPUT_SUFFIXES).items() if k.startswith("sub-01")}
    second = file_digests(out2, OUTPUT_SUFFIXES)
    assert first and first == second


def test_group_table_one_row_per_subject(runs):
    out = runs[1][0]
    table = pd.read_csv(out / "group_metrics.tsv", sep="\t")
    subjects = table[table["row"] == "subject"]
    assert subjects["participant_id"].tolist() == ["sub-01", "sub-02"]
    per_subject = pd.read_csv(out / "sub-01" / "sub-01_desc-reconstruction_metrics.tsv", sep="\t")
    assert list(table.columns[2:]) == per_subject["metric"].tolist()
    assert "chance" in table["row"].tolist()
    assert any(r.startswith("baseline:") for r in table["row"])
    assert (out / "group.html").exists()


def test_report_loads_every_image_in_chromium(runs):
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("chromium not installed")
    out = runs[1][0]
    report = out / "sub-01.html"
    probe = report.with_name("sub-01_probe.html")
    script = (
        "<script>window.addEventListener('load',()=>{const i=[...document.images];"
        "document.title='loaded '+i.filter(x=>x.complete&&x.naturalWidth>0).length+' of '+"
        "i.length;});</script>"
    )
    probe.write_text(report.read_text().replace("</body>", script + "</body>"))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ]
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                chromium,
                *flags,
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                probe.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    probe.unlink()
    n_test, n_samples = 20, 2
    grid = n_test * (1 + n_samples)
    title = dom.split("<title>", 1)[1].split("</title>", 1)[0]
    loaded, total = (int(x) for x in title.removeprefix("loaded ").split(" of "))
    assert loaded == total and total >= grid
    shot = out.parent / "sub-01.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                *flags,
                f"--user-data-dir={profile}",
                "--window-size=1280,3000",
                f"--screenshot={shot}",
                report.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
    assert shot.stat().st_size > 50_000
