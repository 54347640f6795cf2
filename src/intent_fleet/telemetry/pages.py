"""A process's own web page: one document with its script and style inline.

The bus's dashboard and the operator's fleet page are each one HTML file, one script and one
style sheet in their package. :func:`inline_page` puts them together and writes the
Content-Security-Policy that lets exactly those two inline blocks run (by their hashes) and
nothing else load, so the page needs nothing from outside (it works offline and inside a
cluster) and a value that reached it as markup could still run nothing. Serving it stays
with each process's own server.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["Page", "inline_page"]

#: Where the HTML names the inline blocks.
STYLE_SLOT = "/*STYLE*/"
SCRIPT_SLOT = "/*SCRIPT*/"


@dataclass(frozen=True)
class Page:
    body: bytes
    headers: dict[str, str]


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@cache
def inline_page(package: str, *, html: str, script: str, style: str) -> Page:
    """The page from ``package``'s resource files, with the headers to serve it with."""
    files = resources.files(package)
    js = (files / script).read_text()
    css = (files / style).read_text()
    document = (files / html).read_text()
    if STYLE_SLOT not in document or SCRIPT_SLOT not in document:
        raise ValueError(f"{html} must hold {STYLE_SLOT} and {SCRIPT_SLOT}")
    body = document.replace(STYLE_SLOT, css).replace(SCRIPT_SLOT, js).encode()
    policy = (
        f"default-src 'none'; script-src {_digest(js)}; style-src {_digest(css)};"
        " connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none';"
        " frame-ancestors 'none'"
    )
    return Page(
        body=body,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": policy,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )
