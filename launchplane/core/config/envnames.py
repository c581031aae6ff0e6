"""Environment names a submitter may not set: they make an interpreter or a loader run code.

A queue that fixes what runs (``command``, ``entry_point``, ``args``, ``workdir``)
is not fixed if a submitter can set ``LD_PRELOAD``, ``PYTHONWARNINGS`` plus
``BROWSER`` or ``BASH_ENV``: each makes the admin's own program load or run the
submitter's code. :data:`DENIED` is the built-in deny-list (each entry with the
reason the error shows); a queue adds names (``guardrails.env_deny``), lets
some through (``guardrails.env_allow``) or allows only a list
(``guardrails.env_only``). Patterns are exact names or end in ``*`` (a prefix).
Names are case-sensitive, as on Linux.

Harmless ``PYTHON*`` names (unbuffered output, the hash seed, the I/O encoding,
no ``.pyc`` files, UTF-8 mode, faulthandler) are not denied: none of them
names code or a file to load.
"""

from __future__ import annotations

from collections.abc import Iterable

from launchplane.core.spec import Guardrails

_LOADER = "makes the dynamic loader load a library of the submitter's choice"
_SHELL = "makes the shell run commands before or around the queue's command"
_PYTHON = "makes Python import, run or change code of the submitter's choice"
_TOOL = "names a program that tools run on their own"

DENIED: tuple[tuple[str, str], ...] = (
    ("LD_*", _LOADER),
    ("DYLD_*", _LOADER),
    ("GCONV_PATH", _LOADER + " (through iconv)"),
    ("GLIBC_TUNABLES", "tunes glibc's allocator and loader (CVE-2023-4911)"),
    ("LOCPATH", "makes glibc read locale files of the submitter's choice"),
    ("NLSPATH", "makes programs read message catalogues of the submitter's choice"),
    ("OPENSSL_CONF", "makes OpenSSL load engines or providers of the submitter's choice"),
    ("OPENSSL_ENGINES", "makes OpenSSL load engines of the submitter's choice"),
    ("OPENSSL_MODULES", "makes OpenSSL load providers of the submitter's choice"),
    ("PYTHON*", _PYTHON),
    ("BASH_ENV", _SHELL),
    ("ENV", _SHELL),
    ("BASH_FUNC_*", "defines a shell function that replaces a command"),
    ("SHELLOPTS", _SHELL),
    ("BASHOPTS", _SHELL),
    ("PS4", _SHELL + " (expanded with xtrace)"),
    ("PROMPT_COMMAND", _SHELL),
    ("IFS", "changes how the shell splits the queue's command into words"),
    ("ZDOTDIR", _SHELL + " (zsh's start-up files)"),
    ("PATH", "chooses which program the queue's command runs"),
    ("HOME", "chooses the start-up and site files that interpreters and tools read"),
    ("XDG_CONFIG_HOME", "chooses the configuration files that tools read"),
    ("PERL*", "makes Perl load modules or options of the submitter's choice"),
    ("RUBYOPT", "makes Ruby load code of the submitter's choice"),
    ("RUBYLIB", "makes Ruby load code of the submitter's choice"),
    ("NODE_OPTIONS", "makes Node.js load code of the submitter's choice"),
    ("NODE_PATH", "makes Node.js load code of the submitter's choice"),
    ("JAVA_TOOL_OPTIONS", "makes the JVM load agents of the submitter's choice"),
    ("_JAVA_OPTIONS", "makes the JVM load agents of the submitter's choice"),
    ("JDK_JAVA_OPTIONS", "makes the JVM load agents of the submitter's choice"),
    ("CLASSPATH", "makes the JVM load classes of the submitter's choice"),
    ("GIT_*", "makes git run programs or read config of the submitter's choice"),
    ("BROWSER", _TOOL + " (Python's webbrowser)"),
    ("EDITOR", _TOOL),
    ("VISUAL", _TOOL),
    ("PAGER", _TOOL),
    ("LESSOPEN", _TOOL + " (less's input filter)"),
    ("LESSCLOSE", _TOOL + " (less's input filter)"),
    ("SSH_ASKPASS", _TOOL),
    ("SUDO_ASKPASS", _TOOL),
)
"""The built-in deny-list: (pattern, why) pairs, the first match wins."""

HARMLESS: frozenset[str] = frozenset(
    {
        "PYTHONUNBUFFERED",
        "PYTHONHASHSEED",
        "PYTHONIOENCODING",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUTF8",
        "PYTHONFAULTHANDLER",
    }
)
"""Names a deny-list prefix covers that name no code or file: allowed without ``env_allow``."""


def matches(name: str, pattern: str) -> bool:
    """``pattern`` is the exact name, or ends in ``*`` and ``name`` starts with the rest."""
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _any(name: str, patterns: Iterable[str]) -> bool:
    return any(matches(name, pattern) for pattern in patterns)


def refusal(name: str, rules: Guardrails) -> str | None:
    """Why a submitter may not set ``name`` on a queue with these ``rules``; None if it may."""
    if rules.env_only is not None and not _any(name, rules.env_only):
        allowed = ", ".join(rules.env_only) or "none"
        return (
            f"is not in the queue's guardrails.env_only (here: {allowed}); use one of "
            f"those names, or ask an admin to add {name} to guardrails.env_only"
        )
    if _any(name, rules.env_deny):
        return (
            "is refused by the queue's guardrails.env_deny; only the queue config (an admin) "
            "may set it"
        )
    if name in HARMLESS or _any(name, rules.env_allow):
        return None
    for pattern, why in DENIED:
        if matches(name, pattern):
            return (
                f"{why}, so a submitter may not set it (launchplane's deny-list: {pattern}); "
                f"ask an admin to set it in the queue's env, or to list {name} in the "
                "queue's guardrails.env_allow"
            )
    return None
