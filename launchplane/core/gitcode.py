"""Check out a job's git code into its run directory, pinned to a commit.

A run is reproducible only if its exact code is known, so a branch is
resolved to the commit it points at and that commit is what the record
keeps. Local paths and ``file://`` URLs work like remote URLs.

git runs with a minimal environment: ``PATH``, the locale, ``HOME`` and
``SSH_AUTH_SOCK`` (so the host's configured git credentials and ssh keys keep
working), ``GIT_TERMINAL_PROMPT=0`` (fail instead of waiting for a password)
and an explicit list of allowed transports (no ``ext::``). No other variable
of the agent - in particular no secret - reaches git, and git runs in its own
session so ssh cannot prompt on the agent's terminal.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio

ALLOWED_PROTOCOLS = "file:git:http:https:ssh"
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


class GitError(Exception):
    """A clone or checkout failed; the message names the repository and git's own words."""


@dataclass(frozen=True)
class Checkout:
    path: Path
    commit: str


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
    scrub: Callable[[str], str] = str,
) -> Checkout:
    """Clone ``repository`` into ``dest`` at ``commit`` (or the tip of ``branch``, or HEAD).

    ``scrub`` cleans git's messages before they go into an error (the job's redactor).
    """
    env = git_env()

    async def git(*args: str, cwd: Path | None = None) -> str:
        try:
            done = await anyio.run_process(
                ["git", "-c", "advice.detachedHead=false", *args],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                check=False,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise GitError("git is not installed on the agent host (needed for git code)") from exc
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
            raise GitError(
                scrub(
                    f"git {args[0]} of {safe_url(repository)} failed: "
                    + (" / ".join(message) or f"exit code {done.returncode}")
                )
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
    return Checkout(dest, resolved)
