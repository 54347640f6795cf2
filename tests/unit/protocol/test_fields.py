"""The field readers every reader of untrusted JSON shares, against hostile values: each wrong
field is the caller's own error, naming the field, and a good one comes back typed."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from intent_fleet.protocol import integer_field, number_field, object_field, text_field


class Refused(Exception):
    """The caller's own error type, as the bus's ApiError or the operator's InvalidSpecError."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name} {text}")
        self.name = name
        self.text = text


def refused(read: Any, doc: dict[str, Any], name: str, **kwargs: Any) -> Refused:
    with pytest.raises(Refused) as caught:
        read(doc, name, error=Refused, **kwargs)
    assert caught.value.name == name
    return caught.value


# --- integers ---------------------------------------------------------------------------


def test_an_integer_absent_or_null_takes_its_default() -> None:
    assert integer_field({}, "n", default=7, error=Refused) == 7
    assert integer_field({"n": None}, "n", default=7, error=Refused) == 7


def test_an_integral_float_is_an_integer() -> None:
    value = integer_field({"n": 5.0}, "n", default=0, error=Refused, low=0, high=10)
    assert value == 5
    assert type(value) is int


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (True, "must be an integer, not a boolean"),
        (False, "must be an integer, not a boolean"),
        (1.5, "must be an integer, not 1.5"),
        (math.nan, "must be an integer, not nan"),
        (math.inf, "must be an integer, not inf"),
        (-math.inf, "must be an integer, not -inf"),
        ("5", "must be an integer, not a string"),
        ([5], "must be an integer, not an array"),
        ({"n": 5}, "must be an integer, not an object"),
    ],
)
def test_what_is_no_integer_is_refused_by_name(value: object, says: str) -> None:
    assert refused(integer_field, {"n": value}, "n", default=0).text == says


@pytest.mark.parametrize(
    ("bounds", "value", "says"),
    [
        ({"low": 0, "high": 1000}, 1001, "must be between 0 and 1000, got 1001"),
        ({"low": 0, "high": 1000}, -1, "must be between 0 and 1000, got -1"),
        ({"low": 1}, 0, "must be >= 1, got 0"),
        ({"high": 3}, 10**30, f"must be <= 3, got {10**30}"),
    ],
)
def test_an_integer_out_of_range_says_the_range(
    bounds: dict[str, int], value: int, says: str
) -> None:
    assert refused(integer_field, {"n": value}, "n", default=0, **bounds).text == says


@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_every_integer_in_range_reads_as_itself(value: int) -> None:
    assert integer_field({"n": value}, "n", default=0, error=Refused, low=-(10**6)) == value


# --- numbers ----------------------------------------------------------------------------


def test_a_number_is_a_float_and_null_takes_the_default() -> None:
    value = number_field({"s": 2}, "s", default=0.0, error=Refused, low=0.0, high=10.0)
    assert (value, type(value)) == (2.0, float)
    assert number_field({"s": None}, "s", default=1.5, error=Refused) == 1.5


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (True, "must be a finite number, not a boolean"),
        (math.nan, "must be a finite number, not nan"),
        (math.inf, "must be a finite number, not inf"),
        ("soon", "must be a finite number, not a string"),
        ([], "must be a finite number, not an array"),
    ],
)
def test_what_is_no_finite_number_is_refused_by_name(value: object, says: str) -> None:
    assert refused(number_field, {"s": value}, "s", default=0.0).text == says


def test_a_number_out_of_range_shows_the_bounds_short() -> None:
    error = refused(number_field, {"s": 3e6}, "s", default=0.0, low=0.0, high=2592000.0)
    assert error.text == "must be between 0 and 2.592e+06, got 3000000.0"


# --- text and objects -------------------------------------------------------------------


def test_text_with_a_default_is_optional_without_one_required() -> None:
    assert text_field({}, "t", error=Refused, default="x") == "x"
    assert text_field({"t": None}, "t", error=Refused, default="") == ""
    assert refused(text_field, {}, "t").text == "is required"
    assert refused(text_field, {"t": None}, "t").text == "is required"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (5, "must be a string, not a number"),
        (True, "must be a string, not a boolean"),
        (["a"], "must be a string, not an array"),
        ({"a": "b"}, "must be a string, not an object"),
    ],
)
def test_what_is_no_text_is_refused_by_name(value: object, says: str) -> None:
    assert refused(text_field, {"t": value}, "t", default="").text == says


def test_too_long_text_is_refused_without_quoting_it() -> None:
    assert text_field({"t": "x" * 256}, "t", error=Refused, max_chars=256) == "x" * 256
    error = refused(text_field, {"t": "x" * 100_000}, "t", max_chars=256)
    assert error.text == "must be at most 256 characters, got 100000"


def test_an_object_absent_or_null_is_empty_anything_else_refused() -> None:
    assert object_field({}, "o", error=Refused) == {}
    assert object_field({"o": None}, "o", error=Refused) == {}
    assert object_field({"o": {"a": 1}}, "o", error=Refused) == {"a": 1}
    for value, kind in (([], "an array"), ("", "a string"), (0, "a number"), (False, "a boolean")):
        assert refused(object_field, {"o": value}, "o").text == f"must be an object, not {kind}"
