"""Finding the API key (an explicit value, the environment, or a key file), and reading any
file that holds a secret.

The order matches the published SDK (explicit -> ``INTENT_API_KEY`` -> key
file) so a machine set up for the SDK works unchanged; the key file may be
named by ``INTENT_API_KEY_FILE`` (default ``~/.apikey``), which is how a
container points at a mounted Secret.

A key file is a credential, so it is read defensively: a symlink could point
the client at somebody else's key and a file owned by another user could have
been planted, so both are refused; group/world permissions only warn, because
refusing would break setups that work today. Every other secret file (the bus's
admin secret, database URL and metrics token, an admin secret for the CLI) is
read by the same :func:`read_secret_file`, so an empty or unreadable one is
refused the same way everywhere. A secret itself is never logged.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from .errors import IntentBusAuthError, SecretFileError

__all__ = [
    "DEFAULT_KEY_FILE_NAME",
    "ENV_KEY",
    "ENV_KEY_FILE",
    "read_key_file",
    "read_secret_file",
    "resolve_api_key",
]

logger = logging.getLogger(__name__)

#: Environment variable holding the key itself.
ENV_KEY = "INTENT_API_KEY"
#: Environment variable naming a file that holds the key.
ENV_KEY_FILE = "INTENT_API_KEY_FILE"
#: The SDK's key file, in the user's home directory.
DEFAULT_KEY_FILE_NAME = ".apikey"
#: Secret files hold a few dozen bytes; a larger file certainly holds no one secret.
MAX_SECRET_FILE_BYTES = 64 * 1024


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
    """The stripped API key in ``path``, read by :func:`read_secret_file`; a user's own key
    file (the default) may be no symlink. Raises :class:`IntentBusAuthError`."""
    try:
        return read_secret_file(path, what="API key", uid=uid, allow_symlinks=allow_symlinks)
    except SecretFileError as bad:
        raise IntentBusAuthError(str(bad)) from None


def read_secret_file(
    path: Path, *, what: str, uid: int | None = None, allow_symlinks: bool = True
) -> str:
    """The stripped text of ``path``, a file that holds one secret (``what``: "API key",
    "admin secret", "database URL"), after checking the file is safe to trust.

    ``uid`` is the user who must own the file, for a user's own file: then a file that group
    or others may read is warned about. ``None`` skips both, which is right for a Kubernetes
    Secret mounted read-only by the kubelet (owned by root, mode set by the pod spec). Such a
    Secret's keys are symlinks into a timestamped directory (so updates are atomic), hence
    ``allow_symlinks``; a user's own key file gets neither exemption.

    Raises :class:`SecretFileError` naming ``what`` and the file: missing, not a regular file,
    owned by another user, too large, not UTF-8, or empty.
    """
    try:
        link = os.lstat(path)
    except FileNotFoundError:
        raise SecretFileError(f"{what} file {path} does not exist.") from None
    except OSError as exc:
        raise SecretFileError(f"Cannot access {what} file {path}: {exc.strerror}.") from None
    if stat.S_ISLNK(link.st_mode) and not allow_symlinks:
        raise SecretFileError(
            f"Refusing {what} file {path}: it is a symlink. Point to the real file instead."
        )
    flags = os.O_RDONLY | os.O_NONBLOCK  # O_NONBLOCK: a FIFO must not hang the reader
    if not allow_symlinks:
        # Closes the window between lstat and open in which the file could be swapped.
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise SecretFileError(f"Cannot open {what} file {path}: {exc.strerror}.") from None
    try:
        info = os.fstat(fd)
        _check_file(path, info, what=what, uid=uid)
        raw = os.read(fd, MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise SecretFileError(f"Cannot read {what} file {path}: {exc.strerror}.") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise SecretFileError(f"{what} file {path} is too large to hold one.")
    try:
        secret = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretFileError(f"{what} file {path} is not UTF-8 text.") from None
    if not secret:
        raise SecretFileError(f"{what} file {path} is empty.")
    return secret


def _check_file(path: Path, info: os.stat_result, *, what: str, uid: int | None) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise SecretFileError(f"Refusing {what} file {path}: it is not a regular file.")
    if uid is None:
        return
    if info.st_uid != uid:
        raise SecretFileError(
            f"Refusing {what} file {path}: it is owned by uid {info.st_uid}, not by uid {uid}."
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "%s file %s is accessible by group or others (mode %04o); run: chmod 600 %s",
            what,
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
