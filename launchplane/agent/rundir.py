"""The run directory ``<work dir>/<job_id>-<attempt>``: the files an agent keeps in it.

``output/`` is the job's own (``$LAUNCHPLANE_OUTPUT_DIR``); the agent keeps
``record.json`` (the run record), ``logged-lines`` (how many output lines the
server has stored) and ``launch.json`` (what the record knew at launch) next
to it, each written whole or not at all, so an agent that re-adopts the run
after a restart finds either the previous version or the new one; and
``log-spill.jsonl``, the log lines a busy server made wait (append-only);
``log-progress.json``, where the log stood at the last batch sent. The lease
the run was launched under is kept out of the job's reach, in the work
directory's ``.leases/``. A runner
may keep the workload's output there too (``output.log``,
:data:`~launchplane.core.output.OUTPUT_FILE`): the agent of the job's next
attempt on this host, or the same agent restarted, ships what of it the server lacks
(:mod:`.leftovers`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

RECORD_FILE = "record.json"
LOGGED_FILE = "logged-lines"
"""In the run directory: how many lines of the workload's output the server has stored."""
LAUNCH_FILE = "launch.json"
"""In the run directory: the record's facts as the workload was launched (re-adoption)."""
OUTPUT_DIR = "output"
SPILL_FILE = "log-spill.jsonl"
"""In the run directory: log lines waiting on disk for the server (the agent's memory was
full), redacted, one JSON ``[output, text]`` a line, in order (``agent.outbox``)."""
PROGRESS_FILE = "log-progress.json"
"""In the run directory: the last log batch with workload output the agent sent, as
``{"position", "first_seq", "lines", "output"}`` (``agent.outbox``), written before it is
sent: the output lines before it, its first seq, its line count and how many output lines
it holds. With the position of the lease's log (the number, in the lease's own
numbering, of its last line stored), it tells which output lines the server has."""
LEASES_DIR = ".leases"
"""In the work directory (0700), beside the run directories and out of every job's
reach (a sandboxed job sees its run directory only, and could replace a file there):
``<run id>.json``, the lease each run was launched under, as the claim answered it (the
resolved job: secret references, never values), written before the workload starts
and removed with the run's output file. An agent that finds the run's output after the
lease ended sends what the server lacks under it (``agent.leftovers``)."""


def lease_file(run_dir: Path) -> Path:
    """Where the lease of the run in ``run_dir`` is kept (see :data:`LEASES_DIR`)."""
    return run_dir.parent / LEASES_DIR / f"{run_dir.name}.json"


def run_id(job_id: str, attempt: int) -> str:
    """The id of one attempt of a job, also its run directory's name and ``Runner.attach``'s id."""
    return f"{job_id}-{attempt}"


def replace_file(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a temporary file, then a rename): an agent
    killed mid-write leaves the previous version for the agent that re-adopts the run.

    The temporary file is created afresh, never followed: a job can write in its
    run directory, and a link it left under the temporary name must not make the
    agent overwrite the link's target.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(temporary, flags, 0o666), "w") as file:
        file.write(text)
    os.replace(temporary, path)
