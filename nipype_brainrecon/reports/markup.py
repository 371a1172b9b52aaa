"""Text for the pages: escaping, number formatting, links and setting values.

Every helper returns escaped HTML text (or a URL to escape in an attribute); the templates
(:mod:`.layout`) insert it as is.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

__all__ = [
    "MISSING",
    "data_uri",
    "escape",
    "file_url",
    "flatten",
    "format_value",
    "is_inside",
    "is_missing",
    "linkify",
    "relative_url",
    "value_html",
]

#: A missing value in a table cell.
MISSING = '<span class="na">&mdash;</span>'


def escape(value: Any) -> str:
    """Escape any value for HTML text or a quoted attribute.

    Examples
    --------
    >>> escape('<a href="x">R&D</a>')
    '&lt;a href=&quot;x&quot;&gt;R&amp;D&lt;/a&gt;'
    """
    return html.escape(str(value), quote=True)


def is_missing(value: Any) -> bool:
    """Whether ``value`` is None or NaN (a list or string is not missing)."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def format_value(value: Any, digits: int = 3) -> str:
    """A number for a table cell (escaped): ints as is, floats to ``digits``, missing as a dash.

    Examples
    --------
    >>> format_value(3), format_value(0.12345), format_value(True), format_value("a<b")
    ('3', '0.123', 'true', 'a&lt;b')
    """
    if is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return escape(str(bool(value)).lower())
    if isinstance(value, (int, np.integer)):
        return escape(int(value))
    if isinstance(value, (float, np.floating)):
        return escape(f"{float(value):.{digits}f}")
    return escape(value)


def is_inside(path: Path, base: Path) -> bool:
    """Whether ``path`` is inside the folder ``base``."""
    try:
        rel = os.path.relpath(path, base)
    except ValueError:  # another drive
        return False
    return not (rel == ".." or rel.startswith(".." + os.sep))


def relative_url(path: str | os.PathLike, base: Path) -> str:
    """URL of ``path`` relative to the folder ``base`` (the page's), percent-encoded."""
    rel = os.path.relpath(os.path.abspath(path), base)
    return quote(rel.replace(os.sep, "/"))


def file_url(path: str | os.PathLike, base: Path) -> str:
    """A link to a file: relative when inside the page's folder, else an absolute file URI."""
    path = Path(os.path.abspath(path))
    return relative_url(path, base) if is_inside(path, base) else path.as_uri()


def data_uri(data: bytes, mime: str) -> str:
    """``data:`` URI of ``data`` (base64)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested mappings as ``(dotted key, value)`` pairs, in order; empty mappings are values.

    Examples
    --------
    >>> flatten({"a": 1, "b": {"c": 2, "d": {}}})
    [('a', 1), ('b.c', 2), ('b.d', {})]
    """
    out: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


def value_html(value: Any) -> str:
    """Any setting's value as escaped text; lists and mappings as compact JSON."""
    if isinstance(value, (Mapping, list, tuple)):
        return f"<code>{escape(json.dumps(value, default=str, sort_keys=False))}</code>"
    if isinstance(value, (float, np.floating)) and not is_missing(value):
        return escape(f"{float(value):g}")
    if is_missing(value):
        return MISSING
    return escape(value)


_PATH_RE = re.compile(r"(?<![\w:/.])(/[^\s\"'<>`]+)")


def linkify(text: str, base: Path) -> str:
    """Escape ``text`` and link every absolute path in it that names an existing file."""
    out, last = [], 0
    for match in _PATH_RE.finditer(text):
        token = match.group(1).rstrip(".,;:)]}")
        if not os.path.isfile(token):
            continue
        start = match.start(1)
        out.append(escape(text[last:start]))
        out.append(f'<a href="{escape(file_url(token, base))}">{escape(token)}</a>')
        last = start + len(token)
    out.append(escape(text[last:]))
    return "".join(out)
