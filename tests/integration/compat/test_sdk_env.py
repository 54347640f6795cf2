"""The cached SDK virtualenvs: where they live, reuse, rebuild, locking, failure."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from tests.support.sdkenv import (
    SDK_VERSIONS,
    SdkEnv,
    SdkEnvError,
    cache_root,
    ensure_sdk_env,
    sdk_venv_dir,
)


def test_session_envs_hold_the_published_versions(sdk_envs: dict[str, SdkEnv]) -> None:
    assert sorted(sdk_envs) == sorted(SDK_VERSIONS)
    for version, env in sdk_envs.items():
        assert env.root == sdk_venv_dir(version)
        assert env.root.name == f"intent-bus-{version}"
        out = subprocess.run(
            [str(env.python), "-I", "-c", "import intent_bus; print(intent_bus.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert out == version
        # A second call in the same session reuses the virtualenv.
        assert ensure_sdk_env(version).built is False


def test_cache_root_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INTENT_FLEET_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "explicit"
    assert sdk_venv_dir("1.2.0") == tmp_path / "explicit" / "sdk-venvs" / "intent-bus-1.2.0"
    monkeypatch.delenv("INTENT_FLEET_CACHE")
    assert cache_root() == tmp_path / "xdg" / "intent-fleet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "intent-fleet"


def test_a_broken_env_is_rebuilt_once_by_concurrent_callers(tmp_path: Path) -> None:
    version = "1.2.0"
    root = sdk_venv_dir(version, cache=tmp_path)
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python").write_text("not an interpreter\n")

    outcomes: list[SdkEnv | BaseException] = []

    def build() -> None:
        try:
            outcomes.append(ensure_sdk_env(version, cache=tmp_path))
        except BaseException as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    envs = [o for o in outcomes if isinstance(o, SdkEnv)]
    assert len(envs) == 2, outcomes
    # The lock let one caller build while the other waited, then reused its work.
    assert sorted(e.built for e in envs) == [False, True]
    assert ensure_sdk_env(version, cache=tmp_path).built is False


def test_a_failed_build_names_the_cause_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(SdkEnvError, match="could not create the virtualenv"):
        ensure_sdk_env("2.1.2", cache=tmp_path, base_python=str(tmp_path / "no-python"))
    assert not sdk_venv_dir("2.1.2", cache=tmp_path).exists()
