"""Finding the API key: an explicit value, the environment, or a key file.

The order matches the published SDK (explicit -> ``INTENT_API_KEY`` -> key
file) so a machine set up for the SDK works unchanged; the key file may be
named by ``INTENT_API_KEY_FILE`` (default ``~/.apikey``), which is how a
container points at a mounted Secret.

A key file is a credential, so it is read defensively: a symlink could point
the client at somebody else's key and a file owned by another user could have
been planted, so both are refused; group/world permissions only warn, because
refusing would break setups that work today. The key itself is never logged.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from .errors import IntentBusAuthError

__all__ = ["DEFAULT_KEY_FILE_NAME", "ENV_KEY", "ENV_KEY_FILE", "read_key_file", "resolve_api_key"]

logger = logging.getLogger(__name__)

#: Environment variable holding the key itself.
ENV_KEY = "INTENT_API_KEY"
#: Environment variable naming a file that holds the key.
ENV_KEY_FILE = "INTENT_API_KEY_FILE"
#: The SDK's key file, in the user's home directory.
DEFAULT_KEY_FILE_NAME = ".apikey"
#: Key files are a few dozen bytes; a larger file is certainly not a key.
MAX_KEY_FILE_BYTES = 64 * 1024


def resolve_api_key(
    explicit: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    key_file: Path | None = None,
    uid: int | None = None,
) -> str:
    """The API key from the first source that has one.

    ``environ`` defaults to ``os.environ`` and ``uid`` to the current user; both
    are parameters so callers (and tests) decide what the process sees.
    ``key_file`` overrides ``INTENT_API_KEY_FILE``; without either, the file is
    ``$HOME/.apikey`` (``HOME`` taken from ``environ``).

    Raises :class:`IntentBusAuthError` naming the source at fault: an empty
    explicit key, an unsafe or empty key file, or no key anywhere.
    """
    env = os.environ if environ is None else environ
    if explicit is not None:
        key = explicit.strip()
        if not key:
            raise IntentBusAuthError("The API key passed explicitly is empty.")
        return key

    from_env = env.get(ENV_KEY, "").strip()
    if from_env:
        return from_env

    named = key_file if key_file is not None else _named_key_file(env)
    if named is not None:
        # A file the user named must exist: silently ignoring a typo would
        # surface later as a confusing "no key" or, worse, another key.
        return read_key_file(named, uid=_current_uid(uid))

    default = _default_key_file(env)
    if os.path.lexists(default):
        return read_key_file(default, uid=_current_uid(uid))
    raise IntentBusAuthError(
        "No API key found. Pass one explicitly, set "
        f"{ENV_KEY}, or put it in a key file ({ENV_KEY_FILE} names it; "
        f"default {default}, which does not exist)."
    )


def read_key_file(path: Path, *, uid: int | None, allow_symlinks: bool = False) -> str:
    """The stripped key in ``path``, after checking the file is safe to trust.

    ``uid`` is the user who must own the file; ``None`` skips the check, which is
    right for a Kubernetes Secret mounted read-only by the kubelet (owned by
    root). ``allow_symlinks`` is for the same case: the kubelet projects each
    Secret key as a symlink into a timestamped directory so updates are atomic.
    A user's own key file gets neither exemption.
    """
    try:
        link = os.lstat(path)
    except FileNotFoundError:
        raise IntentBusAuthError(f"API key file {path} does not exist.") from None
    except OSError as exc:
        raise IntentBusAuthError(f"Cannot access API key file {path}: {exc.strerror}.") from exc
    if stat.S_ISLNK(link.st_mode) and not allow_symlinks:
        raise IntentBusAuthError(
            f"Refusing API key file {path}: it is a symlink. Point to the real file instead."
        )
    flags = os.O_RDONLY | os.O_NONBLOCK  # O_NONBLOCK: a FIFO must not hang the client
    if not allow_symlinks:
        # Closes the window between lstat and open in which the file could be swapped.
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise IntentBusAuthError(f"Cannot open API key file {path}: {exc.strerror}.") from exc
    try:
        info = os.fstat(fd)
        _check_file(path, info, uid=uid)
        raw = os.read(fd, MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise IntentBusAuthError(f"Cannot read API key file {path}: {exc.strerror}.") from exc
    finally:
        os.close(fd)
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise IntentBusAuthError(f"API key file {path} is too large to hold a key.")
    try:
        key = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise IntentBusAuthError(f"API key file {path} is not UTF-8 text.") from None
    if not key:
        raise IntentBusAuthError(f"API key file {path} is empty.")
    return key


def _check_file(path: Path, info: os.stat_result, *, uid: int | None) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise IntentBusAuthError(f"Refusing API key file {path}: it is not a regular file.")
    if uid is not None and info.st_uid != uid:
        raise IntentBusAuthError(
            f"Refusing API key file {path}: it is owned by uid {info.st_uid}, not by uid {uid}."
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "API key file %s is accessible by group or others (mode %04o); run: chmod 600 %s",
            path,
            mode,
            path,
        )


def _named_key_file(env: Mapping[str, str]) -> Path | None:
    named = env.get(ENV_KEY_FILE, "").strip()
    return Path(named).expanduser() if named else None


def _default_key_file(env: Mapping[str, str]) -> Path:
    home = env.get("HOME", "").strip()
    return (Path(home) if home else Path.home()) / DEFAULT_KEY_FILE_NAME


def _current_uid(uid: int | None) -> int | None:
    if uid is not None:
        return uid
    # Platforms without getuid (Windows) have no POSIX ownership to check.
    getuid = getattr(os, "getuid", None)
    return int(getuid()) if getuid is not None else None
