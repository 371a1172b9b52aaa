"""fMRIPrep's ``--bids-filter-file``: :func:`read_bids_filters` and :func:`matches_filters`.

The file is fMRIPrep's JSON: one object per query, each holding BIDS entities::

    {"bold": {"session": "01", "task": "vision", "run": [1, 2]},
     "t1w": {"session": "01"}}

Only the ``bold`` entry applies here (which BOLD runs to analyse); the other queries fMRIPrep knows
are accepted, so the file given to fMRIPrep can be reused, and ignored. A value is a label, a list
of labels (any of them), ``null`` (the entity must be absent) or ``"*"`` (any value, present).
Numbers compare as numbers (``"run": 1`` matches ``run-01``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import MissingInputError, UsageError

#: fMRIPrep's queries (accepted; only ``bold`` selects anything here).
FMRIPREP_QUERIES = frozenset(
    {"bold", "sbref", "fmap", "t1w", "t2w", "flair", "roi", "dwi", "pet", "asl", "t2star"}
)
#: Entities a ``bold`` filter may hold (pybids names), and the fixed ones fMRIPrep's defaults
#: write (accepted when they name BOLD series).
BOLD_ENTITIES = (
    "session",
    "task",
    "acquisition",
    "ceagent",
    "reconstruction",
    "direction",
    "run",
    "echo",
    "part",
)
_FIXED = {"datatype": "func", "suffix": "bold"}


def read_bids_filters(path: str | Path) -> dict[str, Any]:
    """The ``bold`` entities of an fMRIPrep BIDS filter file (``{}`` when it has none).

    Raises
    ------
    MissingInputError
        The file is absent.
    UsageError
        Not JSON, not an object of objects, an unknown query or entity, a value that is not a
        label, a list of labels or null.
    """
    path = Path(path).absolute()
    option = f"{path} (--bids-filter-file)"
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise MissingInputError(f"{option}: file not found") from exc
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise UsageError(f"{option}: not valid JSON ({reason}); fix the file") from exc
    return bold_filters(content, option)


def bold_filters(content: Any, option: str = "--bids-filter-file") -> dict[str, Any]:
    """The ``bold`` entities of fMRIPrep's filters given as a dict (checked as in a file)."""
    if not isinstance(content, dict) or not all(isinstance(v, dict) for v in content.values()):
        raise UsageError(
            f'{option}: expected an object of queries, e.g. {{"bold": {{"session": "01"}}}}'
        )
    unknown = sorted(set(content) - FMRIPREP_QUERIES)
    if unknown:
        raise UsageError(
            f"{option}: unknown query {', '.join(map(repr, unknown))}; use fMRIPrep's "
            f"({', '.join(sorted(FMRIPREP_QUERIES))}); only 'bold' selects runs here"
        )
    bold = dict(content.get("bold", {}))
    for key, value in bold.items():
        if key in _FIXED:
            if value != _FIXED[key]:
                raise UsageError(
                    f"{option}: bold {key} {value!r} does not name BOLD series; "
                    f"write {_FIXED[key]!r} or leave it out"
                )
            continue
        if key not in BOLD_ENTITIES:
            raise UsageError(
                f"{option}: unknown bold entity {key!r}; use {', '.join(BOLD_ENTITIES)}"
            )
        values = value if isinstance(value, list) else [value]
        if not values or not all(v is None or isinstance(v, str | int) for v in values):
            raise UsageError(
                f"{option}: bold {key} {value!r}: give a label, a list of labels or null"
            )
    return {k: v for k, v in bold.items() if k not in _FIXED}


def _same(label: Any, wanted: Any) -> bool:
    if wanted == "*":
        return label is not None
    if wanted is None or label is None:
        return wanted is None and label is None
    text, other = str(label), str(wanted)
    if text.isdigit() and other.isdigit():
        return int(text) == int(other)
    return text == other


def matches_filters(entities: dict[str, Any], filters: dict[str, Any]) -> bool:
    """Whether a file's pybids entities satisfy the ``bold`` filters.

    >>> matches_filters({"session": "01", "run": 2}, {"session": "01", "run": ["1", "02"]})
    True
    >>> matches_filters({"task": "vision"}, {"session": None, "task": "rest"})
    False
    """
    for key, wanted in filters.items():
        label = entities.get(key)
        options = wanted if isinstance(wanted, list) else [wanted]
        if not any(_same(label, option) for option in options):
            return False
    return True


def describe_filters(filters: dict[str, Any]) -> str:
    """The filters as one short JSON text, for messages."""
    return json.dumps({"bold": filters}, sort_keys=True)
