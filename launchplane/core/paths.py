"""Where launchplane keeps its local state, and where the CLI looks for a server.

Shared by the server (database, admin token), the agent (work directories)
and the CLI (token discovery), so that ``launchplane server`` and
``launchplane submit`` agree without any configuration on one machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

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


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter: every directory this creates is 0700.

    Whoever comes first (server, agent or CLI) creates the data directory, and
    it holds the database, the admin token and the jobs' work directories, so
    none of them may create it with the umask's 0755 (``Path.mkdir(parents=True)``
    gives missing parents the umask's mode, hence the walk). An existing
    directory is left as it is, with a warning when others may read it.
    """
    missing = []
    here = path
    while not here.exists():
        missing.append(here)
        here = here.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process won the race: 0700 too
            directory.mkdir(mode=0o700)
    if not missing:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning(
                "%s is readable by other users (mode %04o): its database, tokens and work "
                "directories are theirs to read; fix with: chmod 700 %s",
                path,
                mode,
                path,
            )
    return path


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (an SQLite database, before
    SQLite creates it with the umask's 0644; its -wal and -shm files copy its mode)."""
    # No directory: SQLite's own error says so.
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def token_file_problem(path: Path) -> str | None:
    """Why the token file ``path`` must not be trusted, or ``None`` when it may be.

    Trusted only as the server writes it: a regular file (not a symlink) owned
    by this user, mode 0600 (no group or other bits), in a directory owned by
    this user that no one else may write to (nobody else can have put it
    there or swapped it). A missing file is no problem (there is no token).
    """
    try:
        info = path.lstat()
        parent = path.parent.stat()
    except FileNotFoundError:
        return None
    uid = os.geteuid()
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(info.st_mode):
        return f"token file {path} is not a regular file: remove it and restart the server"
    if info.st_uid != uid:
        return (
            f"token file {path} is owned by uid {info.st_uid}, not by this user ({uid}): "
            "remove it and restart the server"
        )
    if mode & 0o077:
        return (
            f"token file {path} has mode {mode:04o}: others may read it; fix with: chmod 600 {path}"
        )
    parent_mode = stat.S_IMODE(parent.st_mode)
    if parent.st_uid != uid or parent_mode & 0o022:
        return (
            f"token file {path} is in a directory others may write to ({path.parent}, "
            f"mode {parent_mode:04o}, uid {parent.st_uid}); fix with: chmod 700 {path.parent}"
        )
    return None
