"""User-facing errors.

Anything the user can fix (bad path, malformed CSV, missing package) raises an
:class:`EdgeAffectError`; the CLI prints its message as one line and exits 1.
Everything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class EdgeAffectError(Exception):
    """An error whose message is a complete, actionable one-line explanation."""


class DataError(EdgeAffectError):
    """A dataset file is missing, unreadable or malformed."""


class MissingDependencyError(EdgeAffectError):
    """An optional package is not installed; the message names the pip extra."""

    def __init__(self, package: str, extra: str, purpose: str = ""):
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"'{package}' is needed{what} but is not installed: pip install 'edgeaffect[{extra}]'"
        )
        self.package = package
        self.extra = extra
