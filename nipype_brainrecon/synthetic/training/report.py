"""What a training run did: per-phase logs and the run's report (stored with the model)."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["PhaseLog", "TrainingReport"]


@dataclasses.dataclass
class PhaseLog:
    """What one training phase did.

    Attributes
    ----------
    steps : int
        Steps run (fewer than configured when the time cap stopped the phase).
    seconds : float
        Wall-clock time of the phase.
    cpu_seconds : float
        CPU time of the process during the phase (all threads); on a machine shared with other
        work this, not the wall-clock time, measures the cost.
    losses : list of (int, float)
        ``(step, mean training loss over the preceding interval)``.
    stopped_by_time : bool
        Whether the time cap ended the phase early.
    """

    steps: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    losses: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    stopped_by_time: bool = False


@dataclasses.dataclass
class TrainingReport:
    """Summary of :func:`train_demo_model`, also stored in the model folder.

    Attributes
    ----------
    config : dict
        :meth:`DemoTrainingConfig.to_dict`.
    vae, unet : PhaseLog
        The two phases.
    seconds, cpu_seconds : float
        Total wall-clock and CPU time (data, both phases, evaluation, saving).
    scaling_factor : float
        The VAE latent scaling factor written into the VAE config.
    metrics : dict
        Held-out figures: VAE PSNR / pixel correlation (with the mean-image baseline), and
        the diffusion validation loss before and after training.
    parameters : dict
        Parameter count per component.
    environment : dict
        torch, diffusers and transformers versions, CPU, threads.
    """

    config: dict[str, Any]
    vae: PhaseLog
    unet: PhaseLog
    seconds: float
    cpu_seconds: float
    scaling_factor: float
    metrics: dict[str, float]
    parameters: dict[str, int]
    environment: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)
