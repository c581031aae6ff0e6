"""The ``aws-sm`` secret provider against moto's Secrets Manager, with real boto3 over HTTP.

The first tests drive the provider directly; the end-to-end ones run a real
queue server and a real ``launch-agent`` process (local-process queue) or an
in-process agent (docker queue) whose secrets stage reads moto.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kit import (
    DOCKER_BASE_IMAGE,
    LAUNCHPLANE,
    agent_process,
    log_lines,
    require_docker,
    running_agent,
    subprocess_env,
    wait_for_state,
)

import launchplane.plugins.secrets.aws as aws_sm
from launchplane.agent.secrets import resolve_secrets
from launchplane.core import aws
from launchplane.core.client import LaunchplaneClient
from launchplane.core.interfaces import PluginError, parse_ref
from launchplane.core.plugins import get_plugin_manager
from launchplane.core.redaction import Redactor
from launchplane.core.registry import PluginOptionsError
from launchplane.plugins.secrets.aws import AwsSecretsManagerProvider, AwsSecretsOptions
from launchplane.server.embedded import EmbeddedServer

pytestmark = [pytest.mark.aws, pytest.mark.anyio]

CANARY = f"canary-{uuid.uuid4().hex}-Zq81"
"""A value that must never leave the job: not in logs, records, API answers or errors."""


@pytest.fixture
def sm(aws_env: dict[str, str]) -> Any:
    """A real Secrets Manager client on moto (us-east-1), for the tests to create secrets with."""
    return aws.client("secretsmanager", None, kind="test", name="sm")


def secret(sm: Any, value: str | dict[str, Any], prefix: str = "lp") -> str:
    """A new secret holding ``value`` (a dict as JSON); its unique name."""
    name = f"{prefix}/{uuid.uuid4().hex[:10]}/token"
    text = value if isinstance(value, str) else json.dumps(value)
    sm.create_secret(Name=name, SecretString=text)
    return name


def provider(**options: Any) -> AwsSecretsManagerProvider:
    return AwsSecretsManagerProvider(AwsSecretsOptions(**options))


# -- the provider on moto -------------------------------------------------------------


async def test_plain_and_json_key(sm: Any) -> None:
    plain = secret(sm, CANARY)
    db = secret(sm, {"password": CANARY, "port": 5432, "tls": {"mode": "verify"}})
    sm_provider = provider()
    assert await sm_provider.resolve(parse_ref(f"aws-sm:{plain}")) == CANARY
    assert await sm_provider.resolve(parse_ref(f"aws-sm:{db}#password")) == CANARY
    assert await sm_provider.resolve(parse_ref(f"aws-sm:{db}#port")) == "5432"
    assert await sm_provider.resolve(parse_ref(f"aws-sm:{db}#tls")) == '{"mode": "verify"}'
    arn = sm.describe_secret(SecretId=plain)["ARN"]
    assert await sm_provider.resolve(parse_ref(f"aws-sm:{arn}")) == CANARY


async def test_binary_secret_is_read_as_utf8(sm: Any) -> None:
    name = f"lp/{uuid.uuid4().hex[:10]}/bin"
    sm.create_secret(Name=name, SecretBinary=CANARY.encode())
    assert await provider().resolve(parse_ref(f"aws-sm:{name}")) == CANARY
    sm.put_secret_value(SecretId=name, SecretBinary=b"\xff\xfe" + CANARY.encode())
    with pytest.raises(PluginError) as caught:
        await provider().resolve(parse_ref(f"aws-sm:{name}"))
    assert f"secret '{name}' (stage AWSCURRENT, region us-east-1) is binary and not UTF-8" in str(
        caught.value
    )
    assert CANARY not in str(caught.value)


async def test_failures_name_the_secret_and_never_the_value(sm: Any) -> None:
    db = secret(sm, {"password": CANARY, "user": "app"})
    flat = secret(sm, CANARY)
    missing = f"lp/{uuid.uuid4().hex[:10]}/absent"
    cases = {
        f"aws-sm:{missing}": (
            f"Secrets Manager secret '{missing}' (stage AWSCURRENT, region us-east-1): "
            "not found (ResourceNotFoundException: "
        ),
        f"aws-sm:{db}#pasword": (
            f"Secrets Manager secret '{db}' has no key 'pasword' (its keys: password, user)"
        ),
        f"aws-sm:{flat}#password": (
            f"Secrets Manager secret '{flat}' is not a JSON object, so it has no key 'password'; "
            f"write aws-sm:{flat} for the whole value"
        ),
    }
    for reference, message in cases.items():
        with pytest.raises(PluginError) as caught:
            await provider().resolve(parse_ref(reference))
        assert str(caught.value).startswith(message), str(caught.value)
        assert CANARY not in str(caught.value)
        # No chained boto3 or json error that could quote more of the secret.
        assert caught.value.__context__ is None or caught.value.__suppress_context__


async def test_version_stage_option(sm: Any) -> None:
    name = secret(sm, "old-value-0123456789")
    sm.put_secret_value(SecretId=name, SecretString="new-value-0123456789")
    assert await provider().resolve(parse_ref(f"aws-sm:{name}")) == "new-value-0123456789"
    previous = provider(version_stage="AWSPREVIOUS")
    assert await previous.resolve(parse_ref(f"aws-sm:{name}")) == "old-value-0123456789"
    with pytest.raises(PluginError, match=r"\(stage NOPE, region us-east-1\): not found"):
        await provider(version_stage="NOPE").resolve(parse_ref(f"aws-sm:{name}"))


async def test_region_from_options_over_the_chain(aws_env: dict[str, str]) -> None:
    """The chain says us-east-1 (aws_env); the provider's option sends it to eu-west-2."""
    west = aws.client("secretsmanager", aws.AwsOptions(region="eu-west-2"), kind="t", name="sm")
    name = f"lp/{uuid.uuid4().hex[:10]}/west"
    west.create_secret(Name=name, SecretString=CANARY)
    assert await provider(region="eu-west-2").resolve(parse_ref(f"aws-sm:{name}")) == CANARY
    with pytest.raises(PluginError, match=r"region us-east-1\): not found"):
        await provider().resolve(parse_ref(f"aws-sm:{name}"))


async def test_values_are_kept_for_the_ttl_only(sm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider's clock is replaced by a counter, so expiry is checked without sleeping."""
    now = [1000.0]
    monkeypatch.setattr(aws_sm, "monotonic", lambda: now[0])
    name = secret(sm, "first-value-0123456789")
    ref = parse_ref(f"aws-sm:{name}")
    cached, uncached = provider(ttl_seconds=60), provider(ttl_seconds=0)
    assert await cached.resolve(ref) == "first-value-0123456789"
    assert await uncached.resolve(ref) == "first-value-0123456789"
    sm.put_secret_value(SecretId=name, SecretString="rotated-value-0123456789")
    now[0] += 59
    assert await cached.resolve(ref) == "first-value-0123456789"  # within the TTL: no call
    assert await uncached.resolve(ref) == "rotated-value-0123456789"
    now[0] += 1
    assert await cached.resolve(ref) == "rotated-value-0123456789"  # expired: read again
    await cached.aclose()
    sm.put_secret_value(SecretId=name, SecretString="third-value-0123456789")
    assert await cached.resolve(ref) == "third-value-0123456789"  # aclose forgot the value


async def test_the_cache_is_bounded(sm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws_sm, "MAX_CACHED", 2)
    names = [secret(sm, f"value-{i}-0123456789") for i in range(3)]
    cached = provider()
    for name in names:
        await cached.resolve(parse_ref(f"aws-sm:{name}"))
    assert list(cached._cache) == names[1:]


async def test_a_sagemaker_job_gets_the_secret_id_and_no_value(sm: Any) -> None:
    """For the sagemaker runner the secrets stage fetches nothing (the secret need not exist)."""
    name = f"lp/{uuid.uuid4().hex[:10]}/absent"
    registry = get_plugin_manager()
    resolved = await resolve_secrets(
        {"DB_PASSWORD": f"aws-sm:{name}#password", "TOKEN": f"aws-sm:{name}"},
        registry,
        Redactor(),
        options={"aws-sm": {"version_stage": "AWSPREVIOUS"}},
        runner="sagemaker",
    )
    assert resolved.values == {}
    assert resolved.native == {
        "DB_PASSWORD": {"SecretId": name, "VersionStage": "AWSPREVIOUS", "JsonKey": "password"},
        "TOKEN": {"SecretId": name, "VersionStage": "AWSPREVIOUS"},
    }
    assert provider().native_ref(parse_ref(f"aws-sm:{name}"), "docker") is None


async def test_without_boto3_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # what an install without [aws] has
    with pytest.raises(PluginError) as caught:
        await provider().resolve(parse_ref("aws-sm:prod/db#password"))
    assert str(caught.value) == "secret provider 'aws-sm' needs: pip install 'launchplane[aws]'"


async def test_registered_with_checked_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = get_plugin_manager()
    assert isinstance(registry.secret_provider("aws-sm"), AwsSecretsManagerProvider)
    with pytest.raises(PluginOptionsError) as caught:
        registry.secret_provider("aws-sm", {"ttl_seconds": 86400, "regoin": "eu-west-1"})
    message = str(caught.value)
    assert "secret_providers.aws-sm.ttl_seconds" in message
    assert "secret_providers.aws-sm.regoin" in message


def test_plan_check_secrets_reads_moto(sm: Any, aws_env: dict[str, str], tmp_path: Path) -> None:
    """``launchplane plan --check-secrets`` (a real process) resolves and reports only lengths."""
    db = secret(sm, {"password": CANARY})
    missing = f"lp/{uuid.uuid4().hex[:10]}/absent"
    queue = {"resource": "local-process", "secrets": {"DB_PASSWORD": f"aws-sm:{db}#password"}}
    (tmp_path / "queue.yaml").write_text(json.dumps(queue))
    (tmp_path / "job.yaml").write_text('command: ["true"]\n')
    plan = [LAUNCHPLANE, "plan", "job.yaml", "--queue-config", "queue.yaml", "--check-secrets"]
    env = subprocess_env(**aws_env)

    checked = subprocess.run(
        [*plan, "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["secrets_check"] == {
        "DB_PASSWORD": f"resolved ({len(CANARY)} characters)"
    }
    queue["secrets"] = {"DB_PASSWORD": f"aws-sm:{missing}#password"}
    (tmp_path / "queue.yaml").write_text(json.dumps(queue))
    failed = subprocess.run(plan, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2
    assert f"Secrets Manager secret '{missing}'" in failed.stderr
    assert "ResourceNotFoundException" in failed.stderr
    assert CANARY not in checked.stdout + checked.stderr + failed.stdout + failed.stderr


# -- end to end: server + agent ---------------------------------------------------------

SHOW = (
    "import hashlib, os\n"
    "for name in ('PLAIN', 'DB_PASSWORD'):\n"
    "    value = os.environ[name]\n"
    "    print(name, 'sha256', hashlib.sha256(value.encode()).hexdigest())\n"
    "    print(name, 'raw', value)\n"
)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        yield srv


async def leak_check(
    client: LaunchplaneClient, job_ids: list[str], extra: dict[str, str]
) -> dict[str, str]:
    """What the API answers about the jobs and their queues, plus ``extra`` texts, by place."""
    places = dict(extra)
    for job_id in job_ids:
        job = await client.get_job(job_id)
        places[f"job {job_id}"] = json.dumps(job)
        places[f"logs {job_id}"] = "\n".join(await log_lines(client, job_id))
        places[f"record {job_id}"] = json.dumps(await client.get_record(job_id))
        places[f"queue {job['queue']}"] = json.dumps(await client.get_queue(job["queue"]))
    places["jobs"] = json.dumps(await client.list_jobs())
    places["agents"] = json.dumps(await client.list_agents())
    return places


def assert_no_canary(places: dict[str, str]) -> None:
    import base64

    forbidden = [CANARY, base64.b64encode(CANARY.encode()).decode().rstrip("=")]
    for where, text in places.items():
        for value in forbidden:
            assert value not in text, f"the secret leaked in {where}"


async def test_local_runner_end_to_end(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    sm: Any,
    aws_env: dict[str, str],
    moto_url: str,
    tmp_path: Path,
) -> None:
    """A ``launch-agent`` process reads moto; the endpoint comes from the queue's options.

    The agent's own environment has credentials and a region but no
    ``AWS_ENDPOINT_URL``, so only ``secret_providers.aws-sm.endpoint_url``
    leads it to moto.
    """
    plain = secret(sm, CANARY)
    db = secret(sm, {"password": CANARY, "user": "app"})
    missing = f"lp/{uuid.uuid4().hex[:10]}/absent"
    providers = {"aws-sm": {"endpoint_url": moto_url, "ttl_seconds": 0}}
    await server.ensure_queue(
        "aws-local",
        {
            "resource": "local-process",
            "lease_ttl_seconds": 3,
            "secret_providers": providers,
            "secrets": {"PLAIN": f"aws-sm:{plain}", "DB_PASSWORD": f"aws-sm:{db}#password"},
        },
    )
    await server.ensure_queue(
        "aws-missing",
        {
            "resource": "local-process",
            "lease_ttl_seconds": 3,
            "secret_providers": providers,
            "secrets": {"PLAIN": f"aws-sm:{plain}", "GONE": f"aws-sm:{missing}"},
        },
    )
    token = await server.create_token("agent", queues=["aws-local", "aws-missing"])
    env = subprocess_env(**aws_env)
    del env["AWS_ENDPOINT_URL"]
    async with agent_process(
        server.url,
        token,
        tmp_path / "work",
        queues=["aws-local", "aws-missing"],
        args=["--log-level", "debug"],
        env=env,
        log_name="agent.log",
    ):
        ok = await client.submit_job("aws-local", {"command": ["python3", "-c", SHOW]})
        bad = await client.submit_job("aws-missing", {"command": ["sh", "-c", "echo ran"]})
        ok_job = await wait_for_state(client, ok["id"])
        bad_job = await wait_for_state(client, bad["id"])

    assert ok_job["state"] == "succeeded", ok_job
    lines = await log_lines(client, ok["id"])
    digest = hashlib.sha256(CANARY.encode()).hexdigest()
    assert f"PLAIN sha256 {digest}" in lines and f"DB_PASSWORD sha256 {digest}" in lines
    assert "PLAIN raw ***" in lines and "DB_PASSWORD raw ***" in lines

    assert (bad_job["state"], bad_job["failure_stage"]) == ("failed", "secrets"), bad_job
    assert (
        f"secret GONE (aws-sm:{missing}): Secrets Manager secret '{missing}'" in (bad_job["reason"])
    )
    assert "ResourceNotFoundException" in bad_job["reason"]
    assert "ran" not in await log_lines(client, bad["id"])

    record = await client.get_record(ok["id"])
    assert record["environment"]["secrets"] == ["DB_PASSWORD", "PLAIN"]
    extra = {"agent log": (tmp_path / "agent.log").read_text()}
    for path in (tmp_path / "work").rglob("*"):
        if path.is_file() and path.suffix in {".json", ".log", ".txt"}:
            extra[str(path)] = path.read_text(errors="replace")
    assert "job " in extra["agent log"]  # the agent did log at debug level
    assert_no_canary(await leak_check(client, [ok["id"], bad["id"]], extra))


@pytest.mark.docker
async def test_docker_runner_end_to_end(
    server: EmbeddedServer,
    client: LaunchplaneClient,
    sm: Any,
    aws_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """An in-process agent (the AWS chain from its environment: aws_env) on a docker queue."""
    require_docker()
    plain = secret(sm, CANARY)
    db = secret(sm, {"password": CANARY})
    await server.ensure_queue(
        "aws-docker",
        {
            "resource": "docker",
            "builder": {"type": "noop"},
            "lease_ttl_seconds": 5,
            "secrets": {"PLAIN": f"aws-sm:{plain}", "DB_PASSWORD": f"aws-sm:{db}#password"},
        },
    )
    job = {"docker": {"image": DOCKER_BASE_IMAGE}, "command": ["python3", "-c", SHOW]}
    async with running_agent(server, tmp_path / "work", ["aws-docker"]):
        submitted = await client.submit_job("aws-docker", job)
        done = await wait_for_state(client, submitted["id"], timeout=60)

    assert done["state"] == "succeeded", done
    lines = await log_lines(client, submitted["id"])
    digest = hashlib.sha256(CANARY.encode()).hexdigest()
    assert f"PLAIN sha256 {digest}" in lines and f"DB_PASSWORD sha256 {digest}" in lines
    assert "PLAIN raw ***" in lines and "DB_PASSWORD raw ***" in lines
    record = await client.get_record(submitted["id"])
    assert_no_canary(await leak_check(client, [submitted["id"]], {}))
    assert record["environment"]["secrets"] == ["DB_PASSWORD", "PLAIN"]
