"""Flags and their environment variables: read after parsing, for the command that runs, with
every problem named once and no secret echoed."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from intent_fleet.cli.errors import UsageError
from intent_fleet.cli.flags import (
    Flag,
    boolean,
    build,
    comma_list,
    markdown_table,
    register,
    resolve,
)
from intent_fleet.cli.main import build_parser
from intent_fleet.cli.sidecar_command import settings_from_args
from intent_fleet.sidecar import ClaimSettings, SidecarSettings

SECRET = "almost-the-right-token"


def _resolved(argv: list[str], environ: dict[str, str]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    resolve(args, environ)
    return args


def test_a_bad_variable_stops_only_the_command_that_reads_it() -> None:
    environ = {"INTENT_CONCURRENCY": "abc"}
    publish = _resolved(["publish", "g", "{}"], environ)
    assert publish.bus_url == "http://127.0.0.1:8080"
    with pytest.raises(UsageError, match="INTENT_CONCURRENCY expects a whole number, got 'abc'"):
        _resolved(["sidecar", "--goal", "g"], environ)


def test_the_flag_wins_over_the_variable_and_the_variable_over_the_default() -> None:
    args = _resolved(["sidecar", "--goal", "g", "--concurrency", "7"], {"INTENT_CONCURRENCY": "3"})
    assert args.concurrency == 7
    args = _resolved(["sidecar", "--goal", "g"], {"INTENT_CONCURRENCY": "3"})
    assert args.concurrency == 3
    args = _resolved(["sidecar"], {"INTENT_GOAL": "from-env"})
    assert (args.goal, args.concurrency) == ("from-env", 4)


def test_an_empty_variable_is_unset() -> None:
    args = _resolved(["sidecar", "--goal", "g"], {"INTENT_CONCURRENCY": ""})
    assert args.concurrency == 4


def test_every_parse_problem_is_reported_together() -> None:
    with pytest.raises(UsageError) as info:
        _resolved(
            ["sidecar", "--concurrency", "x", "--ops-listen", "9090"],
            {"INTENT_HANDLER_TIMEOUT": "soon", "INTENT_LOG_LEVEL": "loud"},
        )
    message = str(info.value)
    for part in (
        "--goal (or INTENT_GOAL) is required",
        "--concurrency expects a whole number, got 'x'",
        "INTENT_HANDLER_TIMEOUT expects a number, got 'soon'",
        "--ops-listen expected HOST:PORT",
        "INTENT_LOG_LEVEL must be one of debug, info, warning, error, got 'loud'",
    ):
        assert part in message


def test_switches_take_true_or_false_from_the_environment() -> None:
    on = _resolved(["operator"], {"INTENT_OPERATOR_LEADER_ELECTION": "no"})
    assert on.leader_election is False
    flag = _resolved(["operator", "--leader-election"], {"INTENT_OPERATOR_LEADER_ELECTION": "0"})
    assert flag.leader_election is True
    with pytest.raises(UsageError, match="INTENT_OPERATOR_LEADER_ELECTION expects true or false"):
        _resolved(["operator"], {"INTENT_OPERATOR_LEADER_ELECTION": "maybe"})


def test_a_secret_is_never_quoted() -> None:
    flags = (Flag("--token", "T", "a token", parse=int, secret=True),)
    with pytest.raises(UsageError) as info:
        build_and_resolve(flags, {"T": SECRET})
    assert SECRET not in str(info.value)
    assert "T expects a whole number" in str(info.value)


def build_and_resolve(flags: tuple[Flag, ...], environ: dict[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser, flags)
    args = parser.parse_args([])
    resolve(args, environ)
    return args


def test_settings_problems_are_named_by_their_flags_all_at_once() -> None:
    args = _resolved(
        ["sidecar", "--goal", "g", "--concurrency", "0", "--app-path", "x"],
        {"INTENT_DRAIN_TOKEN": "short-secret"},
    )
    with pytest.raises(UsageError) as info:
        settings_from_args(args)
    message = str(info.value)
    assert "--concurrency must be >= 1, got 0" in message
    assert "--app-path must start with '/'" in message
    assert "--drain-token must be at least 16 characters" in message
    assert "short-secret" not in message


def test_build_names_a_setting_no_flag_sets_by_its_class_and_field() -> None:
    with pytest.raises(UsageError, match=r"ClaimSettings\.long_poll_seconds must be"):
        build((), lambda: SidecarSettings(claim=ClaimSettings(goal="g", long_poll_seconds=0)))


@pytest.mark.parametrize(("text", "value"), [("1", True), ("Yes", True), ("off", False)])
def test_boolean(text: str, value: bool) -> None:
    assert boolean(text) is value


def test_comma_list_drops_blanks() -> None:
    assert comma_list(" a, b,,c ,") == ("a", "b", "c")


def test_the_table_shows_switches_both_ways_and_no_default_for_none() -> None:
    table = markdown_table(
        (
            Flag("--on", "X_ON", "a switch", switch=True, default=True),
            Flag("--name", "X_NAME", "a name"),
        )
    )
    assert "| `--on`, `--no-on` | `X_ON` | `true` | a switch |" in table
    assert "| `--name` | `X_NAME` |  | a name |" in table


def test_every_command_reads_its_log_level_through_a_checked_flag() -> None:
    # main configures logging from args.log_level only, so no command may lack the flag.
    parser = build_parser()
    commands = (
        ["bus"],
        ["sidecar"],
        ["operator"],
        ["run"],
        ["demo"],
        ["publish", "g", "{}"],
        ["status", "x"],
        ["kv", "get", "k"],
        ["keys", "list"],
        ["stats"],
    )
    for argv in commands:
        assert any(f.name == "--log-level" for f in parser.parse_args(argv).flags), argv
    with pytest.raises(UsageError, match="INTENT_LOG_LEVEL must be one of"):
        _resolved(["demo"], {"INTENT_LOG_LEVEL": "loud"})
    assert _resolved(["demo"], {}).log_level == "warning"
    assert _resolved(["bus"], {}).log_level == "info"


@pytest.mark.parametrize(
    ("argv", "environ", "words"),
    [
        (["--status-refresh-seconds", "-1"], {}, ">= 0 seconds, got -1.0"),
        (["--status-refresh-seconds", "nan"], {}, ">= 0 seconds, got nan"),
        ([], {"INTENT_OPERATOR_STATUS_REFRESH_SECONDS": "inf"}, ">= 0 seconds, got inf"),
        ([], {"INTENT_OPERATOR_STATUS_REFRESH_SECONDS": "soon"}, "INTENT_OPERATOR_STATUS"),
    ],
    ids=["negative", "nan", "infinite-variable", "word-variable"],
)
def test_a_bad_status_refresh_names_its_flag(
    argv: list[str], environ: dict[str, str], words: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "intent_fleet.cli.main", "operator", *argv],
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--status-refresh-seconds" in proc.stderr or "INTENT_OPERATOR_STATUS" in proc.stderr
    assert words in proc.stderr, proc.stderr
