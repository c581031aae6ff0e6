"""Redaction gaps (issue 15): a canary secret, printed by a real job, never reaches the server.

Each test runs a job with the canary in its environment (``secrets: {TOKEN:
env:...}`` of the queue) on the local-process runner, through a real agent
and a real queue server on loopback, and reads back what the server holds:
the log (``GET /jobs/{id}/logs``), the failure reason and the run record.
Before the fix each of these showed the secret (or 22 of its 23 characters).
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from kit import log_lines, running_agent, wait_for_state

from launchplane.core.client import LaunchplaneClient
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

QUEUE = "redaction"
CANARY = "cAnary-S3cr3t/ZQ81+xy"
"""The job's secret: it needs URL quoting, so its URL forms differ from the raw value."""
RAW = CANARY.encode()


@pytest.fixture
async def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[EmbeddedServer]:
    monkeypatch.setenv("REDACTION_CANARY", CANARY)  # the agent runs in this process
    async with EmbeddedServer(data_dir=tmp_path / "server") as srv:
        await srv.ensure_queue(
            QUEUE,
            {
                "resource": "local-process",
                "lease_ttl_seconds": 5,
                "secrets": {"TOKEN": "env:REDACTION_CANARY"},
            },
        )
        yield srv


async def run_job(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path, code: str
) -> tuple[dict[str, Any], list[str], str]:
    """Run ``code`` (Python, ``T`` is the secret) as a job: the job, its log, and its record."""
    program = "import os, sys; T = os.environ['TOKEN']\n" + code
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        submitted = await client.submit_job(QUEUE, {"command": [sys.executable, "-c", program]})
        job = await wait_for_state(client, submitted["id"])
    lines = await log_lines(client, job["id"])
    record = json.dumps(await client.get_record(job["id"]))
    return job, lines, record


def leaks(text: str, forms: list[str], length: int = 8) -> list[str]:
    """The pieces of ``length`` characters of any of ``forms`` that ``text`` holds."""
    return [
        form[i : i + length]
        for form in forms
        for i in range(len(form) - length + 1)
        if form[i : i + length] in text
    ]


def everything(job: dict[str, Any], lines: list[str], record: str) -> str:
    return "\n".join([*lines, job.get("reason") or "", record])


async def test_hex_of_the_secret_is_masked(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    code = "print('hex', T.encode().hex()); print('HEX', T.encode().hex().upper())"
    job, lines, record = await run_job(server, client, tmp_path, code)
    assert job["state"] == "succeeded"
    assert lines[:2] == ["hex ***", "HEX ***"]
    assert not leaks(everything(job, lines, record), [RAW.hex(), RAW.hex().upper()])


async def test_lower_case_url_encoding_is_masked(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    code = (
        "import re, urllib.parse as u\n"
        "q = u.quote(T, safe='')\n"
        "print('GET /x?token=' + re.sub('%[0-9A-F]{2}', lambda m: m.group().lower(), q))"
    )
    job, lines, record = await run_job(server, client, tmp_path, code)
    lower = re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(CANARY, safe=""))
    assert lower != CANARY.lower() and "%2f" in lower
    assert lines[0] == "GET /x?token=***"
    assert not leaks(everything(job, lines, record), [lower, CANARY])


@pytest.mark.parametrize("before", ["user:", "u:", "ab:"])
async def test_base64_of_the_secret_inside_a_longer_token_is_masked(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path, before: str
) -> None:
    """``Authorization: Basic base64(user:secret)``: the 3 offsets the secret can have."""
    code = (
        "import base64\n"
        f"print('Authorization: Basic ' + base64.b64encode(b{before!r} + T.encode()).decode())\n"
        f"print('blob', base64.urlsafe_b64encode(b'{{\"k\": \"' + T.encode() + b'\"}}').decode())"
    )
    job, lines, record = await run_job(server, client, tmp_path, code)
    assert job["state"] == "succeeded"
    text = everything(job, lines, record)
    for shown in (lines[0].removeprefix("Authorization: Basic "), lines[1].removeprefix("blob ")):
        assert "***" in shown
        for piece in shown.split("***"):
            for shift in range(4):
                chunk = piece[shift:]
                decoded = base64.urlsafe_b64decode(
                    chunk.replace("+", "-").replace("/", "_")[: len(chunk) // 4 * 4]
                )
                assert not any(RAW[i : i + 4] in decoded for i in range(len(RAW) - 3)), piece
    assert CANARY not in text


async def test_a_secret_split_over_two_lines_is_masked(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    job, lines, record = await run_job(
        server, client, tmp_path, "print('key:', T[:9]); print(T[9:], '(end)'); print('done')"
    )
    assert lines[:3] == ["key: ***", "*** (end)", "done"]
    assert not leaks(everything(job, lines, record), [CANARY], length=5)


async def test_a_secret_printed_one_character_per_line_is_masked(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    """Written in one go: lines flushed one by one could reach the agent more than the
    window's hold (50 ms) apart on a loaded machine, and a start of the secret shorter
    than ``MIN_FRAGMENT`` then ships as it is, by design (tests/core/test_redaction.py
    covers the hold)."""
    code = "print('start', *T, 'end', sep='\\n', flush=True)"
    job, lines, record = await run_job(server, client, tmp_path, code)
    assert lines == ["start", *["***"] * len(CANARY), "end"]
    assert job["state"] == "succeeded" and CANARY not in record


async def test_a_secret_across_the_failure_reasons_300_character_cut_is_masked(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    """The runner keeps 300 characters of each last line: all but one of the secret's fit."""
    filler = 300 - len(CANARY) + 1
    code = f"print('E' * {filler} + T + ' tail'); sys.exit(3)"
    job, lines, record = await run_job(server, client, tmp_path, code)
    assert job["state"] == "failed" and job["exit_code"] == 3
    assert "E***..." in job["reason"]
    assert lines[0] == "E" * filler + "*** tail"
    assert not leaks(everything(job, lines, record), [CANARY], length=4)


@pytest.mark.parametrize("pause", [0.0, 0.5], ids=["no-pause", "pause-past-the-hold"])
async def test_a_secret_across_the_64_kib_line_split_is_masked(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path, pause: float
) -> None:
    """The runner cuts a line at 64 KiB as it reads it; the secret straddles the cut.

    The line's first 128 KiB go out before its newline: the pipe holds 64 KiB,
    so the runner has read more than 64 KiB of it, and cut it, before the
    newline can even be written.

    The first piece ends in the secret's start, so the window holds it
    (``HOLD_SECONDS``) for the second. When the second comes in time, the two
    are masked as one secret (the window re-cuts the masked text at the
    pieces' lengths). When it comes later - ``pause``, or a loaded machine
    whose runner reads the rest late - the first piece ships as a cut, its
    secret's start masked, and the rest of the secret is masked on the second.
    """
    code = (
        "import time\n"
        "out = sys.stdout.buffer\n"
        "out.write(b'x' * (64 * 1024 - 10) + T.encode()); out.flush()\n"
        f"time.sleep({pause})\n"
        "out.write(b'y' * 64 * 1024); out.flush()\n"
        "out.write(b'\\n'); out.flush()"
    )
    job, lines, record = await run_job(server, client, tmp_path, code)
    assert job["state"] == "succeeded"
    assert len(lines) >= 2  # the runner cut the line into pieces
    together = "x" * (64 * 1024 - 10) + "***" + "y" * 64 * 1024
    held_past = "x" * (64 * 1024 - 10) + "******" + "y" * 64 * 1024
    assert "".join(lines) in ([held_past] if pause else [together, held_past])
    assert not leaks("".join(lines), [CANARY], length=4) and CANARY not in record
