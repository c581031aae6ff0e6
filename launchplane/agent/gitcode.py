"""Check out a job's git code into its run directory, pinned to a commit.

A run is reproducible only if its exact code is known, so a branch is
resolved to the commit it points at and that commit is what the record
keeps. Local paths and ``file://`` URLs work like remote URLs.

A W&B job's uncommitted changes come as ``git.patch`` (its ``diff.patch``):
applied with ``git apply`` right after the checkout, all or nothing, so the
code is exactly the commit plus the patch (the record calls such a tree
dirty: the commit alone does not hold it). Its pinned requirements
(``requirements``) are written into the code root as
``requirements.frozen.txt`` (:func:`write_requirements`), where W&B puts them.

A job that runs from a local ``workdir`` is not checked out; when that
directory is in a git work tree, :func:`inspect_worktree` reads its HEAD
commit and whether the tree has changes that commit does not hold (the
record keeps both: a dirty tree's code cannot be re-created from the commit).
It only reads: ``GIT_OPTIONAL_LOCKS=0`` stops ``git status`` from refreshing
the index (a lock a user's own git command could trip over).

git runs with a minimal environment: ``PATH``, the locale, ``HOME`` and
``SSH_AUTH_SOCK`` (so the host's configured git credentials and ssh keys keep
working), ``GIT_TERMINAL_PROMPT=0`` (fail instead of waiting for a password),
no system config (``GIT_CONFIG_NOSYSTEM``) and an explicit list of allowed
transports (no ``ext::``, whatever a config says: ``protocol.ext.allow=never``
too). No other variable of the agent - in particular no secret - reaches git,
and git runs in its own session so ssh cannot prompt on the agent's terminal.

A repository's own config can name programs that git runs by itself:
``core.fsmonitor`` (run by ``git status``), hooks, and the ``clean`` /
``process`` commands of filter drivers (run by ``git status`` for a changed
file that ``.gitattributes`` marks). A local work tree is the submitter's,
so every git command runs with ``core.fsmonitor=false`` and
``core.hooksPath=/dev/null`` (:data:`HARDENED`), and :func:`inspect_worktree`
also empties every filter driver the repository's config declares and does not
recurse into submodules. git's own ownership check stays on (``safe.directory``
is never overridden): a repository owned by another user is refused.
``core.sshCommand`` is left to the host's config: git reads it only when it
talks to a remote, which it does only in a clone the agent made itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio

ALLOWED_PROTOCOLS = "file:git:http:https:ssh"
HARDENED = (
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "protocol.ext.allow=never",
)
"""Options before every git command: no program of a repository's config or hooks runs."""
_FILTER_KEY = re.compile(r"filter\.(.+)\.(?:clean|smudge|process)")
INSPECT_TIMEOUT = 10.0
"""Seconds git may take to describe a local work tree: a huge tree or a hung
filesystem must not hold a job's launch for long."""
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


REQUIREMENTS_FILE = "requirements.frozen.txt"


class GitError(Exception):
    """A clone or checkout failed; the message names the repository and git's own words."""

    hint = "check git.repository / git.commit / git.branch"
    """What the user should look at, said after the message."""


class PatchError(GitError):
    """``git.patch`` does not apply to the checked-out commit."""

    hint = (
        "git.patch (a W&B job's diff.patch) must apply with `git apply` to git.commit; "
        "make the job again from that commit, or drop the patch"
    )


@dataclass(frozen=True)
class Checkout:
    path: Path
    commit: str
    patched: bool = False
    """A ``patch`` was applied on top of ``commit``."""


@dataclass(frozen=True)
class WorkTree:
    """A local work tree as a run found it."""

    commit: str | None
    """HEAD; None in a repository that has no commit yet."""
    dirty: bool
    """Changes to tracked files, or untracked files that are not ignored."""


def safe_url(repository: str) -> str:
    """The repository URL without ``user:password@`` (never put a credential in a record)."""
    return _USERINFO.sub("", repository)


def git_env() -> dict[str, str]:
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    for name in ("PATH", "HOME", "LANG", "LC_ALL", "SSH_AUTH_SOCK"):
        value = os.environ.get(name)
        if value:
            env[name] = value
    env.setdefault("PATH", os.defpath)
    return env


async def checkout(
    repository: str,
    dest: Path,
    *,
    commit: str | None = None,
    branch: str | None = None,
    patch: str | None = None,
    label: str = "the job",
    scrub: Callable[[str], str] = str,
) -> Checkout:
    """Clone ``repository`` into ``dest`` at ``commit`` (or the tip of ``branch``, or HEAD).

    ``patch`` (a unified diff, as ``git diff`` writes it) is applied on top with
    ``git apply``; when it does not apply, :class:`PatchError` names ``label``
    (the job), the commit and git's words. ``scrub`` cleans git's messages
    before they go into an error (the job's redactor).
    """
    env = git_env()

    async def git(*args: str, cwd: Path | None = None) -> str:
        done = await _run_git(["-c", "advice.detachedHead=false", *args], env, cwd)
        if done.returncode != 0:
            raise GitError(
                scrub(f"git {args[0]} of {safe_url(repository)} failed: {_failure(done)}")
            )
        return done.stdout.decode().strip()

    if dest.exists() and any(dest.iterdir()):
        raise GitError(f"cannot clone {safe_url(repository)}: {dest} is not empty")
    if commit and commit.startswith("-"):
        raise GitError(f"git.commit {commit!r} is not a commit")
    if commit:
        await git("clone", "--quiet", "--no-checkout", "--", repository, str(dest))
        try:
            await git("checkout", "--quiet", "--detach", commit, cwd=dest)
        except GitError as exc:
            raise GitError(f"{exc} (is commit {commit} in the repository?)") from None
    else:
        options = ["--branch", branch, "--single-branch"] if branch else []
        await git("clone", "--quiet", *options, "--", repository, str(dest))
    resolved = await git("rev-parse", "HEAD", cwd=dest)
    if patch is None or not patch.strip():
        return Checkout(dest, resolved)
    await _apply_patch(dest, patch, env, f"{label}'s git.patch", resolved, scrub)
    return Checkout(dest, resolved, patched=True)


async def _apply_patch(
    dest: Path, patch: str, env: dict[str, str], what: str, commit: str, scrub: Callable[[str], str]
) -> None:
    """``git apply`` the patch in ``dest``; its file lives next to ``dest``, not in the code."""
    fd, name = tempfile.mkstemp(prefix=".launchplane-", suffix=".patch", dir=dest.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(patch if patch.endswith("\n") else patch + "\n")
        done = await _run_git(["apply", "--whitespace=nowarn", name], env, dest)
    finally:
        os.unlink(name)
    if done.returncode != 0:
        raise PatchError(scrub(f"{what} does not apply to commit {commit}: {_failure(done)}"))


def _failure(done: subprocess.CompletedProcess[bytes]) -> str:
    """What git said when it failed: its last five lines of stderr, else the exit code."""
    message = done.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
    return " / ".join(message) or f"exit code {done.returncode}"


def write_requirements(root: Path, requirements: list[str]) -> Path:
    """Write a job's pinned ``requirements`` into its code root as ``requirements.frozen.txt``.

    Image builders install that file; it replaces one the repository holds
    (the job's pins are the ones it ran with).
    """
    path = root / REQUIREMENTS_FILE
    path.write_text("".join(f"{line}\n" for line in requirements), encoding="utf-8")
    return path


async def inspect_worktree(path: Path, *, timeout: float = INSPECT_TIMEOUT) -> WorkTree | None:
    """The HEAD commit and dirtiness of the git work tree ``path`` is in; None if in none.

    Raises :class:`GitError` when git cannot tell (not installed, too slow, or
    refusing the repository, e.g. one owned by another user).
    """
    if not any((directory / ".git").exists() for directory in (path, *path.parents)):
        return None  # where git itself would look: no git process for a plain directory
    try:
        with anyio.fail_after(timeout):
            inside = await _git_in(path, "rev-parse", "--is-inside-work-tree")
            if inside.returncode != 0 and b"not a git repository" in inside.stderr:
                return None
            if inside.returncode != 0:
                raise _failed(path, "rev-parse", inside)
            if inside.stdout.strip() != b"true":  # in a .git directory
                return None
            head = await _git_in(path, "rev-parse", "--verify", "--quiet", "HEAD")
            disarmed = await _filters_off(path)
            status = await _git_in(
                path,
                *disarmed,
                "status",
                "--porcelain",
                "--untracked-files=normal",
                "--ignore-submodules=all",
            )
    except TimeoutError:
        raise GitError(f"git took longer than {timeout:g}s to describe {path}") from None
    if status.returncode != 0:
        raise _failed(path, "status", status)
    commit = head.stdout.decode().strip() if head.returncode == 0 else ""
    return WorkTree(commit or None, dirty=bool(status.stdout.strip()))


async def _filters_off(path: Path) -> list[str]:
    """``-c filter.NAME.clean=`` (and smudge, process) for every filter driver the config of
    the repository at ``path`` declares: an empty command is no filter, so ``git status``
    compares the file's bytes instead of running the repository's program."""
    listed = await _git_in(path, "config", "--null", "--name-only", "--get-regexp", r"^filter\.")
    names = {
        found[1]
        for key in listed.stdout.decode("utf-8", "replace").split("\0")
        if (found := _FILTER_KEY.fullmatch(key.strip()))
    }
    return [
        option
        for name in sorted(names)
        for part in ("clean", "smudge", "process")
        for option in ("-c", f"filter.{name}.{part}=")
    ]


async def _git_in(path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """A read-only git command in ``path``; its exit code is the caller's to judge."""
    # The C locale keeps git's "not a git repository" in words inspect_worktree recognises.
    env = {**git_env(), "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"}
    return await _run_git(["-C", str(path), *args], env)


async def _run_git(
    args: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """git in a session of its own, without stdin (it can never prompt on the agent's terminal)."""
    try:
        return await anyio.run_process(
            ["git", *HARDENED, *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed on the agent host") from exc


def _failed(path: Path, command: str, done: subprocess.CompletedProcess[bytes]) -> GitError:
    message = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
    return GitError(
        f"git {command} in {path} failed: "
        + (" / ".join(message) or f"exit code {done.returncode}")
    )
