"""``intent-fleet``: the single command-line entry point."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from intent_fleet import __version__

from . import (
    bus_command,
    client_commands,
    demo,
    flags,
    operator_command,
    run_command,
    sidecar_command,
)
from .errors import CliError
from .logs import configure_logging

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intent-fleet",
        description="Autoscaled, polyglot worker fleets for the Intent Bus.",
    )
    parser.add_argument("--version", action="version", version=f"intent-fleet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bus_command.add_parser(sub)
    sidecar_command.add_parser(sub)
    operator_command.add_parser(sub)
    run_command.add_parser(sub)
    client_commands.add_parsers(sub)
    demo.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        flags.resolve(args, os.environ)
        # Every command declares --log-level (INTENT_LOG_LEVEL), checked by resolve().
        configure_logging(args.log_level)
        code: int = args.func(args)
    except CliError as exc:
        print(f"intent-fleet {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
