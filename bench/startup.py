#!/usr/bin/env python3
"""Start-up: launch-agent to its first claim, ``launch-agent --help``, and what gets imported.

1. **Spawn to first claim.** A ``launchplane server`` (SQLite) runs with one
   job already queued. The benchmark takes ``time.time()`` just before it
   spawns ``launch-agent`` (``subprocess.Popen``); the agent's first claim
   takes that job, and the server records the ``claimed`` event with its own
   clock (``datetime.now(UTC)``, microseconds) inside the claim transaction.
   Same host, same clock, so

       first claim = claimed.at (GET /jobs/{id} events) - spawn time

   is accurate to the server's own handling of the request before its claim
   transaction (auth, queue lookup: ~1-3 ms, included: a slight over-estimate).
   The agent's registration (``registered_at`` of ``GET /agents``, its first
   request) is reported too. Each repetition spawns a fresh agent with a new
   ``--agent-id``; the first one is also shown apart (colder caches).
2. **``launch-agent --help``**: wall time of the whole process, repeated.
3. **Imports** (``python -X importtime``): ``import launchplane.cli``,
   ``launch-agent --help``, a running agent (until it claimed a job) and a
   running server: none of docker, kubernetes, boto3, botocore, wandb may be
   imported by any of them, and the CLI and the agent must not import
   fastapi, sqlalchemy or uvicorn either (the server legitimately does).

    .venv/bin/python bench/startup.py [--quick] [--repeat 7]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as c
import anyio

PLUGIN_HEAVY = ["docker", "kubernetes", "boto3", "botocore", "wandb"]
SERVER_STACK = ["fastapi", "sqlalchemy", "uvicorn", "starlette", "aiosqlite", "asyncpg"]
TARGETS = {"first_claim": 0.5, "help": 0.3}


# -- 1. spawn -> first claim ------------------------------------------------------------------


async def _first_claims(
    server: c.ServerProcess,
    token: str,
    job: dict[str, Any],
    directory: Path,
    repeat: int,
    importtime: bool,
) -> list[dict[str, Any]]:
    from launchplane.core.client import LaunchplaneClient

    results = []
    watch = c.CpuWatch([server.pid]).start()
    async with LaunchplaneClient(server.url, server.admin_token) as client:
        for index in range(repeat + (1 if importtime else 0)):
            traced = importtime and index == repeat  # one extra run under -X importtime
            submitted = await client.submit_job(c.QUEUE, job)
            agent = c.AgentProcess(
                directory,
                server.url,
                token,
                agent_id=f"bench-startup-{index}",
                python_flags=("-X", "importtime") if traced else (),
                log_name="agent-importtime.log" if traced else f"agent-{index}.log",
            )
            agent.start()
            try:
                final = await client.wait_for_job(submitted["id"], poll=2)
                agents = await client.list_agents()
            finally:
                agent.stop()
            claimed = next(e for e in final["events"] if e["state"] == "claimed")
            if claimed.get("details", {}).get("agent_id") not in (None, agent.agent_id):
                raise RuntimeError(f"job {final['id']} was claimed by another agent: {claimed}")
            registered = next(
                c.parse_time(a["registered_at"]) for a in agents if a["agent_id"] == agent.agent_id
            )
            if traced:
                results.append({"importtime_log": str(agent.log_path)})
                continue
            results.append(
                {
                    "first_claim_s": c.parse_time(claimed["at"]) - agent.spawned_at,
                    "registered_s": registered - agent.spawned_at,
                    "job_state": final["state"],
                }
            )
    results.insert(0, {"load": watch.stop()})
    return results


# -- 2. --help --------------------------------------------------------------------------------


def wall(argv: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


# -- 3. -X importtime -------------------------------------------------------------------------


def parse_importtime(text: str) -> list[tuple[str, int, int]]:
    """``import time: self | cumulative | name`` lines -> [(name, depth, cumulative us)]."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3:
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((name.strip(), depth, int(parts[1])))
    return rows


def heavy(rows: list[tuple[str, int, int]], names: list[str]) -> list[str]:
    """Which of ``names`` (top-level packages) were imported."""
    roots = {name.split(".")[0] for name, _, _ in rows}
    return sorted(n for n in names if n in roots)


def top_imports(rows: list[tuple[str, int, int]], count: int = 6) -> list[tuple[str, float]]:
    """The heaviest imports done at top level (depth 0), cumulative milliseconds."""
    tops = [(name, us / 1000) for name, depth, us in rows if depth == 0]
    return sorted(tops, key=lambda item: -item[1])[:count]


def importtime(argv: list[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return proc.stderr


def main() -> None:
    parser = c.arguments(__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, help="Agent start-ups measured [7; --quick: 3].")
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 7)
    report = c.Report("startup", "Start-up: launch-agent to first claim, --help, imports", args)

    # 1.
    with c.workspace("startup") as directory:
        job = c.write_first_line_job(directory)
        try:
            with c.ServerProcess(directory) as server:
                token = anyio.run(c.setup_queue, server)
                runs = anyio.run(_first_claims, server, token, job, directory, repeat, True)
                traced_log = Path(runs.pop()["importtime_log"]).read_text(errors="replace")
                load = runs.pop(0)["load"]
        except Exception as exc:
            report.fail(
                "first_claim_s",
                "launch-agent spawn -> first claim",
                "s",
                str(exc),
                ("<=", TARGETS["first_claim"]),
            )
            runs, traced_log = [], ""
    if runs:
        claims = [r["first_claim_s"] for r in runs]
        regs = [r["registered_s"] for r in runs]
        report.details["agent_startups"] = runs
        report.add(
            "first_claim_s",
            "launch-agent spawn -> first claim (median)",
            c.percentile(claims, 50),
            "s",
            ("<=", TARGETS["first_claim"]),
            f"n={len(claims)}; first run {claims[0]:.3f} s; {c.foreign_note(load)}",
            spread=c.spread(claims),
        )
        report.add("first_claim_max_s", "launch-agent spawn -> first claim (max)", max(claims), "s")
        report.add(
            "registered_s",
            "launch-agent spawn -> registered (median)",
            c.percentile(regs, 50),
            "s",
            note="its first request",
        )

    # 2.
    agent_bin = c.console_script("launch-agent")
    lp_bin = c.console_script("launchplane")
    help_times = wall([agent_bin, "--help"], 5 if args.quick else 15)
    report.details["launch_agent_help_s"] = help_times
    report.add(
        "agent_help_s",
        "launch-agent --help wall time (median)",
        c.percentile(help_times, 50),
        "s",
        ("<=", TARGETS["help"]),
        f"min {min(help_times):.3f}, max {max(help_times):.3f}",
        spread=c.spread(help_times),
    )
    lp_help = wall([lp_bin, "--help"], 5 if args.quick else 15)
    report.add(
        "launchplane_help_s",
        "launchplane --help wall time (median)",
        c.percentile(lp_help, 50),
        "s",
    )
    bare = wall([sys.executable, "-c", "pass"], 5 if args.quick else 15)
    report.add("python_bare_s", "python -c pass (interpreter floor)", c.percentile(bare, 50), "s")

    # 3.
    env = c.bench_env(Path(os.environ.get("TMPDIR", "/tmp")))
    client_side = PLUGIN_HEAVY + SERVER_STACK
    checks = {
        "import launchplane.cli": (
            importtime(["-c", "import launchplane.cli"], env),
            client_side,
        ),
        "launch-agent --help": (importtime([agent_bin, "--help"], env), client_side),
        "launchplane --help": (importtime([lp_bin, "--help"], env), client_side),
        "running agent (to its first claim)": (traced_log, client_side),
    }
    with c.workspace("startup-server") as directory:
        checks["running server"] = (_server_importtime(directory), PLUGIN_HEAVY)
    imports: dict[str, Any] = {}
    for index, (name, (text, forbidden)) in enumerate(checks.items()):
        rows = parse_importtime(text)
        found = heavy(rows, forbidden)
        total_ms = sum(us for _, depth, us in rows if depth == 0) / 1000
        imports[name] = {
            "modules": len(rows),
            "import_ms_total": total_ms,
            "forbidden_imported": found,
            "server_stack_imported": heavy(rows, SERVER_STACK),
            "heaviest_ms": top_imports(rows),
        }
        status = "not measured" if not rows else ("none" if not found else ", ".join(found))
        report.add(
            f"forbidden_imports_{index}",
            f"Heavy imports: {name}",
            float(len(found)) if rows else None,
            "",
            ("<=", 0.0),
            f"{status} ({len(rows)} modules, {total_ms:.0f} ms under -X importtime)",
        )
    report.details["imports"] = imports
    for name, info in imports.items():
        heaviest = ", ".join(f"{m} {ms:.0f}ms" for m, ms in info["heaviest_ms"][:5])
        report.note(f"{name}: heaviest imports (cumulative): {heaviest}")
    report.note(
        "checked for: "
        + ", ".join(PLUGIN_HEAVY)
        + "; and, except in the server: "
        + ", ".join(SERVER_STACK)
    )
    report.finish()


def _server_importtime(directory: Path) -> str:
    """``launchplane server`` under -X importtime, until it listens."""
    log = directory / "server-importtime.log"
    argv = [
        sys.executable,
        "-X",
        "importtime",
        c.console_script("launchplane"),
        "server",
        "--port",
        "0",
        "--data-dir",
        str(directory / "data"),
        "--log-level",
        "warning",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=c.bench_env(directory / "home"),
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "listening on" not in log.read_text(errors="replace"):
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    finally:
        c.stop_process(proc)
    return log.read_text(errors="replace")


if __name__ == "__main__":
    main()
