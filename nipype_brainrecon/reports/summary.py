"""The participant summary a report is drawn from, as typed, checked, read-only records.

The summary is a JSON-ready mapping: :mod:`nipype_brainrecon.derivatives` assembles it (and
saves it as ``logs/sub-<label>_summary.json``), the encoding step adds ``"encoding"``, and the
report of a failed run gets only ``"subject"`` and ``"errors"``. :meth:`ParticipantSummary.from_dict`
turns it into the records below and checks its shape: ``subject`` present, each entry of the
right kind (a mapping, a list, a path, a number), so a malformed summary fails with a message
naming the entry. Every key but ``subject`` may be absent; an absent or empty entry leaves its
section out of the report. Open-ended entries (``settings``, ``split``, the decoding scores)
keep their values as given, in their order, since the report lists them as they are.

Keys (see ``docs/report.md``)::

    subject            "01" (required; "sub-01" also accepted)
    software           {"name", "version"}
    command            the command line, a string
    settings           every setting (nested mappings allowed)
    inputs             {"bids_dir", "derivatives", "datasets", "n_runs", "n_trials",
                        "bold_files": [...], ...}; "datasets": {name: {"Name", "URL"}} of the
                        input datasets, the names of the bids:<name>:<path> URIs
    reference_bold     a 3D or 4D BOLD image (the background of the ROI figure)
    rois               {target: {"name", "mask", "n_voxels"}} (or {target: mask path})
    split              {"TestSetRule", "NumberOfTrainingTrials", ...}
    decoding           {target: {score name: value, ...}}
    alpha_counts       {target: {alpha (string or number): count}}
    test_stimuli       [{"stim_id", "stimulus": path, "reconstructions": [paths]}]
    metrics            path of the metrics TSV
    per_image          path of the per-image scores TSV (stim_id + one column per metric)
    encoding           {"roi_table", "maps": [{"feature", "statistic", "path"}], "n_train", ...}
    errors             ["message", ...] or [{"message", "crash_file"}, ...]
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError

__all__ = [
    "EncodingMap",
    "EncodingSummary",
    "Inputs",
    "ParticipantSummary",
    "Roi",
    "RunError",
    "Software",
    "TestStimulus",
    "crash_message",
    "subject_label",
]

_PATH_TYPES = (str, os.PathLike)


def subject_label(subject: Any) -> str:
    """A participant label without its ``sub-`` prefix.

    Examples
    --------
    >>> subject_label("sub-01"), subject_label("02")
    ('01', '02')
    """
    label = str(subject)
    return label[4:] if label.startswith("sub-") else label


_EXCEPTION_LINE = re.compile(
    r"^\s*(?:[A-Za-z_][\w]*\.)*(?P<name>[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt))"
    r"(?::\s*(?P<message>.*))?$"
)


def crash_message(text: str) -> str | None:
    """The one-line error of a crash file (Nipype's text format): the last exception line of
    its traceback, its class without the module path; None when there is none.

    Examples
    --------
    >>> crash_message("Node: a\\nTraceback ...\\n\\tnipype_brainrecon.errors.DataError: x.nii: bad")
    'DataError: x.nii: bad'
    >>> crash_message("no traceback") is None
    True
    """
    found = None
    for line in str(text).splitlines():
        match = _EXCEPTION_LINE.match(line)
        if match:
            message = (match["message"] or "").strip()
            found = f"{match['name']}: {message}" if message else match["name"]
    return found


def _kind(value: Any) -> str:
    return type(value).__name__


def _mapping(
    value: Any, where: str, what: str = "a mapping", *, str_keys: bool = True
) -> Mapping[Any, Any]:
    """``value`` as a mapping, with string keys unless ``str_keys=False`` ({} when empty or
    absent)."""
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise UsageError(f"summary: {where} is a {_kind(value)}; give {what}")
    for key in value if str_keys else ():
        if not isinstance(key, str):
            raise UsageError(f"summary: {where} has the key {key!r}; keys must be strings")
    return value


def _list(value: Any, where: str, what: str = "a list") -> Sequence[Any]:
    """``value`` as a list or tuple (() when empty or absent)."""
    if not value:
        return ()
    if not isinstance(value, (list, tuple)):
        raise UsageError(f"summary: {where} is a {_kind(value)}; give {what}")
    return value


def _path(value: Any, where: str) -> str | None:
    """A path as a string; None when absent or empty."""
    if value is None or value == "":
        return None
    if not isinstance(value, _PATH_TYPES):
        raise UsageError(f"summary: {where} is a {_kind(value)}; give a file path")
    return os.fspath(value)


def _text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageError(f"summary: {where} is a {_kind(value)}; give a string")
    return value


def _number(value: Any, where: str, *, whole: bool = False) -> Any:
    """A number, kept as given (an int stays an int; None and NaN mean absent)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return value
    kind = numbers.Integral if whole else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "a whole number" if whole else "a number"
        raise UsageError(f"summary: {where} is {value!r}; give {what}")
    return value


@dataclass(frozen=True)
class Software:
    """``software``: the pipeline that wrote the run (None where not given)."""

    name: str | None = None
    version: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Software:
        return cls(
            name=_text(d.get("name"), "software.name"),
            version=_text(d.get("version"), "software.version"),
        )


@dataclass(frozen=True)
class Inputs:
    """``inputs``: where the data came from and how much there was.

    ``bids_dir`` and ``derivatives`` are locations (relative to the output dataset in a run's
    summary); ``datasets`` gives each input dataset's ``Name`` and location (``URL``) by the
    name its ``bids:<name>:<path>`` URIs use. ``entries`` keeps every input as given, in order
    (the report's About section lists them).
    """

    bids_dir: str | None = None
    derivatives: str | None = None
    n_runs: int | None = None
    n_trials: int | None = None
    datasets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    entries: Mapping[str, Any] = field(default_factory=dict)

    @property
    def locations(self) -> dict[str, str]:
        """``{name: location}`` of the input datasets (for resolving ``bids:`` URIs)."""
        return {k: str(v["URL"]) for k, v in self.datasets.items() if v.get("URL")}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Inputs:
        datasets = _mapping(d.get("datasets"), "inputs.datasets", "a mapping of name to dataset")
        return cls(
            bids_dir=_path(d.get("bids_dir"), "inputs.bids_dir"),
            derivatives=_path(d.get("derivatives"), "inputs.derivatives"),
            datasets={
                k: dict(_mapping(v, f"inputs.datasets.{k}", "a mapping with 'Name' and 'URL'"))
                for k, v in datasets.items()
            },
            n_runs=_number(d.get("n_runs"), "inputs.n_runs", whole=True),
            n_trials=_number(d.get("n_trials"), "inputs.n_trials", whole=True),
            entries=dict(d),
        )


@dataclass(frozen=True)
class Roi:
    """One entry of ``rois``: the region a target is decoded from."""

    target: str
    name: str | None = None
    mask: str | None = None
    n_voxels: int | None = None

    @classmethod
    def from_value(cls, target: str, value: Any) -> Roi:
        """From ``{"name", "mask", "n_voxels"}`` or a bare mask path."""
        where = f"rois.{target}"
        if isinstance(value, _PATH_TYPES):
            return cls(target=target, mask=_path(value, where))
        d = _mapping(value, where, "a mapping with 'name', 'mask' and 'n_voxels', or a path")
        return cls(
            target=target,
            name=_text(d.get("name"), f"{where}.name"),
            mask=_path(d.get("mask"), f"{where}.mask"),
            n_voxels=_number(d.get("n_voxels"), f"{where}.n_voxels"),
        )


@dataclass(frozen=True)
class TestStimulus:
    """One entry of ``test_stimuli``: a held-out image and its reconstructions."""

    __test__ = False  # not a pytest test class

    stim_id: str | int | None = None
    stimulus: str | None = None
    reconstructions: tuple[str | None, ...] = ()

    @classmethod
    def from_dict(cls, d: Any, where: str) -> TestStimulus:
        d = _mapping(d, where, "a mapping with 'stim_id', 'stimulus' and 'reconstructions'")
        stim_id = d.get("stim_id")
        if stim_id is not None and (
            isinstance(stim_id, bool) or not isinstance(stim_id, (str, numbers.Integral))
        ):
            raise UsageError(f"summary: {where}.stim_id is a {_kind(stim_id)}; give a string")
        recons = _list(d.get("reconstructions"), f"{where}.reconstructions", "a list of paths")
        return cls(
            stim_id=stim_id,
            stimulus=_path(d.get("stimulus"), f"{where}.stimulus"),
            reconstructions=tuple(
                _path(p, f"{where}.reconstructions[{i}]") for i, p in enumerate(recons)
            ),
        )


@dataclass(frozen=True)
class EncodingMap:
    """One statistical map of the encoding models."""

    feature: str
    statistic: str
    path: str


@dataclass(frozen=True)
class EncodingSummary:
    """``encoding``: what :func:`nipype_brainrecon.encoding.write_encoding_derivatives` wrote."""

    roi_table: str
    n_train: int = 0
    n_test: int = 0
    maps: tuple[EncodingMap, ...] = ()
    spaces: Mapping[str, Any] = field(default_factory=dict)
    unet: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "encoding") -> EncodingSummary:
        d = _mapping(d, where)
        table = _path(d.get("roi_table"), f"{where}.roi_table")
        if table is None:
            raise UsageError(f"summary: {where} has no 'roi_table'; give the ROI summary TSV")
        maps = []
        for i, m in enumerate(_list(d.get("maps"), f"{where}.maps")):
            m = _mapping(m, f"{where}.maps[{i}]", "a mapping with 'feature', 'statistic', 'path'")
            missing = [k for k in ("feature", "statistic", "path") if k not in m]
            if missing:
                raise UsageError(f"summary: {where}.maps[{i}] has no {', '.join(missing)}")
            maps.append(
                EncodingMap(
                    feature=_text(m["feature"], f"{where}.maps[{i}].feature"),
                    statistic=_text(m["statistic"], f"{where}.maps[{i}].statistic"),
                    path=_path(m["path"], f"{where}.maps[{i}].path"),
                )
            )
        return cls(
            roi_table=table,
            n_train=_number(d.get("n_train") or 0, f"{where}.n_train", whole=True),
            n_test=_number(d.get("n_test") or 0, f"{where}.n_test", whole=True),
            maps=tuple(maps),
            spaces=dict(_mapping(d.get("spaces"), f"{where}.spaces")),
            unet=dict(_mapping(d.get("unet"), f"{where}.unet")),
        )


@dataclass(frozen=True)
class RunError:
    """One entry of ``errors``: a message and, optionally, the crash file it came from."""

    message: str
    crash_file: str | None = None

    @classmethod
    def from_value(cls, value: Any) -> RunError:
        """From a message, or ``{"message" (or "error"), "crash_file" (or "crashfile",
        "file")}``; anything else is shown as its text."""
        if not isinstance(value, Mapping):
            return cls(str(value))
        message = str(value.get("message") or value.get("error") or "")
        crash = value.get("crash_file") or value.get("crashfile") or value.get("file")
        if not crash:
            return cls(message)
        return cls(message, os.fspath(crash) if isinstance(crash, _PATH_TYPES) else str(crash))


@dataclass(frozen=True)
class ParticipantSummary:
    """What a participant run produced, as the report reads it (see the module docstring).

    Examples
    --------
    >>> s = ParticipantSummary.from_dict({"subject": "sub-01", "errors": ["GLM failed"]})
    >>> s.subject, s.prefix, s.errors
    ('01', 'sub-01', (RunError(message='GLM failed', crash_file=None),))
    >>> ParticipantSummary.from_dict({"subject": "01", "rois": ["early"]})
    Traceback (most recent call last):
    ...
    nipype_brainrecon.errors.UsageError: summary: rois is a list; give a mapping of target to ROI
    """

    subject: str
    software: Software | None = None
    command: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    inputs: Inputs = field(default_factory=Inputs)
    reference_bold: str | None = None
    rois: tuple[Roi, ...] = ()
    split: Mapping[str, Any] = field(default_factory=dict)
    decoding: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    alpha_counts: Mapping[str, Mapping[Any, Any]] = field(default_factory=dict)
    test_stimuli: tuple[TestStimulus, ...] = ()
    metrics: str | None = None
    per_image: str | None = None
    encoding: EncodingSummary | None = None
    errors: tuple[RunError, ...] = ()

    @property
    def prefix(self) -> str:
        """``sub-<label>``."""
        return f"sub-{self.subject}"

    @property
    def model(self) -> Any:
        """The ``model`` (or ``model_id``) setting; None when neither is set."""
        return self._setting("model", "model_id")

    @property
    def random_seed(self) -> Any:
        """The ``random_seed`` (or ``seed``) setting; None when neither is set."""
        return self._setting("random_seed", "seed")

    def _setting(self, *keys: str) -> Any:
        return next((self.settings[k] for k in keys if k in self.settings), None)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ParticipantSummary:
        """Check and convert a summary mapping (the JSON the run wrote).

        Raises
        ------
        UsageError
            If ``d`` is not a mapping, has no subject, or an entry is of the wrong kind.
        """
        if not isinstance(d, Mapping):
            raise UsageError(f"summary: a {_kind(d)}; give a mapping (dict)")
        subject = d.get("subject") or ""
        if not isinstance(subject, (str, int)) or isinstance(subject, bool):
            raise UsageError(f"summary: subject is a {_kind(subject)}; give a label, e.g. '01'")
        subject = subject_label(subject)
        if not subject:
            raise UsageError("summary: no 'subject'; give the participant label, e.g. '01'")
        software = _mapping(d.get("software"), "software")
        decoding = _mapping(d.get("decoding"), "decoding", "a mapping of target to scores")
        alpha_counts = _mapping(
            d.get("alpha_counts"), "alpha_counts", "a mapping of target to counts"
        )
        rois = _mapping(d.get("rois"), "rois", "a mapping of target to ROI")
        stimuli = _list(d.get("test_stimuli"), "test_stimuli")
        encoding = d.get("encoding")
        return cls(
            subject=subject,
            software=Software.from_dict(software) if software else None,
            command=_text(d.get("command") or None, "command"),
            settings=dict(_mapping(d.get("settings"), "settings")),
            inputs=Inputs.from_dict(_mapping(d.get("inputs"), "inputs")),
            reference_bold=_path(d.get("reference_bold"), "reference_bold"),
            rois=tuple(Roi.from_value(t, r) for t, r in rois.items()),
            split=dict(_mapping(d.get("split"), "split")),
            decoding={t: dict(_mapping(s, f"decoding.{t}")) for t, s in decoding.items()},
            alpha_counts={
                t: _mapping(c, f"alpha_counts.{t}", "a mapping of alpha to count", str_keys=False)
                for t, c in alpha_counts.items()
            },
            test_stimuli=tuple(
                TestStimulus.from_dict(s, f"test_stimuli[{i}]") for i, s in enumerate(stimuli)
            ),
            metrics=_path(d.get("metrics"), "metrics"),
            per_image=_path(d.get("per_image"), "per_image"),
            encoding=EncodingSummary.from_dict(encoding) if encoding else None,
            errors=tuple(RunError.from_value(e) for e in _list(d.get("errors"), "errors")),
        )
