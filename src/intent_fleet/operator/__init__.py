"""The IntentWorker operator: renders, owns and autoscales one worker Deployment per resource.

Pure modules (scaling, rendering, status) hold the logic and are unit-tested without a cluster;
the kopf handlers that call them stay thin.
"""

from .errors import BacklogUnavailableError, InvalidSpecError, OperatorError
from .scaling import Decision, Observation, ScalingPolicy, ScalingState, decide

__all__ = [
    "BacklogUnavailableError",
    "Decision",
    "InvalidSpecError",
    "Observation",
    "OperatorError",
    "ScalingPolicy",
    "ScalingState",
    "decide",
]
