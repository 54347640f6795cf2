"""Every branch of key resolution, with the environment and uid injected."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from intent_fleet.protocol import IntentBusAuthError, read_key_file, resolve_api_key

UID = os.getuid()
KEY = "tk_secret_value_that_must_never_be_logged"


def key_file(path: Path, content: str = KEY + "\n", mode: int = 0o600) -> Path:
    path.write_text(content, encoding="utf-8")
    path.chmod(mode)
    return path


def test_explicit_key_wins_and_is_stripped(tmp_path: Path) -> None:
    env = {"INTENT_API_KEY": "from-env", "HOME": str(tmp_path)}
    key_file(tmp_path / ".apikey", "from-file")
    assert resolve_api_key("  explicit \n", environ=env, uid=UID) == "explicit"


def test_empty_explicit_key_is_an_error_not_a_fallback() -> None:
    with pytest.raises(IntentBusAuthError, match="explicitly is empty"):
        resolve_api_key("   ", environ={"INTENT_API_KEY": "from-env"})


def test_environment_variable_is_second(tmp_path: Path) -> None:
    key_file(tmp_path / ".apikey", "from-file")
    env = {"INTENT_API_KEY": "  from-env\n", "HOME": str(tmp_path)}
    assert resolve_api_key(environ=env, uid=UID) == "from-env"


def test_blank_environment_variable_falls_through_to_the_file(tmp_path: Path) -> None:
    key_file(tmp_path / ".apikey", "from-file")
    env = {"INTENT_API_KEY": "  ", "HOME": str(tmp_path)}
    assert resolve_api_key(environ=env, uid=UID) == "from-file"


def test_key_file_named_by_the_environment(tmp_path: Path) -> None:
    path = key_file(tmp_path / "mounted-key")
    env = {"INTENT_API_KEY_FILE": str(path), "HOME": str(tmp_path / "nowhere")}
    assert resolve_api_key(environ=env, uid=UID) == KEY


def test_key_file_parameter_overrides_the_environment_file(tmp_path: Path) -> None:
    chosen = key_file(tmp_path / "chosen", "chosen-key")
    other = key_file(tmp_path / "other", "other-key")
    env = {"INTENT_API_KEY_FILE": str(other)}
    assert resolve_api_key(environ=env, key_file=chosen, uid=UID) == "chosen-key"


def test_default_key_file_is_in_home_from_the_environment(tmp_path: Path) -> None:
    key_file(tmp_path / ".apikey", "  default-key  \n\n")
    assert resolve_api_key(environ={"HOME": str(tmp_path)}, uid=UID) == "default-key"


def test_a_named_key_file_that_is_missing_is_named_in_the_error(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    with pytest.raises(IntentBusAuthError, match="typo does not exist"):
        resolve_api_key(environ={"INTENT_API_KEY_FILE": str(missing)}, uid=UID)


def test_no_key_anywhere_lists_the_three_sources(tmp_path: Path) -> None:
    with pytest.raises(IntentBusAuthError) as caught:
        resolve_api_key(environ={"HOME": str(tmp_path)}, uid=UID)
    message = str(caught.value)
    assert "explicitly" in message
    assert "INTENT_API_KEY" in message
    assert "INTENT_API_KEY_FILE" in message
    assert str(tmp_path / ".apikey") in message


def test_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    real = key_file(tmp_path / "real")
    link = tmp_path / ".apikey"
    link.symlink_to(real)
    with pytest.raises(IntentBusAuthError, match=r"\.apikey: it is a symlink"):
        resolve_api_key(environ={"HOME": str(tmp_path)}, uid=UID)


def test_dangling_symlink_is_refused_not_reported_missing(tmp_path: Path) -> None:
    (tmp_path / ".apikey").symlink_to(tmp_path / "gone")
    with pytest.raises(IntentBusAuthError, match="symlink"):
        resolve_api_key(environ={"HOME": str(tmp_path)}, uid=UID)


def test_mounted_secret_symlinks_are_allowed_when_asked(tmp_path: Path) -> None:
    data = tmp_path / "..data"
    data.mkdir()
    real = key_file(data / "api-key")
    link = tmp_path / "api-key"
    link.symlink_to(real)
    assert read_key_file(link, uid=None, allow_symlinks=True) == KEY


def test_key_file_owned_by_another_uid_is_refused(tmp_path: Path) -> None:
    path = key_file(tmp_path / ".apikey")
    with pytest.raises(IntentBusAuthError, match=f"owned by uid {UID}, not by uid {UID + 1}"):
        resolve_api_key(environ={"HOME": str(tmp_path)}, uid=UID + 1)
    # uid=None skips ownership: what a root-owned mounted Secret needs.
    assert read_key_file(path, uid=None) == KEY


def test_group_readable_key_file_warns_without_logging_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = key_file(tmp_path / ".apikey", mode=0o640)
    with caplog.at_level(logging.WARNING, logger="intent_fleet.protocol.credentials"):
        assert resolve_api_key(environ={"HOME": str(tmp_path)}, uid=UID) == KEY
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage()
    assert "chmod 600" in warnings[0].getMessage()
    assert KEY not in caplog.text


def test_private_key_file_does_not_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_file(tmp_path / ".apikey", mode=0o600)
    with caplog.at_level(logging.DEBUG):
        resolve_api_key(environ={"HOME": str(tmp_path)}, uid=UID)
    assert not caplog.records


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
def test_empty_key_file_is_an_error(tmp_path: Path, content: str) -> None:
    key_file(tmp_path / ".apikey", content)
    with pytest.raises(IntentBusAuthError, match=r"\.apikey is empty"):
        resolve_api_key(environ={"HOME": str(tmp_path)}, uid=UID)


def test_a_directory_is_not_a_key_file(tmp_path: Path) -> None:
    (tmp_path / ".apikey").mkdir()
    with pytest.raises(IntentBusAuthError, match="not a regular file"):
        resolve_api_key(environ={"HOME": str(tmp_path)}, uid=UID)


def test_binary_garbage_is_not_a_key(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"\xff\xfe\x00")
    path.chmod(0o600)
    with pytest.raises(IntentBusAuthError, match="not UTF-8"):
        read_key_file(path, uid=UID)
