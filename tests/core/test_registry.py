"""The registry keyed by kind: one table of kinds drives the registries, lookups and listing."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from launchplane.cli.plugins import render_summary, report_json
from launchplane.core.plugins import get_plugin_manager
from launchplane.core.registry import BUILDER, KINDS, RUNNER, SECRET_PROVIDER
from launchplane.plugins.builders.noop import NoopBuilder


@pytest.fixture(autouse=True)
def _builtins_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAUNCHPLANE_PLUGINS", raising=False)
    monkeypatch.setenv("LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD", "1")


def test_each_kind_has_one_read_only_registry() -> None:
    registry = get_plugin_manager()
    assert registry.classes(BUILDER)["noop"] is NoopBuilder
    assert registry.builders == registry.classes(BUILDER)
    assert registry.runners == registry.classes(RUNNER)
    assert registry.secret_providers == registry.classes(SECRET_PROVIDER)
    with pytest.raises(TypeError):
        registry.runners["slurm"] = NoopBuilder  # type: ignore[index]


def test_the_listing_follows_the_kinds_table() -> None:
    registry = get_plugin_manager()
    data = report_json(registry)
    assert [key for key in data if key not in {"plugins", "load_errors"}] == [
        kind.plural for kind in KINDS
    ]
    assert render_summary(registry).splitlines()[1:] == [
        f"{kind.heading}: {', '.join(sorted(registry.classes(kind)))}" for kind in KINDS
    ]


def test_the_contract_modules_do_not_import_the_registry() -> None:
    """hookspecs and interfaces are what plugins import; the registry sits above them."""
    code = (
        "import sys, launchplane.core.hookspecs, launchplane.core.interfaces; "
        "print(sorted(m for m in sys.modules if m.startswith('launchplane.core.') and "
        "m.rsplit('.', 1)[1] in ('registry', 'loader', 'plugins', 'builtin_plugins')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_typed_register_callbacks_are_public() -> None:
    import launchplane
    from launchplane.core import hookspecs

    hooks = {
        "RegisterBuilder": hookspecs.launchplane_register_builders,
        "RegisterRunner": hookspecs.launchplane_register_runners,
        "RegisterSecretProvider": hookspecs.launchplane_register_secret_providers,
    }
    for alias, hook in hooks.items():
        assert alias in launchplane.__all__
        assert getattr(launchplane, alias) is getattr(hookspecs, alias)
        assert hook.__annotations__["register"] == alias


LIFECYCLE_PLUGIN = """
    from pydantic import BaseModel

    from launchplane import hookimpl
    from launchplane.core.interfaces import Builder, SecretProvider

    CLOSED = []


    class Tagged(BaseModel):
        tag: str = "default"


    class ClientBuilder(Builder):
        name = "client-builder"
        options_model = Tagged

        def __init__(self, options):
            self.options = options

        async def build(self, job, ctx):
            return None

        async def aclose(self):
            CLOSED.append(f"builder:{self.options.tag}")


    class BrokenClose(SecretProvider):
        scheme = "broken-close"

        async def resolve(self, ref):
            return "value"

        async def aclose(self):
            CLOSED.append("provider")
            raise RuntimeError("socket already gone")


    @hookimpl
    def launchplane_register_builders(register):
        register(ClientBuilder)


    @hookimpl
    def launchplane_register_secret_providers(register):
        register(BrokenClose)
"""


@pytest.mark.anyio
async def test_aclose_closes_every_instance_once_and_logs_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "lifecycle_plugin.py").write_text(textwrap.dedent(LIFECYCLE_PLUGIN))
    monkeypatch.delitem(sys.modules, "lifecycle_plugin", raising=False)
    registry = get_plugin_manager(["lifecycle_plugin"], strict=True)
    closed = importlib.import_module("lifecycle_plugin").CLOSED
    registry.secret_provider("broken-close")
    registry.builder("client-builder", {"tag": "a"})
    registry.builder("client-builder", {"tag": "b"})
    registry.builder("client-builder", {"tag": "a"})  # the same instance as the first

    with caplog.at_level(logging.ERROR, logger="launchplane.core.plugins"):
        await registry.aclose()

    assert sorted(closed) == ["builder:a", "builder:b", "provider"]
    assert "plugin 'lifecycle_plugin': secret-provider 'broken-close': aclose() failed" in (
        caplog.text
    )
    assert "socket already gone" in caplog.text
    await registry.aclose()  # nothing left to close
    assert len(closed) == 3
    registry.builder("client-builder", {"tag": "a"})  # a new instance, closed next time
    await registry.aclose()
    assert closed[3:] == ["builder:a"]
    sys.modules.pop("lifecycle_plugin", None)


def test_entrypoints_md_documents_every_kind_and_register_type() -> None:
    """A new kind is one row here too: its hook, base class and key in the Registries table."""
    text = (Path(__file__).resolve().parents[2] / "entrypoints.md").read_text()
    sections = {line for line in text.splitlines() if line.startswith("## ")}
    assert {"## Loading", "## Registries", "## Options", "## Listing"} <= sections
    registries = text.split("\n## Registries\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in registries.splitlines() if line.startswith("| `")]
    for kind in KINDS:
        row = next(line for line in rows if line.startswith(f"| `{kind.key}` |"))
        assert f"`{kind.hook}`" in row and f"`{kind.base.__name__}`" in row
        assert f"`{kind.attr}`" in row
    for alias in (
        "RegisterBuilder",
        "RegisterRunner",
        "RegisterSecretProvider",
        "RegisterArtifactStore",
    ):
        assert alias in text
