"""``launchplane submit``, ``jobs``, ``show``, ``logs`` and ``cancel``: the submitter's commands.

The job file is loaded and the command-line layers are parsed here (so a
typo in ``--set`` fails before anything is sent); the server then resolves
the job against the queue and refuses it with every problem listed (exit 2).

Exit status of ``submit --wait`` / ``--follow``: 0 when the job succeeded,
the job's exit code (or 1) when it failed, 130 when it was cancelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from launchplane.cli._options import launch_options, override_options
from launchplane.cli._output import (
    EXIT_INVALID,
    Progress,
    age,
    call,
    describe_outcome,
    fail,
    fail_invalid,
    job_exit_code,
    json_option,
    print_json,
    print_table,
    server_options,
)
from launchplane.cli._pins import check_local_code, echo_warnings, strict_pins_option
from launchplane.core.client import LaunchplaneClient
from launchplane.core.errors import ConfigError

FINAL = ("succeeded", "failed", "cancelled")
STATES = ("queued", "claimed", "resolving", "building", "running", *FINAL)


@click.command("submit")
@click.argument(
    "job_file",
    metavar="[JOB.yaml]",
    required=False,
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option(
    "--queue",
    "-q",
    is_flag=False,
    flag_value="default",
    help="The queue [default: the job file's 'queue:']; a bare -q is 'default' (as in W&B).",
)
@launch_options
@override_options
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="Submitting again with the same key returns the first job instead of a new one.",
)
@click.option("--wait", is_flag=True, help="Wait until the job ends; exit with its outcome.")
@click.option(
    "--follow", "-f", is_flag=True, help="Stream the job's log until it ends; exit as it did."
)
@strict_pins_option
@server_options
@json_option
def submit(
    job_file: Path | None,
    queue: str | None,
    sets: Sequence[str],
    resource_args: str | None,
    variables: Sequence[str],
    idempotency_key: str | None,
    wait: bool,
    follow: bool,
    strict_pins: bool,
    server: str | None,
    token: str | None,
    as_json: bool,
    **launch: Any,
) -> None:
    """Submit JOB.yaml (and/or W&B's `wandb launch` flags) to a queue.

    \b
    Layers, lowest first: queue config < a W&B job (-j DIR, --job-dir) <
    JOB.yaml < the flags (-E, -d, -e, -p, --name, -P, ...) < the -c launch
    spec < -R/--resource-args < --set in the order given. The server checks
    the job at once: every problem is printed with its path, exit status 2.
    With --wait or --follow the exit status is the job's: 0 succeeded, its
    exit code (or 1) failed, 130 cancelled. Unpinned inputs are warned about on
    stderr; with --strict-pins they refuse the job (exit status 2, each listed).
    """
    from launchplane.cli._options import launch_request

    if launch["run_async"] and (wait or follow):
        fail("--async returns once the job is queued: drop --wait/--follow", EXIT_INVALID)
    try:
        job, overrides, values = launch_request(
            job_file, launch, tuple(sets), resource_args, tuple(variables)
        )
    except ConfigError as exc:
        fail_invalid(exc)
    queue = queue or job.get("queue")
    if not queue:
        fail(
            "no queue: pass -q/--queue NAME (a bare -q is 'default'), or set 'queue:' in the "
            "job file; to run on this machine without a server: launchplane run JOB.yaml",
            EXIT_INVALID,
        )
    check_local_code([job, *overrides], strict_pins)

    async def run(client: LaunchplaneClient) -> tuple[dict[str, Any], dict[str, Any] | None]:
        submitted = await client.submit_job(
            queue, job, overrides, values, idempotency_key, strict_pins=strict_pins
        )
        echo_warnings(submitted.get("warnings", ()))
        if not (wait or follow):
            return submitted, None
        job_id = submitted["id"]
        if follow:
            click.echo(f"submitted {job_id} to queue {queue}; following its log", err=True)
            async for line in client.follow_logs(job_id):
                click.echo(line["line"])
            return submitted, await client.get_job(job_id)
        with Progress() as progress:
            final = await client.wait_for_job(
                job_id, on_update=lambda job: progress.update(_progress_text(job))
            )
        return submitted, final

    submitted, final = call(server, token, run)
    if final is None:
        if as_json:
            print_json(submitted)
        else:
            click.echo(f"submitted {submitted['id']} to queue {queue} ({submitted['state']})")
        return
    if as_json:
        print_json(final)
    click.echo(describe_outcome(final), err=True)
    raise SystemExit(job_exit_code(final))


@click.command("jobs")
@click.option("--queue", "-q", help="Only this queue.")
@click.option("--state", type=click.Choice(STATES), help="Only jobs in this state.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@server_options
@json_option
def jobs(
    queue: str | None,
    state: str | None,
    limit: int,
    server: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    found = call(server, token, lambda client: client.list_jobs(queue, state, limit))
    if as_json:
        print_json({"jobs": found})
        return
    rows = [
        (j["id"], j["queue"], _state(j), j["attempt"], age(j["created_at"]), j["reason"])
        for j in found
    ]
    print_table(("ID", "QUEUE", "STATE", "ATTEMPT", "AGE", "REASON"), rows)


@click.command("show")
@click.argument("job_id")
@click.option("--record", is_flag=True, help="Print the job's run record (JSON).")
@server_options
@json_option
def show(job_id: str, record: bool, server: str | None, token: str | None, as_json: bool) -> None:
    """Show a job: its state, outcome and events (or its run record)."""
    if record:
        print_json(call(server, token, lambda client: client.get_record(job_id)))
        return
    job = call(server, token, lambda client: client.get_job(job_id))
    if as_json:
        print_json(job)
        return
    fields = [
        ("job", job["id"]),
        ("queue", f"{job['queue']} (config version {job['queue_version']})"),
        ("state", f"{_state(job)} (attempt {job['attempt']})"),
        ("agent", job["agent_id"]),
        ("exit code", job["exit_code"]),
        ("stage", job["failure_stage"]),
        ("reason", job["reason"]),
        ("created", f"{job['created_at']} ({age(job['created_at'])} ago)"),
        ("updated", f"{job['updated_at']} ({age(job['updated_at'])} ago)"),
    ]
    for label, value in fields:
        if value is not None:
            click.echo(f"{label + ':':<11}{value}")
    click.echo("events:")
    events = job["events"]
    rows = [(e["at"], e["attempt"], e["state"], e["stage"], e["reason"]) for e in events]
    print_table(("AT", "ATTEMPT", "STATE", "STAGE", "REASON"), rows, indent="  ")


@click.command("logs")
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the job ends.")
@server_options
def logs(job_id: str, follow: bool, server: str | None, token: str | None) -> None:
    """Print a job's log (stdout of its build and run)."""

    async def run(client: LaunchplaneClient) -> None:
        if follow:
            async for line in client.follow_logs(job_id):
                click.echo(line["line"])
            return
        after = 0
        while True:
            page = await client.read_logs(job_id, after=after)
            for line in page["lines"]:
                click.echo(line["line"])
            if not page["lines"]:
                return
            after = page["next"]

    call(server, token, run)


@click.command("cancel")
@click.argument("job_id")
@server_options
@json_option
def cancel(job_id: str, server: str | None, token: str | None, as_json: bool) -> None:
    """Cancel a job: a queued one at once, a running one at its agent's next heartbeat."""
    job = call(server, token, lambda client: client.cancel_job(job_id))
    if as_json:
        print_json(job)
    elif job["state"] == "cancelled":
        click.echo(f"cancelled {job_id}")
    elif job["cancel_requested"] and job["state"] not in FINAL:
        click.echo(f"cancel requested for {job_id} ({job['state']}): its agent stops it shortly")
    else:
        click.echo(f"{job_id} had already ended ({job['state']})")


def _state(job: dict[str, Any]) -> str:
    cancelling = job["cancel_requested"] and job["state"] not in FINAL
    return f"{job['state']} (cancelling)" if cancelling else job["state"]


def _progress_text(job: dict[str, Any]) -> str:
    return f"{job['id']}: {_state(job)}, attempt {job['attempt']}, {age(job['created_at'])}"
