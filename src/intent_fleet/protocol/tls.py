"""What an ``https://`` server is verified against: the system's trust store, or a CA file.

The clients of a bus (``ClientSettings.ca_file``) and the operator's reads of the URLs an
IntentWorker names (``OperatorSettings.bus_ca_file``) both build their context here, so both
refuse a CA file they cannot use in the same words, when their settings are built.
"""

from __future__ import annotations

import ssl

from .checked import Problems
from .errors import InvalidSettingError, Problem

__all__ = ["ca_file_problems", "trust_context"]


def trust_context(ca_file: str | None, *, setting: str) -> ssl.SSLContext | bool:
    """``True`` (the system's trust store) without ``ca_file``, else a context that trusts the
    file's CA certificates (and still checks host names).

    Raises :class:`InvalidSettingError` under ``setting`` when the file cannot be read or holds
    no PEM certificate.
    """
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidSettingError(
            [Problem(setting, f"is not a readable PEM CA file ({ca_file}): {exc}")]
        ) from None


def ca_file_problems(name: str, ca_file: str | None) -> Problems:
    """The ``problems()`` of a settings field ``name`` that holds a CA file: a file that cannot
    serve is reported when the settings are built, not at the first request."""
    try:
        trust_context(ca_file, setting=name)
    except InvalidSettingError as bad:
        yield name, bad.problems[0].text
