"""The ridge solver's progress bars (issue 24): one bar per loop over the targets (first pass,
CV folds, refit; the kernel form's chunks), drawn only when ``SolverOptions(progress=True)``,
and every number bit-identical with and without them."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from tqdm.std import tqdm

from nipype_brainrecon.interfaces.decoding import FitDecoder
from nipype_brainrecon.ridge import SolverOptions, fit_ridge_cv
from nipype_brainrecon.ridge.backends import make_ops
from nipype_brainrecon.ridge.cv import kfold_slices
from nipype_brainrecon.ridge.primal_pass import first_pass
from nipype_brainrecon.ridge.source import Source
from nipype_brainrecon.ridge.stats import voxel_statistics

ALPHAS = np.logspace(-2, 3, 6)
FIELDS = ("coef", "intercept", "alphas", "cv_scores", "cv_mean_scores", "mean", "scale")


def _data(n: int, p: int, t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)).astype(np.float32) + 5.0
    w = rng.normal(size=(p, t)) * (rng.random((p, t)) < 0.3)
    y = (x @ w + rng.normal(scale=3.0, size=(n, t))).astype(np.float32)
    return x, y


def _bars(err: str, desc: str) -> list[tuple[int, int]]:
    """``(done, total)`` of every drawing of the bar ``desc``."""
    return [
        (int(m.group(1)), int(m.group(2)))
        for m in re.finditer(re.escape(desc) + r": +\d+%\|[^|]*\| (\d+)/(\d+)", err)
    ]


@pytest.fixture
def updates(monkeypatch):
    """Every ``tqdm.update`` step, by bar description (a disabled bar has none)."""
    steps: dict[str, list[int]] = {}
    update = tqdm.update

    def record(self, k=1):
        if not self.disable:
            steps.setdefault(self.desc, []).append(k)
        return update(self, k)

    monkeypatch.setattr(tqdm, "update", record)
    return steps


def _fit(x, y, progress, **kwargs):
    options = SolverOptions(progress=progress, progress_desc="ridge z", **kwargs.pop("opts", {}))
    return fit_ridge_cv(x, y, alphas=ALPHAS, n_folds=5, solver_options=options, **kwargs)


def _same(a, b):
    for name in FIELDS:
        left, right = getattr(a, name), getattr(b, name)
        assert left.dtype == right.dtype and np.array_equal(left, right), name
    assert a.fit_info == b.fit_info


@pytest.mark.parametrize(
    ("backend", "opts", "refit"),
    [
        ("numpy", {}, "cholesky"),
        ("numpy", {"cholesky_max_alphas": 0}, "eigh"),  # the eigen-basis refit
        ("torch", {}, "cholesky"),  # the device paths (column chunks), on the CPU
    ],
)
def test_voxel_form_bit_identical_with_bars(backend, opts, refit, capsys, updates):
    if backend == "torch":
        pytest.importorskip("torch")
    x, y = _data(120, 20, 30)
    quiet = _fit(x, y, False, backend=backend, chunk_size=7, opts=opts)
    assert (
        "%|" not in capsys.readouterr().err and updates == {}
    )  # no bar unless asked (log lines may pass)
    shown = _fit(x, y, True, backend=backend, chunk_size=7, opts=opts)
    err = capsys.readouterr().err
    _same(quiet, shown)
    assert shown.fit_info["form"] == "voxel" and shown.fit_info["refit"] == refit
    assert np.unique(shown.alphas).size > 1  # several alphas: the refit loops over them
    cv = "ridge z: CV target chunks (5 folds)"
    assert updates[cv] == [7, 7, 7, 7, 2] * 5  # one bar for all folds, chunk by chunk
    assert _bars(err, cv)[-1] == (150, 150)
    assert sum(updates["ridge z: refit target chunks"]) == 30  # each target stored once
    assert _bars(err, "ridge z: refit target chunks")[-1] == (30, 30)
    # one bar per loop, no other (the first pass's once primal.py passes it the options)
    assert set(updates) <= {cv, "ridge z: refit target chunks", "ridge z: first pass target chunks"}
    assert err.rstrip().endswith("target/s]")


def test_kernel_form_bit_identical_with_bars(capsys, updates):
    x, y = _data(40, 100, 30, seed=1)
    quiet = _fit(x, y, False, backend="numpy", chunk_size=8, fit_intercept=False)
    assert "%|" not in capsys.readouterr().err  # no bar (a log warning may be there)
    shown = _fit(x, y, True, backend="numpy", chunk_size=8, fit_intercept=False)
    err = capsys.readouterr().err
    _same(quiet, shown)
    assert shown.fit_info["form"] == "kernel"
    desc = "ridge z: target chunks (CV and refit)"
    assert updates == {desc: [8, 8, 8, 6]}
    assert _bars(err, desc)[-1] == (30, 30)


@pytest.mark.parametrize(
    ("backend", "budget", "desc", "steps"),
    [
        ("numpy", 2**30, "first pass target chunks", [30]),  # all rows at once, one product
        ("numpy", 1, "first pass row blocks", [16] * 7 + [8]),  # row blocks of 16 samples
        ("torch", 2**30, "first pass target chunks", [30]),
    ],
)
def test_first_pass_bar(backend, budget, desc, steps, capsys, updates):
    if backend == "torch":
        pytest.importorskip("torch")
    x, y = _data(120, 20, 30, seed=2)
    ops = make_ops(backend, None, np.dtype(np.float32))
    mean, scale = voxel_statistics(x, 64)
    folds = kfold_slices(120, 5)

    def run(progress):
        src = Source(ops, x, y, np.ones(20, bool), mean, scale, 4)
        options = SolverOptions(progress=progress, progress_desc="ridge c")
        return first_pass(src, folds, True, budget, options)

    quiet = run(False)
    assert "%|" not in capsys.readouterr().err  # no bar (a log warning may be there)
    shown = run(True)
    err = capsys.readouterr().err
    for name in ("coef", "y_sums", "y_total", "gram", "colsum"):
        left, right = (_host(ops, getattr(r, name)) for r in (quiet, shown))
        assert np.array_equal(left, right), name
    assert updates == {f"ridge c: {desc}": steps}
    assert _bars(err, f"ridge c: {desc}")[-1] == (sum(steps), sum(steps))


def _host(ops, a):
    return a if isinstance(a, np.ndarray) else ops.to_numpy(a)


def test_fit_decoder_progress_is_not_hashed(tmp_path, capsys):
    x, y = _data(60, 12, 10, seed=3)
    ids = [f"img{i:03d}" for i in range(60)]
    np.save(tmp_path / "train.npy", x)
    np.save(tmp_path / "features.npy", y)
    pd.DataFrame({"stim_id": ids}).to_csv(tmp_path / "ids.tsv", sep="\t", index=False)
    inputs = dict(
        train_data_file=str(tmp_path / "train.npy"),
        train_stimuli_file=str(tmp_path / "ids.tsv"),
        features_file=str(tmp_path / "features.npy"),
        features_stimuli_file=str(tmp_path / "ids.tsv"),
        alphas=[0.1, 1.0, 10.0],
        n_folds=3,
        backend="numpy",
        target_label="c",
        roi_label="ventral",
        metadata={"subject": "04"},
    )
    quiet, shown = FitDecoder(**inputs), FitDecoder(**inputs, progress=True)
    assert quiet.inputs.get_hashval()[1] == shown.inputs.get_hashval()[1]
    files = []
    for name, node in (("quiet", quiet), ("shown", shown)):
        (tmp_path / name).mkdir()
        result = node.run(cwd=str(tmp_path / name))
        files.append(result.outputs.decoder_file)
    err = capsys.readouterr().err
    with open(files[0], "rb") as a, open(files[1], "rb") as b:
        assert a.read() == b.read()  # the same weights, byte for byte
    assert _bars(err, "sub-04 ridge c: CV target chunks (3 folds)")[-1] == (30, 30)
    assert _bars(err, "sub-04 ridge c: refit target chunks")[-1] == (10, 10)
    assert _bars(err, "sub-04 ridge c: first pass target chunks")[-1] == (10, 10)
    assert err.count("100%|") == 3  # only the node asked for them drew bars
