"""The body of ``bench/run_all``: run every benchmark, then one table of every figure.

Each benchmark runs as its own process (a crash of one does not stop the
others) and writes ``bench/results/<name>.json``; this script reads them back
and prints one summary: figure, value, target, PASS/MISS, and the run-to-run
spread over the last runs of ``run_all`` on this checkout (from
``bench/results/history.jsonl``). It writes ``bench/results/summary.json`` and
``summary.md``; ``--update-readme`` puts the latter between the
``<!-- bench:figures:start -->`` / ``<!-- bench:figures:end -->`` markers inside
the Benchmarks section of README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as c

BENCHMARKS = [
    ("startup", "startup.py"),
    ("config_resolution", "config_resolution.py"),
    ("dispatch_latency", "dispatch_latency.py"),
    ("throughput", "throughput.py"),
    ("footprint", "footprint.py"),
    ("server_calls", "server_calls.py"),
    ("claim_throughput", "claim_throughput.py"),  # the PostgreSQL work's own; run when present
    ("docker_launch", "docker_launch.py"),
    ("artifact_stage", "artifact_stage.py"),
    ("k8s_latency", "k8s_latency.py"),
]
SPREAD_RUNS = 5
README = c.ROOT / "README.md"
SECTION = "<!-- bench:start -->", "<!-- bench:end -->"
START, END = "<!-- bench:figures:start -->", "<!-- bench:figures:end -->"


def run_one(name: str, script: Path, quick: bool, timeout: float) -> dict[str, Any]:
    argv = [sys.executable, str(script)]
    if quick:
        helptext = subprocess.run([*argv, "--help"], capture_output=True, text=True).stdout
        if "--quick" in helptext:
            argv.append("--quick")
    print(
        f"\n### {name}: {' '.join(Path(a).name if i < 2 else a for i, a in enumerate(argv))}",
        flush=True,
    )
    start = time.monotonic()
    try:
        code = subprocess.run(argv, timeout=timeout, cwd=c.ROOT).returncode
    except subprocess.TimeoutExpired:
        code = "timeout"
    return {"name": name, "exit": code, "seconds": round(time.monotonic() - start, 1)}


def load_result(name: str, since: float) -> dict[str, Any] | None:
    path = c.RESULTS / f"{name}.json"
    if not path.exists() or path.stat().st_mtime < since:
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def history_spread(run_id: str, quick: bool) -> dict[tuple[str, str], list[float]]:
    """(benchmark, figure) -> values of the last SPREAD_RUNS run_all runs (this one included)."""
    runs: dict[str, dict[str, dict[str, float]]] = {}
    order: list[str] = []
    if not c.HISTORY.exists():
        return {}
    for line in c.HISTORY.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        rid = entry.get("run_id")
        if not rid or bool(entry.get("quick")) != quick or not rid.startswith("run_all-"):
            continue
        if rid not in runs:
            runs[rid] = {}
            order.append(rid)
        runs[rid][entry["name"]] = entry.get("figures", {})
    recent = [*[rid for rid in order if rid != run_id][-(SPREAD_RUNS - 1) :], run_id]
    values: dict[tuple[str, str], list[float]] = {}
    for rid in recent:
        for name, figures in runs.get(rid, {}).items():
            for key, value in figures.items():
                if isinstance(value, int | float):
                    values.setdefault((name, key), []).append(float(value))
    return values


def spread_text(values: list[float] | None) -> str:
    if not values or len(values) < 2:
        return ""
    return f"{c.fmt(min(values))}..{c.fmt(max(values))} (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/run_all", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Every benchmark in --quick mode.")
    parser.add_argument("--only", help="Comma-separated benchmark names to run.")
    parser.add_argument("--skip", help="Comma-separated benchmark names to leave out.")
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="Write the summary between the bench markers of README.md.",
    )
    parser.add_argument("--strict", action="store_true", help="Exit 1 when a target is missed.")
    parser.add_argument("--timeout", type=float, default=420, help="Per benchmark, seconds.")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30,
        metavar="SECONDS",
        help="Before each benchmark, wait up to this long while other processes use more "
        "than 25%% of the CPUs (0: do not wait) [30].",
    )
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    skip = set(args.skip.split(",")) if args.skip else set()

    run_id = "run_all-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    os.environ["LAUNCHPLANE_BENCH_RUN_ID"] = run_id
    started = time.time()
    machine = c.machine()
    print(f"bench/run_all {run_id}{' (--quick)' if args.quick else ''}")
    print(f"machine: {c.describe_machine(machine)}", flush=True)
    runs = []
    for name, script in BENCHMARKS:
        path = c.BENCH / script
        if (only and name not in only) or name in skip:
            continue
        if not path.exists():
            runs.append({"name": name, "exit": "absent", "seconds": 0})
            continue
        quiet = c.wait_quiet(sample=1.0, timeout=args.quiet_wait) if args.quiet_wait > 0 else None
        run = run_one(name, path, args.quick, args.timeout)
        run["machine_before"] = quiet
        runs.append(run)
    total = time.time() - started

    spreads = history_spread(run_id, args.quick)
    rows: list[dict[str, Any]] = []
    for run in runs:
        result = load_result(run["name"], started) if run["exit"] != "absent" else None
        if result is None:
            status = "absent" if run["exit"] == "absent" else f"no result (exit {run['exit']})"
            rows.append(
                {
                    "benchmark": run["name"],
                    "label": "-",
                    "value": None,
                    "unit": "",
                    "target": "",
                    "status": status.upper() if run["exit"] != "absent" else "ABSENT",
                    "note": "",
                    "spread": "",
                }
            )
            continue
        for figure in result.get("figures", []):
            if not isinstance(figure, dict) or "label" not in figure:
                continue
            rows.append(
                {
                    "benchmark": run["name"],
                    "key": figure.get("key"),
                    "label": figure["label"],
                    "value": figure.get("value"),
                    "unit": figure.get("unit", ""),
                    "target": figure.get("target") or "",
                    "status": figure.get("status", ""),
                    "note": figure.get("note", ""),
                    "spread": spread_text(spreads.get((run["name"], figure.get("key", "")))),
                }
            )

    print(f"\n===== summary ({run_id}, {total:.0f}s{', --quick' if args.quick else ''}) =====")
    print(f"machine: {c.describe_machine(machine)}")
    c.print_table(
        (
            "benchmark",
            "figure",
            "value",
            "target",
            "status",
            f"spread (last {SPREAD_RUNS} runs)",
            "note",
        ),
        [
            (
                r["benchmark"],
                r["label"],
                c.fmt(r["value"], r["unit"]),
                r["target"],
                r["status"],
                r["spread"],
                r["note"][:70],
            )
            for r in rows
        ],
    )
    durations = ", ".join(f"{r['name']} {r['seconds']:.0f}s" for r in runs if r["exit"] != "absent")
    print(f"durations: {durations}; total {total:.0f}s")
    missing = [r for r in rows if r["status"] in ("MISS", "FAIL") or r["status"].startswith("NO ")]
    summary = {
        "run_id": run_id,
        "quick": args.quick,
        "seconds": round(total, 1),
        "machine": machine,
        "runs": runs,
        "figures": rows,
    }
    c.RESULTS.mkdir(parents=True, exist_ok=True)
    (c.RESULTS / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    markdown = render_markdown(summary)
    (c.RESULTS / "summary.md").write_text(markdown)
    if args.update_readme:
        update_readme(markdown)
    if missing:
        print(
            f"{len(missing)} figure(s) missed their target or failed: "
            + "; ".join(f"{r['label']} ({r['status']})" for r in missing)
        )
    sys.exit(1 if args.strict and missing else 0)


README_EXTRA = {
    "sqlite_cold_ms",
    "cpu_ms_per_job_agent",
    "cpu_ms_per_job_server",
    "cpu_ms_per_job_job_processes",
    "per_job_cpu_ms",
    "first_build_s",
    "cached_launch_s",
}
"""Informational figures the README shows next to those with a target."""


def render_markdown(summary: dict[str, Any]) -> str:
    """The README's table: every figure with a target, and a few that explain them."""
    m = summary["machine"]
    when = summary["run_id"].removeprefix("run_all-")
    lines = [
        f"Latest figures (`bench/run_all{' --quick' if summary['quick'] else ''}`, {when}, "
        f"{summary['seconds']:.0f} s) on {c.describe_machine(m)}:",
        "",
        f"| figure | value | target | status | spread (last {SPREAD_RUNS} runs) | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in summary["figures"]:
        if r["label"] == "-" or r["status"] == "ABSENT":
            continue
        if not r["target"] and r.get("key") not in README_EXTRA and r["status"] == "INFO":
            continue
        note = r["note"]
        if (r.get("key") or "").startswith("forbidden_imports") and r["value"] is not None:
            value = note.split(" (")[0]  # "none", or the modules found
            note = note.split(" (", 1)[1].rstrip(")") if " (" in note else ""
        elif r["value"] is not None:
            value = c.fmt(r["value"], r["unit"])
        else:
            value = "-"
        label = r["label"].replace("|", "/")
        note = note.replace("|", "/")
        lines.append(
            f"| {label} | {value} | {r['target']} | {r['status']} | {r['spread']} | {note} |"
        )
    lines += [
        "",
        "All figures, with every sample: `bench/results/*.json` after a run "
        "(`bench/results/summary.json` for this table).",
    ]
    return "\n".join(lines) + "\n"


def update_readme(markdown: str) -> None:
    text = README.read_text()
    if START not in text or END not in text or SECTION[0] not in text:
        print(f"README.md has no {START} ... {END} markers: not updated")
        return
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{markdown}{END}{tail}")
    print("README.md: benchmark figures updated")


if __name__ == "__main__":
    main()
