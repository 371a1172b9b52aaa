"""NSD -> derivatives dataset of single-trial betas, checked on a miniature NSD with known truth."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from nsd_fixture import Truth, build_mini_nsd  # noqa: E402

from nipype_brainrecon.datasets.nsd import BETAS_DESC, main, nsd_to_bids  # noqa: E402
from nipype_brainrecon.glm import load_precomputed_betas  # noqa: E402

FUNC = "sub-01/ses-{s:02d}/func/sub-01_ses-{s:02d}_task-nsdcore"


def _betas(out: Path, session: int) -> Path:
    return out / f"{FUNC.format(s=session)}_space-func1pt8mm_desc-{BETAS_DESC}_betas.nii.gz"


def _trials(out: Path, session: int) -> pd.DataFrame:
    path = out / f"{FUNC.format(s=session)}_desc-{BETAS_DESC}_trials.tsv"
    return pd.read_csv(path, sep="\t")


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth]:
    root = tmp_path_factory.mktemp("nsd") / "nsd"
    return root, build_mini_nsd(root)


@pytest.fixture(scope="module")
def converted(mini: tuple[Path, Truth], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nsd_to_bids(mini[0], tmp_path_factory.mktemp("out") / "nsd-bids", subject=1)


def test_trials_match_the_planted_design(mini: tuple[Path, Truth], converted: Path) -> None:
    truth = mini[1]
    table = pd.concat([_trials(converted, s) for s in (1, 2)], ignore_index=True)
    np.testing.assert_array_equal(table["stim_id"], truth.stim73k)
    np.testing.assert_array_equal(table["session"], truth.session)
    np.testing.assert_array_equal(table["run"], truth.run)
    np.testing.assert_array_equal(table["trial"], truth.trial)
    np.testing.assert_array_equal(table["repetition"], truth.repetition)
    assert list(table["stim_file"]) == [f"nsd{i:05d}.png" for i in truth.stim73k]
    assert set(table["repetition"]) == {0, 1, 2}  # the design has 2 and 3 showings
    coco = [truth.coco[i][0] for i in truth.stim73k]
    np.testing.assert_array_equal(table["coco_id"], coco)


def test_shared_images_are_exactly_the_test_split(
    mini: tuple[Path, Truth], converted: Path
) -> None:
    truth = mini[1]
    table = pd.concat([_trials(converted, s) for s in (1, 2)], ignore_index=True)
    test_ids = set(table.loc[table["split"] == "test", "stim_id"])
    assert test_ids == set(truth.shared_ids.tolist())
    assert (table["shared1000"] == table["stim_id"].isin(truth.shared_ids)).all()
    assert set(table.loc[table["split"] == "train", "stim_id"]).isdisjoint(test_ids)
    assert ((table["trial_type"] == "shared") == (table["split"] == "test")).all()


def test_images_and_captions_correspond(mini: tuple[Path, Truth], converted: Path) -> None:
    truth = mini[1]
    seen = sorted(set(truth.stim73k.tolist()))
    files = sorted(p.name for p in (converted / "stimuli").glob("*.png"))
    assert files == [f"nsd{i:05d}.png" for i in seen]  # only the images this subject saw
    for nsd_id in seen:
        pixels = np.asarray(Image.open(converted / "stimuli" / f"nsd{nsd_id:05d}.png"))
        np.testing.assert_array_equal(pixels, truth.images[nsd_id - 1])  # imgBrick is 0-based
    captions = pd.read_csv(converted / "stimuli" / "captions.tsv", sep="\t")
    assert list(captions.columns) == ["stim_file", "caption"]
    for nsd_id in seen:
        rows = captions.loc[captions["stim_file"] == f"nsd{nsd_id:05d}.png", "caption"]
        assert list(rows) == truth.captions[nsd_id]
    assert len(captions) == sum(len(truth.captions[i]) for i in seen)


def test_betas_are_percent_signal_change(mini: tuple[Path, Truth], converted: Path) -> None:
    truth = mini[1]
    for session in (1, 2):
        image = nib.load(_betas(converted, session))
        assert image.get_data_dtype() == np.float32
        np.testing.assert_allclose(image.affine, np.diag([1.8, 1.8, 1.8, 1.0]))
        data = np.asarray(image.dataobj)
        # int16 / 300, to float32 precision
        np.testing.assert_allclose(data, truth.psc[session], rtol=1e-6, atol=1e-6)
        raw = np.asarray(
            nib.load(
                mini[0] / "nsddata_betas/ppdata/subj01/func1pt8mm/"
                f"betas_fithrf_GLMdenoise_RR/betas_session{session:02d}.nii.gz"
            ).dataobj
        )
        np.testing.assert_allclose(data * 300.0, raw, atol=1e-3)
    # The planted pattern comes back: the mean over an image's trials is near its pattern.
    table = pd.concat([_trials(converted, s) for s in (1, 2)], ignore_index=True)
    data = np.concatenate([np.asarray(nib.load(_betas(converted, s)).dataobj) for s in (1, 2)], 3)
    for nsd_id, rows in table.groupby("stim_id").groups.items():
        mean = data[..., list(rows)].mean(axis=-1)
        r = np.corrcoef(mean[1:].ravel(), truth.patterns[nsd_id][1:].ravel())[0, 1]
        assert r > 0.9


def test_zscored_sessions(mini: tuple[Path, Truth], tmp_path: Path) -> None:
    out = nsd_to_bids(mini[0], tmp_path / "z", sessions=[2], zscore_sessions=True)
    data = np.asarray(nib.load(_betas(out, 2)).dataobj, dtype=np.float64)
    psc = mini[1].psc[2]
    sd = psc.std(axis=-1, keepdims=True)
    expected = np.divide(
        psc - psc.mean(axis=-1, keepdims=True), sd, where=sd > 0, out=np.zeros_like(psc)
    )
    np.testing.assert_allclose(data, expected, atol=1e-5)
    assert not (out / "sub-01" / "ses-01").exists()
    # Repetition counts showings in earlier sessions too.
    table = _trials(out, 2)
    np.testing.assert_array_equal(table["repetition"], mini[1].repetition[mini[1].session == 2])


def test_atlases_become_dseg_with_label_tables(mini: tuple[Path, Truth], converted: Path) -> None:
    anat = converted / "sub-01" / "anat"
    roi = mini[0] / "nsddata/ppdata/subj01/func1pt8mm/roi"
    for atlas, desc in (
        ("streams", "streams"),
        ("nsdgeneral", "nsdgeneral"),
        ("prf-visualrois", "prfvisualrois"),
    ):
        stem = anat / f"sub-01_space-func1pt8mm_desc-{desc}_dseg"
        dseg = np.asarray(nib.load(f"{stem}.nii.gz").dataobj)
        source = np.asarray(nib.load(roi / f"{atlas}.nii.gz").dataobj)
        np.testing.assert_array_equal(dseg, np.where(source > 0, source, 0))  # -1 and 0 -> 0
        table = pd.read_csv(f"{stem}.tsv", sep="\t")
        assert list(table.columns) == ["index", "name"]
        assert 0 not in set(table["index"])
    streams = pd.read_csv(anat / "sub-01_space-func1pt8mm_desc-streams_dseg.tsv", sep="\t")
    assert dict(zip(streams["index"], streams["name"], strict=True)) == {
        1: "early",
        2: "midventral",
        3: "midlateral",
        4: "midparietal",
        5: "ventral",
        6: "lateral",
        7: "parietal",
    }


def test_output_loads_as_precomputed_betas(converted: Path) -> None:
    image, table = load_precomputed_betas(
        _betas(converted, 1),
        converted / f"{FUNC.format(s=1)}_desc-{BETAS_DESC}_trials.tsv",
    )
    assert image.shape[3] == len(table) == 30
    description = json.loads((converted / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "nipype-brainrecon"
    assert description["SourceDatasets"]


def test_rerun_is_byte_identical(mini: tuple[Path, Truth], converted: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert main([str(mini[0]), str(again)]) == 0  # the command line, same defaults
    first = sorted(p.relative_to(converted) for p in converted.rglob("*") if p.is_file())
    second = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert first == second
    for rel in first:
        assert (converted / rel).read_bytes() == (again / rel).read_bytes(), rel


def _broken_copy(mini: tuple[Path, Truth], tmp_path: Path) -> Path:
    root = tmp_path / "nsd"
    shutil.copytree(mini[0], root)
    return root


def _remove_expdesign(root: Path) -> None:
    (root / "nsddata/experiments/nsd/nsd_expdesign.mat").unlink()


def _corrupt_hdf5(root: Path) -> None:
    path = root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"
    path.write_bytes(path.read_bytes()[:300])  # truncated download


def _drop_a_caption(root: Path) -> None:
    info = pd.read_csv(root / "nsddata/experiments/nsd/nsd_stim_info_merged.csv", index_col=0)
    responses = pd.read_csv(root / "nsddata/ppdata/subj01/behav/responses.tsv", sep="\t")
    row = info.loc[info["nsdId"] == responses["73KID"].iloc[0] - 1].iloc[0]
    path = root / f"nsddata_stimuli/stimuli/nsd/annotations/captions_{row['cocoSplit']}.json"
    content = json.loads(path.read_text())
    content["annotations"] = [a for a in content["annotations"] if a["image_id"] != row["cocoId"]]
    path.write_text(json.dumps(content))


@pytest.mark.parametrize(
    ("damage", "args", "code", "named"),
    [
        (_remove_expdesign, [], 66, "nsd_expdesign.mat"),
        (None, ["--sessions", "1-3"], 66, "betas_session03.nii.gz"),
        (None, ["--subject", "2"], 66, "subj02/behav/responses.tsv"),
        (_corrupt_hdf5, [], 65, "nsd_stimuli.hdf5"),
        (_drop_a_caption, [], 65, "captions_"),
    ],
    ids=["no-expdesign", "no-session", "no-subject", "corrupt-hdf5", "caption-missing"],
)
def test_bad_inputs_exit_with_their_code_and_write_nothing(
    mini: tuple[Path, Truth],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage,
    args,
    code,
    named,
) -> None:
    root = _broken_copy(mini, tmp_path)
    if damage is not None:
        damage(root)
    out_parent = tmp_path / "outputs"
    out_parent.mkdir()
    assert main([str(root), str(out_parent / "nsd-bids"), *args]) == code
    err = capsys.readouterr().err
    assert named in err
    assert err.count("\n") == 1  # one line, no traceback
    assert list(out_parent.iterdir()) == []  # nothing written, no partial folder


def test_session_without_behaviour_is_named(
    mini: tuple[Path, Truth], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _broken_copy(mini, tmp_path)
    shutil.copy(
        root / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/"
        "betas_session02.nii.gz",
        root / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/"
        "betas_session03.nii.gz",
    )
    assert main([str(root), str(tmp_path / "o"), "--sessions", "3"]) == 66
    err = capsys.readouterr().err
    assert "no rows of SESSION 3 in" in err and "responses.tsv" in err
    assert "sessions with betas and behaviour: 1-2" in err
    assert not (tmp_path / "o").exists()


def test_passes_the_bids_validator(converted: Path) -> None:
    validator = Path(sys.executable).parent / "bids-validator-deno"
    if not validator.exists():
        pytest.skip(f"bids-validator-deno not found at {validator}")
    result = subprocess.run(
        [str(validator), "--format", "json", str(converted)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    issues = json.loads(result.stdout)["issues"]["issues"]
    errors = sorted(
        {(i["code"], i.get("location", "")) for i in issues if i["severity"] == "error"}
    )
    warnings = sorted({i["code"] for i in issues if i["severity"] == "warning"})
    assert result.returncode == 0 and not errors, errors
    assert not warnings, warnings
