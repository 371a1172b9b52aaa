"""The participant workflow on a real Slurm cluster, through Nipype's SLURM and SLURMGraph plugins.

Needs a running cluster: ``eval "$(bash tools/slurm_start.sh)"`` starts a single-node one on
localhost (munge + slurmctld + slurmd) and sets ``BRAINRECON_SLURM=1``, ``SLURM_CONF`` and
``BRAINRECON_SLURM_JOBCOMP`` (Slurm's job records, ``JobCompType=jobcomp/filetxt``); without it
the cluster tests are skipped. ``.ci/run`` starts one and runs this file after ``make test``.

One small simulated participant is run three times with the BIDS App: MultiProc (one
reconstruction job), SLURM and SLURMGraph (two reconstruction jobs each, ``--use-plugin`` YAML
files). Checked: every submitted job appears COMPLETED in Slurm's job records, per-node memory
requests from the nodes' ``mem_gb`` reach Slurm, and the images and tables of the three runs are
byte-identical.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import OUTPUT_SUFFIXES, file_digests, is_run_log

from nipype_brainrecon.synthetic.simulate import simulate_dataset

JOBCOMP = os.environ.get("BRAINRECON_SLURM_JOBCOMP", "")
SLURM_SKIP = (
    'no Slurm cluster to submit to: start one with `eval "$(bash tools/slurm_start.sh)"` '
    "(sets BRAINRECON_SLURM=1, SLURM_CONF, BRAINRECON_SLURM_JOBCOMP)"
)
needs_slurm = pytest.mark.skipif(
    os.environ.get("BRAINRECON_SLURM") != "1" or not shutil.which("sbatch") or not JOBCOMP,
    reason=SLURM_SKIP,
)
#: Suffixes compared byte for byte (images and tables, decoders, betas).
COMPARED = OUTPUT_SUFFIXES
TIMEOUT_S = 900


def _jobcomp() -> list[dict[str, str]]:
    """Slurm's job records (one ``Key=Value ...`` line per finished job)."""
    path = Path(JOBCOMP)
    if not path.exists():
        return []
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in path.read_text().splitlines()]


def _squeue_empty() -> bool:
    out = subprocess.run(["squeue", "-h"], capture_output=True, text=True, check=True).stdout
    return not out.strip()


def _wait_for_queue(timeout: float) -> None:
    """SLURMGraph returns once its jobs are submitted: wait until none is left."""
    end = time.time() + timeout
    while time.time() < end:
        if _squeue_empty():
            return
        time.sleep(1)
    pytest.fail(f"Slurm queue not empty after {timeout:.0f} s")


def _files(root: Path) -> set[str]:
    """Output files but the run logs, which are named by their start time."""
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not is_run_log(p.relative_to(root))
    }


def _brainrecon(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nipype_brainrecon.bids_app.cli", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same participant run with MultiProc, SLURM and SLURMGraph."""
    from nipype_brainrecon.diffusion.models import build_tiny_sd

    base = tmp_path_factory.mktemp("slurm")
    bids = simulate_dataset(base / "bids", n_subjects=1, n_runs=2, n_train=40, n_test=6, seed=5)
    model = base / "tiny-sd"
    build_tiny_sd(model, profile="demo")
    env = {
        **os.environ,
        "LOGNAME": os.environ.get("LOGNAME") or "root",
        # One thread everywhere, so that every plugin computes in the same order.
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    common = [
        "participant",
        "--model",
        str(model),
        "--resolution",
        "64",
        "--samples",
        "2",
        "--steps",
        "10",
        "--skip-bids-validation",
    ]
    results = {}
    t = time.time()
    _brainrecon([str(bids), str(base / "out-multiproc"), *common, "--nprocs", "2",
                 "-w", str(base / "work-multiproc")], env)  # fmt: skip
    results["MultiProc"] = {"out": base / "out-multiproc", "seconds": time.time() - t}
    for plugin in ("SLURM", "SLURMGraph"):
        config = base / f"{plugin}.yml"
        config.write_text(
            f"plugin: {plugin}\n"
            "plugin_args:\n"
            "  sbatch_args: --time=30 --partition=debug\n"
            # GPU nodes would get this; this CPU run has none (see the unit test below).
            "gpu_sbatch_args: --gres=gpu:1\n"
        )
        work, out = base / f"work-{plugin}", base / f"out-{plugin}"
        before = {r["JobId"] for r in _jobcomp()}
        t = time.time()
        proc = _brainrecon([str(bids), str(out), *common, "--reconstruction-jobs", "2",
                            "--use-plugin", str(config), "-w", str(work)], env)  # fmt: skip
        if plugin.endswith("Graph"):
            assert "submitted to SLURMGraph" in proc.stdout
            _wait_for_queue(TIMEOUT_S)
        else:
            assert _squeue_empty()
        seconds = time.time() - t
        # filetxt records are written when a job ends; give slurmctld a moment to flush them.
        for _ in range(20):
            records = [r for r in _jobcomp() if r["JobId"] not in before]
            if (out / "sub-01.html").exists() and records:
                break
            time.sleep(0.5)
        results[plugin] = {"out": out, "work": work, "records": records, "seconds": seconds}
    for name, res in results.items():
        print(f"[slurm test] {name}: {res['seconds']:.0f} s, {len(res.get('records', []))} jobs")
    return results


@needs_slurm
def test_slurm_jobs_recorded(runs):
    """Every job the SLURM plugin submitted is in Slurm's records, COMPLETED, with its memory."""
    res = runs["SLURM"]
    # The plugin writes each job's log as batch/slurm-<jobid>.out in the work directory.
    submitted = {
        p.stem.removeprefix("slurm-") for p in res["work"].rglob("slurm-*.out") if p.is_file()
    }
    # The cluster is private to the test: the records added during the run are its jobs.
    records = {r["JobId"]: r for r in res["records"]}
    assert submitted and submitted <= set(records), (submitted, sorted(records))
    assert {r["JobState"] for r in records.values()} == {"COMPLETED"}
    names = {r["Name"].split(".")[0]: r for r in records.values()}
    # Runs of the betas MapNode and the reconstruction chunks are separate, parallel jobs.
    expected = {"_betas0", "_betas1", "_reconstruct0", "_reconstruct1", "fit_z", "fit_c"}
    assert expected <= set(names), sorted(names)
    # Memory requests come from the nodes' mem_gb (fit: 8 GB, betas: 2 GB).
    assert "mem=8G" in names["fit_c"]["Tres"] or "mem=8192M" in names["fit_c"]["Tres"]
    assert "mem=2G" in names["_betas0"]["Tres"] or "mem=2048M" in names["_betas0"]["Tres"]
    print(
        f"[slurm test] SLURM: {len(records)} jobs COMPLETED in {JOBCOMP} "
        f"(ids {min(map(int, records))}-{max(map(int, records))}): " + ", ".join(sorted(names))
    )


@needs_slurm
def test_slurmgraph_jobs_recorded(runs):
    """SLURMGraph submits the whole graph at once; every job ends COMPLETED."""
    res = runs["SLURMGraph"]
    script = next(res["work"].rglob("submit_jobs.sh"))
    n_submitted = sum("$(sbatch " in line for line in script.read_text().splitlines())
    records = res["records"]
    assert n_submitted and len(records) == n_submitted, (n_submitted, len(records))
    assert {r["JobState"] for r in records} == {"COMPLETED"}
    names = {re.sub(r"^j\d+_", "", r["Name"]) for r in records}
    assert {"fit_z", "fit_c", "reconstruct", "evaluate", "write_derivatives"} <= names
    ids = sorted(int(r["JobId"]) for r in records)
    print(
        f"[slurm test] SLURMGraph: {len(records)} jobs COMPLETED in {JOBCOMP} "
        f"(ids {ids[0]}-{ids[-1]}): " + ", ".join(sorted(names))
    )


@needs_slurm
@pytest.mark.parametrize("plugin", ["SLURM", "SLURMGraph"])
def test_outputs_equal_multiproc(runs, plugin):
    """Images and tables of the cluster runs equal those of the MultiProc run byte for byte."""
    reference = runs["MultiProc"]["out"]
    out = runs[plugin]["out"]
    assert (out / "sub-01.html").exists()
    assert _files(out) == _files(reference)
    first, second = file_digests(reference, COMPARED), file_digests(out, COMPARED)
    assert len(first) > 20 and first == second
    kinds = sorted({Path(k).suffix for k in first})
    print(f"[slurm test] {plugin}: {len(first)} files ({', '.join(kinds)}) equal MultiProc's")


def test_gpu_nodes_get_gpu_sbatch_args(tmp_path):
    """With --device cuda, exactly the torch nodes get the GPU arguments (no cluster needed)."""
    from nipype.pipeline import engine as pe

    from nipype_brainrecon.bids import collect_participant
    from nipype_brainrecon.workflows.cluster import set_node_sbatch_args
    from nipype_brainrecon.workflows.participant import init_participant_wf

    bids = simulate_dataset(tmp_path / "bids", n_subjects=1, n_runs=1, n_train=8, n_test=2)
    participant = collect_participant(bids, "01")
    (tmp_path / "out").mkdir()
    wf = init_participant_wf(
        participant,
        output_dir=tmp_path / "out",
        settings={"device": "cuda", "backend": "torch", "n_chunks": 2},
    )
    root = pe.Workflow(name="root")
    root.add_nodes([wf])
    count = set_node_sbatch_args(root, "SLURM", gpu_args="--partition=gpu --gres=gpu:1")
    all_nodes = list(root._get_all_nodes())
    assert count == len(all_nodes)
    nodes = {n.name: n for n in all_nodes}
    gpu = {name for name, n in nodes.items() if "--gres=gpu:1" in n.plugin_args["sbatch_args"]}
    assert gpu == {"features", "fit_z", "fit_c", "reconstruct", "reconstruct_shuffled"}
    args = nodes["fit_c"].plugin_args["sbatch_args"]
    assert args.startswith(" --cpus-per-task=1 --mem=8192M")
    # Every node carries an explicit memory annotation (Nipype's default is 0.2 GB).
    no_mem = sorted(
        name
        for name, n in nodes.items()
        if n.mem_gb == 0.2 and type(n.interface).__name__ != "IdentityInterface"
    )
    assert not no_mem


def test_plugin_file_node_args(tmp_path):
    """brainrecon's own keys of the plugin file stay out of Nipype's plugin_args."""
    from argparse import Namespace

    from nipype_brainrecon.bids_app.checks import plugin_settings

    config = tmp_path / "slurm.yml"
    config.write_text(
        "plugin: SLURMGraph\nplugin_args:\n  sbatch_args: --time=60\n"
        "gpu_sbatch_args: --gres=gpu:1\nnode_resources: false\n"
    )
    settings = plugin_settings(Namespace(use_plugin=config, nprocs=None, mem=None))
    assert settings == {
        "plugin": "SLURMGraph",
        "plugin_args": {"sbatch_args": "--time=60"},
        "node_args": {"resources": False, "gpu_args": "--gres=gpu:1"},
    }
