"""The Intent Protocol as a library: everything needed to talk to a bus, nothing else.

What belongs here: the limits of the wire that the bus enforces and the clients check
(``limits``); the strict wire models (``models``); request signing (``signing``); finding the
API key and reading any secret file (``credentials``); the trust an ``https://`` server is
verified with (``tls``); the one HTTP seam (``transport``) and the async clients built on it
(``client``, ``admin_client``); retry timing (``retry``); the exception tree (``errors``).

And what every package beside it shares, so that each rule has one home: the JSON type checks
and field readers for untrusted JSON (``checks``, ``fields``), the one way a dataclass reports
what is wrong with it (``checked``), client settings (``settings``), the injected clock
(``clock``) and URLs with their password hidden (``redaction``).

This is the bottom layer: it imports no other intent-fleet package and never the HTTP server
library, so the bus, the sidecar and the operator can all depend on it.
"""

from .admin_client import AdminClient
from .checked import Problems, validate
from .checks import is_int, is_number, json_kind
from .client import BusClient, ClaimOutcome
from .clock import Clock, Now, Sleep
from .credentials import read_key_file, read_secret_file, resolve_api_key
from .errors import (
    IntentBusAuthError,
    IntentBusConflictError,
    IntentBusError,
    IntentBusLeaseLostError,
    IntentBusNetworkError,
    IntentBusNotFoundError,
    IntentBusProtocolError,
    IntentBusRateLimitError,
    IntentBusServerError,
    InvalidSettingError,
    Problem,
    SecretFileError,
)
from .fields import ErrorFor, integer_field, number_field, object_field, text_field
from .models import (
    Ack,
    BusStats,
    ClaimedIntent,
    DeadLetter,
    GoalStats,
    Health,
    IntentResult,
    IntentStatus,
    KeyInfo,
    KvValue,
    ProtocolVersion,
    PublishReceipt,
)
from .redaction import redact_url
from .retry import RetryPolicy, parse_retry_after
from .settings import DEFAULT_BUS_URL, ClientSettings
from .signing import (
    SignedHeaders,
    canonical_body,
    canonical_path,
    canonical_query,
    compute_signature,
    sign_request,
    signatures_match,
)
from .tls import ca_file_problems, trust_context

__all__ = [
    "DEFAULT_BUS_URL",
    "Ack",
    "AdminClient",
    "BusClient",
    "BusStats",
    "ClaimOutcome",
    "ClaimedIntent",
    "ClientSettings",
    "Clock",
    "DeadLetter",
    "ErrorFor",
    "GoalStats",
    "Health",
    "IntentBusAuthError",
    "IntentBusConflictError",
    "IntentBusError",
    "IntentBusLeaseLostError",
    "IntentBusNetworkError",
    "IntentBusNotFoundError",
    "IntentBusProtocolError",
    "IntentBusRateLimitError",
    "IntentBusServerError",
    "IntentResult",
    "IntentStatus",
    "InvalidSettingError",
    "KeyInfo",
    "KvValue",
    "Now",
    "Problem",
    "Problems",
    "ProtocolVersion",
    "PublishReceipt",
    "RetryPolicy",
    "SecretFileError",
    "SignedHeaders",
    "Sleep",
    "ca_file_problems",
    "canonical_body",
    "canonical_path",
    "canonical_query",
    "compute_signature",
    "integer_field",
    "is_int",
    "is_number",
    "json_kind",
    "number_field",
    "object_field",
    "parse_retry_after",
    "read_key_file",
    "read_secret_file",
    "redact_url",
    "resolve_api_key",
    "sign_request",
    "signatures_match",
    "text_field",
    "trust_context",
    "validate",
]
