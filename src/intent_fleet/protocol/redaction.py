"""URLs fit for a log line, an error or a condition message: never with their password.

A database URL (``--db-file``) or a URL an IntentWorker names may carry ``user:password@``.
Whatever prints such a URL passes it through :func:`redact_url` first.
"""

from __future__ import annotations

__all__ = ["redact_url"]


def redact_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` replaced by ``***``.

    The user name stays (it tells which account was used). The split is made at the last
    ``@``, as a password may hold one unescaped; a URL that is no URL comes back as it was.
    """
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
