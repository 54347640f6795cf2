"""Virtualenvs holding the published ``intent-bus`` SDK, built once and cached.

The compatibility tests drive the real SDK from PyPI as a client of our bus.
Each SDK version gets its own virtualenv under the project cache::

    ${INTENT_FLEET_CACHE:-${XDG_CACHE_HOME:-~/.cache}/intent-fleet}/sdk-venvs/intent-bus-<version>

A virtualenv is reused when its interpreter imports ``intent_bus`` and reports
the expected version; otherwise it is deleted and rebuilt with ``python -m venv``
and ``pip install intent-bus==<version>``. An exclusive ``fcntl`` lock per
version keeps parallel test sessions from building the same one at once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SDK_VERSIONS",
    "SdkEnv",
    "SdkEnvError",
    "cache_root",
    "ensure_sdk_env",
    "sdk_venv_dir",
]

#: The published SDK versions the bus must serve: 2.x speaks v2.1, 1.x speaks v1.1.
SDK_VERSIONS = ("2.1.2", "1.2.0")

_PACKAGE = "intent-bus"
_PROBE = "import intent_bus, sys; sys.stdout.write(intent_bus.__version__)"
#: How long to wait for another session that is building the same virtualenv.
LOCK_TIMEOUT_SECONDS = 600.0
#: ``python -m venv`` plus ``pip install`` of one small package and ``requests``.
BUILD_TIMEOUT_SECONDS = 600.0


class SdkEnvError(RuntimeError):
    """The SDK virtualenv could not be built or does not work."""


@dataclass(frozen=True, slots=True)
class SdkEnv:
    """One ready virtualenv with ``intent-bus==version`` installed."""

    version: str
    root: Path
    #: True when this call built (or rebuilt) it, False when a cached one was reused.
    built: bool

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"


def cache_root() -> Path:
    """``$INTENT_FLEET_CACHE``, else ``$XDG_CACHE_HOME/intent-fleet``, else ``~/.cache/...``."""
    explicit = os.environ.get("INTENT_FLEET_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "intent-fleet"


def sdk_venv_dir(version: str, *, cache: Path | None = None) -> Path:
    return (cache or cache_root()) / "sdk-venvs" / f"intent-bus-{version}"


def ensure_sdk_env(
    version: str, *, cache: Path | None = None, base_python: str | None = None
) -> SdkEnv:
    """A working virtualenv for ``intent-bus==version``: the cached one, or a fresh build.

    Raises :class:`SdkEnvError` with the failing command's output when it
    cannot be built (no network, PyPI down, no ``venv`` module...).
    """
    root = sdk_venv_dir(version, cache=cache)
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(root.with_name(root.name + ".lock")):
            return _ensure_locked(root, version, base_python or sys.executable)
    except OSError as exc:
        raise SdkEnvError(f"cannot use the SDK cache directory {root.parent}: {exc}") from exc


def _ensure_locked(root: Path, version: str, base_python: str) -> SdkEnv:
    if _installed_version(root) == version:
        return SdkEnv(version=version, root=root, built=False)
    if root.exists() or root.is_symlink():
        _remove(root)
    try:
        _build(root, version, base_python)
    except BaseException:
        # Leave nothing half-built behind: the next session starts clean.
        _remove(root)
        raise
    found = _installed_version(root)
    if found != version:
        _remove(root)
        raise SdkEnvError(
            f"built {root} but it reports intent_bus version {found!r}, not {version!r}"
        )
    return SdkEnv(version=version, root=root, built=True)


def _installed_version(root: Path) -> str | None:
    python = root / "bin" / "python"
    if not python.exists():
        return None
    try:
        proc = subprocess.run(
            [str(python), "-I", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _build(root: Path, version: str, base_python: str) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    # A pip config or PYTHONPATH meant for the project venv must not leak in.
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    _run([base_python, "-m", "venv", str(root)], env=env, what="create the virtualenv")
    _run(
        [
            str(root / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            f"{_PACKAGE}=={version}",
        ],
        env=env,
        what=f"pip install {_PACKAGE}=={version}",
    )


def _run(cmd: list[str], *, env: dict[str, str], what: str) -> None:
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_SECONDS,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SdkEnvError(
            f"could not {what}: `{' '.join(cmd)}` took over {BUILD_TIMEOUT_SECONDS:g} s"
        ) from exc
    except OSError as exc:
        raise SdkEnvError(f"could not {what}: `{' '.join(cmd)}`: {exc}") from exc
    if proc.returncode != 0:
        raise SdkEnvError(
            f"could not {what}: `{' '.join(cmd)}` exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )


def _remove(root: Path) -> None:
    if root.is_symlink() or root.is_file():
        root.unlink()
    elif root.exists():
        shutil.rmtree(root)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``lock_path``, waited for at most LOCK_TIMEOUT_SECONDS."""
    with lock_path.open("a") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SdkEnvError(
                        f"waited {LOCK_TIMEOUT_SECONDS:g} s for {lock_path}: another session "
                        "is still building this SDK virtualenv"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
