"""Where launchplane keeps its local state, and where the CLI looks for a server.

Shared by the server (database, admin token), the agent (work directories)
and the CLI (token discovery), so that ``launchplane server`` and
``launchplane submit`` agree without any configuration on one machine.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_SERVER_URL = "http://127.0.0.1:8765"
ADMIN_TOKEN_FILE = "admin-token"


def data_dir() -> Path:
    """``$LAUNCHPLANE_HOME``, else ``$XDG_DATA_HOME/launchplane``, else ``~/.local/share/...``.

    The directory is not created here: read-only callers (token discovery)
    must not leave empty directories behind.
    """
    home = os.environ.get("LAUNCHPLANE_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "launchplane"


def admin_token_path(directory: Path | None = None) -> Path:
    """The file in which the server leaves its admin token for the local CLI (mode 0600)."""
    return (directory if directory is not None else data_dir()) / ADMIN_TOKEN_FILE


def default_server_url() -> str:
    """``$LAUNCHPLANE_SERVER``, else the address ``launchplane server`` listens on by default."""
    return os.environ.get("LAUNCHPLANE_SERVER") or DEFAULT_SERVER_URL
