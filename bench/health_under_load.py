#!/usr/bin/env python3
"""/health latency while the server stores one big log batch: does one batch stall it?

A ``launchplane server`` process (SQLite by default, ``--db postgresql`` for a
scratch PostgreSQL database) gets one job claimed by a bench agent. Then, for
``--batches`` rounds, the agent posts one log batch of ``--lines`` empty lines
(about 349,000: a JSON body just under the 1 MiB body limit, the most rows
one call can carry) while a second connection sends ``GET /health`` one after
another, one due every 5 ms, each timed from when it was due (a call held up
by a stall counts every call it delayed). Figures: /health p50/p99/max during
the batches (and idle, before them, for comparison), and the wall time of one
batch.

The body is encoded before timing starts, and the two clients run on their own
connections, so what is measured is the server: a /health answer waits for
whatever the server's event loop does in between.

    .venv/bin/python bench/health_under_load.py [--quick] [--batches 5] [--db postgresql]

Before/after a change: run it once with ``PYTHONPATH`` at each tree.
"""

from __future__ import annotations

import contextlib
import json
import time

import _common as c
import anyio
import httpx

from launchplane.core.limits import MAX_BODY_BYTES

HEALTH_TARGET_P99_MS = 50.0
PING_MS = 5.0


def batch_body(lines: int | None) -> tuple[bytes, int]:
    """The JSON body of one batch of empty lines and its line count (default: as many as fit)."""
    if lines is None:
        lines = (MAX_BODY_BYTES - 64) // 3  # '"",' per line
    body = json.dumps({"lines": [""] * lines, "first_seq": None}, separators=(",", ":"))
    if len(body) > MAX_BODY_BYTES:
        raise SystemExit(f"{lines} lines make a body of {len(body)} bytes, over the limit")
    return body.encode(), lines


async def _measure(server: c.ServerProcess, batches: int, lines: int | None) -> dict[str, object]:
    from launchplane.core.client import LaunchplaneClient

    token = await c.setup_queue(server)
    body, count = batch_body(lines)
    async with (
        LaunchplaneClient(server.url, server.admin_token) as admin,
        LaunchplaneClient(server.url, token) as agent,
    ):
        job = await admin.submit_job(c.QUEUE, {"command": ["true"]})
        lease = await agent.claim(c.QUEUE, "bench-health", wait=5)
        if lease is None:
            raise RuntimeError("the bench job was not claimed")
    api = server.url + "/api/v1"
    timeout = httpx.Timeout(120.0)
    async with (
        httpx.AsyncClient(base_url=api, timeout=timeout) as pinger,
        httpx.AsyncClient(
            base_url=api, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        ) as poster,
    ):

        async def health_for(seconds: float | None, done: anyio.Event | None) -> list[float]:
            """/health every PING_MS, latency from when each call was due (so a stall counts
            once per call it delayed, not once: no coordinated omission)."""
            samples: list[float] = []
            interval = PING_MS / 1000
            due = time.perf_counter()
            deadline = due + (seconds or 0)
            while (done is None and due < deadline) or (done is not None and not done.is_set()):
                await anyio.sleep(max(0.0, due - time.perf_counter()))
                answer = await pinger.get("/health")
                end = time.perf_counter()
                answer.raise_for_status()
                while due <= end:
                    samples.append((end - due) * 1000)
                    due += interval
            return samples

        idle = await health_for(2.0, None)
        during: list[float] = []
        batch_ms: list[float] = []
        for _ in range(batches):
            done = anyio.Event()

            async def ping(done: anyio.Event = done) -> None:
                during.extend(await health_for(None, done))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(ping)
                await anyio.sleep(0.1)  # the pinger is going before the batch is sent
                start = time.perf_counter()
                answer = await poster.post(
                    f"/leases/{lease.lease_id}/logs",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                batch_ms.append((time.perf_counter() - start) * 1000)
                answer.raise_for_status()
                await anyio.sleep(0.1)
                done.set()
    async with LaunchplaneClient(server.url, server.admin_token) as admin:
        stored = (await admin.get_job(job["id"]))["id"]
    return {
        "idle": idle,
        "during": during,
        "batch_ms": batch_ms,
        "lines_per_batch": count,
        "body_bytes": len(body),
        "job": stored,
    }


def main() -> None:
    parser = c.arguments(__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, help="Big batches to post [5; --quick: 2].")
    parser.add_argument("--lines", type=int, help="Lines per batch [as many as fit in 1 MiB].")
    parser.add_argument(
        "--db",
        default="sqlite",
        help="sqlite (a temp file), postgresql (a scratch database), or a PostgreSQL URL",
    )
    args = parser.parse_args()
    batches = args.batches or (2 if args.quick else 5)
    report = c.Report(
        "health_under_load", "/health latency while a 1 MiB log batch is stored", args
    )
    with contextlib.ExitStack() as stack:
        directory = stack.enter_context(c.workspace("health"))
        try:
            db_url = c.database_option(stack, args.db)
            report.details["database"] = "sqlite" if db_url is None else "postgresql"
            with c.ServerProcess(directory, db_url) as server:
                results = anyio.run(_measure, server, batches, args.lines)
        except Exception as exc:
            report.fail("health_p99_ms", "/health p99 during big batches", "ms", str(exc))
            report.finish()
            return
    during, idle, batch_ms = results["during"], results["idle"], results["batch_ms"]
    assert isinstance(during, list) and isinstance(idle, list) and isinstance(batch_ms, list)
    report.details.update(
        {k: v for k, v in results.items() if k in ("lines_per_batch", "body_bytes")}
    )
    report.details["samples"] = {"idle": idle, "during": during, "batch_ms": batch_ms}
    report.add("health_idle_p50_ms", "/health p50, idle", c.percentile(idle, 50), "ms")
    report.add("health_p50_ms", "/health p50 during big batches", c.percentile(during, 50), "ms")
    report.add(
        "health_p99_ms",
        "/health p99 during big batches",
        c.percentile(during, 99),
        "ms",
        target=("<=", HEALTH_TARGET_P99_MS),
        note=f"{len(during)} calls over {batches} batches",
    )
    report.add("health_max_ms", "/health max during big batches", max(during), "ms")
    report.add(
        "batch_ms",
        "one batch stored (median)",
        c.percentile(batch_ms, 50),
        "ms",
        note=f"{results['lines_per_batch']} lines, {results['body_bytes']} bytes",
    )
    report.finish()


if __name__ == "__main__":
    main()
