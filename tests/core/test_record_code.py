"""A local ``workdir`` run's record pins its commit, and says when the tree was dirty.

``launchplane run`` as a user runs it (a real process, embedded server and
agent) on code in a real git repository, and ``inspect_worktree`` itself for
what counts as dirty and for failures, which must never fail a job.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from kit import LAUNCHPLANE

from launchplane.agent.gitcode import GitError, inspect_worktree


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(path: Path) -> str:
    """A repository holding ``main.py`` and the job file that runs it; returns HEAD."""
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    (path / "main.py").write_text("print('code v1')\n")
    (path / "job.yaml").write_text("entry_point: main.py\n")
    (path / ".gitignore").write_text("*.log\n")
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "v1")
    return git(path, "rev-parse", "HEAD")


def launch(job: Path, data_dir: Path, **env: str) -> tuple[dict[str, Any], str]:
    """``launchplane run JOB``: the run record and the command's stderr."""
    data_dir.mkdir(parents=True, exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHPLANE_")}
    environment.update(LAUNCHPLANE_HOME=str(data_dir / "home"), **env)
    done = subprocess.run(
        [LAUNCHPLANE, "run", str(job), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        cwd=data_dir,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(Path(re.search(r"record: (\S+)", done.stderr)[1]).read_text())
    return record, done.stderr


def test_workdir_in_a_git_repo_records_its_commit_and_dirtiness(tmp_path: Path) -> None:
    repo = tmp_path / "project"
    head = make_repo(repo)

    clean, _ = launch(repo / "job.yaml", tmp_path / "data")
    (repo / "main.py").write_text("print('code v2, uncommitted')\n")
    dirty, _ = launch(repo / "job.yaml", tmp_path / "data")

    assert clean["code"] == {
        "repository": None,
        "branch": None,
        "commit": head,
        "dirty": False,
        "workdir": str(repo),
    }
    assert dirty["code"] == {**clean["code"], "dirty": True}
    assert dirty["result"]["state"] == "succeeded"


def test_workdir_outside_any_repo_records_no_commit(tmp_path: Path) -> None:
    code = tmp_path / "project"
    code.mkdir()
    assert subprocess.run(["git", "-C", str(code), "rev-parse"], capture_output=True).returncode
    (code / "main.py").write_text("print('hi')\n")
    (code / "job.yaml").write_text("entry_point: main.py\n")

    record, _ = launch(code / "job.yaml", tmp_path / "data")

    assert record["code"] == {
        "repository": None,
        "branch": None,
        "commit": None,
        "dirty": None,
        "workdir": str(code),
    }


def test_without_git_the_job_runs_and_its_record_says_null(tmp_path: Path) -> None:
    repo = tmp_path / "project"
    make_repo(repo)
    no_git = tmp_path / "bin-without-git"
    no_git.mkdir()

    record, stderr = launch(repo / "job.yaml", tmp_path / "data", PATH=str(no_git))

    assert record["result"]["state"] == "succeeded"
    assert (record["code"]["commit"], record["code"]["dirty"]) == (None, None)
    assert "the record has no commit for workdir" in stderr
    assert "git is not installed" in stderr


# -- what counts as dirty, and failures ---------------------------------------------------


@pytest.mark.anyio
async def test_untracked_files_make_a_tree_dirty_unless_ignored(tmp_path: Path) -> None:
    repo = tmp_path / "project"
    head = make_repo(repo)
    (repo / "train.log").write_text("ignored\n")
    clean = await inspect_worktree(repo)
    (repo / "notes.txt").write_text("not ignored\n")
    untracked = await inspect_worktree(repo)

    assert clean is not None and (clean.commit, clean.dirty) == (head, False)
    assert untracked is not None and (untracked.commit, untracked.dirty) == (head, True)


@pytest.mark.anyio
async def test_a_subdirectory_has_its_repositorys_commit_and_the_whole_trees_state(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "project"
    make_repo(repo)
    (repo / "sub").mkdir()
    (repo / "sub" / "keep").write_text("")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "sub")
    head = git(repo, "rev-parse", "HEAD")
    (repo / "main.py").write_text("changed outside sub\n")

    tree = await inspect_worktree(repo / "sub")

    assert tree is not None and (tree.commit, tree.dirty) == (head, True)


@pytest.mark.anyio
async def test_a_repository_without_commits_has_no_commit(tmp_path: Path) -> None:
    git(tmp_path, "init", "--quiet")
    (tmp_path / "main.py").write_text("")

    tree = await inspect_worktree(tmp_path)

    assert tree is not None and (tree.commit, tree.dirty) == (None, True)


@pytest.mark.anyio
async def test_inspection_has_a_deadline(tmp_path: Path) -> None:
    make_repo(tmp_path / "project")
    with anyio.fail_after(5), pytest.raises(GitError, match="longer than 0s"):
        await inspect_worktree(tmp_path / "project", timeout=0)


@pytest.mark.anyio
async def test_the_agents_environment_does_not_reach_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GIT_DIR`` in the agent's environment would point git at another repository."""
    head = make_repo(tmp_path / "project")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere" / ".git"))

    tree = await inspect_worktree(tmp_path / "project")

    assert tree is not None and tree.commit == head


@pytest.mark.anyio
async def test_a_plain_directory_is_told_without_running_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``.git`` up the tree: nothing to ask git, so a job's launch pays no git process."""
    (tmp_path / "plain").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin-without-git"))

    assert await inspect_worktree(tmp_path / "plain") is None
