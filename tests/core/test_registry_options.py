"""Plugin options: validated by the plugin's own model, merged over agent defaults, one
instance per options. Real plugin modules on ``sys.path``, a real registry."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from launchplane.agent.secrets import resolve_secrets
from launchplane.cli import agent as agent_command
from launchplane.core.config import resolve_job
from launchplane.core.errors import ConfigError
from launchplane.core.interfaces import PluginError
from launchplane.core.plugins import PluginRegistry, get_plugin_manager
from launchplane.core.redaction import Redactor
from launchplane.core.registry import BUILDER, SECRET_PROVIDER, PluginOptionsError
from launchplane.core.spec import QUEUE_ONLY_KEYS, QueueConfig

OPTIONS_PLUGIN = """
    import json
    from pathlib import Path

    from pydantic import BaseModel, ConfigDict

    from launchplane import hookimpl
    from launchplane.core.interfaces import Builder, SecretProvider


    class VaultOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: str
        prefix: str = ""


    class FileVault(SecretProvider):
        scheme = "file-vault"
        options_model = VaultOptions

        def __init__(self, options):
            self.options = options

        async def resolve(self, ref):
            return self.options.prefix + json.loads(Path(self.options.path).read_text())[ref.path]


    class BuildahOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        registry: str | None = None
        layers: bool = True


    class Buildah(Builder):
        name = "buildah"
        options_model = BuildahOptions

        def __init__(self, options):
            self.options = options

        async def build(self, job, ctx):
            return None


    @hookimpl
    def launchplane_register_secret_providers(register):
        register(FileVault)


    @hookimpl
    def launchplane_register_builders(register):
        register(Buildah)
"""


@pytest.fixture
def vault_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The options plugin importable as ``options_plugin``; yields a vault file for it."""
    monkeypatch.delenv("LAUNCHPLANE_PLUGINS", raising=False)
    monkeypatch.setenv("LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "options_plugin.py").write_text(textwrap.dedent(OPTIONS_PLUGIN))
    vault = tmp_path / "vault.json"
    vault.write_text(json.dumps({"db": "db-password-1", "hf": "hf-token-22"}))
    yield vault
    sys.modules.pop("options_plugin", None)


def registry(**defaults: Any) -> PluginRegistry:
    return get_plugin_manager(["options_plugin"], strict=True, defaults=defaults or None)


# --- builders -------------------------------------------------------------------------


def test_a_builder_is_built_with_its_validated_options(vault_file: Path) -> None:
    plugins = registry()
    builder = plugins.builder("buildah", {"registry": "127.0.0.1:5000"})
    assert type(builder.options).__name__ == "BuildahOptions"
    assert (builder.options.registry, builder.options.layers) == ("127.0.0.1:5000", True)
    # One instance per options: the same options (in any order) share it.
    same = plugins.builder("buildah", {"layers": True, "registry": "127.0.0.1:5000"})
    assert plugins.builder("buildah", {"registry": "127.0.0.1:5000"}) is builder
    assert same is not builder  # given differently: its own (equal) instance
    assert plugins.builder("buildah", {"registry": "other:5000"}) is not builder
    assert plugins.builder("buildah").options.registry is None


def test_a_bad_builder_option_names_the_field_and_the_plugin(vault_file: Path) -> None:
    with pytest.raises(PluginOptionsError) as caught:
        registry().builder("buildah", {"registy": "x", "layers": "sometimes"})
    assert str(caught.value) == (
        "builder.options.layers: Input should be a valid boolean, unable to interpret input "
        "(got 'sometimes'); "
        "builder.options.registy: unknown key (did you mean 'registry'?) (builder 'buildah')"
    )
    assert [error.path for error in caught.value.errors] == [
        "builder.options.layers",
        "builder.options.registy",
    ]
    assert isinstance(caught.value, PluginError)  # the build stage reports it as is


def test_a_plugin_without_an_options_model_takes_none(vault_file: Path) -> None:
    plugins = registry()
    assert plugins.builder("noop", {}) is plugins.builder("noop")
    with pytest.raises(PluginOptionsError, match=r"^builder\.options: takes no options, got: x "):
        plugins.builder("noop", {"x": 1})


def test_validate_options_checks_without_creating(vault_file: Path) -> None:
    plugins = registry()
    checked = plugins.validate_options(SECRET_PROVIDER, "file-vault", {"path": "/v.json"})
    assert checked is not None and checked.model_dump() == {"path": "/v.json", "prefix": ""}
    assert plugins.validate_options(BUILDER, "noop") is None
    with pytest.raises(PluginError, match=r"^unknown builder 'buildha' \(did you mean 'buildah'"):
        plugins.validate_options(BUILDER, "buildha", {})


# --- secret providers -----------------------------------------------------------------


@pytest.mark.anyio
async def test_secret_providers_are_built_with_the_queue_options(vault_file: Path) -> None:
    redactor = Redactor()
    resolved = await resolve_secrets(
        {"DB": "file-vault:db", "HF": "file-vault:hf"},
        registry(),
        redactor,
        options={"file-vault": {"path": str(vault_file)}},
    )
    assert resolved.values == {"DB": "db-password-1", "HF": "hf-token-22"}
    assert redactor.scrub("db-password-1") == "***"


@pytest.mark.anyio
async def test_a_missing_option_fails_once_with_its_path_and_the_provider(
    vault_file: Path,
) -> None:
    with pytest.raises(PluginError) as caught:
        await resolve_secrets(
            {"DB": "file-vault:db", "HF": "file-vault:hf"},
            registry(),
            Redactor(),
            options={"file-vault": {"prefx": "p-"}},
        )
    assert str(caught.value) == (  # one line for the provider, not one per secret
        "secret_providers.file-vault.path: Field required; "
        "secret_providers.file-vault.prefx: unknown key (did you mean 'prefix'?) "
        "(provider 'file-vault')"
    )


@pytest.mark.anyio
async def test_agent_defaults_apply_and_the_queue_wins_key_by_key(vault_file: Path) -> None:
    agent = {"file-vault": {"path": str(vault_file), "prefix": "agent-"}}
    plugins = registry(**{"secret-provider": agent})

    defaults_only = await resolve_secrets({"DB": "file-vault:db"}, plugins, Redactor())
    queue_wins = await resolve_secrets(
        {"DB": "file-vault:db"},
        plugins,
        Redactor(),
        options={"file-vault": {"prefix": "queue-"}},
    )

    assert defaults_only.values == {"DB": "agent-db-password-1"}
    assert queue_wins.values == {"DB": "queue-db-password-1"}  # the agent's path is kept


@pytest.mark.anyio
async def test_options_for_a_misspelt_scheme_are_an_error(vault_file: Path) -> None:
    with pytest.raises(PluginError) as caught:
        await resolve_secrets(
            {"DB": "file-vault:db"},
            registry(),
            Redactor(),
            options={"file-vault": {"path": str(vault_file)}, "file-valt": {"path": "/x"}},
        )
    assert str(caught.value).startswith(
        "secret_providers.file-valt: unknown secret provider 'file-valt' "
        "(did you mean 'file-vault'?); available: "
    )


# --- where the options come from ------------------------------------------------------


def test_a_queue_sets_provider_options_and_a_job_cannot() -> None:
    queue = {
        "resource": "local-process",
        "secrets": {"DB": "file-vault:db"},
        "secret_providers": {"file-vault": {"path": "/etc/vault.json"}},
    }
    assert "secret_providers" in QUEUE_ONLY_KEYS
    assert QueueConfig.model_validate(queue).secret_providers == {
        "file-vault": {"path": "/etc/vault.json"}
    }
    resolved = resolve_job(queue, {"command": ["true"]})
    assert resolved.secret_providers == {"file-vault": {"path": "/etc/vault.json"}}

    with pytest.raises(ConfigError) as caught:
        resolve_job(queue, {"command": ["true"], "secret_providers": {"file-vault": {}}})
    assert str(caught.value) == (
        "secret_providers: is a queue setting that only an admin can change"
    )


def test_an_agent_config_gives_provider_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(agent_command, "_run", lambda settings: seen.append(settings) or 0)
    config = tmp_path / "agent.yaml"
    config.write_text("queues: [q]\nsecret_providers:\n  file-vault: {path: /etc/vault.json}\n")

    done = CliRunner().invoke(agent_command.agent, ["-c", str(config)])

    assert done.exit_code == 0, done.output
    assert seen[0]["secret_providers"] == {"file-vault": {"path": "/etc/vault.json"}}

    config.write_text("queues: [q]\nsecret_providers:\n  file-vault: /etc/vault.json\n")
    refused = CliRunner().invoke(agent_command.agent, ["-c", str(config)])
    assert refused.exit_code == 2
    assert "secret_providers: expected a mapping of scheme -> options mapping" in refused.output


# --- queue checks (queue create, plan) ------------------------------------------------


def _queue_problems(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    from launchplane.core.config.queue_check import inspect_queue_config
    from launchplane.core.plugin_checks import check_queue_plugins

    checked = inspect_queue_config(config)
    errors, warnings = check_queue_plugins(checked.config, checked.placeholders, registry())
    return [f"{e.path}: {e.message}" for e in errors], [f"{w.path}: {w.message}" for w in warnings]


def test_a_queue_s_provider_options_are_checked_by_the_provider_s_model(
    vault_file: Path,
) -> None:
    errors, _ = _queue_problems({"secret_providers": {"file-vault": {"pth": "/etc/vault.json"}}})
    assert errors == ["secret_providers.file-vault.pth: unknown key (did you mean 'path'?)"]
    errors, _ = _queue_problems({"secret_providers": {"env": {"prefix": "X_"}}})
    assert errors == ["secret_providers.env: provider 'env' takes no options"]
    errors, warnings = _queue_problems({"secret_providers": {"acme-sm": {"region": "eu-west-1"}}})
    assert errors == [] and warnings[0].startswith("secret_providers.acme-sm: ")
    # A missing field may come from the agent config's defaults: not judged here.
    assert _queue_problems({"secret_providers": {"file-vault": {"prefix": "p"}}}) == ([], [])


def test_a_queue_s_builder_options_are_checked_by_the_builder_s_model(vault_file: Path) -> None:
    errors, _ = _queue_problems({"builder": {"type": "buildah", "options": {"layers": "often"}}})
    assert errors == [
        "builder.options.layers: Input should be a valid boolean, unable to interpret input "
        "(got 'often')"
    ]
