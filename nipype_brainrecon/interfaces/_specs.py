"""Trait helpers shared by the interfaces' input specs."""

from __future__ import annotations

from typing import Any


def default_first(default: Any, *choices: Any) -> tuple[Any, ...]:
    """``choices`` with ``default`` first: ``traits.Enum`` takes its first value as default.

    >>> default_first("ols", "ols", "ar1")
    ('ols', 'ar1')
    >>> default_first("ar1", "ols", "ar1")
    ('ar1', 'ols')
    """
    return (default, *(c for c in choices if c != default))
