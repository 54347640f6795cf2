"""Command-line settings, declared once: flag, environment variable, parser, default, help.

Each command declares its options as a tuple of :class:`Flag`. From that one declaration come
the argparse options, the environment fallbacks, the README's tables (a test compares them) and
the usage errors, which name the flag (and its variable) and never echo a secret.

Environment values are read and parsed after the command line, for the command that runs only:
a bad ``INTENT_CONCURRENCY`` is a usage error of ``intent-fleet sidecar`` and does not stop
``intent-fleet publish``. Ranges and cross-field rules live in the settings dataclasses
(``problems()``), and :func:`build` reports them under the flags that set those fields.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from intent_fleet.protocol import (
    DEFAULT_BUS_URL,
    InvalidSettingError,
    SecretFileError,
    read_secret_file,
)

from .errors import UsageError

__all__ = [
    "BUS_URL",
    "CA_FILE",
    "LOG_LEVEL",
    "QUIET_LOG_LEVEL",
    "Flag",
    "boolean",
    "build",
    "comma_list",
    "markdown_table",
    "path",
    "register",
    "resolve",
    "secret_file",
]

T = TypeVar("T")


def boolean(text: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off), for switches set from the environment."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expects true or false")


def comma_list(text: str) -> tuple[str, ...]:
    """``a, b,,c`` as ``("a", "b", "c")``."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def path(text: str) -> Path:
    """A file or directory name (empty text is not one)."""
    if not text:
        raise ValueError("expects a path")
    return Path(text)


def secret_file(file: Path, what: str) -> str:
    """The secret in the file a ``--*-file`` flag names (``what`` it holds); a usage error
    naming the file when it is missing, unreadable or empty."""
    try:
        return read_secret_file(file, what=what)
    except SecretFileError as bad:
        raise UsageError(str(bad)) from None


#: How a parse failure of the plain types is phrased (their own messages are Python's).
_EXPECTS: dict[Callable[[str], Any], str] = {
    int: "expects a whole number",
    float: "expects a number",
}


@dataclass(frozen=True)
class Flag:
    """One option of a command."""

    #: The option, e.g. ``--concurrency``.
    name: str
    #: Its environment variable; empty for an option without one.
    env: str
    #: What it means, for ``--help`` and the README.
    help: str
    #: Text to value; a ValueError says what is wrong (see :data:`_EXPECTS` for int and float).
    parse: Callable[[str], Any] = str
    #: The value when neither the option nor the variable is given.
    default: Any = None
    #: The settings field the value ends up in, as ``Class.field``: how a settings problem is
    #: reported under this flag's name.
    setting: str = ""
    #: The command cannot run without it.
    required: bool = False
    #: A token or password: never quoted in an error.
    secret: bool = False
    #: The only values allowed (checked for the variable too).
    choices: tuple[str, ...] = ()
    #: ``--name``/``--no-name``, and ``true``/``false`` in the variable.
    switch: bool = False
    #: Title of the ``--help`` section it is listed under; empty = the command's own options.
    group: str = ""
    #: Placeholder for the value in ``--help``.
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.name.removeprefix("--").replace("-", "_")

    @property
    def where(self) -> str:
        return f"{self.name} (or {self.env})" if self.env else self.name

    def describe_default(self) -> str:
        if self.switch:
            return "true" if self.default else "false"
        if self.default in (None, "", ()):
            return ""
        return str(self.default)


def register(parser: argparse.ArgumentParser, flags: Sequence[Flag]) -> None:
    """Add ``flags`` to ``parser``; :func:`resolve` fills them in after parsing."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for flag in flags:
        target: argparse._ActionsContainer = parser
        if flag.group:
            target = groups.setdefault(flag.group, parser.add_argument_group(flag.group))
        default = flag.describe_default()
        text = flag.help + (f" (default: {default})" if default else "")
        text += f" [env {flag.env}]" if flag.env else ""
        text = text.replace("%", "%%")
        if flag.switch:
            target.add_argument(
                flag.name, dest=flag.dest, action=argparse.BooleanOptionalAction, help=text
            )
        else:
            metavar = flag.metavar
            if metavar is None and flag.choices:
                metavar = "{" + ",".join(flag.choices) + "}"
            target.add_argument(flag.name, dest=flag.dest, metavar=metavar, help=text)
    parser.set_defaults(**{f.dest: None for f in flags})
    known: tuple[Flag, ...] = tuple(parser.get_default("flags") or ())
    parser.set_defaults(flags=known + tuple(flags))


def _parse(flag: Flag, text: str, source: str) -> tuple[Any, str | None]:
    """The value of ``text`` for ``flag`` (a switch's variable reads true/false), or the
    problem, naming ``source`` (the option or the variable)."""
    if flag.choices and text not in flag.choices:
        got = "" if flag.secret else f", got {text!r}"
        return None, f"{source} must be one of {', '.join(flag.choices)}{got}"
    parse = boolean if flag.switch else flag.parse
    try:
        return parse(text), None
    except ValueError as bad:
        problem = _EXPECTS.get(parse, str(bad))
        got = "" if flag.secret or parse not in _EXPECTS else f", got {text!r}"
        return None, f"{source} {problem}{got}"


def resolve(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """Fill every declared flag of the parsed command: the option, else its variable, else the
    default. Raises one :class:`UsageError` naming every bad or missing value."""
    problems: list[str] = []
    for flag in getattr(args, "flags", ()):
        given = getattr(args, flag.dest, None)
        value: Any = flag.default
        if flag.switch and given is not None:
            value = given
        elif given is not None:
            value, problem = _parse(flag, given, flag.name)
            problems += [problem] if problem else []
        elif flag.env and environ.get(flag.env, "") != "":
            value, problem = _parse(flag, environ[flag.env], flag.env)
            problems += [problem] if problem else []
        elif flag.required:
            problems.append(f"{flag.where} is required")
        setattr(args, flag.dest, value)
    if problems:
        raise UsageError("; ".join(problems))


def build(
    flags: Iterable[Flag], make: Callable[[], T], *, names: Mapping[str, str] | None = None
) -> T:
    """``make()``, with each settings problem reported under the flag that set the field
    (or the name in ``names``, for a setting no single flag sets)."""
    try:
        return make()
    except InvalidSettingError as bad:
        known = {f.setting: f.name for f in flags if f.setting} | dict(names or {})
        lines = [f"{known.get(p.setting, p.setting)} {p.text}" for p in bad.problems]
        raise UsageError("; ".join(lines)) from None


#: Where a client command or the sidecar finds the bus.
BUS_URL = Flag(
    "--bus-url",
    "INTENT_BUS_URL",
    "bus base URL",
    default=DEFAULT_BUS_URL,
    setting="ClientSettings.base_url",
)

#: The CA an https:// bus is verified against.
CA_FILE = Flag(
    "--ca-file",
    "INTENT_CA_FILE",
    "PEM CA certificates an https:// bus is verified against (default: the system's)",
    parse=path,
    setting="ClientSettings.ca_file",
)

#: Every command's --log-level (the servers log at info, client commands at warning).
LOG_LEVEL = Flag(
    "--log-level",
    "INTENT_LOG_LEVEL",
    "debug, info, warning or error",
    default="info",
    choices=("debug", "info", "warning", "error"),
)


#: The same for one-shot commands, which log only warnings unless asked.
QUIET_LOG_LEVEL = dataclasses.replace(LOG_LEVEL, default="warning")


def markdown_table(flags: Iterable[Flag]) -> str:
    """The README's table of ``flags``."""
    rows = ["| Flag | Environment | Default | Meaning |", "|---|---|---|---|"]
    for f in flags:
        default = f.describe_default()
        env = f"`{f.env}`" if f.env else ""
        name = f"`{f.name}`" if not f.switch else f"`{f.name}`, `--no-{f.name[2:]}`"
        rows.append(f"| {name} | {env} | {f'`{default}`' if default else ''} | {f.help} |")
    return "\n".join(rows)
