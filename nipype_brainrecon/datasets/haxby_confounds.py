"""Confounds of the Haxby runs under fMRIPrep's names, from PyMVPA's motion estimates and masks."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Column order of ``bold_moest.txt``: MCFLIRT's ``.par`` order, rotations (radians) then
#: translations (mm). PyMVPA read these files with its ``McFlirtParams`` reader (``rot1 rot2 rot3
#: x y z``), and the magnitudes agree: columns 1-3 stay below 0.007 (0.4 degree as radians,
#: implausibly small as mm), columns 4-6 reach 0.16 (mm). fMRIPrep uses the same units.
HAXBY_MOTION_ORDER = ("rot_x", "rot_y", "rot_z", "trans_x", "trans_y", "trans_z")


def haxby_confounds(motion: np.ndarray, bold: np.ndarray, masks: dict[str, np.ndarray]) -> Any:
    """fMRIPrep-named confounds: tissue signals, motion, their backward differences and FD.

    ``motion`` columns are in :data:`HAXBY_MOTION_ORDER`; ``framewise_displacement`` follows
    Power et al. (2012): summed absolute differences, rotations as arc length on a 50 mm sphere.
    """
    import pandas as pd

    columns: dict[str, np.ndarray] = {}

    def add(name: str, values: np.ndarray) -> None:
        columns[name] = values
        diff = np.empty_like(values)
        diff[0] = np.nan
        diff[1:] = np.diff(values)
        columns[f"{name}_derivative1"] = diff

    for name, mask in masks.items():
        add(name, bold[mask].mean(axis=0))
    by_name = dict(zip(HAXBY_MOTION_ORDER, motion.T, strict=True))
    for name in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"):
        add(name, by_name[name])
    steps = np.abs(np.diff(motion, axis=0))
    rotation = np.array([c.startswith("rot") for c in HAXBY_MOTION_ORDER])
    fd = np.empty(motion.shape[0])
    fd[0] = np.nan
    fd[1:] = steps[:, ~rotation].sum(axis=1) + 50.0 * steps[:, rotation].sum(axis=1)
    columns["framewise_displacement"] = fd
    return pd.DataFrame(columns)


def confounds_sidecar(names: list[str]) -> dict[str, Any]:
    units = {"trans": "mm", "rot": "rad", "framewise": "mm"}
    sidecar: dict[str, Any] = {}
    for name in names:
        base = name.removesuffix("_derivative1")
        if base in ("global_signal", "white_matter"):
            what = {"global_signal": "brain mask", "white_matter": "white-matter mask"}[base]
            entry = {"Description": f"Mean BOLD signal in the {what}"}
        elif base == "framewise_displacement":
            entry = {"Description": "Framewise displacement (Power 2012, 50 mm head radius)"}
        else:
            entry = {"Description": f"Head motion estimate {base} (PyMVPA bold_moest.txt)"}
        unit = units.get(base.split("_")[0])
        if unit:
            entry["Units"] = unit
        if name.endswith("_derivative1"):
            entry["Description"] = "Backward difference of: " + entry["Description"]
        sidecar[name] = entry
    return sidecar
