"""Fixtures for driving the published ``intent-bus`` SDKs against the real bus.

The SDK virtualenvs are built once per machine (see ``tests/support/sdkenv.py``)
and reused by every later session. If one cannot be built, every test that
needs it fails with the reason: these tests are required, never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.compat.clients import BusHttp, SdkDriver
from tests.support.busproc import BusProcess, start_bus
from tests.support.postgres import NewDatabase
from tests.support.sdkenv import SDK_VERSIONS, SdkEnv, SdkEnvError, ensure_sdk_env, sdk_venv_dir

SDK2_VERSION, SDK1_VERSION = SDK_VERSIONS

#: version -> "built" / "reused" / the build error, for the terminal summary.
_ENV_OUTCOMES: dict[str, str] = {}


@pytest.fixture(scope="session")
def sdk_envs() -> dict[str, SdkEnv]:
    """Both SDK virtualenvs, built or reused; a failure names the cause."""
    envs: dict[str, SdkEnv] = {}
    errors: list[str] = []
    for version in SDK_VERSIONS:
        try:
            env = ensure_sdk_env(version)
        except SdkEnvError as exc:
            _ENV_OUTCOMES[version] = f"FAILED: {str(exc).splitlines()[0]}"
            errors.append(f"intent-bus=={version} at {sdk_venv_dir(version)}: {exc}")
            continue
        _ENV_OUTCOMES[version] = f"{'built' if env.built else 'reused'} {env.root}"
        envs[version] = env
    if errors:
        pytest.fail(
            "The SDK compatibility tests need virtualenvs with the published intent-bus SDK "
            "(pip install from PyPI into the INTENT_FLEET_CACHE directory), and building one "
            "failed:\n" + "\n".join(errors),
            pytrace=False,
        )
    return envs


@pytest.fixture(scope="session")
def sdk_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty HOME for the SDK processes, so no ~/.apikey is ever read."""
    return tmp_path_factory.mktemp("sdk-home")


@pytest.fixture(scope="session")
def sdk2(sdk_envs: dict[str, SdkEnv], sdk_home: Path) -> SdkDriver:
    return SdkDriver(env=sdk_envs[SDK2_VERSION], script="sdk2_driver.py", home=sdk_home)


@pytest.fixture(scope="session")
def sdk1(sdk_envs: dict[str, SdkEnv], sdk_home: Path) -> SdkDriver:
    return SdkDriver(env=sdk_envs[SDK1_VERSION], script="sdk1_driver.py", home=sdk_home)


@pytest.fixture(scope="module")
def signed_bus(
    tmp_path_factory: pytest.TempPathFactory, new_database: NewDatabase
) -> Iterator[BusProcess]:
    """A bus that refuses unsigned requests: every SDK call that works was verified. On each
    backend: the SDKs must not be able to tell them apart."""
    proc = start_bus(
        tmp_path_factory.mktemp("compat-bus"),
        db=new_database(),
        extra_args=["--require-signatures"],
    )
    try:
        yield proc
    finally:
        code = proc.stop()
        assert code == 0, f"bus exited with {code}:\n{proc.logs()}"


@pytest.fixture(scope="module")
def http(signed_bus: BusProcess) -> BusHttp:
    return BusHttp(url=signed_bus.url, admin_secret=signed_bus.admin_secret)


@pytest.fixture
def api_key(http: BusHttp, request: pytest.FixtureRequest) -> str:
    """A fresh tenant key for each test, so tests never see each other's intents."""
    return http.new_key(request.node.name[:100])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _ENV_OUTCOMES:
        terminalreporter.write_sep("-", "published SDK virtualenvs")
        for version, outcome in _ENV_OUTCOMES.items():
            terminalreporter.write_line(f"intent-bus {version}: {outcome}")
