"""Threads that obey: heavy nodes run with the BLAS / OpenMP / torch threads they are given."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
threadpoolctl = pytest.importorskip("threadpoolctl")

from nipype_brainrecon.interfaces.decoding import FitDecoder  # noqa: E402
from nipype_brainrecon.interfaces.threads import limit_threads, observe_threads  # noqa: E402
from nipype_brainrecon.ridge import fit_ridge_cv, load_decoder  # noqa: E402


def _pool_counts():
    return [(p["filepath"], p["num_threads"]) for p in threadpoolctl.threadpool_info()]


@pytest.fixture
def two_threads():
    """Start from 2 threads everywhere, so that a limit of 1 is visible (and restored)."""
    before_torch = torch.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=2):
        torch.set_num_threads(2)
        yield
    torch.set_num_threads(before_torch)


def _tiny_decoding_inputs(folder, n=40, p=30, t=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p))
    y = x[:, :t] * 2.0 + 0.1 * rng.standard_normal((n, t))
    ids = [f"s{i:03d}" for i in range(n)]
    np.save(folder / "train.npy", x)
    np.save(folder / "features.npy", y[::-1].copy())  # feature rows in another order
    pd.DataFrame({"stim_id": ids}).to_csv(folder / "train.tsv", sep="\t", index=False)
    pd.DataFrame({"stim_id": ids[::-1]}).to_csv(folder / "features.tsv", sep="\t", index=False)
    return x, y


def test_fit_decoder_runs_with_the_threads_it_is_given(tmp_path, two_threads):
    x, y = _tiny_decoding_inputs(tmp_path)
    before = _pool_counts()
    assert torch.get_num_threads() == 2
    assert {n for _, n in before} == {2}

    work = tmp_path / "node"
    work.mkdir()
    node = FitDecoder(
        train_data_file=str(tmp_path / "train.npy"),
        train_stimuli_file=str(tmp_path / "train.tsv"),
        features_file=str(tmp_path / "features.npy"),
        features_stimuli_file=str(tmp_path / "features.tsv"),
        alphas=[0.1, 1.0, 10.0],
        n_folds=3,
        backend="numpy",
        target_label="z",
        roi_label="early",
        num_threads=1,
    )
    result = node.run(cwd=str(work))

    recorded = json.loads(open(result.outputs.threads_file).read())
    assert recorded["requested"] == 1
    assert recorded["torch"] == 1
    blas = [p["num_threads"] for p in recorded["pools"] if p["user_api"] == "blas"]
    openmp = [p["num_threads"] for p in recorded["pools"] if p["user_api"] == "openmp"]
    assert blas and set(blas) == {1}  # numpy's and scipy's OpenBLAS at least
    assert set(openmp) <= {1}
    # restored afterwards
    assert torch.get_num_threads() == 2
    assert _pool_counts() == before

    # the decoder is the one fitted without the interface (and without the limit)
    reference = fit_ridge_cv(x, y, alphas=np.array([0.1, 1.0, 10.0]), n_folds=3, backend="numpy")
    decoder = load_decoder(result.outputs.decoder_file)
    np.testing.assert_allclose(decoder.predict(x), reference.predict(x), rtol=1e-5, atol=1e-6)


def test_limit_threads_restores_after_an_error(two_threads):
    before = _pool_counts()
    with pytest.raises(RuntimeError, match="boom"), limit_threads(1) as record:
        assert torch.get_num_threads() == 1
        assert {p["num_threads"] for p in observe_threads()["pools"]} == {1}
        raise RuntimeError("boom")
    assert record == {"requested": 1}  # nothing observed: the block did not finish
    assert torch.get_num_threads() == 2
    assert _pool_counts() == before


def test_zero_leaves_the_settings_alone(two_threads):
    with limit_threads(0) as record:
        assert torch.get_num_threads() == 2
    assert record["requested"] is None
    assert record["torch"] == 2
    assert {p["num_threads"] for p in record["pools"]} == {2}


def test_workflows_pass_omp_nthreads_to_the_heavy_nodes():
    from nipype_brainrecon.workflows.decoding import init_decoding_wf
    from nipype_brainrecon.workflows.encoding import init_encoding_wf
    from nipype_brainrecon.workflows.reconstruction import init_reconstruction_wf

    heavy = [
        (init_decoding_wf(omp_nthreads=3), ["betas", "features", "fit_z", "fit_c"]),
        (init_encoding_wf(omp_nthreads=3), ["features", "fit"]),
        (init_reconstruction_wf(omp_nthreads=3), ["reconstruct", "reconstruct_shuffled"]),
    ]
    for wf, names in heavy:
        for name in names:
            node = wf.get_node(name)
            assert node.n_procs == 3, (wf.name, name)
            assert node.inputs.num_threads == 3, (wf.name, name)
