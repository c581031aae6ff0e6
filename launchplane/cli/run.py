"""``launchplane run JOB.yaml``: one job end to end, no server to set up.

An embedded queue server (random loopback port, its own data directory) and
an agent start in this process; the job goes to the queue ``local``
(local-process runner, noop builder - or ``--queue-config``) through the real
HTTP API, its log streams to stdout, and the command exits with the job's
exit code. The same code paths as a real deployment, minus the network.

Local code: a relative ``workdir:`` is resolved against the job file's
directory when the job is submitted; a job with neither ``git:`` nor
``workdir:`` runs in the job file's directory. So ``examples/hello/job.yaml``
with ``entry_point: train.py`` runs ``examples/hello/train.py`` from anywhere.

One ``launchplane run`` uses a data directory at a time (a lock file says
so); jobs left unfinished there by an earlier, killed run are cancelled at
start, so this run's agent only ever runs this run's job.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from launchplane.cli._options import launch_options, plugin_options
from launchplane.cli._pins import strict_pins_option

QUEUE = "local"
DEFAULT_QUEUE_CONFIG: dict[str, Any] = {"resource": "local-process", "builder": {"type": "noop"}}
RUN_CANCEL_GRACE = 5.0


def default_queue_config() -> dict[str, Any]:
    """The 'local' queue of ``launchplane run`` without ``--queue-config``.

    Sandboxed (bubblewrap) when ``bwrap`` is installed. Without it the job
    runs unsandboxed, as the user who typed the command, with a notice:
    ``launchplane run`` is someone running their own job on their own
    machine, and the quick start must work on a fresh one. An agent serving
    a queue never falls back like this (it fails the job with the install hint).
    """
    import shutil

    if shutil.which("bwrap") is not None:
        return DEFAULT_QUEUE_CONFIG
    click.echo(
        "launchplane run: bubblewrap is not installed, so the job runs unsandboxed as you "
        "(apt-get install bubblewrap to sandbox it)",
        err=True,
    )
    return {**DEFAULT_QUEUE_CONFIG, "resource_args": {"local-process": {"isolation": "none"}}}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--set", "sets", multiple=True, metavar="PATH=VALUE", help="Override a job field (repeatable)."
)
@click.option(
    "--var", "variables", multiple=True, metavar="NAME=VALUE", help="Template variable value."
)
@click.option(
    "--queue-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Queue config for the 'local' queue.  [default: local-process runner, noop builder]",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="State of the embedded server and the run directories.  [default: <data dir>/run]",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Log to stderr; print a JSON summary on stdout."
)
@strict_pins_option
@launch_options
@plugin_options
def run(
    job_file: Path,
    sets: tuple[str, ...],
    variables: tuple[str, ...],
    queue_config: Path | None,
    data_dir: Path | None,
    as_json: bool,
    strict_pins: bool,
    plugin_specs: tuple[str, ...],
    strict_plugins: bool,
    **launch: Any,
) -> None:
    """Run JOB_FILE on an embedded server and agent; exit with the job's exit code.

    \b
    Example:
      launchplane run examples/hello/job.yaml --set hyperparameters.epochs=50

    W&B's `wandb launch` flags (-E, -c, -v, ...) layer as in `submit`, and
    unpinned inputs are warnings (--strict-pins: errors, exit status 2) as there.
    """
    from launchplane.cli._options import launch_request
    from launchplane.cli._output import fail_invalid
    from launchplane.cli._pins import check_local_code
    from launchplane.core import paths
    from launchplane.core.config import load_job_file, load_queue_file
    from launchplane.core.errors import ConfigError
    from launchplane.core.loader import split_list

    try:
        job = with_local_code(load_job_file(job_file), job_file)
        job, overrides, values = launch_request(job_file, launch, sets, None, variables, job=job)
        queue = load_queue_file(queue_config) if queue_config else default_queue_config()
    except ConfigError as exc:
        fail_invalid(exc)
    check_local_code([job, *overrides], strict_pins)
    directory = (data_dir or paths.data_dir() / "run").expanduser().resolve()
    request = RunRequest(
        job,
        overrides,
        values,
        queue,
        directory,
        as_json,
        split_list(plugin_specs),
        strict_plugins,
        strict_pins,
    )
    sys.exit(_main(request))


def with_local_code(job: dict[str, Any], job_file: Path) -> dict[str, Any]:
    """The job's local code: ``workdir`` against the job file, or the job file's directory.

    ``run`` goes one step further than ``submit``: a job with no ``git:``, code
    ``artifact:`` or ``workdir:`` runs next to its job file (see the module docstring).
    """
    from launchplane.core.config import resolve_local_workdir

    if not job.get("git") and not job.get("artifact") and not job.get("workdir"):
        job = {**job, "workdir": "."}
    return resolve_local_workdir(job, job_file)


@dataclass(frozen=True)
class RunRequest:
    """One ``launchplane run``: the job and its layers, the queue, and how to run them."""

    job: dict[str, Any]
    overrides: list[dict[str, Any]]
    variables: dict[str, Any]
    queue: dict[str, Any]
    data_dir: Path
    as_json: bool
    plugins: list[str]
    strict_plugins: bool
    strict_pins: bool = False


def _main(request: RunRequest) -> int:
    import fcntl

    import anyio

    from launchplane.cli._output import fail
    from launchplane.core import paths

    data_dir = paths.private_dir(request.data_dir)
    with (data_dir / "run.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fail(f"another `launchplane run` is using {data_dir}; pass another --data-dir")
        try:
            return anyio.run(_session, request)
        except KeyboardInterrupt:
            return 130


async def _session(request: RunRequest) -> int:
    """Server, agent, submit, stream, summary: all in one event loop."""
    import os
    import socket
    import time

    import anyio

    from launchplane.agent.logging import configure_logging
    from launchplane.agent.loop import Agent, AgentSettings
    from launchplane.cli._output import fail, fail_invalid, job_exit_code
    from launchplane.cli._pins import echo_warnings
    from launchplane.core.client import LaunchplaneClient, ValidationFailed
    from launchplane.core.errors import ConfigError
    from launchplane.core.interfaces import PluginError
    from launchplane.core.redaction import Redactor
    from launchplane.server.embedded import EmbeddedServer
    from launchplane.server.settings import ServerSettings

    redactor = Redactor()
    configure_logging("warning", False, redactor)
    out = sys.stderr if request.as_json else sys.stdout
    started = time.monotonic()
    data_dir = request.data_dir
    settings = ServerSettings(data_dir=data_dir, plugins=tuple(request.plugins))
    async with EmbeddedServer(settings=settings) as server:
        try:
            await server.ensure_queue(QUEUE, request.queue)
        except ConfigError as exc:
            fail_invalid(exc)
        try:
            agent = Agent(
                AgentSettings(
                    server=server.url,
                    token=await server.create_token("agent", queues=[QUEUE]),
                    queues=[QUEUE],
                    max_jobs=1,
                    cancel_grace=RUN_CANCEL_GRACE,
                    agent_id=f"run-{socket.gethostname()}-{os.getpid()}",
                    work_dir=data_dir / "work",
                    claim_wait=5.0,
                    plugins=request.plugins,
                    strict_plugins=request.strict_plugins,
                    check_queues=False,
                ),
                redactor=redactor,
            )
        except PluginError as exc:  # --strict-plugins
            fail(str(exc))
        async with LaunchplaneClient(server.url, server.admin_token) as client:
            await _cancel_leftovers(client)
            try:
                submitted = await client.submit_job(
                    QUEUE,
                    request.job,
                    request.overrides,
                    request.variables,
                    strict_pins=request.strict_pins,
                )
            except ValidationFailed as exc:
                fail_invalid(exc)
            echo_warnings(submitted.get("warnings", ()))
            job_id = submitted["id"]
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: agent.run(handle_signals=False))
                signals = anyio.CancelScope()
                tg.start_soon(_cancel_on_signal, signals, client, agent, job_id)
                final = await _follow(client, job_id, out, started)
                with anyio.move_on_after(5):
                    while job_id not in agent.outcomes:
                        await anyio.sleep(0.01)
                signals.cancel()
                agent.shutdown()
    outcome = agent.outcomes.get(job_id)
    if outcome is None:
        fail(f"job {job_id} ended as {final['state']} but the agent kept no outcome")
    _summary(final, outcome, time.monotonic() - started, request.as_json)
    return job_exit_code(final)


async def _cancel_leftovers(client: Any) -> None:
    """Cancel jobs an earlier, killed ``launchplane run`` left in this data directory."""
    for state in ("queued", "claimed", "resolving", "building", "running"):
        for leftover in await client.list_jobs(queue=QUEUE, state=state):
            await client.cancel_job(leftover["id"])


async def _cancel_on_signal(scope: Any, client: Any, agent: Any, job_id: str) -> None:
    """Ctrl-C (or SIGTERM) cancels the job cleanly; the run then ends as cancelled."""
    import signal

    import anyio

    with scope, anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            click.echo(f"\ncancelling job {job_id} ...", err=True)
            agent.cancel_job(job_id)
            await client.cancel_job(job_id)


async def _follow(client: Any, job_id: str, out: Any, started: float) -> dict[str, Any]:
    """Print the job's log as it comes, with a progress line on a terminal; the final job."""
    import time

    import anyio

    from launchplane.cli._output import Progress
    from launchplane.core.client import FINAL_STATES

    state = {"value": "queued"}

    with Progress() as progress:

        async def watch_state() -> None:
            while True:
                job = await client.get_job(job_id)
                state["value"] = job["state"]
                progress.update(f"[{job_id}] {job['state']}  {time.monotonic() - started:.1f}s")
                await anyio.sleep(0.5)

        async with anyio.create_task_group() as tg:
            if progress.enabled:
                tg.start_soon(watch_state)
            async for line in client.follow_logs(job_id, wait=10):
                progress.clear()
                out.write(line["line"] + "\n")
                out.flush()
            tg.cancel_scope.cancel()
    job = await client.get_job(job_id)
    while job["state"] not in FINAL_STATES:  # logs end with the job; be sure of the state
        await anyio.sleep(0.05)
        job = await client.get_job(job_id)
    return job


def _summary(job: dict[str, Any], outcome: Any, seconds: float, as_json: bool) -> None:
    """Where things are: on stderr for people, or one JSON object on stdout."""
    import json

    from launchplane.agent.rundir import OUTPUT_DIR, RECORD_FILE
    from launchplane.cli._output import describe_outcome

    run_dir: Path | None = outcome.run_dir
    output_dir = run_dir / OUTPUT_DIR if run_dir else None
    record_path = run_dir / RECORD_FILE if run_dir else None
    outputs = sorted(p for p in output_dir.rglob("*") if p.is_file()) if output_dir else []
    if as_json:
        summary = {
            "job_id": job["id"],
            "state": job["state"],
            "exit_code": job.get("exit_code"),
            "failure_stage": job.get("failure_stage"),
            "reason": job.get("reason"),
            "seconds": round(seconds, 3),
            "run_dir": str(run_dir) if run_dir else None,
            "output_dir": str(output_dir) if output_dir else None,
            "outputs": [str(p) for p in outputs],
            "record": str(record_path) if record_path and record_path.exists() else None,
        }
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"\n{describe_outcome(job)} in {seconds:.1f}s", err=True)
    if output_dir is not None and output_dir.is_dir():
        click.echo(f"  output: {output_dir}", err=True)
        for path in outputs[:5]:
            click.echo(f"          {path.relative_to(output_dir)}", err=True)
    if record_path is not None and record_path.exists():
        click.echo(f"  record: {record_path}", err=True)
