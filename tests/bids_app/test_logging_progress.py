"""Logging, stage lines, time estimates and ``--dry-run`` of ``brainrecon`` (issue 24).

The fast tests check the log format, that each record is written once by each handler (the
bug: Nipype's own stdout handler and the root's both printed every Nipype line), the log files
(created only once a run starts, never over another file), the estimate model against the
benchmark results it is built from, the stage lines against a fake clock, and ``--dry-run``
(prints the plan, writes nothing). The slow test runs a participant on a pseudo-terminal.
"""

from __future__ import annotations

import collections
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, tree_digest

from nipype_brainrecon.bids_app import estimate, logs
from nipype_brainrecon.bids_app.cli import main
from nipype_brainrecon.bids_app.progress import StageTracker, node_stage, stage_nodes
from nipype_brainrecon.synthetic.simulate import simulate_dataset

STAMP = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"
LINE = re.compile(rf"^{STAMP} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S+: ")
NIPYPE_OWN = re.compile(r"^\d{6}-\d{2}:\d{2}:\d{2},\d+ nipype")  # Nipype's own format
RESULTS = REPO_ROOT / "benchmarks" / "results"
STAGES = ["betas", "features", "z decoder", "c decoder", "reconstruction", "evaluation", "report"]
ARGS = ["--model", "demo", "--samples", "1", "--steps", "5", "--skip-bids-validation"]


@pytest.fixture
def restore_logging():
    """Leave the logging configuration as it was (other tests use pytest's handlers)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    nipype = logging.getLogger("nipype")
    nipype_handlers = list(nipype.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for handler in nipype_handlers:
        if handler not in nipype.handlers:
            nipype.addHandler(handler)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """One participant, one run, 8 training and 2 test images: every stage in seconds."""
    base = tmp_path_factory.mktemp("tiny")
    return simulate_dataset(base / "bids", n_subjects=1, n_runs=1, n_train=8, n_test=2, seed=3)


def _records(stream: io.StringIO) -> list[str]:
    return [ln for ln in stream.getvalue().splitlines() if ln.strip()]


# ---------------------------------------------------------------------------------------------
# Log format and handlers
# ---------------------------------------------------------------------------------------------
def test_formatter_timestamp_name_and_continuation_lines():
    record = logging.LogRecord(
        "nipype_brainrecon.ridge.cv", logging.WARNING, "", 0, "first\n\t second", None, None
    )
    record.created = 86400.0 + 3661.0  # 1970-01-02 01:01:01 UTC
    text = logs.Formatter(utc=True).format(record)
    assert text == "1970-01-02 01:01:01 WARNING ridge.cv: first\n    second"
    other = logging.LogRecord("nipype.workflow", logging.INFO, "", 0, "x", None, None)
    assert re.match(rf"^{STAMP} INFO    nipype.workflow: x$", logs.Formatter().format(other))


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_each_record_once_at_its_level(verbose, restore_logging, capsys):
    """Nipype's, ours and the stage lines, once each on the terminal at the -v level asked."""
    import nipype  # noqa: F401 - installs Nipype's own handler, which must not print

    stream = io.StringIO()
    logs.configure_logging(verbose, stream=stream)
    logs.configure_logging(verbose, stream=stream)  # twice: still one handler
    logging.getLogger("nipype.workflow").info("[Node] Finished 'fit_z'")
    logging.getLogger("nipype.interface").info("interface detail")
    logging.getLogger("nipype_brainrecon.ridge").debug("chunk 3 of 5")
    logging.getLogger("nipype_brainrecon.bids_app.cli").warning("a warning")
    logging.getLogger(logs.PROGRESS_LOGGER).info("sub-01 betas: started")
    logging.getLogger("nipype_brainrecon.x").info("file only", extra={"file_only": True})
    lines = _records(stream)
    expected = {
        0: ["a warning", "sub-01 betas: started"],
        1: ["[Node] Finished 'fit_z'", "a warning", "sub-01 betas: started"],
        2: ["[Node] Finished 'fit_z'", "interface detail", "chunk 3 of 5", "a warning",
            "sub-01 betas: started"],
    }[verbose]  # fmt: skip
    assert [ln.split(": ", 1)[1] for ln in lines] == expected
    assert all(LINE.match(ln) for ln in lines), lines
    assert capsys.readouterr().out == ""  # Nipype's stdout copy is gone
    assert logging.getLogger("nipype").handlers == []


def test_run_log_created_only_when_started(tmp_path, restore_logging):
    logs.configure_logging(0, stream=io.StringIO())
    handlers = len(logging.getLogger().handlers)
    folder = tmp_path / "logs"
    with logs.run_log(folder, ["sub-01"]):
        logging.getLogger("nipype_brainrecon.bids_app.cli").info("checked")
    assert not folder.exists()  # a run stopped by a check writes nothing

    folder.mkdir()
    previous = folder / "sub-01_summary.json"
    previous.write_text("{}")
    with logs.run_log(folder, ["sub-01", "sub-02"], labels=["01", "02"]):
        logging.getLogger("nipype_brainrecon.bids_app.cli").info("before start")
        paths = logs.start_run_logs(["sub-01", "sub-02"])
        logging.getLogger("nipype.workflow").info('[Node] Setting-up "sub_02_wf.fit_z"')
        logging.getLogger("nipype_brainrecon.x").debug("not at -v 0")
    with logs.run_log(folder, ["sub-01"], start=True):  # the same second: a new name
        logging.getLogger("nipype_brainrecon.x").warning("second run")
    first, second = paths["sub-01"].read_text(), paths["sub-02"].read_text()
    assert re.fullmatch(r"sub-01_\d{8}-\d{6}\.log", paths["sub-01"].name)
    assert [ln.split(": ", 1)[1] for ln in first.splitlines()] == ["before start"]
    assert second.splitlines()[-1].endswith('Setting-up "sub_02_wf.fit_z"')
    (other,) = [p for p in folder.glob("sub-01_*.log") if p != paths["sub-01"]]
    assert "second run" in other.read_text() and "second run" not in first
    assert previous.read_text() == "{}"
    assert len(logging.getLogger().handlers) == handlers  # the files' handlers are gone


# ---------------------------------------------------------------------------------------------
# The estimate model against the benchmarks it is built from
# ---------------------------------------------------------------------------------------------
def test_ridge_estimate_matches_benchmarks():
    shapes = [r["shape"] | {"s": r["ours"]["seconds"]} for r in _json("ridge.json")["results"]]
    shapes += [r["shape"] | {"s": r["ours"]["seconds"]} for r in _json("nsd_scale.json")["results"]]
    assert len(shapes) == 5
    for shape in shapes:
        guess = estimate.ridge_seconds(shape["n"], shape["p"], shape["t"], threads=2)
        assert 0.9 < guess / shape["s"] < 1.1, (shape, guess)


def test_diffusion_and_betas_constants_are_the_benchmarks():
    for name, threads in (("reconstruction.json", 1), ("reconstruction_2threads.json", 2)):
        data = _json(name)
        row = next(r for r in data["results"] if r["batch_size"] == 8)
        steps = data["recipe"]["denoising_steps"]
        per = row["seconds"] / row["samples"] / steps
        assert estimate.diffusion_seconds(
            row["samples"], steps, 1600, 3_199_476, None, threads
        ) == (pytest.approx(row["seconds"], rel=1e-6))
        assert estimate.DIFFUSION_S_PER_SAMPLE_STEP[threads] == pytest.approx(per)
    unet = REPO_ROOT / "nipype_brainrecon" / "data" / "demo_model"
    assert estimate.unet_parameters(unet) == estimate.DEMO_UNET_PARAMETERS
    gpu = _json("gpu_reconstruction.json")
    assert gpu["unet_parameters"] == estimate.SD_UNET_PARAMETERS
    ols = next(r for r in _json("betas.json")["results"] if r["noise_model"] == "ols")
    assert estimate.betas_seconds(300, 60, 8000) == pytest.approx(ols["ours_s"], rel=0.01)
    # a hub model on the CPU costs its U-Net's size more than the demo model
    sd = estimate.diffusion_seconds(10, 40, 1600, estimate.SD_UNET_PARAMETERS)
    demo = estimate.diffusion_seconds(10, 40, 1600, estimate.DEMO_UNET_PARAMETERS)
    assert sd / demo == pytest.approx(estimate.SD_UNET_PARAMETERS / 3_199_476)


def test_estimate_participant_scales_with_the_data():
    sizes = {
        "n_trials": 100, "n_train": 80, "n_test": 20, "voxels": {"z": 500, "c": 800},
        "targets": {"z": 6400, "c": 59136}, "decoder_bytes": {"z": 1, "c": 2},
        "runs": [(200, 10_000)] * 2, "n_stimuli": 100,
    }  # fmt: skip
    settings = {"n_samples": 5, "num_inference_steps": 50, "strength": 0.8, "model": "demo"}
    small = {s.stage: s for s in estimate.estimate_participant(sizes, settings)}
    more = {s.stage: s for s in estimate.estimate_participant({**sizes, "n_test": 40}, settings)}
    assert list(small) == STAGES
    fixed = estimate.DEMO["reconstruction_fixed_s"]
    assert (more["reconstruction"].seconds - fixed) == pytest.approx(
        2 * (small["reconstruction"].seconds - fixed)
    )
    assert small["c decoder"].memory == 2 and "80 trials × 800 voxels" in small["c decoder"].sizes
    assert estimate.format_seconds(3725) == "1 h 02 min"


def _json(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


# ---------------------------------------------------------------------------------------------
# Stage lines
# ---------------------------------------------------------------------------------------------
def test_stage_lines_with_elapsed_and_what_is_left(caplog):
    now = [0.0]
    nodes = {("01", "betas"): 2, ("01", "features"): 1}
    tracker = StageTracker(nodes, {"01": {"betas": 10.0, "features": 20.0}}, clock=lambda: now[0])
    events = [
        (0, "brainrecon_wf.sub_01_wf.decoding_wf.betas", "start"),
        (1, "_betas0", "start"),
        (15, "brainrecon_wf.sub_01_wf.decoding_wf.betas", "end"),
        (16, "brainrecon_wf.sub_01_wf.ds_betas", "end"),  # a writer: not part of a stage
        (20, "brainrecon_wf.sub_01_wf.betas_extra", "end"),  # unknown: ignored
    ]
    with caplog.at_level(logging.INFO, logger="nipype_brainrecon.progress"):
        for t, name, status in events:
            now[0] = t
            tracker.update(name, status, "/w/brainrecon_wf/sub_01_wf/decoding_wf/betas")
        assert [r.getMessage() for r in caplog.records] == [
            "sub-01 betas: started (estimate 10 s)"
        ]  # one of two betas nodes ended
        now[0] = 20  # the second of the two betas nodes (a MapNode ends after its subnodes)
        tracker.update("brainrecon_wf.sub_01_wf.decoding_wf.betas", "end")
        now[0] = 22
        tracker.update("brainrecon_wf.sub_01_wf.decoding_wf.features", "start")
        now[0] = 30
        tracker.update("brainrecon_wf.sub_01_wf.decoding_wf.features", "exception")
    messages = [r.getMessage() for r in caplog.records]
    # betas took 20 s against 10 estimated: features' 20 s become 40 s
    assert messages[1:] == [
        "sub-01 betas: done in 20 s; elapsed 20 s, about 40 s left",
        "sub-01 features: started (estimate 20 s)",
        "sub-01 features: FAILED at features after 8 s",
    ]
    assert tracker.remaining(30.0) == pytest.approx(32.0)


def test_every_node_of_a_participant_has_a_stage(tiny, tmp_path):
    from nipype.pipeline import engine as pe

    from nipype_brainrecon.bids import collect_participant
    from nipype_brainrecon.diffusion.models import demo_model_path
    from nipype_brainrecon.workflows.participant import init_participant_wf

    participant = collect_participant(tiny, "01")
    root = pe.Workflow(name="brainrecon_wf", base_dir=str(tmp_path / "work"))
    (tmp_path / "out").mkdir()
    settings = {"model": str(demo_model_path()), "encoding": True}
    root.add_nodes(
        [init_participant_wf(participant, output_dir=tmp_path / "out", settings=settings)]
    )
    counts = stage_nodes(root)
    assert sorted(stage for _, stage in counts) == sorted([*STAGES, "encoding"])
    assert counts["01", "z decoder"] == counts["01", "c decoder"] == 5
    assert counts["01", "report"] == 4 and counts["01", "betas"] == 1
    assert node_stage("_reconstruct_shuffled0", "/w/brainrecon_wf/sub_01_wf/x") == (
        "01", "reconstruction"
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# --dry-run and the failure message
# ---------------------------------------------------------------------------------------------
def test_dry_run_prints_the_plan_and_writes_nothing(tiny, tmp_path, capsys):
    before = tree_digest(tiny)
    out, work = tmp_path / "out", tmp_path / "work"
    code = main([str(tiny), str(out), "participant", *ARGS, "-w", str(work), "--dry-run"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert not out.exists() and not work.exists() and tree_digest(tiny) == before
    assert "sub-01: 14 trials (8 train, 2 test images)" in text
    rows = [ln.split() for ln in text.splitlines() if ln.startswith("  ")]
    stages = [" ".join(r[:2]) if r[1] == "decoder" else r[0] for r in rows[1:-1]]
    assert stages == STAGES
    assert re.search(r"participant level: about \d+ s", text)
    assert "targets z 256 / c 9856" in text  # the demo model's z and c sizes


def test_failure_names_crash_files_and_work_folder(tiny, tmp_path, monkeypatch, capsys):
    from nipype.pipeline import engine as pe

    out, work = tmp_path / "out", tmp_path / "work"

    def crash(self, **kwargs):
        crash_file = out / "logs" / "crash-20261206-000000-root-fit_z-x.txt"
        crash_file.write_text("Node: brainrecon_wf.sub_01_wf.decoding_wf.fit_z\n")
        raise RuntimeError("Workflow did not execute cleanly")

    monkeypatch.setattr(pe.Workflow, "run", crash)
    code = main([str(tiny), str(out), "participant", *ARGS, "--nprocs", "1", "-w", str(work)])
    err = capsys.readouterr().err
    assert code == 1
    assert "1 participant(s) failed; crash files: " in err
    assert f"crash-20261206-000000-root-fit_z-x.txt; work folder kept: {work}" in err
    (log,) = (out / "logs").glob("sub-01_*.log")
    text = log.read_text()
    assert "participant level failed; crash files:" in text and str(work) in text
    assert all(LINE.match(ln) for ln in text.splitlines() if not ln.startswith("    "))


# ---------------------------------------------------------------------------------------------
# A participant on a pseudo-terminal
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("script"), reason="needs util-linux 'script'")
def test_participant_on_a_terminal(tiny, tmp_path):
    """Progress bars and stage lines with estimates on the terminal; the log file with
    timestamps; no line twice in either."""
    out = tmp_path / "out"
    exe = Path(sys.executable).parent / "brainrecon"
    command = " ".join(
        [str(exe), str(tiny), str(out), "participant", *ARGS, "--nprocs", "1", "-v",
         "-w", str(tmp_path / "work")]
    )  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("COLUMNS", None)
    proc = subprocess.run(
        ["script", "-q", "-e", "-c", command, "/dev/null"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    terminal = proc.stdout.replace("\r\n", "\n")
    assert proc.returncode == 0, terminal[-3000:]
    # tqdm bars, drawn with carriage returns, at 100 %
    bars = [seg for seg in re.split(r"[\r\n]", terminal) if "100%|" in seg]
    assert any(b.startswith("VAE latents z") for b in bars), terminal[-3000:]
    assert any(b.startswith("reconstruct (z+c)") for b in bars)
    # the GLM's bar over the run's voxels and the ridge solver's over the targets
    assert any(re.match(r"sub-01 run-\w+ betas: voxels: 100%", b) for b in bars), bars
    for target in ("z", "c"):
        assert any(b.startswith(f"sub-01 ridge {target}: ") for b in bars), bars
    lines = [ln for ln in terminal.split("\n") if LINE.match(ln)]
    for stage in STAGES:
        assert any(re.search(rf"sub-01 {stage}: started \(estimate \d+", ln) for ln in lines)
        done = [ln for ln in lines if f"sub-01 {stage}: done in" in ln]
        assert len(done) == 1 and re.search(r"(about .+ left|nothing left)$", done[0]), done
    (log,) = (out / "logs").glob("sub-01_*.log")
    assert re.fullmatch(r"sub-01_\d{8}-\d{6}\.log", log.name)
    text = log.read_text().splitlines()
    assert all(LINE.match(ln) for ln in text if not ln.startswith("    ")), text[:5]
    assert not any(re.search(r"\d+%\||(voxel|target|image)/s", ln) for ln in text)  # no bars
    assert sum("progress: sub-01 " in ln for ln in text) == 2 * len(STAGES)
    assert any(ln.endswith(f"progress: sub-01: log file {log}") for ln in lines)
    assert any("nipype.workflow: [Node] Finished" in ln for ln in text)
    for name, seen in (("terminal", lines), ("log file", text)):
        twice = [ln for ln, n in collections.Counter(seen).items() if n > 1]
        assert not twice, (name, twice)
    assert not any(NIPYPE_OWN.match(ln) or ln.startswith("INFO: ") for ln in terminal.split("\n"))
    # each Nipype message once on the terminal (-v), whatever its time stamp
    messages = collections.Counter(ln.split(": ", 1)[1] for ln in lines if "nipype." in ln)
    assert messages and max(messages.values()) == 1


def test_run_logs_are_left_out_of_a_git_output_dataset(tmp_path, restore_logging):
    """In a DataLad output dataset an untracked log would leave it dirty (``datalad rerun``
    refuses a dirty dataset): ``logs/*.log`` goes to the local ``.git/info/exclude``."""
    out = tmp_path / "out"
    (out / ".git" / "info").mkdir(parents=True)
    (out / ".git" / "info" / "exclude").write_text("# git ls-files --others --exclude-from")
    logs.configure_logging(0, stream=io.StringIO())
    for _ in range(2):
        with logs.run_log(out / "logs", ["group"], start=True):
            pass
    lines = (out / ".git" / "info" / "exclude").read_text().splitlines()
    assert lines == ["# git ls-files --others --exclude-from", "/logs/*.log"]
    assert len(list((out / "logs").glob("group_*.log"))) == 2
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
        repo = tmp_path / "repo"
        assert logs.exclude_from_git(repo)
        (repo / "logs").mkdir()
        (repo / "logs" / "sub-01_20261206-101500.log").write_text("x\n")
        (repo / "logs" / "sub-01_summary.json").write_text("{}\n")
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert status.split() == ["??", "logs/sub-01_summary.json"]
    assert not logs.exclude_from_git(tmp_path / "plain")


def test_node_lines_go_to_their_participants_log(tmp_path, monkeypatch):
    """A node's own lines name only the node; the folder it runs in names the participant."""
    first, second = (
        logs.ParticipantFilter("01", ["01", "02"]),
        logs.ParticipantFilter("02", ["01", "02"]),
    )
    record = logging.LogRecord(
        "nipype.workflow", logging.INFO, "", 0, '[Node] Executing "fit_z"', None, None
    )
    folder = tmp_path / "work" / "brainrecon_wf" / "sub_02_wf" / "decoding_wf" / "fit_z"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    assert (first.filter(record), second.filter(record)) == (False, True)
    monkeypatch.chdir(tmp_path)  # the main process: every participant's log
    assert (first.filter(record), second.filter(record)) == (True, True)
    both = logging.LogRecord("x", logging.INFO, "", 0, "* sub_01_wf.a * sub_02_wf.b", None, None)
    assert (first.filter(both), second.filter(both)) == (True, True)
