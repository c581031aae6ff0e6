"""The run directory ``<work dir>/<job_id>-<attempt>``: the files an agent keeps in it.

``output/`` is the job's own (``$LAUNCHPLANE_OUTPUT_DIR``); the agent keeps
``record.json`` (the run record), ``logged-lines`` (how many output lines the
server has stored) and ``launch.json`` (what the record knew at launch) next
to it, each written whole or not at all, so an agent that re-adopts the run
after a restart finds either the previous version or the new one; and
``log-spill.jsonl``, the log lines a busy server made wait (append-only).
"""

from __future__ import annotations

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


def run_id(job_id: str, attempt: int) -> str:
    """The id of one attempt of a job, also its run directory's name and ``Runner.attach``'s id."""
    return f"{job_id}-{attempt}"


def replace_file(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a temporary file, then a rename): an agent
    killed mid-write leaves the previous version for the agent that re-adopts the run."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
