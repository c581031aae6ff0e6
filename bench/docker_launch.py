#!/usr/bin/env python3
"""Docker: a first build of examples/hello and a cached re-launch, through the public CLI.

``launchplane run JOB --queue-config examples/docker-queue.yaml --json`` (an
embedded server and agent, the ``docker`` builder and runner) on a copy of
``examples/hello`` with one extra file of random content, so its content hash
(the image tag) is new: the **first build** of that code (the engine's layer
cache for the base image is warm, as it is on any agent host after its first
job). Then the same command again: the tag exists, the builder logs
"already built ... skipping build" and only starts a container: the **cached
re-launch**.

Figures: wall time of each whole command (embedded server start-up
included), and from the run record (agent-side timestamps) the build stage
(``building`` -> ``running``: hash, build, push to the registry when the queue
names one, create and start the container). Built images are removed afterwards.

Skipped (and said so) when the Docker SDK is not installed
(``pip install 'launchplane[docker]'``), no engine answers, the docker
plugins are not registered, or ``examples/docker-queue.yaml`` is missing. A
registry that does not answer is dropped from a copy of the queue config.
The base image is ``$LAUNCHPLANE_DOCKER_BASE_IMAGE``, else
``launchplane/python-base:bookworm`` when the engine has it.

    .venv/bin/python bench/docker_launch.py [--quick]
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import _common as c

QUEUE_CONFIG = c.ROOT / "examples" / "docker-queue.yaml"
HELLO = c.ROOT / "examples" / "hello"
LOCAL_BASE = "launchplane/python-base:bookworm"


def preconditions() -> tuple[Any, str | None]:
    """(docker client, None) or (None, why the benchmark is skipped)."""
    if not QUEUE_CONFIG.exists():
        return None, f"{QUEUE_CONFIG.relative_to(c.ROOT)} missing (Docker plugins not landed)"
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError:
        return None, "Docker SDK not installed: pip install 'launchplane[docker]'"
    listing = subprocess.run(
        [c.console_script("launchplane"), "plugins"], capture_output=True, text=True, timeout=60
    ).stdout
    runners = next((line for line in listing.splitlines() if line.startswith("runners:")), "")
    builders = next((line for line in listing.splitlines() if line.startswith("builders:")), "")
    if "docker" not in runners or "docker" not in builders:
        return None, "docker builder/runner plugin not installed"
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        return None, f"no Docker engine: {type(exc).__name__}: {str(exc)[:120]}"
    return client, None


def queue_config(directory: Path, notes: list[str]) -> Path:
    """The example queue config, without its registry if none answers there."""
    from launchplane.core.config import load_queue_file

    config = load_queue_file(QUEUE_CONFIG)
    registry = ((config.get("builder") or {}).get("options") or {}).get("registry")
    if not registry:
        return QUEUE_CONFIG
    host, _, rest = registry.partition("/")
    name, _, port = host.partition(":")
    try:
        with socket.create_connection((name, int(port or 443)), timeout=1):
            notes.append(f"images pushed to the registry {host} (as the example configures)")
            return QUEUE_CONFIG
    except OSError:
        pass
    del config["builder"]["options"]["registry"]
    path = directory / "docker-queue.json"
    path.write_text(json.dumps(config))
    notes.append(f"registry {host} not reachable: benchmarked without it (images stay local)")
    del rest
    return path


def launch(
    job: Path, queue: Path, data_dir: Path, env: dict[str, str], importtime: bool = False
) -> dict[str, Any]:
    argv = [
        c.console_script("launchplane"),
        "run",
        str(job),
        "--queue-config",
        str(queue),
        "--data-dir",
        str(data_dir),
        "--json",
    ]
    if importtime:
        argv = [sys.executable, "-X", "importtime", *argv]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    seconds = time.perf_counter() - start
    try:
        summary = json.loads(proc.stdout)
    except ValueError:
        failure = f"launchplane run failed ({proc.returncode}): {proc.stderr[-600:]}"
        raise RuntimeError(failure) from None
    if summary.get("state") != "succeeded":
        raise RuntimeError(f"the job {summary.get('state')}: {summary.get('reason')}")
    record = json.loads(Path(summary["record"]).read_text())
    stamps = {k: c.parse_time(v) for k, v in record["timestamps"].items()}
    imported = sorted(
        {
            line.split("|")[2].strip().split(".")[0]
            for line in proc.stderr.splitlines()
            if line.startswith("import time:") and line.count("|") == 2
        }
    )
    return {
        "wall_s": seconds,
        "build_stage_s": stamps["running"] - stamps["building"],
        "run_s": stamps["finished"] - stamps["running"],
        "image": record.get("image"),
        "skipped_build": "skipping build" in proc.stderr,
        "docker_sdk_imported": "docker" in imported if importtime else None,
    }


def main() -> None:
    parser = c.arguments(__doc__.splitlines()[0])
    args = parser.parse_args()
    title = "Docker: first build and cached re-launch of examples/hello"
    report = c.Report("docker_launch", title, args)
    client, why = preconditions()
    if client is None:
        print(f"Docker: skipped: {why}", flush=True)
        report.skip("first_build_s", "First build + run (launchplane run, wall)", "s", why)
        report.skip("cached_launch_s", "Cached re-launch (launchplane run, wall)", "s", why)
        report.finish()
        return
    env = dict(os.environ)
    if not env.get("LAUNCHPLANE_DOCKER_BASE_IMAGE"):
        try:
            client.images.get(LOCAL_BASE)
            env["LAUNCHPLANE_DOCKER_BASE_IMAGE"] = LOCAL_BASE
        except Exception:
            pass
    report.details["base_image"] = env.get("LAUNCHPLANE_DOCKER_BASE_IMAGE", "python:3.11-slim")
    report.details["engine"] = client.version().get("Version")
    images: set[str] = set()
    with c.workspace("docker") as directory:
        code = directory / "hello"
        shutil.copytree(HELLO, code)
        (code / "bench-nonce.txt").write_text(uuid.uuid4().hex + "\n")
        queue = queue_config(directory, report.notes)
        env["LAUNCHPLANE_HOME"] = str(directory / "home")
        try:
            first = launch(code / "job.yaml", queue, directory / "data", env)
            images.add((first["image"] or {}).get("ref", ""))
            cached = [launch(code / "job.yaml", queue, directory / "data", env)]
            # Positive control of the import checks of startup.py: the Docker SDK *is*
            # imported once the docker plugin runs a job (timings of this run unused).
            traced = launch(code / "job.yaml", queue, directory / "data", env, importtime=True)
        except Exception as exc:
            reason = " ".join(str(exc).split())[:300]
            print(f"Docker: failed: {reason}", flush=True)
            report.fail("first_build_s", "First build + run (launchplane run, wall)", "s", reason)
            report.finish()
            return
        finally:
            for ref in filter(None, images):
                with contextlib.suppress(Exception):
                    client.images.remove(ref, force=True)
    report.details["first"] = first
    report.details["cached"] = cached
    if first["skipped_build"] or not all(run["skipped_build"] for run in cached):
        report.note("unexpected: the first launch reused an image, or a re-launch rebuilt")
    report.add(
        "first_build_s",
        "First build + run (launchplane run, wall)",
        first["wall_s"],
        "s",
        note=f"build stage {first['build_stage_s']:.2f} s, job {first['run_s']:.2f} s",
    )
    report.add(
        "first_build_stage_s",
        "First build: build stage (hash, build, push, start)",
        first["build_stage_s"],
        "s",
    )
    walls = [run["wall_s"] for run in cached]
    stages = [run["build_stage_s"] for run in cached]
    report.add(
        "cached_launch_s",
        "Cached re-launch (launchplane run, wall)",
        c.percentile(walls, 50),
        "s",
        note=f"build stage {c.percentile(stages, 50):.2f} s (no rebuild)",
        spread=c.spread(walls) if len(walls) > 1 else None,
    )
    report.add(
        "docker_sdk_imported",
        "Docker SDK imported when the docker plugin runs a job",
        1.0 if traced["docker_sdk_imported"] else 0.0,
        "",
        note="positive control: -X importtime of launchplane run (1 = yes)",
    )
    report.add(
        "cached_build_stage_s",
        "Cached re-launch: build stage (hash check, start)",
        c.percentile(stages, 50),
        "s",
    )
    report.finish()


if __name__ == "__main__":
    main()
