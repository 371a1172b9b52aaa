"""Which rows of an events table are trials, and which image each shows: :class:`EventsSpec`.

A dataset's events need not have a ``stim_file`` column. :class:`EventsSpec` says

- which column names the stimulus (``stim_column``, default ``stim_file``),
- how its values become files under ``stimuli/``: as written (default), through a table
  (``stim_map``: a TSV with columns ``value`` and ``stim_file``) or through a format string
  (``stim_template``, e.g. ``"img_{value:04d}.png"``),
- which rows are trials (``trial_filter``: a pandas ``DataFrame.query`` expression).

A row is a trial when the filter selects it and its stimulus value is not ``n/a``. Other rows are
kept: the GLM models them as nuisance events, one regressor per ``trial_type``.
:func:`map_events` applies a spec to a table; the BIDS reader (:func:`.tables.read_events`) and
the GLM (:func:`nipype_brainrecon.glm.load_events`) both call it, so they agree on the trials.

Numbers compare as numbers: an events value ``7`` (or ``7.0``, or ``007``) matches a map row
``7``, and a template receives it as the integer 7 (``"{value:03d}"`` writes ``007``).
"""

from __future__ import annotations

import ast
import math
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError, MissingInputError, UsageError
from .tsv import read_tsv

#: The column naming each event's image when none is chosen (the layout this package documents).
STIM_COLUMN = "stim_file"

_INTEGER = re.compile(r"^[+-]?\d+$")
_BACKTICKED = re.compile(r"`[^`]*`")


@dataclass(frozen=True)
class EventsSpec:
    """How an events table names its trials' images (see the module docstring).

    Parameters
    ----------
    stim_column : str
        The column holding each event's stimulus (a file under ``stimuli/`` or an id).
    stim_map : path, optional
        A TSV with columns ``value`` and ``stim_file`` mapping the column's values to files under
        ``stimuli/``.
    stim_template : str, optional
        A format string with one field ``{value}`` making a file name of each value.
    trial_filter : str, optional
        A pandas ``DataFrame.query`` expression choosing the rows that are trials.

    Raises
    ------
    UsageError
        Both a map and a template; a template without ``{value}`` or malformed; a filter that is
        not an expression.
    MissingInputError
        ``stim_map`` is absent.

    Examples
    --------
    >>> EventsSpec().is_default
    True
    >>> EventsSpec("stimulus_id", stim_template="img_{value:04d}.png").file_name(7)
    'img_0007.png'
    """

    stim_column: str = STIM_COLUMN
    stim_map: Path | None = None
    stim_template: str | None = None
    trial_filter: str | None = None

    def __post_init__(self) -> None:
        if not str(self.stim_column).strip():
            raise UsageError("stim_column/--stim-column '': name a column of the events tables")
        if self.stim_map is not None:
            path = Path(self.stim_map).absolute()
            object.__setattr__(self, "stim_map", path)
            if not path.is_file():
                raise MissingInputError(
                    f"{path}: stimulus map (stim_map/--stim-map) not found; give a TSV with "
                    "columns value, stim_file"
                )
        if self.stim_map is not None and self.stim_template is not None:
            raise UsageError(
                "--stim-map and --stim-template: give one way of naming the images, not both"
            )
        if self.stim_template is not None:
            _check_template(self.stim_template)
        if self.trial_filter is not None:
            _check_filter(self.trial_filter)

    @property
    def is_default(self) -> bool:
        """True when the events are read as written: ``stim_file``, every row with one a trial."""
        return self == EventsSpec()

    def inputs(self) -> dict[str, str]:
        """The settings that differ from the default, as strings (for Nipype node inputs)."""
        values = {
            "stim_column": self.stim_column if self.stim_column != STIM_COLUMN else None,
            "stim_map": str(self.stim_map) if self.stim_map is not None else None,
            "stim_template": self.stim_template,
            "trial_filter": self.trial_filter,
        }
        return {key: value for key, value in values.items() if value is not None}

    def file_name(self, value: Any) -> str:
        """``stim_template`` applied to one value (numbers passed as numbers)."""
        assert self.stim_template is not None
        return self.stim_template.format(value=_template_value(value))


def _check_template(template: str) -> None:
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise UsageError(
            f"--stim-template {template!r}: not a format string ({exc}); "
            "write e.g. 'img_{value:04d}.png'"
        ) from exc
    if not fields or any(name != "value" for name in fields):
        raise UsageError(
            f"--stim-template {template!r}: use the one field {{value}} (e.g. "
            "'img_{value:04d}.png'); other fields are not known"
        )


def _check_filter(expression: str) -> None:
    """A Python expression once backticked column names are replaced (pandas query syntax)."""
    text = _BACKTICKED.sub("_column", str(expression)).strip()
    try:
        ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise UsageError(
            f"--trial-filter {expression!r}: not a pandas query expression ({exc.msg}); write "
            "e.g. \"trial_type == 'image'\" (== compares; quote text; `name` for odd columns)"
        ) from exc


def value_key(value: Any) -> str:
    """The text a stimulus value is matched by: integers without padding, other numbers as
    Python writes them, text stripped.

    >>> value_key("007"), value_key(7.0), value_key(" a1 "), value_key("2.50")
    ('7', '7', 'a1', '2.5')
    """
    text = str(value).strip()
    if _INTEGER.match(text):
        return str(int(text))
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return str(int(number)) if number.is_integer() else repr(number)


def _template_value(value: Any) -> Any:
    key = value_key(value)
    if _INTEGER.match(key):
        return int(key)
    try:
        return float(key)
    except ValueError:
        return key


def read_stim_map(path: Path) -> dict[str, str]:
    """A stimulus map (``value``, ``stim_file``) as ``{value_key: stim_file entry}``.

    Raises
    ------
    DataError
        A column missing, a row with ``n/a``, one value mapped to two files.
    """
    table = read_tsv(path, "stimulus map", dtype=str)
    missing = [c for c in ("value", "stim_file") if c not in table.columns]
    if missing:
        raise DataError(
            f"{path}: stimulus map lacks column(s) {', '.join(missing)}; it needs value, stim_file "
            f"(it has {', '.join(map(str, table.columns))})"
        )
    mapping: dict[str, str] = {}
    for row, (value, entry) in enumerate(zip(table["value"], table["stim_file"], strict=True)):
        if not isinstance(value, str) or not isinstance(entry, str) or not entry.strip():
            raise DataError(f"{path}: row {row + 1} has an empty value or stim_file; fill it")
        key = value_key(value)
        if mapping.get(key, entry.strip()) != entry.strip():
            raise DataError(
                f"{path}: value {value!r} maps to both {mapping[key]!r} and {entry.strip()!r}; "
                "keep one row per value"
            )
        mapping[key] = entry.strip()
    return mapping


def _typed(table: Any) -> Any:
    """The table with text columns holding only numbers (or n/a) turned into numbers."""
    import pandas as pd

    view = table.copy()
    for column in view.columns:
        if not (
            pd.api.types.is_numeric_dtype(view[column]) or pd.api.types.is_bool_dtype(view[column])
        ):
            values = view[column]
            text = values.astype(str).str.strip()
            missing = (values.isna() | text.isin(["", "n/a"])).to_numpy()
            numbers = pd.to_numeric(values.where(~missing), errors="coerce")
            if (numbers.notna().to_numpy() == ~missing).all():
                view[column] = numbers
    return view


def select_trials(table: Any, expression: str, source: Any) -> Any:
    """The boolean mask of the rows ``expression`` selects (pandas query syntax).

    Raises
    ------
    DataError
        The expression names a column the table lacks.
    UsageError
        It cannot be evaluated on the table, or does not give one True/False per row.
    """
    import numpy as np
    import pandas as pd

    columns = ", ".join(map(str, table.columns))
    try:
        result = _typed(table).eval(expression, engine="python")
    except pd.errors.UndefinedVariableError as exc:
        raise DataError(
            f"{source}: --trial-filter {expression!r} names a column this events table lacks "
            f"({exc}; it has {columns}); fix the filter or the table"
        ) from exc
    except Exception as exc:  # pandas raises many types for an expression it cannot evaluate
        reason = " ".join(str(exc).split())
        raise UsageError(
            f"--trial-filter {expression!r}: cannot be evaluated on {source} ({reason}); write "
            "a comparison of its columns, e.g. \"trial_type == 'image'\""
        ) from exc
    if not (
        isinstance(result, pd.Series) and result.dtype == bool and result.index.equals(table.index)
    ):
        raise UsageError(
            f"--trial-filter {expression!r}: does not give True or False for each row of "
            f"{source}; write a comparison, e.g. \"trial_type == 'image'\""
        )
    return np.asarray(result, dtype=bool)


def map_events(table: Any, spec: EventsSpec, source: Any) -> Any:
    """A copy of an events table whose ``stim_file`` column names each trial's image.

    Parameters
    ----------
    table : pandas.DataFrame
        The events as read (``n/a`` already missing).
    spec : EventsSpec
        The stimulus column, its mapping and the trial filter.
    source : path or str
        The events file, for messages.

    Returns
    -------
    pandas.DataFrame
        ``stim_file`` holds, for each trial, its entry relative to ``stimuli/`` (the value, the
        map's ``stim_file`` or the template's file name); ``None`` for rows that are not trials.
        Other columns as given (``spec.stim_column`` is replaced only when it is ``stim_file``).

    Raises
    ------
    DataError
        The column is absent; no row is a trial; a value absent from the map or not fitting the
        template.
    UsageError
        The filter cannot be evaluated (see :func:`select_trials`).
    """
    import pandas as pd

    column = spec.stim_column
    if column not in table.columns:
        raise DataError(
            f"{source}: no stimulus column {column!r} (its columns: "
            f"{', '.join(map(str, table.columns))}); choose one with --stim-column"
        )
    values = table[column]
    text = values.astype(str).str.strip()
    present = (values.notna() & (text != "") & (text != "n/a")).to_numpy()
    trials = present
    if spec.trial_filter is not None:
        trials = present & select_trials(table, spec.trial_filter, source)
    if not trials.any():
        chosen = f" that --trial-filter {spec.trial_filter!r} selects" if spec.trial_filter else ""
        raise DataError(
            f"{source}: no row{chosen} has a {column}; nothing is a trial "
            f"({len(table)} rows, {int(present.sum())} with a {column}); fix the filter or "
            "the stimulus column"
        )
    mapping = read_stim_map(spec.stim_map) if spec.stim_map is not None else None
    entries = [
        _entry(value, spec, source, mapping) if trial else None
        for value, trial in zip(values, trials, strict=True)
    ]
    out = table.copy()
    out[STIM_COLUMN] = pd.Series(entries, index=table.index, dtype=object)
    return out


def _entry(value: Any, spec: EventsSpec, source: Any, mapping: dict[str, str] | None) -> str:
    """One trial's ``stim_file`` entry."""
    if spec.stim_template is not None:
        try:
            return spec.file_name(value)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise DataError(
                f"{source}: {spec.stim_column} value {value!r} does not fit --stim-template "
                f"{spec.stim_template!r} ({exc}); fix the template or the value"
            ) from exc
    if mapping is None:
        return str(value).strip()
    key = value_key(value)
    if key not in mapping:
        raise DataError(
            f"{spec.stim_map}: no row for value {value!r} ({spec.stim_column} of {source}); "
            "add a row value, stim_file for it"
        )
    return mapping[key]
