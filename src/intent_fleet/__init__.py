"""intent-fleet: autoscaled, polyglot worker fleets for the Intent Bus.

Subpackages, top layer first (checked by import-linter, see pyproject.toml):

- ``cli``: the ``intent-fleet`` command; it wires the packages below together.
- ``bus``: a durable Intent Bus server speaking protocol v1.1 and v2.1.
- ``sidecar``: claims intents for a handler, keeps leases, serves the handler's local API.
- ``operator``: the IntentWorker operator (renders, owns and autoscales worker Deployments).
- ``protocol``: credentials, signing, wire models, errors and the async bus client.
- ``telemetry``: the metrics registry and the Prometheus text the processes serve.

``bus``, ``sidecar`` and ``operator`` never import each other; ``protocol`` and ``telemetry``
import none of the others.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
