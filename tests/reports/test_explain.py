"""Reports that explain themselves: the headline, the legends, the numbering of the files, the
per-image scores, the error text of a failed run, the group's provenance, and pages that fit
1024 px in a real browser."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import CHROMIUM, _chromium, make_run, parse, table_rows, write

from bids_app.cli import _failure_report
from nipype_brainrecon import reports as report
from nipype_brainrecon.derivatives.layout import subject_metrics_name
from nipype_brainrecon.derivatives.portable import model_name
from nipype_brainrecon.diffusion.models import demo_model_path
from nipype_brainrecon.reports.group import write_group_outputs

CRASH = """Node: brainrecon_wf.sub_{label}_wf.evaluation_wf.evaluate
Working directory: /scratch/work/brainrecon_wf/sub_{label}_wf/evaluation_wf/evaluate

Traceback (most recent call last):
  File "/x/nipype/pipeline/engine/nodes.py", line 787, in _run_command
    raise NodeExecutionError(msg)
nipype.pipeline.engine.nodes.NodeExecutionError: Exception raised while executing Node evaluate.

Traceback:
\tTraceback (most recent call last):
\t  File "/x/nipype_brainrecon/glm/estimate.py", line 296, in _voxel_timeseries
\t    raise DataError(
\tnipype_brainrecon.errors.DataError: {message}

"""
MESSAGE = "sub-02_task-vision_run-02_bold.nii.gz: every voxel in the mask is NaN; check the run"


def _cells(dom, table_id: str) -> dict[str, dict[str, str]]:
    """A table as {row header: {column header: text}}."""
    rows = table_rows(dom.by_id(table_id))
    header = [c.text() for c in rows[0]]
    return {r[0].text(): dict(zip(header, (c.text() for c in r), strict=True)) for r in rows[1:]}


# ------------------------------------------------------------------------------ participant


def test_headline_numbers_are_the_tables_numbers(tmp_path):
    summary, deriv = make_run(tmp_path, n_test=4, n_samples=3)
    dom = parse(write(summary, deriv))
    text = " ".join(dom.by_id("headline").text().split())
    metrics = _cells(dom, "metrics-table")
    decoding = _cells(dom, "decoding-table")
    # the headline metric: the last two-way identification with Takagi's rule
    table = report.read_metrics_table(summary["metrics"])
    takagi = [m for m in table.index if m.endswith("2-way (takagi)")]
    assert takagi and takagi[-1] == "Pixels 2-way (takagi)"
    row = metrics["Pixels 2-way (takagi)"]
    expected = (
        f"Reconstructions: Pixels 2-way (takagi) {row['Reconstructions']} (chance "
        f"{row['chance']}, mismatched pairs {row['mismatched']}, null 95th percentile "
        f"{row['null 95%']}, p {'' if row['p'].startswith('<') else '= '}{row['p']}) "
        "on 4 test images, 3 samples each."
    )
    assert expected in text, text
    # the same numbers as the metrics table file, not only as the page's table
    assert row["Reconstructions"] == f"{table.loc['Pixels 2-way (takagi)', 'value']:.3f}"
    # what was decoded from where and how well, as in the decoding table
    rows = table_rows(dom.by_id("decoding-table"))
    ident = [c.text() for c in rows[0]].index("2-way identification")
    chance = {r[0].text(): r[ident + 1].text() for r in rows[1:]}  # the column after it
    for target in ("z", "c"):
        d = decoding[target]
        assert (
            f"{target}{' decoded' if target == 'z' else ''} from {d['ROI']} "
            f"({d['Voxels']} voxels), two-way identification {d['2-way identification']}, "
            f"chance {chance[target]}"
        ) in text, text
    # the methods text is linked when the run wrote it, relative to the page
    assert dom.by_id("methods-link") is None
    (deriv / "logs").mkdir()
    (deriv / "logs" / "CITATION.md").write_text("methods\n")
    link = next(parse(write(summary, deriv)).by_id("methods-link").iter("a"))
    assert link.attrs["href"] == "logs/CITATION.md"


def test_every_term_is_defined_in_place(tmp_path):
    summary, deriv = make_run(tmp_path, extractors=("pixels", "lowlevel"))
    dom = parse(write(summary, deriv))
    legend = dom.by_id("metrics-table-legend")
    terms = [dt.text() for dt in legend.iter("dt")]
    for term in (
        "chance",
        "mismatched",
        "baseline: mean image",
        "null 95%",
        "p",
        "95% CI",
        "PixCorr",
        "SSIM",
        "Pixels",
        "LowLevel(energy)",
        "LowLevel(colour)",
        "takagi (rule)",
        "mindeye (rule)",
    ):
        assert term in terms, term
    definitions = dict(zip(terms, (dd.text() for dd in legend.iter("dd")), strict=True))
    assert "edge energy" in definitions["LowLevel(energy)"]
    assert "docs/evaluation.md" in definitions["Definitions"]
    # every header and every metric of the table carries its definition
    rows = table_rows(dom.by_id("metrics-table"))
    for cell in rows[0] + [r[0] for r in rows[1:]]:
        spans = [s for s in cell.iter("span") if s.attrs.get("title")]
        assert spans, cell.text()
    # the decoding table's columns, the target column first
    decoding_terms = [dt.text() for dt in dom.by_id("decoding-legend").iter("dt")]
    assert decoding_terms[:3] == ["Target", "ROI", "Voxels"]
    target = table_rows(dom.by_id("decoding-table"))[0][0]
    assert "z, the image's latent" in next(target.iter("span")).attrs["title"]


def test_numbering_is_that_of_the_files(tmp_path):
    summary, deriv = make_run(tmp_path, n_test=3, n_samples=3)
    dom = parse(write(summary, deriv))
    grid = dom.by_id("reconstruction-grid")
    rows = [n for n in grid.iter("div") if "recon-row" in n.classes()]
    for row, item in zip(rows, summary["test_stimuli"], strict=True):
        names = [Path(p).name for p in item["reconstructions"]]
        # e.g. sub-01_stim-0001_sample-2_recon.png -> "stim-0001", "sample-2"
        stim = {re.search(r"_(stim-[A-Za-z0-9]+)_", n)[1] for n in names}
        label = next(d for d in row.iter("div") if "label" in d.classes())
        assert {label.text()} == stim
        assert label.attrs["title"] == f"stim_id {item['stim_id']}"
        captions = [f.text() for f in row.iter("figcaption")]
        assert captions == ["seen"] + [re.search(r"_(sample-\d+)_", n)[1] for n in names]
        assert captions[1:] == ["sample-0", "sample-1", "sample-2"]
    assert "sample 1" not in grid.text()


def test_per_image_scores_one_row_per_image(tmp_path):
    n_test = 5
    summary, deriv = make_run(tmp_path, n_test=n_test, n_samples=2)
    page = write(summary, deriv)
    dom = parse(page)
    truth = pd.read_csv(summary["per_image"], sep="\t", dtype={"stim_id": str})
    table = report.read_metrics_table(summary["metrics"])
    # ground truth: each metric's per-image scores average to the table's value
    for metric in table.index:
        assert truth[metric].mean() == pytest.approx(table.loc[metric, "value"], abs=1e-9)
    html = dom.by_id("per-image-table")
    head = list(html.iter("thead"))[0]
    sortable = {int(th.attrs["data-col"]): th for th in head.iter("th") if "data-col" in th.attrs}
    body = table_rows(list(html.iter("tbody"))[0])
    assert len(body) == n_test
    labels = {
        f"stim-{s['stim_id'].removeprefix('stim-')}": s["stim_id"] for s in truth.to_dict("records")
    }
    columns = [c for c in truth.columns if c != "stim_id"]
    assert sorted(sortable) == list(range(len(columns) + 1))
    for cells in body:
        stim_id = labels[cells[0].text()]
        expected = truth.set_index("stim_id").loc[stim_id]
        for k, metric in enumerate(columns, start=1):
            assert cells[k].text() == f"{expected[metric]:.3f}", (stim_id, metric)
            assert float(cells[k].attrs["data-sort"]) == pytest.approx(expected[metric])
    # sorted best first by the headline metric, which is marked as the sort column
    metric = "Pixels 2-way (takagi)"
    k = columns.index(metric) + 1
    assert sortable[k].attrs["aria-sort"] == "descending"
    shown = [float(c[k].attrs["data-sort"]) for c in body]
    assert shown == sorted(shown, reverse=True)
    # the best and worst images: the first and the last rows (worst first), with their scores
    n = min(3, n_test // 2)
    captions = [f.text() for f in dom.by_id("best-worst").iter("figcaption")]
    shown = [f"{c[0].text()}: {c[k].text()}" for c in body]
    assert captions == shown[:n] + shown[::-1][:n]


# ------------------------------------------------------------------------------ failed run


def test_failed_report_shows_the_error_text(tmp_path):
    out = tmp_path / "out"
    (out / "logs").mkdir(parents=True)
    crash = out / "logs" / "crash-20261206-102156-root-evaluate-0000.txt"
    crash.write_text(CRASH.format(label="02", message=MESSAGE))
    assert report.crash_message(crash.read_text()) == f"DataError: {MESSAGE}"
    assert report.crash_message("Node: x\nno traceback here") is None
    page = _failure_report(out, "02", time.time())
    assert page == out / "sub-02.html"
    dom = parse(page)
    expected = f"Node: brainrecon_wf.sub_02_wf.evaluation_wf.evaluate failed: DataError: {MESSAGE}"
    # at the top of the page, and in the Errors section with its crash file
    assert [li.text() for li in dom.by_id("error-summary").iter("li")] == [expected]
    item = next(dom.by_id("error-list").iter("li")).text()
    assert item.startswith(expected) and crash.name in item
    link = next(dom.by_id("error-list").iter("a"))
    assert link.attrs["href"] == f"logs/{crash.name}"  # inside the derivatives: relative


# ------------------------------------------------------------------------------ group


def _derivatives(tmp_path: Path, subjects=("01", "02")) -> Path:
    """A derivatives folder as the participant level leaves it, with machine paths in the
    summaries (as older runs wrote them)."""
    out = tmp_path / "data" / "out"
    for k, subject in enumerate(subjects):
        summary, deriv = make_run(tmp_path / f"s{k}", subject=subject, seed=k)
        (out / f"sub-{subject}").mkdir(parents=True, exist_ok=True)
        table = report.read_metrics_table(summary["metrics"])
        table.to_csv(out / f"sub-{subject}" / subject_metrics_name(subject), sep="\t")
        settings = {
            "model": str(demo_model_path()),
            "seed": 42,
            "feature_cache": str(tmp_path / "c"),
        }
        command = f"brainrecon {tmp_path}/data/bids {out} participant -w {tmp_path}/work"
        logs = out / "logs"
        logs.mkdir(exist_ok=True)
        (logs / f"sub-{subject}_summary.json").write_text(
            json.dumps(
                {
                    "subject": subject,
                    "software": {"name": "nipype-brainrecon", "version": "9.9.9"},
                    "command": command,
                    "settings": settings,
                    "inputs": {"datasets": {"raw": {"Name": "bids", "URL": "../bids"}}},
                }
            )
        )
    (out / "logs" / "CITATION.md").write_text("methods\n")
    return out


def test_group_provenance_without_absolute_paths(tmp_path):
    out = _derivatives(tmp_path)
    page = write_group_outputs(out)["report"]
    dom = parse(page)
    section = dom.by_id("provenance")
    items = dict(
        zip(
            (dt.text() for dt in section.iter("dt")),
            (dd.text() for dd in section.iter("dd")),
            strict=True,
        )
    )
    assert items["Software"] == "nipype-brainrecon 9.9.9"
    assert items["Model"] == model_name(str(demo_model_path()))  # folder name + content hash
    assert re.fullmatch(r"demo_model@sha256:[0-9a-f]{12,}", items["Model"])
    assert items["Participants"] == "sub-01, sub-02"
    assert items["Datasets.raw"] == "../bids"
    assert next(section.iter("pre")).text() == "brainrecon ../bids . participant -w ../../work"
    settings = _cells(dom, "settings-table")
    assert settings["seed"]["Value"] == "42" and settings["feature_cache"]["Value"] == "../../c"
    methods = [a for a in section.iter("a") if a.text() == "logs/CITATION.md"]
    assert [a.attrs["href"] for a in methods] == ["logs/CITATION.md"]
    # no absolute path of this machine anywhere in the page
    text = page.read_text()
    for forbidden in (str(tmp_path), str(Path.home()), str(demo_model_path()), "file://"):
        assert forbidden not in text, forbidden
    # settings that differ between participants are listed per participant
    summary = out / "logs" / "sub-02_summary.json"
    data = json.loads(summary.read_text())
    data["settings"]["seed"] = 7
    summary.write_text(json.dumps(data))
    settings = _cells(parse(write_group_outputs(out)["report"]), "settings-table")
    assert settings["seed.sub-01"]["Value"] == "42" and settings["seed.sub-02"]["Value"] == "7"


# ------------------------------------------------------------------------------ a browser

_MEASURE = """
<script>
window.addEventListener("load", function () {
  var out = document.createElement("pre");
  out.id = "measure";
  out.textContent = "scroll " + document.documentElement.scrollWidth + " inner " + window.innerWidth;
  var cells = document.querySelectorAll("td:not(.text)");
  var wrapped = Array.prototype.filter.call(cells, function (td) {
    var range = document.createRange();
    range.selectNodeContents(td);
    var tops = {};
    Array.prototype.forEach.call(range.getClientRects(), function (r) { tops[Math.round(r.top)] = 1; });
    return Object.keys(tops).length > 1;
  });
  out.textContent += " wrapped " + wrapped.length + " of " + cells.length;
  var table = document.getElementById("per-image-table");
  if (table) {
    var head = table.querySelector('th[data-col="1"]');
    head.click();
    var keys = Array.prototype.map.call(table.tBodies[0].rows, function (r) {
      return r.cells[1].getAttribute("data-sort");
    });
    out.textContent += " sorted " + keys.join(",");
  }
  document.body.appendChild(out);
});
</script>
"""


def _measure(page: Path, width: int = 1024) -> str:
    probe = page.with_name(f"probe-{page.name}")
    probe.write_text(page.read_text().replace("</body>", _MEASURE + "</body>"))
    run = _chromium(
        f"--window-size={width},900", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()
    )
    assert run.returncode == 0, run.stderr[-2000:]
    found = re.search(r'<pre id="measure">([^<]*)</pre>', run.stdout)
    assert found, run.stdout[-500:]
    return found[1]


def _wide_group_table(n_subjects: int = 8) -> pd.DataFrame:
    """The demo's 10 metrics and 2 baselines for 8 subjects (the widest common case)."""
    metrics = ["PixCorr", "SSIM"] + [
        f"{f} 2-way ({r})"
        for f in ("Pixels", "LowLevel(energy)", "LowLevel(colour)", "Scene(colours)")
        for r in ("takagi", "mindeye")
    ]
    rng = np.random.default_rng(0)
    rows = [
        {
            "subject": f"{s + 1:02d}",
            "metric": m,
            "better": "higher",
            "value": rng.uniform(0.4, 0.95),
            "chance": np.nan if m in ("PixCorr", "SSIM") else 0.5,
            "mismatched": rng.uniform(0.3, 0.5),
            "baseline: mean training image": rng.uniform(0.4, 0.6),
            "baseline: shuffled latents": rng.uniform(0.4, 0.6),
        }
        for s in range(n_subjects)
        for m in metrics
    ]
    return pd.DataFrame(rows)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_pages_fit_1024_px_in_a_browser(tmp_path):
    summary, deriv = make_run(tmp_path, n_test=6, n_samples=5, extractors=("pixels", "lowlevel"))
    participant = write(summary, deriv)
    group = report.write_group_report(
        _wide_group_table(),
        deriv / "group.html",
        subjects_reports={f"{s:02d}": f"sub-{s:02d}.html" for s in range(1, 9)},
        provenance={"command": "brainrecon " + " ".join(["--option value"] * 40), "model": "m"},
    )
    crash = deriv / "logs" / "crash-20261206-102156-root-evaluate-0000.txt"
    crash.parent.mkdir(parents=True)
    crash.write_text(CRASH.format(label="02", message=MESSAGE + " " + "x" * 300))
    failed = _failure_report(deriv, "02", time.time())
    for page in (participant, group, failed):
        measured = _measure(page)
        scroll, inner = map(int, re.match(r"scroll (\d+) inner (\d+)", measured).groups())
        assert inner == 1024, measured
        assert scroll <= inner, f"{page.name}: {measured}"
    # the per-image table sorts by a clicked header (PixCorr: highest first)
    keys = _measure(participant).split(" sorted ")[1].split(",")
    values = [float(k) for k in keys]
    assert values == sorted(values, reverse=True)
    truth = pd.read_csv(summary["per_image"], sep="\t")
    assert values == pytest.approx(sorted(truth["PixCorr"], reverse=True))
    # number cells keep to one line: "0.842 ± 0.002" is never broken at its spaces
    wrapped = re.search(r"wrapped (\d+) of (\d+)", _measure(group))
    assert int(wrapped[2]) == 10 * (2 + 4 + 8) and int(wrapped[1]) == 0, wrapped[0]
