"""The CLI's exceptions.

::

    CliError            base; printed as one line on stderr
    └── UsageError      bad flags or environment: exit code 2
"""

from __future__ import annotations

__all__ = ["CliError", "UsageError"]


class CliError(Exception):
    """Printed on stderr; exit code ``exit_code``."""

    exit_code = 1


class UsageError(CliError):
    exit_code = 2
