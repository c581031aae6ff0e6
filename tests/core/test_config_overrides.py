"""The override grammar: ``--set PATH=VALUE``, ``--resource-args JSON``, ``--var NAME=VALUE``."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from launchplane.core.config import (
    format_path,
    parse_path,
    parse_resource_args,
    parse_set,
    parse_var,
)
from launchplane.core.errors import ConfigError
from launchplane.core.yamlsafe import dump_document


def nest(path: list[str], value: Any) -> Any:
    for segment in reversed(path):
        value = {segment: value}
    return value


def typed(value: Any) -> Any:
    """``value`` with every scalar tagged by its type, so ``True`` never equals ``1``."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


def test_the_reference_example() -> None:
    assert parse_set('resource_args.kubernetes.requests."nvidia.com/gpu"=4') == {
        "resource_args": {"kubernetes": {"requests": {"nvidia.com/gpu": 4}}}
    }


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("a=4", 4),
        ('a="4"', "4"),
        ("a='4'", "4"),
        ("a=3e-4", 0.0003),
        ("a=true", True),
        ("a=yes", "yes"),
        ("a=null", None),
        ("a=~", None),
        ("a=", ""),
        ("a=   ", ""),
        ("a=[x, y]", ["x", "y"]),
        ("a={b: 1}", {"b": 1}),
        ("a=x=y", "x=y"),
        ("a=http://host:8080/p?q=1", "http://host:8080/p?q=1"),
        ("a=python train.py --lr 3", "python train.py --lr 3"),
        ("a=64Gi", "64Gi"),
    ],
)
def test_values_are_yaml(expr: str, expected: Any) -> None:
    assert typed(parse_set(expr)) == typed({"a": expected})


@pytest.mark.parametrize(
    ("expr", "path"),
    [
        ('"a.b".c=1', ["a.b", "c"]),
        ('a."b=c"=1', ["a", "b=c"]),
        ('a."say \\"hi\\""=1', ["a", 'say "hi"']),
        ('a."back\\\\slash"=1', ["a", "back\\slash"]),
        ('a."keep\\n"=1', ["a", "keep\\n"]),
        ('a."".b=1', ["a", "", "b"]),
        ('a." spaced "=1', ["a", " spaced "]),
        (" a . b =1", ["a", "b"]),
        ("env.MY VAR=1", ["env", "MY VAR"]),
        ("resource_args.local-process.nice=1", ["resource_args", "local-process", "nice"]),
    ],
)
def test_path_segments(expr: str, path: list[str]) -> None:
    assert parse_set(expr) == nest(path, 1)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("resource_args", "'resource_args' has no '='; write PATH=VALUE"),
        ("=4", "'=4': empty key; write keys between the dots (at column 1)"),
        ("a..b=4", "'a..b=4': empty key; write keys between the dots (at column 3)"),
        (".a=4", "empty key"),
        ("a.=4", "empty key"),
        ('a."b=4', "'a.\"b=4': unterminated quote (at column 3)"),
        ('a."b"c=4', "expected '.' or '=' after a quoted key (at column 6)"),
        ('a.b"c"=4', "a quote may only open a segment; quote the whole key (at column 4)"),
        ("a=[1, 2", "the value is not valid YAML"),
        ("a=@x", "quote it to pass text"),
        ("a=!!python/object:os.system ls", "tag !!python/object:os.system is not allowed"),
    ],
)
def test_malformed_expressions(expr: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_set(expr)
    assert caught.value.errors[0].path == "--set"
    assert message in str(caught.value)


segments = st.one_of(
    st.text(max_size=8),
    st.text(alphabet=st.sampled_from(list('ab.="\\ \t-/')), max_size=6),
)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(), st.text(max_size=4)), max_size=3),
)


@given(st.lists(segments, min_size=1, max_size=4), values)
@example(["resource_args", "kubernetes", "requests", "nvidia.com/gpu"], 4)
@example(["a", 'q"uote', "b\\", " x"], "3e-4")
@example(["a"], "")
def test_round_trip(path: list[str], value: Any) -> None:
    expr = format_path(path) + "=" + dump_document(value)
    assert typed(parse_set(expr)) == typed(nest(path, value))
    assert parse_path(format_path(path)) == tuple(path)


def test_format_path_quotes_only_what_needs_it() -> None:
    assert format_path(["resource_args", "kubernetes", "nvidia.com/gpu"]) == (
        'resource_args.kubernetes."nvidia.com/gpu"'
    )
    assert format_path(["a", 'say "hi"', ""]) == 'a."say \\"hi\\"".""'


def test_parse_path_refuses_equals_outside_quotes() -> None:
    with pytest.raises(ConfigError, match="'=' in a key; quote the key"):
        parse_path("a.b=c", where="locked.0")


def test_resource_args_is_a_layer() -> None:
    layer = parse_resource_args('{"kubernetes": {"requests": {"nvidia.com/gpu": "4"}}}')
    assert layer == {"resource_args": {"kubernetes": {"requests": {"nvidia.com/gpu": "4"}}}}
    assert layer.origin == "--resource-args"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "must be a JSON object keyed by runner"),
        ('"x"', "not a string"),
        ("{kubernetes: {}}", "invalid JSON"),
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
    ],
)
def test_resource_args_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_resource_args(text)


def test_set_layers_remember_their_origin() -> None:
    assert parse_set("a.b=1").origin == "--set a.b=1"


def test_var() -> None:
    assert parse_var("volume_size=200") == {"volume_size": "200"}
    assert parse_var("cmd=a=b") == {"cmd": "a=b"}
    assert parse_var("empty=") == {"empty": ""}
    for bad in ("volume_size", "=3"):
        with pytest.raises(ConfigError, match="write NAME=VALUE"):
            parse_var(bad)
