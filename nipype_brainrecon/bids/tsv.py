"""BIDS tab-separated tables: :func:`read_tsv`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError, MissingInputError


def read_tsv(path: Path, what: str, dtype: Any = str) -> Any:
    """A BIDS TSV (``n/a`` = missing) as a DataFrame; absent or unparsable files raise."""
    import pandas as pd

    try:
        return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, dtype=dtype)
    except FileNotFoundError as exc:
        raise MissingInputError(f"{path}: {what} not found") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())  # one line: pandas' messages end in a newline
        raise DataError(f"{path}: cannot be read as a tab-separated {what} ({reason})") from exc
