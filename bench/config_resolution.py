#!/usr/bin/env python3
"""Configuration resolution: resolved jobs per second for the largest reference example.

The job is ``tests/fixtures/reference/examples/35-arr-coc-training.yaml`` (the
largest example of the reference job format), the queue is
``companions/queue-sagemaker-templates.yaml`` (a ``base_config`` chain onto
``23-queue-templates.yaml`` plus three typed template variables), with two
runtime layers: ``--set hyperparameters.batch_size=64`` and ``--var
volume_size=200``.

* **resolve_job** (the figure with the target): what the server runs at each
  submit and the agent at each claim - the layers are already data (the queue
  config was loaded, its base_config merged, when the queue was created; the
  job arrives as JSON). ``launchplane.core.config.resolve_job`` with the
  queue config, the job, the override layer and the variable values.
* **from files**: what ``launchplane plan``/``submit`` do once per command -
  load both YAML files (safe loader, base_config chain), parse the ``--set``
  and ``--var`` expressions, resolve. Informational: YAML parsing happens
  once on the submitter's machine, never in the dispatch path.

Each figure is the median of several timed batches (after a warm-up), with
the batch-to-batch spread.

    .venv/bin/python bench/config_resolution.py [--quick]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import _common as c

REFERENCE = c.ROOT / "tests" / "fixtures" / "reference"
JOB = REFERENCE / "examples" / "35-arr-coc-training.yaml"
QUEUE = REFERENCE / "companions" / "queue-sagemaker-templates.yaml"
SETS = ["hyperparameters.batch_size=64"]
VARS = ["volume_size=200"]
TARGET = 2000.0


def rate(fn: Callable[[], Any], seconds: float, batches: int) -> list[float]:
    """Calls per second of ``fn`` in ``batches`` batches of about ``seconds`` each."""
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < min(seconds, 0.3):  # warm-up and sizing
        fn()
        calls += 1
    per_batch = max(1, int(calls / (time.perf_counter() - start) * seconds))
    rates = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(per_batch):
            fn()
        rates.append(per_batch / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = c.arguments(__doc__.splitlines()[0])
    args = parser.parse_args()
    report = c.Report("config_resolution", "Configuration resolution (reference example 35)", args)
    from launchplane.core.config import (
        load_job_file,
        load_queue_file,
        parse_set,
        parse_var,
        resolve_job,
    )

    if not JOB.exists() or not QUEUE.exists():
        report.skip("resolve_jobs_per_s", "resolve_job", "jobs/s", f"{JOB} or {QUEUE} missing")
        report.finish()
        return
    job = load_job_file(JOB)
    queue = load_queue_file(QUEUE)
    overrides = [parse_set(expr) for expr in SETS]
    variables: dict[str, Any] = {}
    for expr in VARS:
        variables.update(parse_var(expr))
    resolved = resolve_job(queue, job, overrides, variables, queue_name="sagemaker")
    checks = {
        "volume": resolved.resource_args["sagemaker"]["ResourceConfig"]["VolumeSizeInGB"] == 200,
        "batch": resolved.hyperparameters["batch_size"] == 64,
    }
    if not all(checks.values()):
        raise SystemExit(f"the resolution is wrong: {checks}")
    report.details["inputs"] = {
        "job": str(JOB.relative_to(c.ROOT)),
        "queue": str(QUEUE.relative_to(c.ROOT)),
        "set": SETS,
        "var": VARS,
        "resolved_bytes": len(resolved.model_dump_json()),
    }

    seconds, batches = (0.3, 3) if args.quick else (0.5, 5)

    def in_memory() -> None:
        resolve_job(queue, job, overrides, variables, queue_name="sagemaker")

    def from_files() -> None:
        values: dict[str, Any] = {}
        for expr in VARS:
            values.update(parse_var(expr))
        resolve_job(
            load_queue_file(QUEUE),
            load_job_file(JOB),
            [parse_set(e) for e in SETS],
            values,
            queue_name="sagemaker",
        )

    memory_rates = rate(in_memory, seconds, batches)
    file_rates = rate(from_files, seconds, batches)
    report.details["resolve_job_rates"] = memory_rates
    report.details["from_files_rates"] = file_rates
    report.add(
        "resolve_jobs_per_s",
        "resolve_job (base_config + templates + overrides)",
        c.percentile(memory_rates, 50),
        "jobs/s",
        (">=", TARGET),
        f"median of {batches} batches",
        spread=c.spread(memory_rates),
    )
    report.add(
        "from_files_jobs_per_s",
        "load YAML files + parse --set/--var + resolve_job",
        c.percentile(file_rates, 50),
        "jobs/s",
        None,
        "once per submit, on the submitter",
        spread=c.spread(file_rates),
    )
    report.finish()


if __name__ == "__main__":
    main()
