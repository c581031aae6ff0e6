"""Plugin contract v1: incomplete plugins are refused, naming what is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from launchplane.core.interfaces import (
    Builder,
    Image,
    JobContext,
    Plugin,
    Run,
    Runner,
    SecretProvider,
    SecretRef,
)
from launchplane.core.spec import ResolvedJob

pytestmark = pytest.mark.anyio

# -- incomplete classes are refused -----------------------------------------------------


@pytest.mark.parametrize(
    ("base", "required"),
    [
        (Runner, {"describe", "submit"}),
        (Builder, {"build"}),
        (SecretProvider, {"resolve"}),
        (Run, {"status", "wait", "cancel", "logs"}),
    ],
)
def test_an_empty_subclass_is_abstract_and_names_every_missing_method(
    base: type, required: set[str]
) -> None:
    empty = type(f"Empty{base.__name__}", (base,), {"name": "empty", "scheme": "empty"})
    assert empty.__abstractmethods__ == frozenset(required)
    with pytest.raises(TypeError) as caught:
        empty()
    assert all(name in str(caught.value) for name in required)


def test_a_runner_missing_only_submit_is_refused_naming_submit() -> None:
    class HalfRunner(Runner):
        name = "half"

        def describe(self, job: ResolvedJob, image: Image | None) -> dict[str, Any]:
            return {}

    assert HalfRunner.__abstractmethods__ == frozenset({"submit"})
    with pytest.raises(TypeError, match="submit"):
        HalfRunner()


async def test_optional_methods_have_working_defaults(tmp_path: Path) -> None:
    class Complete(Runner, SecretProvider):
        name = "complete"
        scheme = "complete"

        def describe(self, job: ResolvedJob, image: Image | None) -> dict[str, Any]:
            return {}

        async def submit(self, job: ResolvedJob, image: Image | None, ctx: JobContext) -> Any:
            raise AssertionError

        async def resolve(self, ref: SecretRef) -> str:
            return "value"

    plugin = Complete()
    assert isinstance(plugin, Plugin) and plugin.options is None
    assert await plugin.attach("j-1", tmp_path / "j-1") is None
    assert plugin.native_ref(SecretRef("complete", "a"), "docker") is None
    assert await plugin.aclose() is None
    assert JobContext("j", "j-1", 1, "q", tmp_path).native_secrets == {}
