"""The trust an https:// server is verified with: a CA file that cannot serve is refused when
the settings are built, naming the setting and the file."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from fleetcluster.pki import CertificateAuthority
from intent_fleet.operator.settings import OperatorSettings
from intent_fleet.protocol import ClientSettings, InvalidSettingError, trust_context


def test_no_ca_file_means_the_system_trust_store() -> None:
    assert trust_context(None, setting="X.ca_file") is True


def test_a_ca_file_is_trusted_and_host_names_still_checked(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    context = trust_context(str(ca.cert_path), setting="X.ca_file")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert len(context.get_ca_certs()) == 1


@pytest.mark.parametrize(
    "content", [None, b"", b"not a certificate\n", b"-----BEGIN CERTIFICATE-----\nAAAA\n"]
)
def test_a_ca_file_that_cannot_serve_is_refused_by_name(
    tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidSettingError) as caught:
        trust_context(str(path), setting="X.ca_file")
    (problem,) = caught.value.problems
    assert problem.setting == "X.ca_file"
    assert "is not a readable PEM CA file" in problem.text
    assert str(path) in problem.text


def test_a_directory_is_not_a_ca_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidSettingError, match=r"X\.ca_file is not a readable PEM CA file"):
        trust_context(str(tmp_path), setting="X.ca_file")


@pytest.mark.parametrize(
    ("build", "setting"),
    [
        (lambda bad: ClientSettings(ca_file=bad), "ClientSettings.ca_file"),
        (lambda bad: OperatorSettings(bus_ca_file=bad), "OperatorSettings.bus_ca_file"),
    ],
)
def test_both_settings_refuse_a_bad_ca_file_when_built(
    tmp_path: Path, build: Callable[[str], object], setting: str
) -> None:
    missing = str(tmp_path / "nowhere.pem")
    with pytest.raises(InvalidSettingError) as caught:
        build(missing)
    assert [p.setting for p in caught.value.problems] == [setting]
    assert missing in str(caught.value)
