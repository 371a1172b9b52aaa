"""Named sets of :func:`~.dataset.simulate_dataset` realism options (``--preset NAME``).

``oracle`` switches every realism option off: the data then follow the analysis' own
assumptions, as the simulator's defaults did before issue 22. ``harder`` is the pre-registered
"harder" simulation of issue 22 (benchmarks/bench_seeds.py, docs/evaluation.md "Scores over
seeds and the null simulation"); its values became the defaults
(:data:`~.config.DEFAULT_REALISM`), and the name stays so that recorded commands still run. A
preset only fills the options it names; options given explicitly on the command line win.
"""

from __future__ import annotations

from types import MappingProxyType

from ...errors import UsageError
from .config import ORACLE_REALISM

__all__ = ["HARDER", "ORACLE", "PRESETS", "preset_options"]

#: HRF delay/undershoot SD 1 s, 30 % physiological noise, noise FWHM 2 voxels, 30 % of voxels
#: non-responsive, SD 0.5 of log per-voxel SNR. Written out, not an alias of the defaults: the
#: pre-registered condition must not move if the defaults do (a test checks they are equal now).
HARDER = MappingProxyType(
    {
        "hrf_mismatch": 1.0,
        "physio_fraction": 0.3,
        "noise_fwhm": 2.0,
        "nonresponsive_fraction": 0.3,
        "snr_spread": 0.5,
    }
)
#: Every realism option off (the defaults before issue 22).
ORACLE = ORACLE_REALISM

#: Presets by name; ``"default"`` changes nothing.
PRESETS = MappingProxyType({"default": MappingProxyType({}), "harder": HARDER, "oracle": ORACLE})


def preset_options(name: str) -> dict[str, float]:
    """The keyword arguments of :func:`~.dataset.simulate_dataset` that preset ``name`` sets."""
    if name not in PRESETS:
        raise UsageError(f"--preset {name!r}: use one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])
