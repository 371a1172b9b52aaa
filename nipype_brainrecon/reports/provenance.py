"""The provenance of a group report, as recorded in the derivatives: the software and its
version, the model's identity, the input datasets, the participant-level command and every
setting, read from each participant's ``logs/sub-<label>_summary.json`` and the dataset's
``dataset_description.json``.

Everything is made portable on the way (:mod:`nipype_brainrecon.derivatives.portable`): the
model by its hub id or folder name and content hash, every other path relative to the
derivatives, so the page names no absolute path of the machine that ran it. Values that differ
between participants are listed per participant.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..derivatives.portable import portable_command, portable_settings
from .layout import definition_list, html_table
from .markup import escape, flatten, relative_url, value_html
from .tables import wrap_table

__all__ = ["METHODS_TEXT", "group_provenance", "provenance_html", "summary_path"]

#: Methods text of the run, relative to the derivatives.
METHODS_TEXT = "logs/CITATION.md"


def summary_path(output_dir: str | os.PathLike, subject: str) -> Path:
    """Where a participant's summary is (``logs/sub-<label>_summary.json``)."""
    return Path(output_dir) / "logs" / f"sub-{subject}_summary.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _one_or_each(values: Mapping[str, Any]) -> Any:
    """The value when every participant has the same, else ``{"sub-<label>": value}``."""
    distinct = {json.dumps(v, sort_keys=True, default=str) for v in values.values()}
    if len(distinct) <= 1:
        return next(iter(values.values()), None)
    return {f"sub-{k}": v for k, v in values.items()}


def group_provenance(output_dir: str | os.PathLike, subjects: Sequence[str]) -> dict[str, Any]:
    """What the derivatives record of how the participants were processed (portable).

    Returns
    -------
    dict
        ``software``, ``model``, ``datasets`` (name: location relative to the derivatives),
        ``command`` (the participant level), ``settings`` (one value per setting, or one per
        participant where they differ), ``participants``; keys without a record are absent.
    """
    out = Path(output_dir)
    summaries = {s: _read_json(summary_path(out, s)) for s in subjects}
    summaries = {s: d for s, d in summaries.items() if d}
    prov: dict[str, Any] = {}
    generated = _read_json(out / "dataset_description.json").get("GeneratedBy") or [{}]
    software = {
        s: f"{(d.get('software') or {}).get('name', '')} {(d.get('software') or {}).get('version', '')}".strip()
        for s, d in summaries.items()
    }
    if not any(software.values()) and isinstance(generated[0], dict):
        software = {"": f"{generated[0].get('Name', '')} {generated[0].get('Version', '')}".strip()}
    if any(software.values()):
        prov["software"] = _one_or_each(software)
    settings = {s: portable_settings(d.get("settings") or {}, out) for s, d in summaries.items()}
    models = {s: v["model"] for s, v in settings.items() if v.get("model") is not None}
    if models:
        prov["model"] = _one_or_each(models)
    datasets = {
        s: {
            k: str((v or {}).get("URL", ""))
            for k, v in ((d.get("inputs") or {}).get("datasets") or {}).items()
        }
        for s, d in summaries.items()
    }
    if any(datasets.values()):
        prov["datasets"] = _one_or_each(datasets)
    commands = {
        s: portable_command(str(d["command"]), out)
        for s, d in summaries.items()
        if d.get("command")
    }
    if commands:
        prov["command"] = _one_or_each(commands)
    if settings:
        keys = list(dict.fromkeys(k for v in settings.values() for k in v if k != "model"))
        prov["settings"] = {
            k: _one_or_each({s: v.get(k) for s, v in settings.items()}) for k in keys
        }
    prov["participants"] = ", ".join(f"sub-{s}" for s in subjects)
    return prov


def provenance_html(provenance: Mapping[str, Any], base: Path, root: Path | None = None) -> str:
    """The Provenance section: the main items, the command(s), the settings, the methods text."""
    prov = dict(provenance or {})
    command = prov.pop("command", None)
    settings = prov.pop("settings", None)
    items = [(escape(k.capitalize()), value_html(v)) for k, v in flatten(prov)]
    methods = (root or base) / METHODS_TEXT
    if methods.is_file():
        href = escape(relative_url(methods, base))
        items.append(("Methods text", f'<a href="{href}">{escape(METHODS_TEXT)}</a>'))
    parts = [definition_list(items)]
    if isinstance(command, Mapping):
        text = "\n".join(f"{k}: {v}" for k, v in command.items())
        parts.append(f"<h3>Command (participant level)</h3><pre>{escape(text)}</pre>")
    elif command:
        parts.append(f"<h3>Command</h3><pre>{escape(command)}</pre>")
    if isinstance(settings, Mapping) and settings:
        rows = [[escape(k), (value_html(v), "text")] for k, v in flatten(settings)]
        table = html_table(["Setting", "Value"], rows, id_="settings-table", cls="kv")
        parts.append("<h3>Settings</h3>" + wrap_table(table))
    return "\n".join(parts)
