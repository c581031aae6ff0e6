"""Helpers for the Docker tests: the real engine, the base image, the loopback registry.

Everything a test builds is named ``launchplane/lptest-*`` (or
``<registry>/lptest/*``) so the session can remove it at the end, and every
test app carries a per-session nonce so its content hash is new in every
session: "the first build builds" holds even though images and the registry
outlive a test run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from kit import DOCKER_BASE_IMAGE as BASE_IMAGE

from launchplane.core.interfaces import JobContext
from launchplane.core.spec import ResolvedJob

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
HELLO = REPO / "examples" / "hello"
REGISTRY = os.environ.get("LAUNCHPLANE_REGISTRY", "127.0.0.1:5000")
TEST_PREFIX = "lptest"
NONCE = uuid.uuid4().hex
"""Changes every session, so content hashes (and tags) of test apps are new each time."""


def registry_up() -> bool:
    try:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=2):
            return True
    except OSError:
        return False


def make_app(path: Path, files: Mapping[str, str] | None = None, *, hello: bool = True) -> Path:
    """A code directory: ``examples/hello`` (unless ``hello=False``) + a nonce + ``files``."""
    if hello:
        shutil.copytree(HELLO, path, ignore=shutil.ignore_patterns("__pycache__", "output"))
    else:
        path.mkdir(parents=True)
    (path / "nonce.txt").write_text(NONCE + "\n")
    for name, text in (files or {}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return path


def git_commit_all(path: Path) -> str:
    """Make ``path`` a git repository with everything committed; the commit."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(path), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "--quiet", "--initial-branch=main")
    git("config", "user.email", "tests@example.com")
    git("config", "user.name", "tests")
    git("add", ".")
    git("commit", "--quiet", "-m", "hello")
    return git("rev-parse", "HEAD")


def job_spec(name: str, **fields: Any) -> ResolvedJob:
    """A resolved job named ``lptest-<name>`` building on the test base image."""
    data: dict[str, Any] = {
        "name": f"{TEST_PREFIX}-{name}",
        "builder": {"type": "docker", "base_image": BASE_IMAGE},
        "resource": "docker",
    }
    data.update(fields)
    return ResolvedJob.model_validate(data)


@dataclass
class Log:
    """A ``ctx.log`` sink that keeps every line."""

    lines: list[str] = field(default_factory=list)

    async def __call__(self, line: str) -> None:
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines)


def context(
    tmp_path: Path,
    run: str,
    *,
    env: Mapping[str, str] | None = None,
    code_dir: Path | None = None,
    log: Log | None = None,
) -> JobContext:
    """A JobContext for run ``lptest<run>-<nonce>-1`` with its own run directory."""
    job_id = f"{TEST_PREFIX}{run}-{NONCE[:8]}"
    workdir = tmp_path / f"run-{run}"
    (workdir / "output").mkdir(parents=True, exist_ok=True)
    return JobContext(
        job_id=job_id,
        run_id=f"{job_id}-1",
        attempt=1,
        queue="docker-tests",
        workdir=workdir,
        env=dict(env or {}),
        log=log,
        code_dir=code_dir,
    )


async def collect(lines: Any) -> list[str]:
    return [line async for line in lines]


async def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.05)


def cleanup(client: Any) -> None:
    """Remove every container and image the Docker tests made (by name prefix).

    Images pulled by digest have no tag, only a repo digest: both kinds of
    reference are removed.
    """
    import docker.errors

    for container in client.containers.list(all=True, filters={"name": f"lp-{TEST_PREFIX}"}):
        container.remove(force=True)
    for image in client.images.list():
        references = [*image.tags, *image.attrs.get("RepoDigests", [])]
        for reference in references:
            if f"/{TEST_PREFIX}" in reference:
                # Gone already: removing an image's tag can take its digest reference
                # with it, and a concurrent test run may have removed it first.
                with contextlib.suppress(docker.errors.NotFound):
                    client.images.remove(reference, force=True)
