"""The CLI's exceptions.

::

    CliError            base; printed as one line on stderr
    ├── UsageError      bad flags or environment: exit code 2
    └── BusCommandError a client command the bus answered with an error: the exit code
                        says which (client_commands.EXIT_CODES)
"""

from __future__ import annotations

__all__ = ["BusCommandError", "CliError", "UsageError"]


class CliError(Exception):
    """Printed on stderr; exit code ``exit_code``."""

    exit_code = 1


class UsageError(CliError):
    exit_code = 2


class BusCommandError(CliError):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
