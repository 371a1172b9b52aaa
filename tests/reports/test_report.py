"""The participant and group HTML reports: links, tables, figures, errors, and a real browser."""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from nipype_brainrecon import reports as report
from nipype_brainrecon.errors import DataError, UsageError
from nipype_brainrecon.evaluation import evaluate
from nipype_brainrecon.reports import participant as participant_report
from nipype_brainrecon.reports.summary import ParticipantSummary
from nipype_brainrecon.synthetic.simulate import ROI_LABELS, brain_grid

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}

# ------------------------------------------------------------------------------ a small DOM


@dataclass
class Node:
    tag: str
    attrs: dict
    children: list = field(default_factory=list)
    parent: Node | None = None

    def iter(self, tag=None):
        for child in self.children:
            if isinstance(child, Node):
                if tag is None or child.tag == tag:
                    yield child
                yield from child.iter(tag)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def by_id(self, id_):
        return next((n for n in self.iter() if n.attrs.get("id") == id_), None)

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())


class _Builder(HTMLParser):
    """Parse into Nodes, failing on any closing tag that does not match the open one."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), parent=self.stack[-1])
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, dict(attrs), parent=self.stack[-1]))

    def handle_endtag(self, tag):
        assert tag not in VOID, f"closing a void element </{tag}>"
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(path: Path) -> Node:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    builder = _Builder()
    builder.feed(text)
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements: " + str(
        [n.tag for n in builder.stack[1:]]
    )
    return builder.root


def table_rows(table: Node) -> list[list[Node]]:
    return [[c for c in tr.children if isinstance(c, Node)] for tr in table.iter("tr")]


def resolve(src: str, page: Path) -> Path:
    assert not src.startswith(("http:", "https:", "//", "file:")), src
    return (page.parent / unquote(src)).resolve()


# ------------------------------------------------------------------------------ a fake run


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def make_run(
    tmp_path: Path,
    *,
    subject="01",
    n_test=3,
    n_samples=2,
    seed=0,
    errors=(),
    extractors=("pixels",),
) -> tuple[dict, Path]:
    """A summary like the BIDS App's, with real files: raw stimuli outside the derivatives,
    BOLD, masks, reconstructions and a metrics table inside. Returns (summary, derivatives)."""
    rng = np.random.default_rng(seed)
    deriv = tmp_path / "derivatives"
    raw = tmp_path / "bids"
    sub = deriv / f"sub-{subject}"
    grid = brain_grid()
    affine = grid["affine"]
    n_time = 7
    bold = grid["mask"][..., None] * 800 + rng.normal(100, 20, (*grid["mask"].shape, n_time))
    bold_path = _nifti(
        sub / "func" / f"sub-{subject}_task-vision_run-1_desc-preproc_bold.nii.gz",
        bold.astype(np.float32),
        affine,
    )
    rois = {}
    for target, label in (("z", 1), ("c", 2)):
        name = ROI_LABELS[label]
        mask = (grid["dseg"] == label).astype(np.uint8)
        path = _nifti(sub / "func" / f"sub-{subject}_label-{name}_mask.nii.gz", mask, affine)
        rois[target] = {"name": name, "mask": str(path), "n_voxels": int(mask.sum())}

    originals = rng.integers(0, 256, (n_test, 24, 24, 3), dtype=np.uint8)
    noise = rng.normal(0, 40, (n_test, n_samples, 24, 24, 3))
    recons = np.clip(originals[:, None] + noise, 0, 255).astype(np.uint8)
    test_stimuli = []
    for i in range(n_test):
        stim_id = f"stim-{i + 1:04d}"
        stim = _png(raw / "stimuli" / f"{stim_id}.png", originals[i])
        samples = [
            str(
                _png(
                    sub / "recon" / f"sub-{subject}_stim-{i + 1:04d}_sample-{s}_recon.png",
                    recons[i, s],
                )
            )
            for s in range(n_samples)
        ]
        test_stimuli.append({"stim_id": stim_id, "stimulus": str(stim), "reconstructions": samples})

    table, per_image = evaluate(
        originals,
        recons,
        extractors=extractors,
        size=32,
        baselines={"mean image": originals.mean(axis=0) / 255.0},
        per_image=True,
    )
    metrics = sub / f"sub-{subject}_desc-recon_metrics.tsv"
    table.to_csv(metrics, sep="\t")  # as the evaluation interface writes it
    per_image.insert(0, "stim_id", [s["stim_id"] for s in test_stimuli])
    per_image_tsv = sub / f"sub-{subject}_desc-perimage_scores.tsv"
    per_image.to_csv(per_image_tsv, sep="\t", index=False, na_rep="n/a")

    summary = {
        "subject": subject,
        "software": {"name": "nipype-brainrecon", "version": "0.1.0"},
        "command": f"brainrecon {raw} {deriv} participant --participant-label {subject}",
        "settings": {"model": "demo", "random_seed": 7, "ridge": {"alphas": [0.01, 100.0]}},
        "inputs": {
            "bids_dir": str(raw),
            "derivatives": str(tmp_path / "fmriprep"),
            "n_runs": 1,
            "n_trials": 40,
            "bold_files": [str(bold_path)],
        },
        "reference_bold": str(bold_path),
        "rois": rois,
        "split": {"TestSetRule": "repeats", "NumberOfTrainingTrials": 30, "NumberOfTestStimuli": 3},
        "decoding": {
            "z": {
                "target_r_mean": 0.31,
                "target_r_chance": 0.0,
                "pattern_r_mean": 0.42,
                "baseline_pattern_r_mean": 0.55,
                "identification": 0.83,
                "identification_chance": 0.5,
                "n_voxels": rois["z"]["n_voxels"],
                "roi": "early",
                "n_stimuli": 3,
                "n_targets": 64,
                "baseline": "mean training feature",
            },
            "c": {
                "target_r_mean": -0.02,
                "target_r_chance": 0.0,
                "pattern_r_mean": 0.61,
                "baseline_pattern_r_mean": 0.58,
                "identification": 0.71,
                "identification_chance": 0.5,
                "n_voxels": rois["c"]["n_voxels"],
                "roi": "ventral",
                "n_stimuli": 3,
                "n_targets": 77,
                "baseline": "mean training feature",
            },
        },
        "alpha_counts": {"z": {"1e3": 4, "0.01": 3, "100": 25}, "c": {"10": 2, "1000000": 7}},
        "test_stimuli": test_stimuli,
        "metrics": str(metrics),
        "per_image": str(per_image_tsv),
        "errors": list(errors),
    }
    return summary, deriv


def write(summary, deriv, **kw) -> Path:
    subject = summary["subject"]
    return report.write_participant_report(
        summary,
        deriv / f"sub-{subject}.html",
        figures_dir=deriv / f"sub-{subject}" / "figures",
        **kw,
    )


# ------------------------------------------------------------------------------ participant


@pytest.mark.parametrize("external_images", ["embed", "link"])
def test_every_image_resolves_and_grid_is_complete(tmp_path, external_images):
    n_test, n_samples = 3, 2
    summary, deriv = make_run(tmp_path, n_test=n_test, n_samples=n_samples)
    page = write(summary, deriv, external_images=external_images)
    assert page == deriv / "sub-01.html"
    dom = parse(page)

    images = list(dom.iter("img"))
    for img in images:
        src = img.attrs["src"]
        if src.startswith("data:"):
            # only the stimuli, which live outside the derivatives, are embedded
            assert external_images == "embed"
            assert src.startswith("data:image/png;base64,")
            thumb = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
            assert thumb.size == (24, 24)
        else:
            assert resolve(src, page).is_file(), src
            assert ".." not in unquote(src).split("/") or external_images == "link"

    grid = dom.by_id("reconstruction-grid")
    grid_images = list(grid.iter("img"))
    assert len(grid_images) == n_test * (1 + n_samples)
    rows = [n for n in grid.iter("div") if "recon-row" in n.classes()]
    assert len(rows) == n_test
    for row, item in zip(rows, summary["test_stimuli"], strict=True):
        srcs = [img.attrs["src"] for img in row.iter("img")]
        assert len(srcs) == 1 + n_samples
        # the samples are linked, in order, relative to the page
        assert [resolve(s, page) for s in srcs[1:]] == [
            Path(p).resolve() for p in item["reconstructions"]
        ]
        if external_images == "link":
            assert resolve(srcs[0], page) == Path(item["stimulus"]).resolve()
        else:
            with Image.open(item["stimulus"]) as original:
                data = base64.b64decode(srcs[0].split(",", 1)[1])
                embedded = Image.open(io.BytesIO(data)).convert("RGB")
                assert np.array_equal(np.asarray(embedded), np.asarray(original.convert("RGB")))
    # the figures are real files with BIDS-like names, not placeholders
    figures = sorted(p.name for p in (deriv / "sub-01" / "figures").iterdir())
    assert figures == ["sub-01_desc-alphas_hist.svg", "sub-01_desc-rois_mask.svg"]
    figure_srcs = {unquote(i.attrs["src"]) for i in images if "figures/" in i.attrs["src"]}
    assert figure_srcs == {f"sub-01/figures/{name}" for name in figures}
    # nothing went wrong while writing: no Errors section
    assert dom.by_id("errors") is None and dom.by_id("error-banner") is None


def test_navbar_links_every_section(tmp_path):
    summary, deriv = make_run(tmp_path)
    dom = parse(write(summary, deriv))
    nav = next(dom.iter("nav"))
    anchors = [a.attrs["href"] for a in nav.iter("a")]
    assert anchors == [
        "#summary",
        "#rois",
        "#decoding",
        "#reconstructions",
        "#metrics",
        "#per-image",
        "#about",
    ]
    for href in anchors:
        assert dom.by_id(href[1:]).tag == "section"


def test_metric_table_lists_chance_mismatched_and_baselines(tmp_path):
    summary, deriv = make_run(tmp_path)
    table = report.read_metrics_table(summary["metrics"])
    dom = parse(write(summary, deriv))
    html_table = dom.by_id("metrics-table")
    rows = table_rows(html_table)
    header = [c.text() for c in rows[0]]
    refs = ["chance", "mismatched", "baseline: mean image"]
    assert header == ["Metric", "Better", "Reconstructions", *refs, "null 95%", "p", "95% CI"]
    assert [r[0].text() for r in rows[1:]] == list(table.index)
    for cells, (metric, row) in zip(rows[1:], table.iterrows(), strict=True):
        for col, cell in zip(["value", *refs, "null_p95"], cells[2:-2], strict=True):
            expected = "\u2014" if pd.isna(row[col]) else f"{row[col]:.3f}"
            assert cell.text() == expected, (metric, col)
        # the permutation p-value and the bootstrap interval of identification rows
        p, ci = cells[-2].text(), cells[-1].text()
        if pd.isna(row["p_value"]):
            assert (p, ci) == ("\u2014", "\u2014"), metric
        else:
            assert p == ("< 0.001" if row["p_value"] < 0.0005 else f"{row['p_value']:.3f}")
            assert ci == f"{row['ci_low']:.3f}\u2013{row['ci_high']:.3f}", metric
        # every metric says what it is (hover title), and the legend defines its terms
        assert next(cells[0].iter("span")).attrs["title"], metric
        # green when the value beats every finite reference in its better direction
        levels = [row[c] for c in refs if not pd.isna(row[c])]
        lower = row["better"] == "lower"
        beats = bool(levels) and all((row.value < v) if lower else (row.value > v) for v in levels)
        assert ("beats" in cells[2].classes()) == beats, metric
    # reconstructions are noisy copies: PixCorr beats mismatched pairs and the mean image
    assert "beats" in rows[1 + list(table.index).index("PixCorr")][2].classes()


def test_read_metrics_table_forms(tmp_path):
    table = pd.DataFrame(
        {"value": [0.3, 0.8], "chance": [np.nan, 0.5], "better": ["higher", "higher"]},
        index=pd.Index(["PixCorr", "AlexNet(2) 2-way (mindeye)"], name="metric"),
    )
    forms = {
        "index.tsv": dict(sep="\t"),
        "na.tsv": dict(sep="\t", na_rep="n/a"),
        "column.tsv": dict(sep="\t", index=False),
    }
    for name, kw in forms.items():
        data = table.reset_index() if name == "column.tsv" else table
        data.to_csv(tmp_path / name, **kw)
        pd.testing.assert_frame_equal(report.read_metrics_table(tmp_path / name), table)
    table.to_csv(tmp_path / "nameless.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match="nameless.tsv.*metric"):
        report.read_metrics_table(tmp_path / "nameless.tsv")
    with pytest.raises(FileNotFoundError, match="absent.tsv"):
        report.read_metrics_table(tmp_path / "absent.tsv")


def test_decoding_table_and_alpha_histogram(tmp_path):
    summary, deriv = make_run(tmp_path)
    dom = parse(write(summary, deriv))
    rows = table_rows(dom.by_id("decoding-table"))
    header = [c.text() for c in rows[0]]
    assert header == [
        "Target",
        "ROI",
        "Voxels",
        "Outputs",
        "Test stimuli",
        "2-way identification",
        "chance",
        "Feature r",
        "chance",
        "Pattern r",
        "baseline",
    ]
    decoding = summary["decoding"].values()
    keys = [k for k, _ in participant_report._DECODING_COLUMNS if any(k in d for d in decoding)]
    for cells, (target, d) in zip(rows[1:], summary["decoding"].items(), strict=True):
        assert cells[0].text() == target
        for key, cell in zip(keys, cells[1:], strict=True):
            v = d[key]
            assert cell.text() == (
                v if isinstance(v, str) else str(v) if isinstance(v, int) else f"{v:.3f}"
            )
    # z beats its feature-r chance but not its pattern-r baseline; c the reverse
    z, c = rows[1], rows[2]
    col = {name: i for i, name in enumerate(header)}
    r, p = col["Feature r"], col["Pattern r"]
    assert "beats" in z[r].classes() and "beats" not in z[p].classes()
    assert "beats" not in c[r].classes() and "beats" in c[p].classes()
    assert "mean training feature" in dom.by_id("decoding").text()

    alphas, counts = report.sorted_alpha_counts(summary["alpha_counts"]["z"])
    assert alphas == [0.01, 100.0, 1000.0] and counts == [3, 25, 4]
    svg = ET.parse(deriv / "sub-01" / "figures" / "sub-01_desc-alphas_hist.svg").getroot()
    assert svg.tag.endswith("svg")
    # one bar per alpha over both panels (matplotlib names each bar patch in the SVG)
    n_bars = sum(len(v) for v in summary["alpha_counts"].values())
    patches = [g for g in svg.iter() if (g.get("id") or "").startswith("patch_")]
    assert len(patches) >= n_bars
    with pytest.raises(DataError, match="alpha_counts"):
        report.sorted_alpha_counts({"ten": 3})


def test_decoding_table_gives_each_score_its_null_p_and_ci(tmp_path):
    """With decoding_scores' null keys (as the workflow writes them), each score is followed by
    its null 95th percentile, p and CI, and none of those keys shows as a raw extra column."""
    from nipype_brainrecon.evaluation.metrics import decoding_scores

    summary, deriv = make_run(tmp_path)
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((20, 64))
    scores = decoding_scores(truth, truth + rng.standard_normal((20, 64)), baseline=truth[0])
    summary["decoding"]["z"].update(scores)
    dom = parse(write(summary, deriv))
    header = [c.text() for c in table_rows(dom.by_id("decoding-table"))[0]]
    assert header[5:] == [
        *("2-way identification", "chance", "null 95%", "p", "95% CI"),
        *("Feature r", "chance", "null 95%", "p", "95% CI"),
        *("Pattern r", "baseline", "null 95%", "p", "95% CI"),
    ]
    z = table_rows(dom.by_id("decoding-table"))[1]
    col = header.index("Feature r")
    assert z[col].text() == f"{scores['target_r_mean']:.3f}"
    assert z[col + 3].text() == "< 0.001" or float(z[col + 3].text()) < 0.05
    low, high = scores["pattern_r_ci_low"], scores["pattern_r_ci_high"]
    assert f"{low:.3f}" in z[col + 9].text() and f"{high:.3f}" in z[col + 9].text()


def test_roi_figure_and_cut_coordinates(tmp_path):
    summary, deriv = make_run(tmp_path)
    masks = [nib.load(r["mask"]) for r in summary["rois"].values()]
    cuts = report.roi_cut_coords(masks, n_cuts=4)
    grid = brain_grid()
    ijk = np.argwhere(grid["dseg"] > 0)
    world = ijk @ grid["affine"][:3, :3].T + grid["affine"][:3, 3]
    for axis, name in enumerate("xyz"):
        values = np.unique(world[:, axis])
        assert 1 <= len(cuts[name]) <= 4
        assert cuts[name] == sorted(cuts[name])
        assert cuts[name][0] == values.min() and cuts[name][-1] == values.max()
        assert set(cuts[name]) <= set(values.tolist())
    assert report.roi_cut_coords([nib.Nifti1Image(np.zeros((3, 3, 3)), np.eye(4))]) == {
        "x": [],
        "y": [],
        "z": [],
    }

    out = report.plot_rois(
        summary["reference_bold"],
        [(t, r["mask"]) for t, r in summary["rois"].items()],
        tmp_path / "rois.svg",
    )
    svg = ET.parse(out).getroot()
    # the mean BOLD and the overlays are rasters inside the SVG: three rows of slices
    images = [el for el in svg.iter() if el.tag.endswith("image")]
    assert len(images) >= 3
    with pytest.raises(UsageError, match="rois"):
        report.plot_rois(summary["reference_bold"], [], tmp_path / "none.svg")


def test_mean_volume_reads_in_chunks(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(4, 5, 3, 11)).astype(np.float32)
    path = _nifti(tmp_path / "bold.nii.gz", data, np.diag([2.0, 2.0, 2.0, 1.0]))
    # one volume per chunk
    mean = report.mean_volume(path, max_bytes=4 * 4 * 5 * 3)
    np.testing.assert_allclose(mean.get_fdata(), data.mean(axis=-1), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(mean.affine, np.diag([2.0, 2.0, 2.0, 1.0]))
    three_d = _nifti(tmp_path / "mean.nii.gz", data[..., 0], np.eye(4))
    np.testing.assert_array_equal(report.mean_volume(three_d).get_fdata(), data[..., 0])


def test_errors_are_shown_escaped_with_crash_links(tmp_path):
    crash = tmp_path / "work" / "crash-20240101-glm_node.txt"
    crash.parent.mkdir()
    crash.write_text("Traceback ...")
    errors = [
        f"Node glm failed; crash file: {crash}.",
        "decoder c: <script>alert(1)</script> & more",
        {"message": "diffusion failed", "crash_file": str(crash)},
    ]
    summary, deriv = make_run(tmp_path, errors=errors)
    page = write(summary, deriv)
    dom = parse(page)
    # the only script is the page's own table sort: the message's is text
    assert [s.attrs.get("id") for s in dom.iter("script")] == ["per-image-sort"]
    box = dom.by_id("error-list")
    assert "alert" in box.classes()
    items = list(box.iter("li"))
    assert len(items) == 3
    assert items[1].text() == "decoder c: <script>alert(1)</script> & more"
    links = [a.attrs["href"] for a in box.iter("a")]
    assert links == [crash.as_uri(), crash.as_uri()]  # outside the derivatives: absolute URI
    assert items[0].text() == errors[0]
    # the banner at the top points to the Errors section, which the navbar links in red
    assert dom.by_id("error-banner").text().startswith("3 errors")
    nav_errors = [a for a in next(dom.iter("nav")).iter("a") if a.attrs["href"] == "#errors"]
    assert len(nav_errors) == 1 and "errors-link" in nav_errors[0].classes()


def test_failed_run_still_gives_a_report(tmp_path):
    """Only what exists is drawn; problems of the report itself join the Errors."""
    summary, deriv = make_run(tmp_path)
    missing_recon = summary["test_stimuli"][0]["reconstructions"][1]
    os.remove(missing_recon)
    summary["metrics"] = str(deriv / "sub-01" / "no_metrics.tsv")
    for key in ("decoding", "alpha_counts", "rois"):
        del summary[key]
    summary["errors"] = ["ridge: decoder z failed"]
    page = write(summary, deriv)
    dom = parse(page)
    sections = [s.attrs["id"] for s in dom.iter("section")]
    assert sections == ["summary", "reconstructions", "metrics", "per-image", "about", "errors"]
    messages = [li.text() for li in dom.by_id("error-list").iter("li")]
    assert messages[0] == "ridge: decoder z failed"
    assert any(missing_recon in m and "image not found" in m for m in messages)
    assert any("no_metrics.tsv" in m and "Metrics" in m for m in messages)
    grid = dom.by_id("reconstruction-grid")
    assert len(list(grid.iter("img"))) == 3 * 3 - 1
    assert "missing" in "".join(grid.text())
    # a run that produced nothing at all
    bare = report.write_participant_report(
        {"subject": "sub-02", "errors": ["BIDS input invalid"]},
        deriv / "sub-02.html",
        figures_dir=deriv / "sub-02" / "figures",
    )
    dom = parse(bare)
    assert [s.attrs["id"] for s in dom.iter("section")] == ["summary", "about", "errors"]
    assert "sub-02" in next(dom.iter("h1")).text()
    with pytest.raises(UsageError, match="subject"):
        report.write_participant_report({}, deriv / "x.html", figures_dir=deriv)


def test_summary_is_checked_on_entry(tmp_path):
    """The summary becomes typed records; an entry of the wrong kind is named in the error."""
    s = ParticipantSummary.from_dict(
        {
            "subject": "sub-03",
            "inputs": {"n_runs": 2, "bids_dir": tmp_path},
            "rois": {"z": "mask.nii.gz"},
            "errors": ["x", {"error": "y", "crashfile": "/c.txt"}],
        }
    )
    assert s.subject == "03" and s.prefix == "sub-03"
    assert s.inputs.n_runs == 2 and s.inputs.bids_dir == str(tmp_path)
    assert s.rois[0].mask == "mask.nii.gz" and s.rois[0].name is None
    assert [(e.message, e.crash_file) for e in s.errors] == [("x", None), ("y", "/c.txt")]
    bad_entries = [
        ({"rois": ["early"]}, "rois is a list"),
        ({"inputs": {"n_runs": "two"}}, "inputs.n_runs"),
        ({"test_stimuli": [{"stimulus": 3}]}, r"test_stimuli\[0\]\.stimulus"),
        ({"encoding": {"maps": []}}, "roi_table"),
        ({"decoding": {"z": 0.3}}, "decoding.z"),
    ]
    for bad, match in bad_entries:
        with pytest.raises(UsageError, match=match):
            report.write_participant_report(
                {"subject": "01", **bad}, tmp_path / "x.html", figures_dir=tmp_path
            )
    assert not (tmp_path / "x.html").exists()
    # a ParticipantSummary gives the page its mapping gives
    d = {"subject": "04", "errors": ["BIDS input invalid"], "settings": {"seed": 1}}
    a = report.write_participant_report(d, tmp_path / "a.html", figures_dir=tmp_path)
    b = report.write_participant_report(
        ParticipantSummary.from_dict(d), tmp_path / "b.html", figures_dir=tmp_path
    )
    assert a.read_bytes() == b.read_bytes()


def test_same_summary_gives_same_bytes(tmp_path):
    summary, deriv = make_run(tmp_path)
    first = write(summary, deriv).read_bytes()
    figures = {p.name: p.read_bytes() for p in (deriv / "sub-01" / "figures").iterdir()}
    second = write(summary, deriv).read_bytes()
    assert first == second
    assert figures == {p.name: p.read_bytes() for p in (deriv / "sub-01" / "figures").iterdir()}
    # no temporary files left behind by the atomic writes
    assert not [p for p in deriv.rglob(".*") if p.is_file()]


# ------------------------------------------------------------------------------ group


def _group(tmp_path, n_subjects=3):
    files, reports = {}, {}
    for k in range(n_subjects):
        subject = f"{k + 1:02d}"
        summary, deriv = make_run(tmp_path, subject=subject, seed=k)
        files[f"sub-{subject}"] = summary["metrics"]
        reports[subject] = f"sub-{subject}.html"
    return report.collect_group_table(files), reports, deriv


@pytest.mark.parametrize("with_figures_dir", [False, True])
def test_group_report(tmp_path, with_figures_dir):
    table, reports, deriv = _group(tmp_path)
    figures_dir = deriv / "group" / "figures" if with_figures_dir else None
    page = report.write_group_report(
        table,
        deriv / "group.html",
        subjects_reports=reports,
        provenance={"software": "nipype-brainrecon 0.1.0", "command": "brainrecon ... group"},
        figures_dir=figures_dir,
    )
    dom = parse(page)
    metrics = list(dict.fromkeys(table["metric"]))
    rows = table_rows(dom.by_id("group-metrics"))
    header, body = rows[0], rows[1:]
    subjects = ["01", "02", "03"]
    # one row per metric: the mean beside every reference level, then each subject
    assert [c.text() for c in header] == [
        "Metric",
        "Better",
        "Mean \u00b1 s.d.(n = 3)",
        "chance",
        "mismatched (mean)",
        "baseline: mean image (mean)",
        "sub-01",
        "sub-02",
        "sub-03",
    ]
    # each subject's column is linked to its report
    assert [next(c.iter("a")).attrs["href"] for c in header[-3:]] == [
        f"sub-{s}.html" for s in subjects
    ]
    assert [r[0].text() for r in body] == metrics
    wide = table.pivot(index="subject", columns="metric", values="value")[metrics]
    mism = table.groupby("metric")["mismatched"].mean()
    for r, m in zip(body, metrics, strict=True):
        # values from each subject's table
        assert [c.text() for c in r[-3:]] == [f"{wide.loc[s, m]:.3f}" for s in subjects]
        assert r[2].text() == f"{wide[m].mean():.3f} \u00b1 {wide[m].std(ddof=1):.3f}"
        assert r[4].text() == f"{mism[m]:.3f}"
    # one figure per metric, each a real SVG
    figures = list(dom.by_id("figures").iter("img"))
    assert len(figures) == len(metrics)
    for img in figures:
        src = img.attrs["src"]
        if with_figures_dir:
            data = resolve(src, page).read_bytes()
        else:
            assert src.startswith("data:image/svg+xml;base64,")
            data = base64.b64decode(src.split(",", 1)[1])
        assert ET.fromstring(data).tag.endswith("svg")
    if with_figures_dir:
        names = sorted(p.name for p in figures_dir.iterdir())
        assert names == sorted(
            [
                "group_desc-PixCorr_scores.svg",
                "group_desc-SSIM_scores.svg",
                "group_desc-Pixels2WayTakagi_scores.svg",
                "group_desc-Pixels2WayMindeye_scores.svg",
            ]
        )
    assert "brainrecon ... group" in dom.by_id("provenance").text()


def test_group_table_checks(tmp_path):
    table, _, deriv = _group(tmp_path, n_subjects=2)
    with pytest.raises(DataError, match="subject"):
        report.write_group_report(table.drop(columns="subject"), deriv / "g.html", provenance={})
    with pytest.raises(DataError, match="more than once"):
        report.write_group_report(
            pd.concat([table, table.iloc[:1]]), deriv / "g.html", provenance={}
        )
    # the index may carry the metric labels
    page = report.write_group_report(table.set_index("metric"), deriv / "g.html", provenance={})
    rows = table_rows(parse(page).by_id("group-metrics"))
    assert len(rows) == 1 + table["metric"].nunique()  # a header, then one row per metric
    assert len(rows[0]) == 3 + 3 + 2  # metric, better, mean; 3 references; 2 subjects
    assert not (deriv / "g.html").with_name("x").exists()


# ------------------------------------------------------------------------------ a browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

_CHECK_SCRIPT = """
<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = "loaded " + ok + " of " + imgs.length;
  document.body.appendChild(out);
});
</script>
"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_in_a_browser(tmp_path):
    summary, deriv = make_run(tmp_path, n_test=4, n_samples=3, errors=["GLM failed"])
    page = write(summary, deriv)
    n_images = len(list(parse(page).iter("img")))
    # A copy of the page beside it (same relative links) that counts the images that loaded.
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", _CHECK_SCRIPT + "</body>"))
    run = _chromium("--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"loaded {n_images} of {n_images}" in run.stdout, run.stdout[-500:]

    shot = tmp_path / "report.png"
    run = _chromium("--window-size=1280,2000", f"--screenshot={shot}", page.as_uri())
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels.std() > 20  # not blank
    # the red error banner is drawn near the top (its border colour #b00020)
    red = (np.abs(pixels - [0xB0, 0x00, 0x20]).sum(axis=-1) < 30)[:400]
    assert red.sum() > 500
    print(f"screenshot: {shot}")
