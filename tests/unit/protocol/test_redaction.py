"""URLs as logs and conditions show them: the password never, the rest as it was."""

from __future__ import annotations

import pytest

from intent_fleet.protocol import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bus:s3cret@db:5432/bus", "postgresql://bus:***@db:5432/bus"),
        ("postgresql://bus:p@ss:w@rd@db/bus", "postgresql://bus:***@db/bus"),
        ("postgresql://bus@db/bus", "postgresql://bus@db/bus"),
        ("postgresql://db/bus", "postgresql://db/bus"),
        (
            "https://scraper:tok/en@prom.example:9090/metrics",
            "https://scraper:***@prom.example:9090/metrics",
        ),
        ("http://[fd00::1]:9090", "http://[fd00::1]:9090"),
        ("http://u:pw@[fd00::1]:9090/x", "http://u:***@[fd00::1]:9090/x"),
        ("not a url", "not a url"),
        ("http://[broken", "http://[broken"),
        ("", ""),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("secret", ["s3cret", "p@ss", "a:b", "x/y"])
def test_no_password_survives(secret: str) -> None:
    assert secret not in redact_url(f"postgresql://bus:{secret}@db/bus")
