"""Guardrails (issue 15): what a submitter's job may not do, each attack tried as a submitter.

Each test submits the attack with a submitter token to a real server on
loopback; where the attack needs the agent to show its effect, a real agent
(in this loop, local-process runner) runs whatever the server accepted, and
the test asserts that the canary file the attack writes never appears.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kit import running_agent, wait_for_state

from launchplane.core.client import LaunchplaneClient, ValidationFailed
from launchplane.server.embedded import EmbeddedServer
from launchplane.server.settings import ServerSettings

pytestmark = pytest.mark.anyio

PYTHON = sys.executable


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    settings = ServerSettings(data_dir=tmp_path / "data", sweep_interval=0.05)
    async with EmbeddedServer(settings=settings) as srv:
        yield srv


async def attempt(
    server: EmbeddedServer,
    submitter: LaunchplaneClient,
    queue: str,
    job: dict[str, Any],
    work_dir: Path,
    **submit: Any,
) -> ValidationFailed | dict[str, Any]:
    """Submit ``job``; if the server accepts it, a real agent runs it to its end.

    The refusal, or the finished job (the attack got through to the agent).
    """
    try:
        accepted = await submitter.submit_job(queue, job, **submit)
    except ValidationFailed as exc:
        return exc
    async with running_agent(server, work_dir, [queue]):
        return await wait_for_state(submitter, accepted["id"], timeout=60)


def refused_paths(outcome: ValidationFailed | dict[str, Any]) -> dict[str, str]:
    assert isinstance(outcome, ValidationFailed), f"accepted and run: {outcome}"
    assert outcome.status == 422
    return {error["path"]: error["message"] for error in outcome.errors}


# -- env names that control interpreters and loaders -----------------------------------


async def test_interpreter_env_cannot_run_code_inside_a_locked_command(
    server: EmbeddedServer, submitter: LaunchplaneClient, tmp_path: Path
) -> None:
    """The issue's finding: PYTHONWARNINGS imports ``antigravity``, which opens $BROWSER.

    The queue locks command, args and workdir; before the fix the submitter's
    BROWSER command ran inside the admin's ``python -c pass``.
    """
    canary = tmp_path / "canary"
    await server.ensure_queue(
        "locked",
        {"command": [PYTHON, "-c", "pass"], "locked": ["command", "args", "workdir"]},
    )
    job = {
        "env": {
            "PYTHONWARNINGS": "ignore::antigravity.Attack",
            "BROWSER": f"sh -c 'touch {canary}' %s",
        }
    }
    outcome = await attempt(server, submitter, "locked", job, tmp_path / "work")
    assert not canary.exists()
    errors = refused_paths(outcome)
    assert set(errors) == {"env.PYTHONWARNINGS", "env.BROWSER"}
    assert errors["env.PYTHONWARNINGS"].startswith(
        "PYTHONWARNINGS makes Python import, run or change code of the submitter's choice"
    )
    assert "guardrails.env_allow" in errors["env.BROWSER"]


async def test_loader_and_shell_names_are_refused_in_every_spelling(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    """LD_PRELOAD in env, as a W&B ``-e`` flag of a docker queue, in a Kubernetes manifest."""
    await server.ensure_queue("plain", {"resource": "local-process"})
    with pytest.raises(ValidationFailed) as caught:
        await submitter.submit_job(
            "plain", {"env": {"LD_PRELOAD": "/tmp/evil.so", "BASH_ENV": "/tmp/x", "OK": "1"}}
        )
    assert {e["path"] for e in caught.value.errors} == {"env.LD_PRELOAD", "env.BASH_ENV"}
    # Overrides are submitter layers too.
    with pytest.raises(ValidationFailed) as caught:
        await submitter.submit_job("plain", {}, overrides=[{"env": {"NODE_OPTIONS": "-r x"}}])
    assert [e["path"] for e in caught.value.errors] == ["env.NODE_OPTIONS"]

    await server.ensure_queue("docker", {"resource": "docker", "docker": {"image": "x:1"}})
    with pytest.raises(ValidationFailed) as caught:
        await submitter.submit_job(
            "docker", {"resource_args": {"docker": {"env": ["LD_AUDIT=/tmp/a.so", "A=1"]}}}
        )
    assert [e["path"] for e in caught.value.errors] == ["resource_args.docker.env.0"]

    await server.ensure_queue("k8s", {"resource": "kubernetes", "docker": {"image": "x:1"}})
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "main", "env": [{"name": "PYTHONPATH"}]}]}
            }
        },
    }
    with pytest.raises(ValidationFailed) as caught:
        await submitter.submit_job("k8s", {"resource_args": {"kubernetes": manifest}})
    assert "resource_args.kubernetes.spec.template.spec.containers.0.env.0" in {
        e["path"] for e in caught.value.errors
    }


async def test_queue_allows_denies_or_lists_env_names(
    server: EmbeddedServer, submitter: LaunchplaneClient, client: LaunchplaneClient
) -> None:
    await server.ensure_queue(
        "tuned",
        {
            "guardrails": {"env_allow": ["PYTHONPATH"], "env_deny": ["MPLBACKEND", "MY_*"]},
            "env": {"LD_LIBRARY_PATH": "/opt/cuda/lib64"},  # the admin's env: not restricted
        },
    )
    accepted = await submitter.submit_job(
        "tuned", {"env": {"PYTHONPATH": "src", "PYTHONUNBUFFERED": "1", "HF_HOME": "/c"}}
    )
    assert accepted["resolved"]["env"]["LD_LIBRARY_PATH"] == "/opt/cuda/lib64"
    with pytest.raises(ValidationFailed) as caught:
        await submitter.submit_job("tuned", {"env": {"MPLBACKEND": "module://x", "MY_A": "1"}})
    assert {e["path"] for e in caught.value.errors} == {"env.MPLBACKEND", "env.MY_A"}
    assert "guardrails.env_deny" in caught.value.errors[0]["message"]

    await server.ensure_queue("only", {"guardrails": {"env_only": ["HF_*", "SEED"]}})
    await submitter.submit_job("only", {"env": {"HF_HOME": "/c", "SEED": "1"}})
    with pytest.raises(ValidationFailed) as caught:
        await submitter.submit_job("only", {"env": {"CUDA_VISIBLE_DEVICES": "0"}})
    assert caught.value.errors[0]["message"] == (
        "CUDA_VISIBLE_DEVICES is not in the queue's guardrails.env_only (here: HF_*, SEED); "
        "use one of those names, or ask an admin to add CUDA_VISIBLE_DEVICES to "
        "guardrails.env_only"
    )
    # An admin's own submission is trusted with the host.
    accepted = await client.submit_job("only", {"env": {"LD_LIBRARY_PATH": "/opt/lib"}})
    assert accepted["resolved"]["env"] == {"LD_LIBRARY_PATH": "/opt/lib"}


# -- workdir ------------------------------------------------------------------------------


async def test_submitter_workdir_stays_inside_the_queues_roots(
    server: EmbeddedServer, submitter: LaunchplaneClient, tmp_path: Path
) -> None:
    """A workdir of /etc, ~ or ../.. is refused; a folder of the checkout and an allowed root
    are fine."""
    shared = tmp_path / "shared"
    await server.ensure_queue("q", {"guardrails": {"workdir_roots": [str(shared)]}})
    git = {"repository": "https://example.com/org/repo.git"}
    for workdir in ("/etc", "~/.ssh", "../../..", "src/../../x", f"{shared}/../secrets"):
        with pytest.raises(ValidationFailed) as caught:
            await submitter.submit_job("q", {"git": git, "workdir": workdir})
        assert [e["path"] for e in caught.value.errors] == ["workdir"], workdir
    message = (await _refusal(submitter, "q", {"workdir": "/etc"}))["workdir"]
    assert message == (
        f"/etc is a directory of the agent host, which a submitter may name only inside the "
        f"queue's guardrails.workdir_roots (here: {shared}); give git: and a folder of its "
        "checkout, or ask an admin to add a root"
    )
    for workdir in ("src", "./src/train", str(shared / "team-a")):
        await submitter.submit_job("q", {"git": git, "workdir": workdir})


async def _refusal(client: LaunchplaneClient, queue: str, job: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as caught:
        await client.submit_job(queue, job)
    return {e["path"]: e["message"] for e in caught.value.errors}


# -- git remotes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repository", "said"),
    [
        ("ext::sh -c touch% /tmp/canary", "remote helper 'ext::'"),
        ("fd::3", "remote helper 'fd::'"),
        ("evil://host/repo", "unknown transport 'evil://'"),
        ("file:///srv/other-team/repo", "is a repository on the agent host"),
        ("/srv/other-team/repo", "is a repository on the agent host"),
        ("../other-team", "is a repository on the agent host"),
    ],
)
async def test_submitter_git_remote_must_be_a_network_remote(
    server: EmbeddedServer, submitter: LaunchplaneClient, repository: str, said: str
) -> None:
    await server.ensure_queue("q", {})
    errors = await _refusal(submitter, "q", {"git": {"repository": repository}})
    assert list(errors) == ["git.repository"]
    assert said in errors["git.repository"]
    # The W&B spelling (a launch spec's uri) is the same field.
    if repository.startswith("file://"):
        errors = await _refusal(submitter, "q", {"uri": repository})
        assert errors["git.repository"].endswith("(written as uri)")


async def test_queue_may_allow_local_remotes(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    await server.ensure_queue("local", {"guardrails": {"git_local_remotes": True}})
    for repository in ("file:///srv/repos/train", "/srv/repos/train"):
        await submitter.submit_job("local", {"git": {"repository": repository}})
    errors = await _refusal(submitter, "local", {"git": {"repository": "ext::sh -c id"}})
    assert "remote helper 'ext::'" in errors["git.repository"]
    for repository in ("https://h/r.git", "git@h:org/r.git", "ssh://git@h/r", "git://h/r"):
        await submitter.submit_job("local", {"git": {"repository": repository}})


# -- template values and what runs -----------------------------------------------------------


async def test_template_value_stays_one_argv_word(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    """``command: "python train.py --lr {{lr}}"``: the value cannot add ``--config /etc/passwd``."""
    await server.ensure_queue(
        "t",
        {
            "command": "python train.py --lr {{lr}} --name=run-{{lr}}",
            "template_variables": {"lr": {"type": "string"}},
        },
    )
    job = await submitter.submit_job("t", {}, template_variables={"lr": "0.1 --config /etc/passwd"})
    assert job["resolved"]["command"] == [
        "python",
        "train.py",
        "--lr",
        "0.1 --config /etc/passwd",
        "--name=run-0.1 --config /etc/passwd",
    ]


async def test_kubernetes_manifest_cannot_run_its_own_program_on_a_locked_queue(
    server: EmbeddedServer, submitter: LaunchplaneClient
) -> None:
    """A sidecar, an init container or the first container's own command would run the
    submitter's program beside (or instead of) the queue's locked one."""
    await server.ensure_queue(
        "k8s",
        {
            "resource": "kubernetes",
            "docker": {"image": "x:1"},
            "entry_point": ["python", "approved.py"],
            "locked": ["entry_point"],
        },
    )
    pod = {
        "initContainers": [{"name": "init", "image": "x:1", "command": ["sh", "-c", "id"]}],
        "containers": [
            {"name": "main", "args": ["--evil"]},
            {"name": "side", "image": "x:1", "command": ["sh"], "args": ["-c", "id"]},
        ],
    }
    manifest = {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": pod}}}
    errors = await _refusal(submitter, "k8s", {"resource_args": {"kubernetes": manifest}})
    base = "resource_args.kubernetes.spec.template.spec"
    assert set(errors) == {
        f"{base}.initContainers.0.command",
        f"{base}.containers.0.args",
        f"{base}.containers.1.command",
        f"{base}.containers.1.args",
    }
    # A queue that does not fix what runs leaves the manifest's commands to the submitter.
    await server.ensure_queue("open", {"resource": "kubernetes", "docker": {"image": "x:1"}})
    await submitter.submit_job("open", {"resource_args": {"kubernetes": manifest}})
