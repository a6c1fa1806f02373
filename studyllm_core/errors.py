"""User-facing errors: each carries a one-line message that names the problem and the fix.

The CLI prints these without a traceback and exits non-zero; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class StudyllmError(Exception):
    """Base of errors a user can cause and fix (bad input, configuration, unreachable services)."""

    exit_code = 2


class ConfigError(StudyllmError):
    """A setting is missing or malformed."""


class InputError(StudyllmError):
    """An input file or argument cannot be used as given."""


class DatabaseError(StudyllmError):
    """The database refused or failed an operation (the message says which and why)."""

    exit_code = 3


class DatabaseUnavailableError(DatabaseError):
    """The database server cannot be reached or started."""


class NotFoundError(StudyllmError):
    """A named object (group, call, artifact) does not exist."""


class IntegrityError(StudyllmError):
    """Stored data failed a check (an artifact's sha256, a missing file)."""
