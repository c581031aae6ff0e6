"""Git checkout of a job's code: pinned commits, branches resolved to commits, clear errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from launchplane.agent.gitcode import GitError, checkout, safe_url

pytestmark = pytest.mark.anyio


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> dict[str, str]:
    """A repository with two commits on main and one more on branch ``feature``."""
    path = tmp_path / "origin"
    path.mkdir()
    git(path, "init", "--quiet", "--initial-branch=main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    (path / "train.py").write_text("print('v1')\n")
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "v1")
    first = git(path, "rev-parse", "HEAD")
    (path / "train.py").write_text("print('v2')\n")
    git(path, "commit", "--quiet", "-am", "v2")
    second = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "--quiet", "-b", "feature")
    (path / "train.py").write_text("print('feature')\n")
    git(path, "commit", "--quiet", "-am", "feature")
    feature = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "--quiet", "main")
    return {"path": str(path), "first": first, "second": second, "feature": feature}


async def test_pinned_commit_is_checked_out(repo: dict[str, str], tmp_path: Path) -> None:
    done = await checkout(repo["path"], tmp_path / "code", commit=repo["first"][:10])
    assert done.commit == repo["first"]  # a short sha is recorded in full
    assert (done.path / "train.py").read_text() == "print('v1')\n"


async def test_branch_resolves_to_its_commit(repo: dict[str, str], tmp_path: Path) -> None:
    done = await checkout(f"file://{repo['path']}", tmp_path / "code", branch="feature")
    assert done.commit == repo["feature"]
    assert (done.path / "train.py").read_text() == "print('feature')\n"


async def test_default_branch_when_nothing_is_pinned(repo: dict[str, str], tmp_path: Path) -> None:
    done = await checkout(repo["path"], tmp_path / "code")
    assert done.commit == repo["second"]


async def test_unknown_commit_names_repository_and_git_message(
    repo: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(GitError) as info:
        await checkout(repo["path"], tmp_path / "code", commit="deadbeef" * 5)
    message = str(info.value)
    assert repo["path"] in message and "deadbeef" in message


async def test_missing_repository_error_is_scrubbed(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope-s3cr3t-value")
    with pytest.raises(GitError) as info:
        await checkout(missing, tmp_path / "code", scrub=lambda t: t.replace("s3cr3t", "***"))
    assert "git clone of" in str(info.value)
    assert "s3cr3t" not in str(info.value)


async def test_commit_that_looks_like_an_option_is_refused(
    repo: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(GitError, match="is not a commit"):
        await checkout(repo["path"], tmp_path / "code", commit="--orphan")


def test_credentials_never_reach_records() -> None:
    assert safe_url("https://user:tok3n@example.com/r.git") == "https://example.com/r.git"
    assert safe_url("git@github.com:org/repo.git") == "git@github.com:org/repo.git"
