"""Errors users can act on, each carrying its BIDS Apps exit code.

Every message names the file (or option) at fault and, where one exists, the fix.
The command-line tools print ``str(error)`` on one line and exit with ``error.exit_code``.
"""

from __future__ import annotations

#: Exit codes of the BIDS Apps execution specification (sysexits-style).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID_BIDS = 16
EXIT_USAGE = 64
EXIT_DATA = 65
EXIT_NO_INPUT = 66
EXIT_CANT_CREATE = 73


class BrainreconError(Exception):
    """Base class of the errors a user can fix; ``exit_code`` is what the CLI returns."""

    exit_code = EXIT_FAILURE


class UsageError(BrainreconError, ValueError):
    """A command-line option or function argument has a value we cannot use."""

    exit_code = EXIT_USAGE


class InvalidDatasetError(BrainreconError):
    """The input is not a valid BIDS dataset (or derivatives dataset)."""

    exit_code = EXIT_INVALID_BIDS


class DataError(BrainreconError, ValueError):
    """An input file exists but its content is wrong (bad columns, grids, values)."""

    exit_code = EXIT_DATA


class MissingInputError(BrainreconError, FileNotFoundError):
    """A file or folder the run needs is absent."""

    exit_code = EXIT_NO_INPUT


class OutputError(BrainreconError, OSError):
    """The output cannot be created where asked (inside the input, unwritable, exists)."""

    exit_code = EXIT_CANT_CREATE
