"""How the local-process runner keeps a job away from its agent and from other jobs.

A job runs in a `bubblewrap <https://github.com/containers/bubblewrap>`_ sandbox
(``bwrap``, Debian's ``bubblewrap`` package) built by :func:`sandbox_argv`:

* its own PID namespace and a fresh ``/proc``: the agent's ``/proc/<pid>/environ``
  and ``mem``, and other jobs' processes, do not exist there;
* ``--die-with-parent``: the job dies with its agent (a lost agent leaves no
  orphan to overlap with the next attempt);
* a file system of read-only system directories (``/usr``, ``/lib*``, ``/bin``,
  a few files of ``/etc``, ``/sys``), the agent's interpreter and its packages,
  the queue's ``read_only_paths``, read-only; a private ``/tmp`` and
  ``/dev/shm``; the job's run directory read-write, and in it the job's input
  artifacts, each a read-only bind of one entry of the agent's artifact cache
  (that entry only, though the cache is in the agent's work directory). Nothing
  else of the host:
  not the agent's data or work directory (other jobs' run directories, token
  files, the database), not ``/home``, ``/root`` or ``/run``;
* when the agent is root, no capabilities (``--cap-drop ALL``), or a separate
  unprivileged user (``run_as``) switched to by ``setpriv`` inside the sandbox.

The network is the host's: training jobs download data and report metrics.

``isolation: none`` runs the job as a plain child process; :data:`SUPERVISOR`
still makes it die with its agent (a parent-death signal on a small supervisor
that kills the whole process group).
"""

from __future__ import annotations

import functools
import glob
import os
import pwd
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from launchplane.core.interfaces import PluginError
from launchplane.core.paths import data_dir

INSTALL_HINT = (
    "the local-process runner runs jobs in a bubblewrap sandbox, and `bwrap` is not on the "
    "agent's PATH: install it (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
    "bubblewrap), or set resource_args.local-process.isolation: none in the queue config to "
    "run this queue's jobs unsandboxed (they can then read the agent's and other jobs' files)"
)
NO_ISOLATION_WARNING = (
    "local-process: isolation: none (queue config): this job runs unsandboxed, as the agent's "
    "user, and can read the agent's files and other jobs' processes"
)

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/sys")
"""Read-only in every sandbox; a symlink (merged ``/usr``) is recreated as the same symlink."""
ETC_FILES = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "gai.conf",
    "group",
    "host.conf",
    "hostname",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "pki",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
)
"""What of ``/etc`` a job sees: name resolution, TLS roots, users, the dynamic loader.
Not the rest: the agent's own config may live there (``/etc/launchplane``)."""
DEVICE_GLOBS = ("/dev/nvidia*", "/dev/dri")
"""Host devices passed through when present: GPUs."""


def find_bwrap() -> str:
    """The ``bwrap`` on the agent's ``PATH``; :data:`INSTALL_HINT` as the error without one."""
    found = shutil.which("bwrap")
    if found is None:
        raise PluginError(INSTALL_HINT)
    return found


def job_user(run_as: str | int) -> tuple[int, int]:
    """``(uid, gid)`` of ``run_as`` (a user name or uid), checked for the agent to switch to."""
    where = "resource_args.local-process.run_as"
    if os.geteuid() != 0:
        raise PluginError(
            f"{where}: {run_as!r} needs an agent running as root (it runs as uid "
            f"{os.geteuid()}, which cannot switch users); run the agent as root or remove run_as"
        )
    try:
        entry = pwd.getpwuid(run_as) if isinstance(run_as, int) else pwd.getpwnam(run_as)
    except KeyError:
        raise PluginError(
            f"{where}: no user {run_as!r} on the agent host; create it (useradd --system "
            "launchplane-job) or name an existing unprivileged user"
        ) from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise PluginError(
            f"{where}: {run_as!r} is root (uid/gid 0); name an unprivileged user, "
            "or remove run_as to run as the agent's user without capabilities"
        )
    return entry.pw_uid, entry.pw_gid


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _denied(path: Path, denied: Sequence[Path]) -> Path | None:
    """The denied directory ``path`` would expose (it contains one or lies in one), if any."""
    for root in denied:
        if _inside(path, root) or _inside(root, path):
            return root
    return None


def denied_roots(run_dir: Path) -> list[Path]:
    """What no bind may expose: the agent's work directory (every run directory) and data dir."""
    return [run_dir.resolve().parent, data_dir().expanduser().resolve()]


@functools.cache
def interpreter_paths() -> tuple[Path, ...]:
    """The agent's interpreter: its prefixes and ``sys.path`` directories, as read-only binds.

    A ``.py`` entry point runs with the agent's ``sys.executable``, so its
    prefix, its base installation and the directories on ``sys.path`` (site
    packages, editable installs) must be there. The agent's other ``PATH``
    directories are not bound: a tool tree such as pyenv's shims or a conda
    prefix needs more than its ``bin`` (the queue's ``read_only_paths`` adds it).
    """
    found = [
        Path(sys.prefix),
        Path(sys.base_prefix),
        Path(sys.exec_prefix),
        Path(sys.base_exec_prefix),
        Path(os.path.realpath(sys.executable)).parent.parent,
        *(Path(entry) for entry in sys.path if entry and os.path.isabs(entry)),
    ]
    return tuple(path.resolve() for path in found if path.is_dir())


def sandbox_argv(
    bwrap: str,
    argv: Sequence[str],
    *,
    run_dir: Path,
    cwd: Path,
    read_only: Iterable[Path] = (),
    user: tuple[int, int] | None = None,
    mounts: Iterable[tuple[Path, Path]] = (),
) -> list[str]:
    """``bwrap ... -- argv``: the sandbox described in the module docstring.

    ``read_only`` are the admin's extra read-only paths and a host working
    directory; one inside a denied root is a ``PluginError``, one that
    contains a denied root is bound with that root hidden under an empty tmpfs
    (``launchplane run`` in a folder that holds the data directory). The
    agent's own tool paths that would do so are left out. The run directory is
    bound last, read-write, at its own path (``$LAUNCHPLANE_OUTPUT_DIR`` is in it),
    then each of ``mounts`` (``(source, destination in the run directory)``,
    the job's input artifacts) read-only on top; the caller makes each
    destination first (:func:`make_mount_points`), so it is not bwrap's 0700 one.
    """
    denied = denied_roots(run_dir)
    command = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc"]
    for name in SYSTEM_DIRS:
        if os.path.islink(name):
            command += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            command += ["--ro-bind", name, name]
    for name in ETC_FILES:
        command += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    command += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm"]
    for pattern in DEVICE_GLOBS:
        for device in sorted(glob.glob(pattern)):
            command += ["--dev-bind", device, device]
    command += ["--tmpfs", "/tmp", "--tmpfs", "/var/tmp"]
    binds: list[Path] = []
    masks: list[Path] = []  # denied roots inside a bound tree: hidden under an empty tmpfs
    for path in read_only:
        resolved = path.resolve()
        if (root := next((r for r in denied if _inside(resolved, r)), None)) is not None:
            raise PluginError(
                f"{path} would show the job the agent's directory {root} (other jobs' run "
                "directories, tokens); give the job a path outside it"
            )
        binds.append(resolved)
        masks += [r for r in denied if r != resolved and _inside(r, resolved) and r.is_dir()]
        if resolved in denied:
            raise PluginError(f"{path} is the agent's own directory; give the job a path inside it")
    binds += [path for path in interpreter_paths() if _denied(path, denied) is None]
    bound: list[Path] = [Path(name) for name in SYSTEM_DIRS]  # host trees: what is below exists
    made: set[Path] = {Path("/"), Path("/tmp"), Path("/var/tmp")}

    def mount(option: str, path: Path) -> None:
        # bwrap would make the missing parents of a mount point 0700, which another
        # user (run_as) cannot pass: make them 0755 first.
        for parent in reversed(path.parents):
            hidden = any(_inside(parent, mask) for mask in masks)
            if parent not in made and (hidden or not any(_inside(parent, t) for t in bound)):
                command.extend(["--perms", "0755", "--dir", str(parent)])
                made.add(parent)
        command.extend([option, str(path), str(path)])
        bound.append(path)

    for path in sorted(set(binds), key=lambda p: len(p.parts)):
        if not any(_inside(path, tree) for tree in bound):
            mount("--ro-bind", path)
    for mask in sorted(set(masks), key=lambda p: len(p.parts)):
        if not any(_inside(mask, m) and mask != m for m in masks):
            command += ["--tmpfs", str(mask)]
            made.add(mask)
    mount("--bind", run_dir.resolve())
    for source, dest in mounts:
        command += ["--ro-bind", str(source), str(dest)]
    command += ["--chdir", str(cwd)]
    if user is not None:
        # bwrap keeps root's capabilities so that it can bind paths only root reaches;
        # setpriv then becomes the job's user with none of them, for good.
        uid, gid = user
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        command += [
            "--",
            setpriv,
            f"--reuid={uid}",
            f"--regid={gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
        ]
    elif os.geteuid() == 0:
        command += ["--cap-drop", "ALL"]
    return [*command, "--", *argv]


def make_mount_points(mounts: Iterable[tuple[Path, Path]]) -> None:
    """An empty directory (or file, for a file source) at each destination of ``mounts``."""
    for source, dest in mounts:
        if source.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.touch()


SUPERVISOR = r"""
import ctypes, os, signal, sys
agent = int(sys.argv[1])
def orphaned(*_):
    if os.getppid() != agent:
        os.killpg(0, signal.SIGKILL)
signal.signal(signal.SIGTERM, orphaned)
ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
orphaned()
try:
    child = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ,
                            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT))
except OSError as exc:
    print(f"cannot start {sys.argv[2]!r}: {exc.strerror}", file=sys.stderr)
    sys.exit(127)
signal.signal(signal.SIGINT, signal.SIG_IGN)
status = os.waitpid(child, 0)[1]
if os.WIFSIGNALED(status):
    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
    os.kill(os.getpid(), os.WTERMSIG(status))
sys.exit(os.waitstatus_to_exitcode(status))
"""
"""The group leader of an unsandboxed job: ``python -I -S -c SUPERVISOR <agent pid> argv...``.

The kernel sends it SIGTERM when the agent dies (``PR_SET_PDEATHSIG``); it then
kills its whole process group, the job and what the job started. A SIGTERM
while the agent lives is a cancel aimed at the group: the job gets its own copy,
the supervisor waits for it and exits as it did (same code, same signal)."""


def supervised_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` under :data:`SUPERVISOR` (isolated mode, no site: stdlib only, quick)."""
    return [sys.executable, "-I", "-S", "-c", SUPERVISOR, str(os.getpid()), *argv]


NICE = r"""
import os, sys
try:
    os.setpriority(os.PRIO_PROCESS, 0, int(sys.argv[1]))
except OSError:
    pass
os.execvp(sys.argv[2], sys.argv[2:])
"""
"""Sets its own niceness, then becomes ``argv``: ``python -I -S -c NICE <nice> argv...``."""


def niced_argv(argv: Sequence[str], nice: int) -> list[str]:
    """``argv`` started at niceness ``nice`` (what it forks inherits it).

    Set in the process itself before it execs the job, so the job never runs a
    moment at the agent's priority: a ``setpriority`` by the agent after the
    spawn raced the job's start. The same process (and pid) throughout, so the
    agent stays the parent that ``--die-with-parent`` and the supervisor watch.
    """
    return [sys.executable, "-I", "-S", "-c", NICE, str(nice), *argv]
