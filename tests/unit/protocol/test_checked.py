"""One way to check a dataclass: ``problems()`` names each field, ``validate`` reports them all."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from intent_fleet.operator.errors import InvalidSpecError
from intent_fleet.operator.scaling import ScalingPolicy
from intent_fleet.protocol import InvalidSettingError, Problem, Problems, RetryPolicy, validate

SRC = Path(__file__).resolve().parents[3] / "src" / "intent_fleet"


@dataclass(frozen=True)
class Inner:
    size: int = 1

    def problems(self) -> Problems:
        if self.size < 1:
            yield "size", f"must be >= 1, got {self.size}"


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    other: Inner = field(default_factory=Inner)

    def problems(self) -> Problems:
        if not self.name:
            yield "name", "is required"


def test_every_problem_of_the_tree_is_reported_together_by_class_and_field() -> None:
    with pytest.raises(InvalidSettingError) as caught:
        validate(Outer(name="", inner=Inner(0), other=Inner(-1)))
    assert [p.setting for p in caught.value.problems] == [
        "Outer.name",
        "Inner.size",
        "Inner.size",
    ]
    assert str(caught.value) == (
        "Outer.name is required; Inner.size must be >= 1, got 0; Inner.size must be >= 1, got -1"
    )


def test_a_sound_tree_passes() -> None:
    validate(Outer())


def test_the_caller_names_its_own_error() -> None:
    def refuse(problems: Sequence[Problem]) -> LookupError:
        return LookupError(len(problems))

    with pytest.raises(LookupError) as caught:
        validate(Outer(name=""), error=refuse)
    assert caught.value.args == (1,)


def test_a_retry_policy_reports_every_field_at_once() -> None:
    with pytest.raises(InvalidSettingError) as caught:
        RetryPolicy(attempts=True, base_seconds=float("nan"), cap_seconds=-1, jitter="x")  # type: ignore[arg-type]
    assert [p.setting for p in caught.value.problems] == [
        "RetryPolicy.attempts",
        "RetryPolicy.base_seconds",
        "RetryPolicy.cap_seconds",
        "RetryPolicy.jitter",
    ]
    assert "not a boolean" in str(caught.value)


def test_a_spec_value_raises_the_operators_error_naming_each_field() -> None:
    with pytest.raises(InvalidSpecError) as caught:
        ScalingPolicy(min_replicas=-1, cooldown_seconds=float("inf"))
    message = str(caught.value)
    assert "ScalingPolicy.min_replicas must be >= 0, got -1" in message
    assert "ScalingPolicy.cooldown_seconds must be a finite number of seconds" in message


def _raising_post_inits(source: str) -> list[int]:
    """Lines of the ``__post_init__`` methods in ``source`` that raise themselves."""
    return [
        fn.lineno
        for cls in ast.walk(ast.parse(source))
        if isinstance(cls, ast.ClassDef)
        for fn in cls.body
        if isinstance(fn, ast.FunctionDef) and fn.name == "__post_init__"
        if any(isinstance(n, ast.Raise) for n in ast.walk(fn))
    ]


def test_no_dataclass_checks_itself_another_way() -> None:
    # A __post_init__ that raises is a second way to validate: problems() + validate() is the one.
    offenders = [
        f"{path.relative_to(SRC)}:{line}"
        for path in SRC.rglob("*.py")
        if path.relative_to(SRC).as_posix() != "protocol/models.py"  # msgspec's own hook
        for line in _raising_post_inits(path.read_text())
    ]
    assert offenders == []


def test_the_rule_sees_a_raising_post_init() -> None:
    raising = "class A:\n    def __post_init__(self):\n        raise ValueError('x')\n"
    checked = "class A:\n    def __post_init__(self):\n        validate(self)\n"
    assert _raising_post_inits(raising) == [2]
    assert _raising_post_inits(checked) == []
