"""Decoding on real fMRI fixtures with the library's ridge (skipped when the fixtures are absent).

Reference figures (../shared/data/README.md), plain ridge, leave-one-image-out over the 10
Miyawaki figure images: pixel accuracy 0.903 (mean-training-image baseline 0.861), spatial r
0.787 (baseline 0.585).
"""

from __future__ import annotations

import numpy as np
import pytest

from nipype_brainrecon.datasets import load_miyawaki
from nipype_brainrecon.metrics import correlation_matrix
from nipype_brainrecon.ridge import fit_ridge_cv

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def miyawaki(miyawaki_dir):
    return load_miyawaki(miyawaki_dir / "V1_mean_figure.mat")


def _leave_one_image_out(data, alphas):
    x = data["responses"]
    images = data["images"].reshape(len(x), -1).astype(np.float64)
    ids = data["image_ids"]
    acc, r, base_acc, base_r = [], [], [], []
    for k in np.unique(ids):
        train, test = ids != k, ids == k
        predicted = fit_ridge_cv(x[train], images[train], alphas=alphas).predict(x[test])
        truth = images[test]
        mean_image = np.broadcast_to(images[train].mean(axis=0), truth.shape)
        acc.append(((predicted > 0.5) == (truth > 0.5)).mean())
        base_acc.append(((mean_image > 0.5) == (truth > 0.5)).mean())
        r.append(np.diag(correlation_matrix(predicted, truth)).mean())
        base_r.append(np.diag(correlation_matrix(mean_image, truth)).mean())
    return float(np.mean(acc)), float(np.mean(r)), float(np.mean(base_acc)), float(np.mean(base_r))


def test_miyawaki_pixel_decoding(miyawaki):
    acc, r, base_acc, base_r = _leave_one_image_out(miyawaki, "default")
    print(
        f"Miyawaki V1, leave-one-image-out: pixel accuracy {acc:.4f} "
        f"(mean-image baseline {base_acc:.4f}, all-off 0.795), spatial r {r:.4f} "
        f"(baseline {base_r:.4f})"
    )
    assert base_acc == pytest.approx(0.861, abs=1e-3)
    assert base_r == pytest.approx(0.585, abs=1e-3)
    assert acc >= 0.90
    assert r >= 0.78


def test_default_grid_decodes_at_least_as_well_as_papers(miyawaki):
    default = _leave_one_image_out(miyawaki, "default")
    paper = _leave_one_image_out(miyawaki, "paper")
    print(
        f"default grid: acc {default[0]:.4f} r {default[1]:.4f}; paper grid: acc "
        f"{paper[0]:.4f} r {paper[1]:.4f}"
    )
    assert default[0] >= paper[0] and default[1] >= paper[1]
