"""Portable provenance: no absolute path of the running machine in any output of a run.

The derivative writers and the report are driven with a simulated dataset, the shipped demo
model and the settings the command line passes (absolute model folder, absolute feature cache,
absolute paths on the command line); every text output is then searched for the machine's
paths, and the portable names are checked to lead back to the very files they name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nipype_brainrecon.bids import collect_participant
from nipype_brainrecon.config import DEFAULTS
from nipype_brainrecon.derivatives import (
    assemble_subject,
    init_output_dataset,
    stage_betas,
    stage_decoder,
    stage_reconstructions,
)
from nipype_brainrecon.derivatives.portable import (
    model_name,
    portable_command,
    portable_settings,
    relative_location,
    resolve_uri,
    source_uri,
)
from nipype_brainrecon.diffusion.identity import model_identity
from nipype_brainrecon.diffusion.models import demo_model_path
from nipype_brainrecon.encoding import write_encoding_derivatives
from nipype_brainrecon.reports import write_participant_report
from nipype_brainrecon.synthetic.simulate import simulate_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
TEXT_SUFFIXES = {".json", ".tsv", ".html", ".md", ".toml", ".txt", ".svg"}


def _machine_paths(tmp_path: Path) -> set[str]:
    """Absolute paths of this machine that no output may hold."""
    paths = {str(tmp_path), str(tmp_path.resolve()), str(REPO_ROOT), str(demo_model_path())}
    home = Path.home()
    if str(home) not in ("/", ""):
        paths.add(str(home))
    return paths


def _leaks(out: Path, machine: set[str]) -> list[str]:
    """``file: path`` for every absolute machine path found in a text output under ``out``."""
    found = []
    for file in sorted(p for p in out.rglob("*") if p.is_file()):
        if file.suffix not in TEXT_SUFFIXES and not file.name.endswith(".bidsignore"):
            continue
        text = file.read_text(errors="replace")
        for path in machine:
            for form in (path, Path(path).as_uri()):
                if form in text:
                    found.append(f"{file.relative_to(out)}: {form}")
    return found


def _write_stage_inputs(work: Path, participant) -> dict:
    """Files the analysis nodes would have made: betas, trials, decoder, images, metrics."""
    work.mkdir()
    bolds = [str(r.bold) for r in participant.runs]
    mask = nib.load(participant.runs[0].mask)
    betas, trials = [], []
    for k, _ in enumerate(bolds):
        data = np.random.default_rng(k).normal(size=(*mask.shape, 3)).astype("float32")
        nib.save(nib.Nifti1Image(data, mask.affine), work / f"betas{k}.nii.gz")
        pd.DataFrame({"trial": [0, 1, 2], "stim_id": ["a", "b", "c"]}).to_csv(
            work / f"trials{k}.tsv", sep="\t", index=False
        )
        betas.append(str(work / f"betas{k}.nii.gz"))
        trials.append(str(work / f"trials{k}.tsv"))
    r_map = np.random.default_rng(9).uniform(-0.2, 0.5, size=mask.shape).astype("float32")
    nib.save(nib.Nifti1Image(r_map, mask.affine), work / "map_r.nii.gz")
    stim_files = {p.stem: str(p) for p in participant.stim_files}
    test_ids = sorted(stim_files)[:2]
    np.save(work / "images.npy", np.zeros((2, 2, 8, 8, 3), dtype="uint8"))
    pd.DataFrame({"stim_id": test_ids}).to_csv(work / "images.tsv", sep="\t", index=False)
    pd.DataFrame({"stim_id": test_ids}).to_csv(work / "test.tsv", sep="\t", index=False)
    pd.DataFrame({"metric": ["identification"], "value": [0.6], "chance": [0.5]}).to_csv(
        work / "metrics.tsv", sep="\t", index=False
    )
    pd.DataFrame(
        {
            "roi": ["all", "early"],
            "feature": ["z", "z"],
            "statistic": ["r", "r"],
            "n_voxels": [20, 10],
            "mean": [0.1, 0.2],
            "median": [0.1, 0.2],
        }
    ).to_csv(work / "rois.tsv", sep="\t", index=False)
    np.save(work / "predicted.npy", np.zeros((2, 4), dtype="float32"))
    (work / "decoder.safetensors").write_bytes(b"weights")
    # What FitDecoder wrote before: the model as the command line resolved it (a folder).
    sidecar = {"NTargets": 4, "Metadata": {"subject": "01", "model": str(demo_model_path())}}
    (work / "decoder.json").write_text(json.dumps(sidecar))
    return {
        "bolds": bolds,
        "betas": betas,
        "trials": trials,
        "stim_files": stim_files,
        "test_ids": test_ids,
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A participant's derivatives and report written as a run writes them."""
    base = tmp_path_factory.mktemp("prov")
    bids = simulate_dataset(base / "bids", n_subjects=1, n_runs=2, n_test=4, n_train=8, seed=3)
    participant = collect_participant(bids, "01")
    out = base / "out"
    work = _write_stage_inputs(base / "work", participant)
    settings = {
        **DEFAULTS.flat(),
        "model": str(demo_model_path()),  # as bids_app/cli.py resolves --model demo
        "feature_cache": str(base / "cache"),
        "n_samples": 2,
    }
    datasets = {"raw": str(participant.bids_dir), "fmriprep": str(participant.derivatives)}
    init_output_dataset(
        out, bids_dir=bids, derivatives={"fmriprep": participant.derivatives}, settings=settings
    )
    common = {"output_dir": out, "subject": "01", "settings": settings, "datasets": datasets}
    stages = [base / "work" / f"stage{k}" for k in range(4)]
    for stage in stages:
        stage.mkdir()
    results = [
        stage_betas(
            stages[0],
            **common,
            run_entities=[dict(r.entities) for r in participant.runs],
            bold_files=work["bolds"],
            betas_files=work["betas"],
            trials_files=work["trials"],
        )
    ]
    for stage, target in zip(stages[1:3], ("z", "c"), strict=True):
        results.append(
            stage_decoder(
                stage,
                **common,
                target=target,
                roi_file=str(participant.runs[0].mask),
                decoder_file=str(base / "work" / "decoder.safetensors"),
                decoder_sidecar=str(base / "work" / "decoder.json"),
                predicted_file=str(base / "work" / "predicted.npy"),
                scores={"roi": "early" if target == "z" else "ventral", "n_voxels": 10},
                bold_files=work["bolds"],
                alpha_counts={"1": 3, "100": 1},
            )
        )
    results.append(
        stage_reconstructions(
            stages[3],
            **common,
            images_file=str(base / "work" / "images.npy"),
            images_stimuli_file=str(base / "work" / "images.tsv"),
            stim_files=work["stim_files"],
            metrics_file=str(base / "work" / "metrics.tsv"),
            test_stimuli_file=str(base / "work" / "test.tsv"),
            split_info={"TestSetRule": "repeats"},
        )
    )
    command = f"brainrecon {bids} {out} participant --model demo -w {base / 'work'}"
    _, summary = assemble_subject(
        output_dir=out,
        subject="01",
        files=[f for f, _ in results],
        sections=[s for _, s in results],
        settings=settings,
        bids_dir=bids,
        command=command,
        datasets=datasets,
    )
    summary = write_encoding_derivatives(
        output_dir=out,
        subject="01",
        map_files=[str(base / "work" / "map_r.nii.gz")],
        map_names=["z:r"],
        roi_summary_file=str(base / "work" / "rois.tsv"),
        spaces={"z": {"n_features": 4}},
        task="view",
        sources=[source_uri(b, datasets, out) for b in work["bolds"]],
        settings=settings,
        summary=summary,
    )
    write_participant_report(summary, out / "sub-01.html", figures_dir=out / "sub-01" / "figures")
    return {"base": base, "out": out, "bids": bids, "participant": participant, **work}


def test_no_machine_path_in_any_text_output(run, tmp_path_factory):
    machine = _machine_paths(run["base"]) | _machine_paths(tmp_path_factory.getbasetemp())
    assert _leaks(run["out"], machine) == []
    # The search finds what it looks for: the inputs' own paths are absolute.
    assert str(run["base"]) in run["bolds"][0]


def test_sources_are_bids_uris_that_lead_back_to_the_inputs(run):
    out = run["out"]
    desc = json.loads((out / "dataset_description.json").read_text())
    links = desc["DatasetLinks"]
    assert links == {"raw": "../bids", "fmriprep": "../bids/derivatives/fmriprep"}
    assert [d["URL"] for d in desc["SourceDatasets"]] == list(links.values())
    sidecars = sorted((out / "sub-01" / "func").glob("*_betas.json"))
    assert len(sidecars) == len(run["bolds"]) == 2
    for sidecar, bold in zip(sidecars, run["bolds"], strict=True):
        (uri,) = json.loads(sidecar.read_text())["Sources"]
        assert re.fullmatch(r"bids:fmriprep:sub-01/func/sub-01_\S+_bold\.nii\.gz", uri)
        assert resolve_uri(uri, links, out) == bold
    mask = json.loads(next((out / "sub-01" / "func").glob("*label-early_mask.json")).read_text())
    assert "RawSources" not in mask
    assert resolve_uri(mask["SpatialReference"], links, out) == run["bolds"][0]
    statmap = json.loads(next((out / "sub-01" / "func").glob("*_statmap.json")).read_text())
    assert [resolve_uri(u, links, out) for u in statmap["Sources"]] == run["bolds"]


def test_model_named_by_identity_never_by_path(run):
    out = run["out"]
    identity = model_identity(demo_model_path())
    assert re.fullmatch(r"demo_model@sha256:[0-9a-f]{16}", identity)
    decoder = json.loads(next((out / "sub-01" / "decoding").glob("*_decoder.json")).read_text())
    assert decoder["Metadata"]["model"] == identity
    assert decoder["Settings"]["model"] == identity
    assert decoder["Settings"]["feature_cache"] == "../cache"
    citation = " ".join((out / "logs" / "CITATION.md").read_text().split())
    assert f"latent diffusion model {identity}:" in citation
    assert f'model = "{identity}"' in (out / "logs" / "settings.toml").read_text()
    summary = json.loads((out / "logs" / "sub-01_summary.json").read_text())
    assert summary["settings"]["model"] == identity
    assert summary["command"] == "brainrecon ../bids . participant --model demo -w ../work"


def test_summary_paths_relative_to_the_datasets(run):
    out, bids = run["out"], run["bids"]
    summary = json.loads((out / "logs" / "sub-01_summary.json").read_text())
    inputs = summary["inputs"]
    assert inputs["bids_dir"] == "../bids"
    name = json.loads((bids / "dataset_description.json").read_text())["Name"]
    assert inputs["datasets"]["raw"] == {"Name": name, "URL": "../bids"}
    links = {k: v["URL"] for k, v in inputs["datasets"].items()}
    assert [resolve_uri(u, links, out) for u in inputs["bold_files"]] == run["bolds"]
    for item in summary["test_stimuli"]:
        assert item["stimulus"].startswith("bids:raw:stimuli/")
        assert resolve_uri(item["stimulus"], links, out) == run["stim_files"][item["stim_id"]]
        assert all((out / p).is_file() for p in item["reconstructions"])
    assert (out / summary["metrics"]).is_file()
    assert all((out / r["mask"]).is_file() for r in summary["rois"].values())


def test_report_names_the_dataset_and_finds_every_file(run):
    out, bids = run["out"], run["bids"]
    page = (out / "sub-01.html").read_text()
    name = json.loads((bids / "dataset_description.json").read_text())["Name"]
    row = re.search(r"Input dataset</dt>\s*<dd>(.*?)</dd>", page, re.S)
    assert row, "no Input dataset row"
    href = re.search(r'href="([^"]+)"', row.group(1)).group(1)
    assert name in row.group(1) and (out / href).resolve() == bids.resolve()
    assert model_identity(demo_model_path()) in page
    # bids: URIs and relative paths were resolved: the ROI figure, the seen images, the
    # reconstructions and the encoding maps were all found (no Errors section).
    assert 'id="errors"' not in page and "not found" not in page
    assert (out / "sub-01" / "figures" / "sub-01_desc-rois_mask.svg").is_file()
    assert page.count("data:image/png;base64,") == 2  # the two seen images, embedded


def test_leak_search_finds_a_path(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"Sources": [(tmp_path / "a.nii").as_uri()]}))
    assert _leaks(tmp_path, {str(tmp_path)}) == [
        f"x.json: {tmp_path}",
        f"x.json: {tmp_path.as_uri()}",
    ]


def test_portable_helpers():
    settings = {"model": "CompVis/stable-diffusion-v1-4", "feature_cache": "/x/cache", "k": 1}
    once = portable_settings(settings, "/x/out")
    assert once == {"model": "CompVis/stable-diffusion-v1-4", "feature_cache": "../cache", "k": 1}
    assert portable_settings(once, "/x/out") == once
    assert model_name("/nowhere/my_model") == "my_model"
    assert relative_location("/a/b/c", "/a/d") == "../b/c"
    assert portable_command("brainrecon '/a b/bids' /a/out group", "/a/out") == (
        "brainrecon '../../a b/bids' . group"
    )
    assert source_uri("/e/f.png", {"raw": "/d"}, "/d/out") == "../../e/f.png"
