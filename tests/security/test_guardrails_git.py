"""Guardrails (issue 15): the agent's own git never runs a program of a submitter's repository.

The finding: a submitter ``workdir`` at a repository whose config sets
``core.fsmonitor`` made the agent's ``git status`` (which records whether the
tree is dirty) run the submitter's program as the agent's user. Real git,
real repositories, and a real server and agent on loopback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kit import running_agent, wait_for_state

from launchplane.agent.gitcode import inspect_worktree
from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer
from launchplane.server.settings import ServerSettings

pytestmark = pytest.mark.anyio


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


TRAPS = ("fsmonitor", "filter")


def booby_trapped_repo(path: Path, canary: Path, traps: tuple[str, ...] = TRAPS) -> str:
    """A repository whose config runs ``canary``'s writer from git status; returns HEAD.

    ``core.fsmonitor`` runs on every status; the ``clean`` filter runs for a
    changed file that ``.gitattributes`` marks (``train.py`` is changed after
    the commit so that git must look at its content).
    """
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    (path / "train.py").write_text("print('v1')\n")
    (path / ".gitattributes").write_text("*.py filter=trap\n")
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "v1")
    payload = path.parent / "payload.sh"
    payload.write_text(f'#!/bin/sh\necho "$0 $*" >> {canary}\ncat\n')
    payload.chmod(0o755)
    if "fsmonitor" in traps:
        git(path, "config", "core.fsmonitor", str(payload))
    if "filter" in traps:
        git(path, "config", "filter.trap.clean", str(payload))
        git(path, "config", "filter.trap.process", str(payload))
    # Same size, later mtime: only the file's content (through the filter) tells it changed.
    (path / "train.py").write_text("print('v2')\n")
    later = (path / "train.py").stat().st_mtime + 10
    os.utime(path / "train.py", (later, later))
    return git(path, "rev-parse", "HEAD")


@pytest.mark.parametrize("trap", ["fsmonitor", "filter"])
async def test_inspecting_a_submitters_work_tree_runs_none_of_its_programs(
    tmp_path: Path, trap: str
) -> None:
    canary = tmp_path / "canary"
    head = booby_trapped_repo(tmp_path / "repo", canary, (trap,))

    tree = await inspect_worktree(tmp_path / "repo")

    assert not canary.exists(), canary.read_text()
    assert tree is not None and (tree.commit, tree.dirty) == (head, True)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    settings = ServerSettings(data_dir=tmp_path / "data", sweep_interval=0.05)
    async with EmbeddedServer(settings=settings) as srv:
        yield srv


async def test_agent_runs_a_submitters_workdir_without_running_its_git_config(
    server: EmbeddedServer, submitter: LaunchplaneClient, tmp_path: Path
) -> None:
    """End to end: the queue lets submitters use a shared root; the job's own program is the
    queue's locked command; the agent records the tree's commit, and nothing else runs."""
    canary = tmp_path / "canary"
    shared = tmp_path / "shared"
    head = booby_trapped_repo(shared / "repo", canary)
    await server.ensure_queue(
        "shared",
        {
            "command": [sys.executable, "-c", "print('queue program')"],
            "locked": ["command"],
            "guardrails": {"workdir_roots": [str(shared)]},
        },
    )
    job = await submitter.submit_job("shared", {"workdir": str(shared / "repo")})
    async with running_agent(server, tmp_path / "work", ["shared"]):
        done = await wait_for_state(submitter, job["id"], timeout=60)

    assert done["state"] == "succeeded", done
    assert not canary.exists(), canary.read_text()
    record = await submitter.get_record(job["id"])
    assert (record["code"]["commit"], record["code"]["dirty"]) == (head, True)


# -- the build context never leaves the job's code directory ---------------------------------


def repo_with_escape(path: Path) -> None:
    """A repository with ``escape`` -> ``/etc``: a relative workdir that passes the submit check
    and still leads out of the checkout once the symlink is followed."""
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    (path / "train.py").write_text("print('hi')\n")
    (path / "escape").symlink_to("/etc")
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "v1")


async def test_docker_build_context_never_leaves_the_checkout(
    server: EmbeddedServer, submitter: LaunchplaneClient, tmp_path: Path
) -> None:
    """A workdir symlinked to /etc would make /etc the image's build context (host files in the
    image); the agent refuses it before the builder reads a file."""
    repo = tmp_path / "repo"
    repo_with_escape(repo)
    await server.ensure_queue(
        "build",
        {
            "resource": "docker",
            "builder": {"type": "docker"},
            "git": {"repository": str(repo)},  # the admin's repository: a local one is fine
            "entry_point": "train.py",
        },
    )
    job = await submitter.submit_job("build", {"workdir": "escape"})
    async with running_agent(server, tmp_path / "work", ["build"]):
        done = await wait_for_state(submitter, job["id"], timeout=60)

    assert done["state"] == "failed", done
    assert "workdir 'escape' leaves the job's code directory (it is /etc)" in done["reason"]
