"""Plugin options and lifecycle on a real agent: queue and agent config reach the plugin,
and every plugin instance is closed when the agent stops."""

from __future__ import annotations

import importlib
import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from agentkit import QUEUE, agent_process
from kit import running_agent, subprocess_env, wait_for_state

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

PLUGIN = """
    import json
    from pathlib import Path

    from pydantic import BaseModel, ConfigDict

    from launchplane import hookimpl
    from launchplane.core.interfaces import SecretProvider

    CLOSED = []


    class VaultOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: str
        prefix: str = ""


    class FakeVault(SecretProvider):
        scheme = "fake-vault"
        options_model = VaultOptions

        def __init__(self, options):
            self.options = options

        async def resolve(self, ref):
            return self.options.prefix + json.loads(Path(self.options.path).read_text())[ref.path]

        async def aclose(self):
            CLOSED.append(self.options.prefix)


    @hookimpl
    def launchplane_register_secret_providers(register):
        register(FakeVault)
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``agent_options_plugin`` importable by the in-process agent's ``--plugins``."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "agent_options_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.delitem(sys.modules, "agent_options_plugin", raising=False)
    yield importlib.import_module("agent_options_plugin")
    sys.modules.pop("agent_options_plugin", None)


async def test_queue_options_over_agent_defaults_reach_the_provider_and_it_is_closed(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path, plugin: ModuleType
) -> None:
    vault = tmp_path / "vault.json"
    vault.write_text(json.dumps({"ci/token": "s3cret-value"}))
    await server.ensure_queue(
        QUEUE,
        {
            "resource": "local-process",
            "secrets": {"TOKEN": "fake-vault:ci/token"},
            "secret_providers": {"fake-vault": {"prefix": "queue-"}},
        },
    )
    check = '[ "$TOKEN" = "queue-s3cret-value" ]'
    async with running_agent(
        server,
        tmp_path / "work",
        [QUEUE],
        plugins=["agent_options_plugin"],
        secret_providers={"fake-vault": {"path": str(vault), "prefix": "agent-"}},
    ):
        job = await client.submit_job(QUEUE, {"command": ["sh", "-c", check]})
        done = await wait_for_state(client, job["id"])
        assert plugin.CLOSED == []  # instances live as long as the agent

    assert done["state"] == "succeeded", done
    assert plugin.CLOSED == ["queue-"]  # closed once, when the agent stopped


async def test_launch_agent_config_file_gives_provider_defaults(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path, plugin: ModuleType
) -> None:
    """``launch-agent -c agent.yaml`` with ``secret_providers:``, as an operator runs it."""
    vault = tmp_path / "vault.json"
    vault.write_text(json.dumps({"ci/token": "s3cret-value"}))
    config = tmp_path / "agent.yaml"
    config.write_text(
        json.dumps({"secret_providers": {"fake-vault": {"path": str(vault), "prefix": "agent-"}}})
    )
    await server.ensure_queue(
        QUEUE, {"resource": "local-process", "secrets": {"TOKEN": "fake-vault:ci/token"}}
    )
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    env = subprocess_env(PYTHONPATH=path)
    args = ("-c", str(config), "--plugins", "agent_options_plugin")
    async with agent_process(server, tmp_path, *args, env=env):
        check = '[ "$TOKEN" = "agent-s3cret-value" ]'
        job = await client.submit_job(QUEUE, {"command": ["sh", "-c", check]})
        done = await wait_for_state(client, job["id"])

    assert done["state"] == "succeeded", done


async def test_a_bad_provider_option_fails_the_job_naming_it(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path, plugin: ModuleType
) -> None:
    await server.ensure_queue(
        QUEUE,
        {
            "resource": "local-process",
            "secrets": {"TOKEN": "fake-vault:ci/token"},
            "secret_providers": {"fake-vault": {"prefix": "queue-"}},
        },
    )
    async with running_agent(server, tmp_path / "work", [QUEUE], plugins=["agent_options_plugin"]):
        job = await client.submit_job(QUEUE, {"command": ["true"]})
        done = await wait_for_state(client, job["id"])

    assert (done["state"], done["failure_stage"]) == ("failed", "secrets")
    assert done["reason"].startswith(
        "secret_providers.fake-vault.path: Field required (provider 'fake-vault')"
    )


NATIVE = """
    import json

    from launchplane import hookimpl
    from launchplane.core.interfaces import SecretProvider
    from launchplane.plugins.runners.local import LocalProcessRunner


    class ClusterSecrets(SecretProvider):
        scheme = "cluster"

        async def resolve(self, ref):
            raise AssertionError("resolve() called: the value passed the agent")

        def native_ref(self, ref, runner):
            if runner == "recording":
                return {"secretKeyRef": {"name": ref.path, "key": ref.key}}
            return None


    class RecordingRunner(LocalProcessRunner):
        '''local-process, writing what it received to <run dir>/received.json first.'''
        name = "recording"

        async def submit(self, job, image, ctx):
            received = {"native": ctx.native_secrets, "env": sorted(ctx.env)}
            (ctx.workdir / "received.json").write_text(json.dumps(received))
            return await super().submit(job, image, ctx)


    @hookimpl
    def launchplane_register_secret_providers(register):
        register(ClusterSecrets)


    @hookimpl
    def launchplane_register_runners(register):
        register(RecordingRunner)
"""


async def test_the_runner_receives_native_references_the_agent_never_fetches(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "agent_native_plugin.py").write_text(textwrap.dedent(NATIVE))
    monkeypatch.delitem(sys.modules, "agent_native_plugin", raising=False)
    await server.ensure_queue(
        "cluster",
        {
            "resource": "recording",
            "secrets": {"DB_PASSWORD": "cluster:db-credentials#password"},
        },
    )
    async with running_agent(
        server, tmp_path / "work", ["cluster"], plugins=["agent_native_plugin"]
    ):
        job = await client.submit_job("cluster", {"command": ["sh", "-c", "env"]})
        done = await wait_for_state(client, job["id"])
    sys.modules.pop("agent_native_plugin", None)

    assert done["state"] == "succeeded", done
    run_dir = next((tmp_path / "work").glob(f"{job['id']}-*"))
    received = json.loads((run_dir / "received.json").read_text())
    assert received["native"] == {
        "DB_PASSWORD": {"secretKeyRef": {"name": "db-credentials", "key": "password"}}
    }
    assert "DB_PASSWORD" not in received["env"]  # no value to put there
