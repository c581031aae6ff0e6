#!/usr/bin/env python3
"""Kubernetes dispatch latency: from just before the submit call to the job's pod being created.

Set-up: ``launchplane server`` (SQLite) and one ``launch-agent`` as separate
processes on loopback; a queue with the ``kubernetes`` runner and the noop
builder (the job names its image, so nothing is built). The cluster is the
test suite's emulator (``tests/kubernetes/k8skit.py``: kmock's in-memory API
server plus the test-side pod controller, which turns a Job into a Pod as the
Job controller would and runs its container on the local Docker engine), in
this process's event loop. The agent talks to it with the real ``kubernetes``
client through a kubeconfig, exactly as it would to a cluster.

    Job created = the controller saw the agent's Job (the emulator's watch event)
    pod created = the controller's POST of the Job's Pod returned
    latency     = pod created - time taken just before submit_job()

Both times come from this process's monotonic clock. The figure is what the
agent and server add before the cluster has a pod: a real cluster adds its
own Job-controller latency (typically tens of ms) on top, and scheduling,
image pulls and container start after it. Also printed: submit -> claimed
(the server's event), submit -> Job created (where the agent's part ends) and
submit -> first line of the job's output (the container's ``time.time()``,
read back through the API; includes ``docker run`` on this host).

Needs the test extra (``kmock``, ``kubernetes``) and a Docker engine with the
test base image (``scripts/services/docker.sh``).

    .venv/bin/python bench/k8s_latency.py [--quick] [--jobs 20]
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import _common as c
import anyio

sys.path.insert(0, str(c.ROOT / "tests" / "kubernetes"))

NAMESPACE = "bench"
BASE_IMAGE = os.environ.get("LAUNCHPLANE_TEST_BASE_IMAGE", "launchplane/python-base:bookworm")
QUEUE_CONFIG: dict[str, Any] = {
    "resource": "kubernetes",
    "builder": {"type": "noop"},
    "resource_args": {"kubernetes": {"namespace": NAMESPACE}},
}
JOB: dict[str, Any] = {
    "name": "bench-k8s",
    "docker": {"image": BASE_IMAGE},
    "command": ["python3", "-c", "import time; print('first-line', time.time(), flush=True)"],
}


async def _sample(
    client: Any, kube: Any, job_id: str, before_wall: float, before: float
) -> dict[str, Any]:
    """One job's figures, once it has ended (``before``: monotonic, ``before_wall``: epoch)."""
    final = await client.wait_for_job(job_id, poll=1)
    if final["state"] != "succeeded":
        raise RuntimeError(f"job {job_id} ended {final['state']} ({final.get('reason')})")
    pod = next(
        t for name, t in kube.controller.pod_created.items() if name.startswith(f"lp-{job_id}-1-")
    )
    claimed = next(c.parse_time(e["at"]) for e in final["events"] if e["state"] == "claimed")
    page = await client.read_logs(job_id, after=0)
    first = next(
        float(line["line"].split()[1])
        for line in page["lines"]
        if line["line"].startswith("first-line ")
    )
    return {
        "job_id": job_id,
        "to_claimed_ms": (claimed - before_wall) * 1000,
        "job_created_ms": (kube.controller.job_seen[f"lp-{job_id}-1"] - before) * 1000,
        "pod_created_ms": (pod - before) * 1000,
        "first_line_ms": (first - before_wall) * 1000,
    }


async def _submit_all(client: Any, n: int, seed: int) -> list[tuple[str, float, float]]:
    """A cold job (waited for), then ``n`` jobs with random gaps: (id, epoch, monotonic)."""
    rng = random.Random(seed)
    sent: list[tuple[str, float, float]] = []
    for index in range(n + 1):
        if index:
            await anyio.sleep(rng.uniform(0, 1))
        before_wall, before = time.time(), anyio.current_time()
        submitted = await client.submit_job(c.QUEUE, JOB)
        sent.append((submitted["id"], before_wall, before))
        if not index:
            await client.wait_for_job(submitted["id"], poll=1)
    return sent


async def _measure(directory: Path, n: int, seed: int) -> dict[str, Any]:
    import docker
    from k8skit import cluster

    from launchplane.core.client import LaunchplaneClient

    async with cluster(directory, docker.from_env()) as kube:
        os.environ["KUBECONFIG"] = str(kube.kubeconfig)  # the agent process inherits it
        with c.ServerProcess(directory) as server:
            token = await c.setup_queue(server, config=QUEUE_CONFIG)
            with c.AgentProcess(directory, server.url, token, max_jobs=4) as agent:
                async with LaunchplaneClient(server.url, server.admin_token) as client:
                    await c.wait_registered(client, agent)
                    await anyio.sleep(0.5)  # the agent's first claim long-poll is open
                    sent = await _submit_all(client, n, seed)
                    try:
                        samples = [await _sample(client, kube, *job) for job in sent]
                    except RuntimeError as exc:
                        log = c.tail(agent.log_path, 5)
                        raise RuntimeError(f"{exc}; agent log: {log}") from None
    return {"cold": samples[0], "samples": samples[1:]}


def _unavailable() -> str | None:
    """Why the benchmark cannot run here (no test extra, no Docker engine), or None."""
    try:
        import docker
        import kmock  # noqa: F401
        import kubernetes  # noqa: F401

        docker.from_env(timeout=5).ping()
    except Exception as exc:
        return f"needs the test extra and a Docker engine ({type(exc).__name__}: {exc})"
    return None


def main() -> None:
    parser = c.arguments(__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, help="Jobs measured [20; --quick: 6].")
    parser.add_argument("--seed", type=int, default=7, help="Seed of the gaps between submits.")
    args = parser.parse_args()
    n = args.jobs or (6 if args.quick else 20)
    report = c.Report("k8s_latency", "Kubernetes: submit -> pod created (emulator)", args)
    why = _unavailable()
    if why:
        report.skip("pod_created_ms_p50", "Submit -> pod created p50", "ms", why)
        report.finish()
        return
    with c.workspace("k8s") as directory:
        result = anyio.run(_measure, directory, n, args.seed)
    samples = result["samples"]
    for key, label in (
        ("to_claimed_ms", "Submit -> claimed"),
        ("job_created_ms", "Submit -> Job created"),
        ("pod_created_ms", "Submit -> pod created"),
        ("first_line_ms", "Submit -> first output line"),
    ):
        stats = c.summary([s[key] for s in samples])
        report.add(f"{key}_p50", f"{label} p50", stats["p50"], "ms", note=f"n={stats['n']}")
        report.add(f"{key}_p95", f"{label} p95", stats["p95"], "ms")
    report.add(
        "cold_pod_created_ms",
        "First job after agent start: submit -> pod created",
        result["cold"]["pod_created_ms"],
        "ms",
        note="one-off imports in the agent (the kubernetes client)",
    )
    report.note(
        "the emulator's pod controller stands in for the Job controller; a real cluster adds "
        "its own Job -> Pod latency, scheduling, image pull and container start"
    )
    report.details.update(result)
    report.finish()


if __name__ == "__main__":
    main()
