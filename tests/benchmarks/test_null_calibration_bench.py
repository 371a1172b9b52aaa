"""``benchmarks/bench_null_calibration.py`` (evaluate()'s p-values on null reconstructions).

The summary is checked on p-values whose counts are known; the smoke run (8 images, 2 sets)
checks that each recorded p-value is what ``evaluate`` itself gives for that set.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ROOT))
        from benchmarks import bench_null_calibration

        yield bench_null_calibration


def test_summary_counts_and_holm(bench):
    # 20 sets; row a: 1 set at p <= 0.05 (0.05 itself counts), row b: 10 sets.
    a = [0.5] * 19 + [0.05]
    b = [0.001] * 10 + [0.9] * 10
    s = bench.summarise({"a": a, "b": b})
    assert s["rows"]["a"]["p_le_0.05"] == 1 and s["rows"]["a"]["ci_contains_0.05"]
    assert s["rows"]["b"]["p_le_0.05"] == 10 and not s["rows"]["b"]["ci_contains_0.05"]
    assert s["rows"]["b"]["p_le_0.01"] == 10
    assert not s["all_rows_calibrated"]
    # Holm over (a, b) per set: 0.001 <= 0.025 rejects in the first 10 sets; set 20 has
    # (0.05, 0.9): 0.05 > 0.025, nothing rejected.
    assert (s["holm_none_rejected"], s["n_sets"]) == (10, 20)
    assert s["all_p_above_0.05"] == 9  # set 20 has p = 0.05 in row a
    assert s["holm_ci"][0] < 0.5 < s["holm_ci"][1]


def test_tiny_run_matches_evaluate(bench, tmp_path):
    from nipype_brainrecon.evaluation import evaluate

    out = tmp_path / "cal.json"
    assert bench.main(["--sets", "2", "--n-images", "8", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["summary"]["n_sets"] == 2
    assert len(record["p_values"]) == 8  # 4 feature sets x 2 rules
    bank = bench.reconstruction_bank(8, tmp_path)
    seen = bench.seen_images(bench.FIRST_SET_SEED + 1, 8, bank.shape[2:4])
    table = evaluate(seen, bank, extractors=bench.EXTRACTORS)
    for name, ps in record["p_values"].items():
        assert ps[1] == pytest.approx(table.loc[name, "p_value"], abs=0)
    assert np.isfinite(list(record["summary"]["holm_ci"])).all()
    # --markdown-only recomputes the same summary from the recorded p-values
    before = out.read_text()
    assert bench.main(["--markdown-only", "--out", str(out)]) == 0
    assert out.read_text() == before
