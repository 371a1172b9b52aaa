"""Named sets of :func:`~.dataset.simulate_dataset` realism options (``--preset NAME``).

``HARDER`` is the pre-registered "harder" simulation of issue 22 (benchmarks/bench_seeds.py,
docs/evaluation.md "Scores over seeds and the null simulation"): every realism option the
analysis does not assume switched on. A preset only fills the options it names; options given
explicitly on the command line win.
"""

from __future__ import annotations

from types import MappingProxyType

from ...errors import UsageError

__all__ = ["HARDER", "PRESETS", "preset_options"]

#: HRF delay/undershoot SD 1 s, 30 % physiological noise, noise FWHM 2 voxels, 30 % of voxels
#: non-responsive, SD 0.5 of log per-voxel SNR.
HARDER = MappingProxyType(
    {
        "hrf_mismatch": 1.0,
        "physio_fraction": 0.3,
        "noise_fwhm": 2.0,
        "nonresponsive_fraction": 0.3,
        "snr_spread": 0.5,
    }
)

#: Presets by name; ``"default"`` changes nothing.
PRESETS = MappingProxyType({"default": MappingProxyType({}), "harder": HARDER})


def preset_options(name: str) -> dict[str, float]:
    """The keyword arguments of :func:`~.dataset.simulate_dataset` that preset ``name`` sets."""
    if name not in PRESETS:
        raise UsageError(f"--preset {name!r}: use one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])
