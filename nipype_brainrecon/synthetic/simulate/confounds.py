"""fMRIPrep-like confounds of a simulated run, computed from its data, and their JSON sidecar."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .design import HIGH_PASS_S

__all__ = ["confounds_sidecar", "confounds_table"]

_MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")


def _with_expansions(df: pd.DataFrame, name: str, values: np.ndarray) -> None:
    """Add a column with fMRIPrep's derivative1 / power2 expansions (first derivative is n/a)."""
    deriv = np.concatenate([[np.nan], np.diff(values)])
    df[name] = values
    df[f"{name}_derivative1"] = deriv
    df[f"{name}_power2"] = values**2
    df[f"{name}_derivative1_power2"] = deriv**2


def confounds_table(
    data: np.ndarray, anat: dict[str, np.ndarray], motion: np.ndarray, cosines: np.ndarray
) -> pd.DataFrame:
    """fMRIPrep-named confounds computed from the preprocessed data (voxels × time)."""
    flat_mask = anat["mask"].ravel()
    df = pd.DataFrame(index=range(data.shape[1]))
    brain = data[flat_mask]
    for name, region in (
        ("global_signal", flat_mask),
        ("csf", anat["csf"].ravel()),
        ("white_matter", anat["white_matter"].ravel()),
        ("csf_wm", (anat["csf"] | anat["white_matter"]).ravel()),
    ):
        _with_expansions(df, name, data[region].mean(axis=0))
    diff = np.diff(brain, axis=1)
    dvars = np.sqrt((diff**2).mean(axis=0))
    med = np.median(dvars)
    df["std_dvars"] = np.concatenate([[np.nan], dvars / med if med > 0 else dvars])
    df["dvars"] = np.concatenate([[np.nan], dvars])
    # Power et al. framewise displacement: rotations as arc length on a 50 mm sphere.
    dm = np.abs(np.diff(motion, axis=0))
    fd = dm[:, :3].sum(axis=1) + 50.0 * dm[:, 3:].sum(axis=1)
    df["framewise_displacement"] = np.concatenate([[np.nan], fd])
    for c, name in enumerate(_MOTION_COLUMNS):
        _with_expansions(df, name, motion[:, c])
    for c in range(cosines.shape[1]):
        df[f"cosine{c:02d}"] = cosines[:, c]
    return df


def confounds_sidecar(conf: pd.DataFrame) -> dict:
    """Descriptions of the columns of :func:`confounds_table`, as in fMRIPrep's sidecar."""
    desc = {
        "global_signal": "Mean within the brain mask",
        "csf": "Mean within the simulated CSF compartment",
        "white_matter": "Mean within the simulated white-matter compartment",
        "csf_wm": "Mean within CSF and white matter together",
        "dvars": "RMS over brain voxels of the temporal derivative",
        "std_dvars": "dvars divided by its median (an approximation of the standardised DVARS)",
        "framewise_displacement": "Power framewise displacement (50 mm head radius), mm",
    }
    out = {}
    for col in conf.columns:
        base = col.split("_derivative1")[0].split("_power2")[0]
        if col.startswith("cosine"):
            out[col] = {"Method": "Cosine", "Description": f"DCT basis, {HIGH_PASS_S:g} s cut-off"}
        elif base in desc:
            out[col] = {"Description": desc[base]}
        else:
            unit = "mm" if base.startswith("trans") else "rad"
            out[col] = {"Description": f"Simulated head motion ({unit}), or its expansion"}
    return out
