"""The merge rule: mappings merge key by key, lists and scalars are replaced."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launchplane.core.config import deep_merge

LEAF = "leaf"

keys = st.sampled_from(["a", "b", "c", "env", "nvidia.com/gpu", ""])
leaf_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=3),
    st.lists(st.dictionaries(keys, st.integers(), max_size=2), max_size=2),
)
any_values = st.recursive(
    leaf_values, lambda children: st.dictionaries(keys, children, max_size=4), max_leaves=10
)
layers = st.dictionaries(keys, any_values, max_size=5)

# A "shape" fixes, for every key path, whether it holds a mapping or a leaf.
shapes = st.dictionaries(
    keys,
    st.recursive(st.just(LEAF), lambda sub: st.dictionaries(keys, sub, max_size=3), max_leaves=8),
    max_size=4,
)


@st.composite
def layer_of(draw: st.DrawFn, shape: Any) -> Any:
    """A layer that sets a random part of ``shape`` (mappings where the shape has them)."""
    if shape == LEAF:
        return draw(leaf_values)
    return {key: draw(layer_of(sub)) for key, sub in shape.items() if draw(st.booleans())}


@st.composite
def consistent_layers(draw: st.DrawFn) -> tuple[Any, Any, Any]:
    shape = draw(shapes)
    return draw(layer_of(shape)), draw(layer_of(shape)), draw(layer_of(shape))


# Drawing a shape and then three layers of it is slowish on a busy machine; not a bug.
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(consistent_layers())
def test_merge_is_associative_for_layers_of_one_shape(abc: tuple[Any, Any, Any]) -> None:
    a, b, c = abc
    assert deep_merge(deep_merge(a, b), c) == deep_merge(a, deep_merge(b, c))


def test_a_scalar_in_the_middle_layer_breaks_associativity() -> None:
    # Documented: the middle scalar wipes a's mapping only when applied in order.
    # This is why a job file's base_config chain is flattened into one layer first.
    a, b, c = {"x": {"keep": 1}}, {"x": None}, {"x": {"new": 2}}
    assert deep_merge(deep_merge(a, b), c) == {"x": {"new": 2}}
    assert deep_merge(a, deep_merge(b, c)) == {"x": {"keep": 1, "new": 2}}


@given(layers, layers)
def test_override_wins_for_scalars_and_lists(
    base: dict[str, Any], override: dict[str, Any]
) -> None:
    merged = deep_merge(base, override)
    for key, value in override.items():
        if not (isinstance(value, dict) and isinstance(base.get(key), dict)):
            assert merged[key] == value


@given(layers, layers)
def test_keys_are_preserved(base: dict[str, Any], override: dict[str, Any]) -> None:
    merged = deep_merge(base, override)
    assert set(merged) == set(base) | set(override)
    for key in set(base) - set(override):
        assert merged[key] == base[key]
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            assert merged[key] == deep_merge(base[key], value)


@given(layers)
def test_empty_layers_are_identities(layer: dict[str, Any]) -> None:
    assert deep_merge(layer, {}) == layer
    assert deep_merge({}, layer) == layer


@given(layers, layers)
def test_inputs_are_never_mutated_nor_shared(
    base: dict[str, Any], override: dict[str, Any]
) -> None:
    before = copy.deepcopy((base, override))
    merged = deep_merge(base, override)
    assert (base, override) == before
    inputs = {id(c) for c in [*containers(base), *containers(override)]}
    assert not inputs & {id(c) for c in containers(merged)}


def containers(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from containers(item)
    elif isinstance(value, list):
        yield value
        for item in value:
            yield from containers(item)


def test_examples_of_the_rule() -> None:
    queue = {"resource_args": {"kubernetes": {"requests": {"cpu": "8", "memory": "32Gi"}}}}
    job = {"resource_args": {"kubernetes": {"requests": {"memory": "64Gi"}}}}
    assert deep_merge(queue, job) == {
        "resource_args": {"kubernetes": {"requests": {"cpu": "8", "memory": "64Gi"}}}
    }
    assert deep_merge({"args": ["--a", "--b"]}, {"args": ["--c"]}) == {"args": ["--c"]}
    assert deep_merge({"env": {"A": "1"}}, {"env": None}) == {"env": None}
    assert deep_merge({"env": "x"}, {"env": {"A": "1"}}) == {"env": {"A": "1"}}
