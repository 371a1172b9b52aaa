"""The reconstruction settings of the paper and the run defaults shared by the diffusion modules."""

from __future__ import annotations

from typing import Any, Literal

#: Reconstruction modes: both features, ``z`` only (no semantic conditioning), ``c`` only.
MODES = ("z+c", "z", "c")

Mode = Literal["z+c", "z", "c"]

#: The paper's settings (Takagi & Nishimoto 2023), the defaults of :func:`reconstruct`.
PAPER_SETTINGS: dict[str, Any] = {
    "mode": "z+c",
    "n_samples": 5,
    "strength": 0.8,
    "num_inference_steps": 50,
    "guidance_scale": 5.0,
    "seed": 42,
    "eta": 0.0,
    "scheduler": "DDIM",
}

#: Rows per network call by default (images x samples).
DEFAULT_BATCH_SIZE = 8
