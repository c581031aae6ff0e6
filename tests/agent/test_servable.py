"""Which queues an agent serves: a builder that only needs its queue's options is there."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from launchplane.agent.servable import missing_plugin
from launchplane.core.plugins import PluginRegistry, get_plugin_manager

PLUGIN = """
    from pydantic import BaseModel, ConfigDict

    from launchplane import hookimpl
    from launchplane.core.interfaces import Builder


    class PushOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        registry: str


    class PushingBuilder(Builder):
        name = "pushing"
        options_model = PushOptions

        def __init__(self, options):
            self.options = options

        async def build(self, job, ctx):
            return None


    @hookimpl
    def launchplane_register_builders(register):
        register(PushingBuilder)
"""


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginRegistry]:
    monkeypatch.delenv("LAUNCHPLANE_PLUGINS", raising=False)
    monkeypatch.setenv("LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "servable_test_plugin.py").write_text(textwrap.dedent(PLUGIN))
    yield get_plugin_manager(["servable_test_plugin"], strict=True)
    sys.modules.pop("servable_test_plugin", None)


def test_a_builder_with_required_options_is_servable(registry: PluginRegistry) -> None:
    config = {"builder": {"type": "pushing", "options": {"registry": "127.0.0.1:5000"}}}
    assert missing_plugin(registry, config) is None


def test_options_held_by_a_placeholder_are_judged_when_a_job_runs(
    registry: PluginRegistry,
) -> None:
    config = {
        "builder": {"type": "pushing", "options": {"registry": "{{registry}}"}},
        "template_variables": {"registry": {"type": "string", "default": "r:5000"}},
    }
    assert missing_plugin(registry, config) is None
    assert missing_plugin(registry, {"builder": {"type": "pushing"}}) is None


def test_a_builder_that_is_not_installed_is_named(registry: PluginRegistry) -> None:
    reason = missing_plugin(registry, {"builder": {"type": "buildah"}})
    assert reason is not None and "builder 'buildah'" in reason
