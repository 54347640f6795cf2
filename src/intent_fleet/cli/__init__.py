"""The ``intent-fleet`` command: argument parsing, process set-up, output.

What belongs here: one module per command group, the JSON-lines logging set-up,
and the CLI's own errors. Business logic lives in the packages below
(``bus``, ``protocol``); commands only wire settings and print results.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
