"""What a submitter's layer may reach on the agent's host: env names, workdir, git remote.

Checked on each normalised submitter layer at submit (both dialects arrive
here in one spelling), after the queue's locks (:mod:`.guards`):

* env names that make an interpreter or loader run code (:mod:`.envnames`),
  in ``env`` and in any ``env`` / ``environment`` of ``resource_args`` (a
  Docker ``-e`` flag, a Kubernetes container's ``env``);
* an absolute ``workdir`` only inside the queue's ``guardrails.workdir_roots``;
  a relative one may not leave the checkout (``..``) nor start with ``~``;
* ``git.repository``: https, http, ssh (``git@host:repo`` too) or git; a
  ``file://`` URL or a path on the agent host only with
  ``guardrails.git_local_remotes``; a remote helper (``ext::``, ``fd::``) or
  an unknown scheme never (``ext::`` runs a command on the agent's host);
* when the queue fixes what runs, no container ``command``/``args`` (nor
  SageMaker's ``ContainerEntrypoint``/``ContainerArguments``) in
  ``resource_args``: a sidecar or init container would run the submitter's
  program beside the queue's.

An admin's own submissions (``launchplane run``, an admin token) are trusted
with the host: :func:`host_errors` is not called for them; the container
check is a lock and applies to everyone.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping
from typing import Any

from launchplane.core.config.envnames import refusal
from launchplane.core.config.keypath import PathKey, format_path
from launchplane.core.errors import FieldError
from launchplane.core.spec import Guardrails

_ENV_KEYS = frozenset({"env", "environment", "Environment"})
"""Keys in ``resource_args`` whose value is a process environment (mapping or list)."""
_CONTAINER_LISTS = frozenset(
    {"containers", "initContainers", "init_containers", "ephemeralContainers"}
)
_CONTAINER_PROGRAM = ("command", "args")
_SAGEMAKER_PROGRAM = frozenset({"ContainerEntrypoint", "ContainerArguments"})
REMOTE_SCHEMES = frozenset({"http", "https", "ssh", "git", "git+ssh", "ssh+git"})
"""URL schemes a submitter's ``git.repository`` may use on any queue."""
_HELPER = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*::")
"""``<transport>::<address>``: git runs the program ``git-remote-<transport>`` (as git does,
the transport is the leading run of URL-scheme characters before ``::``)."""


def host_errors(layer: Mapping[str, Any], rules: Guardrails) -> list[FieldError]:
    """Every env name, workdir and git remote of a submitter's layer the queue does not allow."""
    errors = env_name_errors(layer, rules)
    errors += workdir_errors(layer.get("workdir"), rules)
    git = layer.get("git")
    if isinstance(git, Mapping):
        errors += repository_errors(git.get("repository"), rules)
    return errors


def env_name_errors(layer: Mapping[str, Any], rules: Guardrails) -> list[FieldError]:
    """Names in ``env`` (a ``null`` one is a passthrough, judged elsewhere) and in
    ``resource_args`` environments that :func:`~.envnames.refusal` refuses."""
    found: list[tuple[PathKey, str]] = []
    env = layer.get("env")
    if isinstance(env, Mapping):
        found += [(("env", str(name)), str(name)) for name, v in env.items() if v is not None]
    found += list(_resource_env_names(layer.get("resource_args"), ("resource_args",)))
    errors = []
    for path, name in found:
        why = refusal(name, rules)
        if why is not None:
            errors.append(FieldError(format_path(path), f"{name} {why}"))
    return errors


def _resource_env_names(value: Any, path: PathKey) -> Iterator[tuple[PathKey, str]]:
    """(path, name) of every variable an environment in ``resource_args`` sets."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _resource_env_names(item, (*path, index))
        return
    if not isinstance(value, Mapping):
        return
    for key, child in value.items():
        here = (*path, str(key))
        if key in _ENV_KEYS and isinstance(child, Mapping):
            yield from (((*here, str(name)), str(name)) for name in child)
        elif key in _ENV_KEYS and isinstance(child, list):
            for index, item in enumerate(child):
                name = _listed_env_name(item)
                if name is not None:
                    yield (*here, index), name
        else:
            yield from _resource_env_names(child, here)


def _listed_env_name(item: Any) -> str | None:
    """``K`` of ``"K=V"`` (Docker's list form) or of ``{name: K, ...}`` (Kubernetes')."""
    if isinstance(item, str):
        return item.split("=", 1)[0]
    if isinstance(item, Mapping) and isinstance(item.get("name"), str):
        return item["name"]
    return None


def workdir_errors(workdir: Any, rules: Guardrails) -> list[FieldError]:
    """An absolute workdir inside the queue's roots; a relative one inside the checkout."""
    if not isinstance(workdir, str):
        return []
    if workdir.startswith("~"):
        return [
            FieldError(
                "workdir",
                "may not start with ~ (a home directory on the agent host); give a folder of "
                "the job's git checkout",
            )
        ]
    normal = posixpath.normpath(workdir)
    if posixpath.isabs(normal):
        if any(inside(normal, root) for root in rules.workdir_roots):
            return []
        roots = ", ".join(rules.workdir_roots) or "none"
        return [
            FieldError(
                "workdir",
                f"{workdir} is a directory of the agent host, which a submitter may name only "
                f"inside the queue's guardrails.workdir_roots (here: {roots}); give git: and "
                "a folder of its checkout, or ask an admin to add a root",
            )
        ]
    if normal == ".." or normal.startswith("../"):
        return [
            FieldError(
                "workdir",
                f"{workdir} leaves the job's code directory; give a folder inside the checkout",
            )
        ]
    return []


def inside(path: str, root: str) -> bool:
    """Whether the normalised absolute ``path`` is ``root`` or below it (no filesystem access:
    the server does not see the agent's host; the agent resolves symlinks when it builds)."""
    root = posixpath.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def repository_errors(repository: Any, rules: Guardrails) -> list[FieldError]:
    """A submitter's ``git.repository`` may name a remote; a local one only when allowed."""
    if not isinstance(repository, str):
        return []
    kind = remote_kind(repository)
    if kind == "remote" or (kind == "local" and rules.git_local_remotes):
        return []
    if kind == "local":
        message = (
            f"{repository} is a repository on the agent host (a path or file://), which a "
            "submitter may use only on a queue with guardrails.git_local_remotes: true; give "
            "an https or ssh URL, or ask an admin to allow local remotes"
        )
    else:
        message = (
            f"{repository} uses git's {kind}, which runs a program on the agent host; give an "
            f"https or ssh URL ({', '.join(sorted(REMOTE_SCHEMES))})"
        )
    return [FieldError("git.repository", message)]


def remote_kind(url: str) -> str:
    """``remote``, ``local``, or what else git would make of ``url`` (as its transport.c does).

    ``<transport>::<address>`` runs ``git-remote-<transport>``; ``scheme://`` is
    a URL; without ``://``, a colon before the first slash is ssh's
    ``host:path``, anything else a path on this host.
    """
    if _HELPER.match(url):
        return f"remote helper '{url.split('::', 1)[0]}::'"
    scheme, sep, _ = url.partition("://")
    if sep:
        lowered = scheme.lower()
        if lowered == "file":
            return "local"
        if lowered in REMOTE_SCHEMES:
            return "remote"
        return f"unknown transport '{scheme}://' (a remote helper)"
    colon, slash = url.find(":"), url.find("/")
    if colon > 0 and (slash < 0 or colon < slash):
        return "remote"
    return "local"


def container_program_errors(layer: Mapping[str, Any]) -> list[FieldError]:
    """``command``/``args`` of any container in ``resource_args`` (for a queue that fixes
    what runs): a sidecar, an init container, or the first container's own ``command``
    over locked ``args`` would run the submitter's program."""
    found = list(_container_programs(layer.get("resource_args"), ("resource_args",), False))
    return [
        FieldError(
            format_path(path),
            "would run a program of the submitter's choice, and the queue fixes what runs "
            "(command, entry_point or args); only the queue config (an admin) may set it",
        )
        for path in found
    ]


def _container_programs(value: Any, path: PathKey, in_container: bool) -> Iterator[PathKey]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _container_programs(item, (*path, index), in_container)
        return
    if not isinstance(value, Mapping):
        return
    for key, child in value.items():
        here = (*path, str(key))
        if key in _SAGEMAKER_PROGRAM or (in_container and key in _CONTAINER_PROGRAM):
            yield here
        elif key in _CONTAINER_LISTS and isinstance(child, list):
            for index, item in enumerate(child):
                yield from _container_programs(item, (*here, index), True)
        else:
            yield from _container_programs(child, here, False)
