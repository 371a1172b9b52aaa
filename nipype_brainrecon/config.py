"""The one settings object: every default of a run, the paper's values where it gives one.

:data:`DEFAULTS` is a frozen :class:`Settings` with one section per stage (``glm``,
``decoding``, ``reconstruction``, ``evaluation``, ``encoding``). The command line, the
workflows, the interfaces and the library functions read their defaults from it, so no default
is typed twice. A run's settings are saved beside its outputs as TOML
(``logs/settings.toml``, as fMRIPrep saves its config) by :func:`Settings.to_toml`.

The workflows pass settings around as a flat mapping (``strength``, ``n_samples``, ...: the keys
recorded in every sidecar's ``Settings``); :meth:`Settings.flat` and :meth:`Settings.from_flat`
convert.

>>> DEFAULTS.reconstruction.strength
0.8
>>> DEFAULTS.flat()["num_inference_steps"]
50
>>> Settings.from_toml(DEFAULTS.to_toml()) == DEFAULTS
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError

__all__ = [
    "DEFAULTS",
    "DecodingSettings",
    "EncodingSettings",
    "EvaluationSettings",
    "GlmSettings",
    "ReconstructionSettings",
    "Settings",
]


def _key(name: str, **kwargs: Any) -> Any:
    """A field whose flat (sidecar) key differs from its attribute name."""
    return field(metadata={"key": name}, **kwargs)


@dataclass(frozen=True)
class GlmSettings:
    """Single-trial betas (:mod:`nipype_brainrecon.glm`)."""

    betas_method: str = "lss"  # least-squares separate, one GLM per trial
    noise_model: str = "ols"
    hrf_model: str = "glover"
    confounds: str = "motion+derivatives"
    drift_model: str = "cosine"
    high_pass: float = 1 / 128  # Hz, nilearn's default cut-off


@dataclass(frozen=True)
class DecodingSettings:
    """Ridge decoders of z (early visual cortex) and c (ventral cortex)."""

    resolution: int = 320  # the paper's image size before VAE encoding (-> 4 x 40 x 40)
    test_set: str = "repeats"
    alphas: str = "default"
    n_folds: int = 5
    cv_groups: str = "run"  # alpha-choice folds hold out whole runs ("session", "none": K folds)
    fit_intercept: bool = True  # the authors' ridge has none (himalaya's default): --paper
    backend: str = "auto"
    z_roi: str = "early"
    c_roi: str = "ventral"
    feature_batch_size: int = 8  # images (or captions) per model call when encoding features


@dataclass(frozen=True)
class ReconstructionSettings:
    """img2img with the latent diffusion model: the paper's values (Takagi & Nishimoto 2023)."""

    model: str = "CompVis/stable-diffusion-v1-4"
    mode: str = "z+c"
    n_samples: int = 5
    strength: float = 0.8
    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    eta: float = 0.0
    scheduler: str = "DDIM"
    batch_size: int = 8  # images x samples per network call
    n_chunks: int = 1


@dataclass(frozen=True)
class EvaluationSettings:
    """Scoring the reconstructions."""

    extractors: tuple[str, ...] = ("pixels", "lowlevel")
    eval_size: int = 425  # PixCorr / SSIM image size of the later papers
    n_permutations: int = 1000  # permutation null of every identification score
    n_boot: int = 1000  # bootstrap resamples of the test images (CI of identification)
    resampling_seed: int = 0  # seeds the permutations and the bootstrap


@dataclass(frozen=True)
class EncodingSettings:
    """Voxel-wise encoding models (``--encoding``): off by default, it adds U-Net runs."""

    enabled: bool = _key("encoding", default=False)
    blocks: tuple[str, ...] = _key("encoding_blocks", default=("down1", "mid", "up1"))
    steps: tuple[str, ...] = _key("encoding_steps", default=("early", "middle", "late"))
    banded: bool = _key("encoding_banded", default=False)  # one alpha per space in joint models
    pool: int = 8  # largest side of pooled U-Net activation maps


#: Settings of the whole run that belong to no single stage.
_RUN_KEYS = ("seed", "device", "feature_cache")

#: Order of the flat settings (as recorded in sidecars and shown in the report).
_FLAT_ORDER = (
    "betas_method", "noise_model", "hrf_model", "confounds", "resolution", "test_set",
    "alphas", "n_folds", "backend", "z_roi", "c_roi", "model", "mode", "n_samples",
    "strength", "num_inference_steps", "guidance_scale", "seed", "batch_size", "n_chunks",
    "extractors", "eval_size", "device", "feature_cache", "encoding", "encoding_blocks",
    "encoding_steps", "cv_groups", "fit_intercept", "encoding_banded",
)  # fmt: skip

#: Section fields that are not part of a run's recorded (flat) settings: implementation knobs
#: the command line does not expose, kept here so that they too are typed once.
_UNRECORDED = {
    "glm": ("drift_model", "high_pass"),
    "decoding": ("feature_batch_size",),
    "reconstruction": ("eta", "scheduler"),
    "evaluation": ("n_permutations", "n_boot", "resampling_seed"),
    "encoding": ("pool",),
}


@dataclass(frozen=True)
class Settings:
    """Every setting of a run, by stage. ``DEFAULTS`` holds the defaults."""

    glm: GlmSettings = field(default_factory=GlmSettings)
    decoding: DecodingSettings = field(default_factory=DecodingSettings)
    reconstruction: ReconstructionSettings = field(default_factory=ReconstructionSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    encoding: EncodingSettings = field(default_factory=EncodingSettings)
    seed: int = 42  # seeds numpy, torch and the diffusion sampler (the paper's)
    device: str | None = None  # None: CUDA when available, else CPU
    feature_cache: str | None = None

    # -- the flat view the workflows and sidecars use --------------------------------------
    def flat(self) -> dict[str, Any]:
        """The run's recorded settings as one flat mapping (lists for tuples)."""
        out: dict[str, Any] = {}
        for section, sub in _sections(self):
            for f in dataclasses.fields(sub):
                if f.name in _UNRECORDED.get(section, ()):
                    continue
                value = getattr(sub, f.name)
                out[f.metadata.get("key", f.name)] = (
                    list(value) if isinstance(value, tuple) else value
                )
        out.update({k: getattr(self, k) for k in _RUN_KEYS})
        return {k: out[k] for k in _FLAT_ORDER}

    @classmethod
    def from_flat(cls, values: Mapping[str, Any], base: Settings | None = None) -> Settings:
        """Settings from a flat mapping (unknown keys refused), other values from ``base``."""
        base = base or DEFAULTS
        unknown = set(values) - set(base.flat())
        if unknown:
            raise UsageError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        changes: dict[str, Any] = {k: values[k] for k in _RUN_KEYS if k in values}
        for section, sub in _sections(base):
            fields = {}
            for f in dataclasses.fields(sub):
                key = f.metadata.get("key", f.name)
                if key in values and f.name not in _UNRECORDED.get(section, ()):
                    value = values[key]
                    fields[f.name] = tuple(value) if isinstance(value, list) else value
            changes[section] = dataclasses.replace(sub, **fields)
        return dataclasses.replace(base, **changes)

    # -- TOML, saved beside the outputs ----------------------------------------------------
    def to_toml(self) -> str:
        """The settings as TOML, one table per section (``None`` values are left out)."""
        lines = ["# nipype-brainrecon settings of this run", ""]
        lines += [
            f"{k} = {_toml_value(getattr(self, k))}"
            for k in _RUN_KEYS
            if getattr(self, k) is not None
        ]
        for section, sub in _sections(self):
            lines += ["", f"[{section}]"]
            for f in dataclasses.fields(sub):
                value = getattr(sub, f.name)
                if value is not None:
                    lines.append(f"{f.name} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, text: str) -> Settings:
        """Settings from :meth:`to_toml`'s text (missing values take the defaults)."""
        import tomllib  # Python >= 3.11

        data = tomllib.loads(text)
        changes: dict[str, Any] = {k: data[k] for k in _RUN_KEYS if k in data}
        for section, sub in _sections(DEFAULTS):
            table = data.get(section, {})
            names = {f.name for f in dataclasses.fields(sub)}
            unknown = set(table) - names
            if unknown:
                raise UsageError(f"[{section}]: unknown setting(s): {', '.join(sorted(unknown))}")
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
            changes[section] = dataclasses.replace(sub, **values)
        return dataclasses.replace(DEFAULTS, **changes)


def _sections(settings: Settings) -> list[tuple[str, Any]]:
    return [
        (f.name, getattr(settings, f.name))
        for f in dataclasses.fields(settings)
        if dataclasses.is_dataclass(getattr(settings, f.name))
    ]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


#: The defaults of every run.
DEFAULTS = Settings()
