"""Modules that moved in 0.2 still import for one release, each use warning where it went."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("launchplane.core.cli", "main", "launchplane.cli"),
        ("launchplane.core.agent", "Agent", "launchplane.agent.loop"),
        ("launchplane.core.pipeline", "JobPipeline", "launchplane.agent.pipeline"),
        ("launchplane.core.records", "RunRecorder", "launchplane.agent.records"),
        ("launchplane.core.gitcode", "checkout", "launchplane.agent.gitcode"),
        ("launchplane.core.secrets", "Redactor", "launchplane.core.redaction"),
        ("launchplane.core.secrets", "parse_ref", "launchplane.core.interfaces"),
        ("launchplane.core.secrets", "resolve_secrets", "launchplane.agent.secrets"),
        ("launchplane.core.templates", "expand_macros", "launchplane.core.config.macros"),
    ],
)
def test_an_old_name_still_imports_with_a_warning(old: str, name: str, new: str) -> None:
    module = importlib.import_module(old)
    with pytest.deprecated_call(match=f"{old}.{name} moved to {new}.{name}"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(new), name)


def test_an_alias_is_no_package_and_knows_only_moved_names() -> None:
    module = importlib.import_module("launchplane.core.secrets")
    assert not hasattr(module, "__path__")  # `from ... import x` must not look for submodules
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        module.nothing_here  # noqa: B018
