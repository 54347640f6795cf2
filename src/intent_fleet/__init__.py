"""intent-fleet: autoscaled, polyglot worker fleets for the Intent Bus.

Subpackages, top layer first (checked by import-linter, see pyproject.toml):

- ``cli``: the ``intent-fleet`` command.
- ``bus``: a durable Intent Bus server speaking protocol v1.1 and v2.1.
- ``protocol``: credentials, signing, wire models, errors and the async bus client.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
