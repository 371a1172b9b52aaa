"""``benchmarks/bench_nsd_convert.py`` at its ``--tiny`` size: the release it writes converts,
the child processes are measured, the references write the same data as ours and the memory
bound is evaluated as stated (issue 21)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ROOT))
        from benchmarks import bench_nsd_convert

        yield bench_nsd_convert


def test_tiny_run_measures_and_checks(bench, tmp_path):
    out = tmp_path / "results" / "nsd.json"
    assert bench.main(["--tiny", "--zscore", "--tmp", str(tmp_path), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    cfg = bench.TINY
    n = cfg.trials_per_session
    assert n == 30 and len(cfg.run_lengths) == 12
    assert report["config"]["sessions"] == 2 and report["fixture"]["trials"] == 2 * n
    assert len(report["fixture"]["betas_gz_bytes"]) == 2
    bound = report["bound"]
    assert bound["session_int16_bytes"] == 9 * 11 * 8 * n * 2
    assert bound["session_float32_bytes"] == 2 * bound["session_int16_bytes"]

    ours = report["ours"]
    assert ours["sessions"] == [1, 2] and len(ours["seconds_per_session"]) == 2
    assert all(s > 0 for s in ours["seconds_per_session"]) and ours["seconds"] > 0
    assert ours["setup_seconds"] > 0 and ours["seconds"] >= sum(ours["seconds_per_session"])
    # CPU seconds per session (process time) and of the whole child (wait4 rusage).
    assert len(ours["cpu_seconds_per_session"]) == 2 and ours["setup_cpu_seconds"] > 0
    assert all(c >= 0 for c in ours["cpu_seconds_per_session"])
    assert ours["cpu_s"] >= ours["setup_cpu_seconds"] + sum(ours["cpu_seconds_per_session"])
    # A Python with numpy, pandas and nibabel loaded: tens of MB, from the kernel.
    assert 20 * 2**20 < ours["peak_rss_bytes"] < 4 * 2**30
    assert ours["peak_rss_gib"] == pytest.approx(ours["peak_rss_bytes"] / 2**30)
    # Sampled resident memory per phase: positive, never above the kernel's high-water mark.
    sampled = [ours["sampled_rss_peak_setup_bytes"], *ours["sampled_rss_peak_per_session_bytes"]]
    assert len(sampled) == 3 and all(0 < b <= ours["peak_rss_bytes"] for b in sampled)
    files = ours["files"]
    assert files == {
        "betas": 2,
        "trials_tsv": 2,
        "stimuli_png": report["fixture"]["images_seen"],
        "dseg": 3,
    }
    assert len(ours["betas_data_digests"]) == 2
    assert ours["betas_data_digests"][0].startswith(f"float32:9x11x8x{n}:")

    zscore = report["ours_zscore"]
    assert len(zscore["seconds_per_session"]) == 2 and zscore["peak_rss_bytes"] > 20 * 2**20
    assert "data_identical_to_ours" not in zscore  # other values: z-scores

    # The bound, as stated: a tiny session's betas (47,520 bytes) are far below any process.
    checks = report["checks"]
    assert checks["ours_below_one_session_int16"] is False
    assert checks["ours_peak_fraction_of_session_int16"] == pytest.approx(
        ours["peak_rss_bytes"] / bound["session_int16_bytes"]
    )
    for how in ("asarray", "fdata"):
        ref = report["reference"][how]
        assert ref["sessions"] == [1, 2] and ref["peak_rss_bytes"] > 20 * 2**20
        assert ref["data_identical_to_ours"] is True and checks[f"{how}_data_identical_to_ours"]
        assert checks[f"{how}_memory_ratio"] == pytest.approx(
            ref["peak_rss_bytes"] / ours["peak_rss_bytes"]
        )
    assert len(ours["load_average_start"]) == 3 and len(ours["load_average_end"]) == 3
    machine = report["machine"]
    assert len(machine["load_average_before"]) == 3 and len(machine["load_average_after"]) == 3
    md = out.with_suffix(".md").read_text()
    assert "| ours: nsd_to_bids (brainrecon-nsd) |" in md and "Bound: peak RSS <" in md
    assert "| ours, --zscore-sessions |" in md
    assert not list(tmp_path.glob("brainrecon-nsd-bench-*"))  # the temporary files are gone

    # The row of docs/benchmarks.md (python -m benchmarks --report-only).
    from benchmarks.__main__ import ROWS

    rows = ROWS["nsd_convert"](report)
    assert len(rows) == 2 and "whole session loaded (fdata)" in rows[1]["reference"]
    assert rows[0]["memory"].endswith("(0.00 GB): NOT met")
    assert rows[0]["ratio"].endswith("(CPU time)") and "s/session (CPU" in rows[0]["ours"]
    assert "2 sessions × 30 trials, 9×11×8 int16" in rows[0]["case"]


def test_bound_evaluated_both_ways(bench):
    bound = bench._bound(bench.FULL)
    assert bound["session_int16_bytes"] == 81 * 104 * 83 * 750 * 2 == 1_048_788_000
    assert bound["session_float32_bytes"] == 2_097_576_000
    for peak, below in (
        (bound["session_int16_bytes"] - 1, True),
        (bound["session_int16_bytes"], False),
    ):
        report = {"ours": {"peak_rss_bytes": peak}, "bound": bound, "reference": {}}
        assert bench._checks(report)["ours_below_one_session_int16"] is below


def test_data_digest_sees_values_not_headers(bench, tmp_path):
    data = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    paths = [tmp_path / f"{k}.nii.gz" for k in range(3)]
    nib.save(nib.Nifti1Image(data, np.eye(4)), paths[0])
    other_header = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    other_header.header["descrip"] = b"another header"
    nib.save(other_header, paths[1])
    changed = data.copy()
    changed[1, 2, 3, 4] += 1e-3
    nib.save(nib.Nifti1Image(changed, np.eye(4)), paths[2])
    digests = [bench.data_digest(p) for p in paths]
    assert digests[0] == digests[1] and digests[0] != digests[2]


def test_brain_mask_fraction_and_full_sizes(bench):
    mask = bench.brain_mask(bench.FULL.grid, 0.4)
    assert mask.shape == (81, 104, 83) and abs(mask.mean() - 0.4) < 0.01
    assert bench.FULL.trials_per_session == 750
    assert sorted(set(bench.FULL.run_lengths)) == [62, 63] and len(bench.FULL.run_lengths) == 12
    # The 8 subjects' own images and the shared ones fill the 73,000 exactly, as in NSD.
    full = bench.FULL
    assert full.n_shared + 8 * (full.n10k - full.n_shared) == full.n73k == 73000
