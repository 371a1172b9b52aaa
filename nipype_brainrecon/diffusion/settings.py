"""The reconstruction settings of the paper and the run defaults shared by the diffusion modules."""

from __future__ import annotations

from typing import Any, Literal

from ..config import DEFAULTS

#: Reconstruction modes: both features, ``z`` only (no semantic conditioning), ``c`` only.
MODES = ("z+c", "z", "c")

Mode = Literal["z+c", "z", "c"]

#: The paper's settings (Takagi & Nishimoto 2023), the defaults of :func:`reconstruct`.
PAPER_SETTINGS: dict[str, Any] = {
    **{
        key: getattr(DEFAULTS.reconstruction, key)
        for key in ("mode", "n_samples", "strength", "num_inference_steps", "guidance_scale")
    },
    "seed": DEFAULTS.seed,
    "eta": DEFAULTS.reconstruction.eta,
    "scheduler": DEFAULTS.reconstruction.scheduler,
}

#: Rows per network call by default (images x samples).
DEFAULT_BATCH_SIZE = DEFAULTS.reconstruction.batch_size
