"""The ``env`` secret provider reads the agent's own environment."""

from __future__ import annotations

import pytest

from launchplane.agent.secrets import resolve_secrets
from launchplane.core.interfaces import PluginError, SecretRef, parse_ref
from launchplane.core.plugins import get_plugin_manager
from launchplane.core.redaction import Redactor
from launchplane.plugins.secrets.env import EnvSecretProvider


@pytest.mark.anyio
async def test_reads_the_agent_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_HF_TOKEN", "hf_agent_value")
    assert await EnvSecretProvider().resolve(parse_ref("env:AGENT_HF_TOKEN")) == "hf_agent_value"


@pytest.mark.anyio
async def test_reads_at_resolve_time(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = EnvSecretProvider()
    monkeypatch.setenv("ROTATING", "first-value")
    assert await provider.resolve(SecretRef("env", "ROTATING")) == "first-value"
    monkeypatch.setenv("ROTATING", "second-value")
    assert await provider.resolve(SecretRef("env", "ROTATING")) == "second-value"


@pytest.mark.anyio
async def test_missing_variable_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_THERE_AT_ALL", raising=False)
    with pytest.raises(PluginError, match=r"^environment variable NOT_THERE_AT_ALL is not set"):
        await EnvSecretProvider().resolve(SecretRef("env", "NOT_THERE_AT_ALL"))


@pytest.mark.anyio
async def test_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB", "a-secret-value")
    with pytest.raises(PluginError) as caught:
        await EnvSecretProvider().resolve(parse_ref("env:DB#password"))
    assert str(caught.value) == "env:DB#password: environment references take no #key; write env:DB"


@pytest.mark.anyio
async def test_through_the_registry_and_resolve_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("AGENT_WANDB_KEY", "wandb-key-0123456789")
    registry = get_plugin_manager()
    assert isinstance(registry.secret_provider("env"), EnvSecretProvider)
    redactor = Redactor()
    resolved = await resolve_secrets({"WANDB_API_KEY": "env:AGENT_WANDB_KEY"}, registry, redactor)
    assert resolved.values == {"WANDB_API_KEY": "wandb-key-0123456789"}
    assert redactor.scrub("key=wandb-key-0123456789") == "key=***"
