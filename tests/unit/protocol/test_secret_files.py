"""Every file that holds a secret is read one way: stripped, and refused (naming what it
should hold and the file, never its content) when it cannot serve."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from intent_fleet.cli.errors import UsageError
from intent_fleet.cli.flags import secret_file
from intent_fleet.protocol import SecretFileError, read_secret_file

UID = os.getuid()
SECRET = "adm_value_that_must_never_be_shown"


def write(path: Path, content: str | bytes, mode: int = 0o600) -> Path:
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    path.chmod(mode)
    return path


def test_the_secret_is_stripped(tmp_path: Path) -> None:
    path = write(tmp_path / "admin-secret", f"  {SECRET}\n\n")
    assert read_secret_file(path, what="admin secret") == SECRET


@pytest.mark.parametrize("content", ["", "\n", "  \t\n  "])
def test_an_empty_file_is_refused_naming_what_and_the_file(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "db-url", content)
    with pytest.raises(SecretFileError) as caught:
        read_secret_file(path, what="database URL")
    assert str(caught.value) == f"database URL file {path} is empty."


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "not a regular file"),
        (os.mkfifo, "not a regular file"),
        (lambda p: write(p, b"\xff\xfe\x00"), "not UTF-8"),
        (lambda p: write(p, "x" * (64 * 1024 + 1)), "too large"),
    ],
)
def test_a_file_that_cannot_serve_is_refused_by_name(
    tmp_path: Path, make: Callable[[Path], object], says: str
) -> None:
    path = tmp_path / "metrics-token"
    make(path)
    with pytest.raises(SecretFileError) as caught:
        read_secret_file(path, what="metrics token")
    message = str(caught.value)
    assert says in message
    assert "metrics token file" in message
    assert str(path) in message


def test_a_mounted_secret_may_be_a_symlink_a_users_own_file_may_not(tmp_path: Path) -> None:
    real = write(tmp_path / "..data-api-key", SECRET)
    link = tmp_path / "api-key"
    link.symlink_to(real)
    assert read_secret_file(link, what="API key") == SECRET
    with pytest.raises(SecretFileError, match="it is a symlink"):
        read_secret_file(link, what="API key", allow_symlinks=False)


def test_ownership_and_permissions_are_checked_for_a_users_own_file_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "key", SECRET, mode=0o640)
    with pytest.raises(SecretFileError, match=f"owned by uid {UID}, not by uid {UID + 1}"):
        read_secret_file(path, what="API key", uid=UID + 1)
    with caplog.at_level(logging.WARNING):
        # A mounted Secret's mode is the pod spec's (0440 in the chart): nothing to warn about.
        assert read_secret_file(path, what="API key") == SECRET
        assert not caplog.records
        assert read_secret_file(path, what="API key", uid=UID) == SECRET
    (warning,) = caplog.records
    assert "chmod 600" in warning.getMessage()
    assert SECRET not in caplog.text


def test_the_cli_reports_a_secret_file_as_a_usage_error(tmp_path: Path) -> None:
    path = write(tmp_path / "admin-secret", "")
    with pytest.raises(UsageError, match=r"admin secret file .*admin-secret is empty"):
        secret_file(path, "admin secret")
    assert secret_file(write(path, SECRET), "admin secret") == SECRET
