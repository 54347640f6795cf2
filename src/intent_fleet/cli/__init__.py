"""The ``intent-fleet`` command: argument parsing, process set-up, output.

What belongs here: one module per command group, the JSON-lines logging set-up,
and the CLI's own errors. Business logic lives in the packages below
(``bus``, ``sidecar``, ``protocol``); commands only wire settings and print results.
The entry point is :func:`intent_fleet.cli.main.main`.
"""

__all__: list[str] = []
