"""Tokens and files (issue 15): the local admin token never leaves this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_agent_does_not_send_local_admin_token_to_a_remote_server(tmp_path: Path) -> None:
    """Without --token, the agent refuses a non-loopback --server instead of sending it the file.

    Before the fix the agent read the admin-token file and tried to register
    with the remote server (192.0.2.1 is TEST-NET: it hangs until the timeout).
    """
    (tmp_path / "admin-token").write_text("canary-admin-token\n")
    os.chmod(tmp_path / "admin-token", 0o600)
    unset = ("LAUNCHPLANE_TOKEN", "LAUNCHPLANE_SERVER")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["LAUNCHPLANE_HOME"] = str(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from launchplane.cli import agent_main; agent_main()",
            "--server",
            "http://192.0.2.1:9",
            "--queue",
            "q",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "no token" in done.stderr
    assert "canary-admin-token" not in done.stdout + done.stderr
