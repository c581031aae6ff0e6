"""Finds plugins, imports them in order, isolates their failures, fills a registry.

Load order (``entrypoints.md``, "How plugins are loaded", documents it for authors):

1. built-in plugins, from :data:`~launchplane.core.builtin_plugins.BUILTIN_PLUGINS`.
   They are loaded from that table, not from installed metadata, so they are
   present with autoload off and in a source checkout whose metadata is stale;
2. entry points of the ``launchplane`` group, unless autoload is off
   (``LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD=1``). launchplane's own entry points
   name the built-in modules again and are skipped as duplicates;
3. modules named in ``LAUNCHPLANE_PLUGINS`` and then ``--plugins``
   (comma-separated), imported and registered.

``no:NAME`` in the plugin list blocks a plugin by entry point name or module
name; a blocked plugin is never imported. A plugin that fails in any way
(import error, unknown hook, bad, incomplete or duplicate registration) is
reported by name and skipped as a whole: none of its hooks run and nothing it
registered is kept. ``strict=True`` turns any failure into a :class:`PluginError`.

Only stdlib, pluggy and light ``launchplane.core`` modules are imported here:
every command that touches plugins pays for this module.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, entry_points, packages_distributions, version
from typing import Any

import pluggy

from launchplane._version import __version__
from launchplane.core import builtin_plugins, hookspecs
from launchplane.core.builtin_plugins import BuiltinPlugin
from launchplane.core.errors import suggest
from launchplane.core.interfaces import SCHEME_RE, MissingExtraError, PluginError
from launchplane.core.registry import (
    KINDS,
    SECRET_PROVIDER,
    Options,
    PluginInfo,
    PluginKind,
    PluginRegistry,
    Source,
    log,
)

ENTRY_POINT_GROUP = "launchplane"
PLUGINS_ENV = "LAUNCHPLANE_PLUGINS"
DISABLE_AUTOLOAD_ENV = "LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_PREFIX = "no:"
HOOK_PREFIX = "launchplane_"

Staged = list[tuple[PluginKind, str, type[Any]]]


def get_plugin_manager(
    plugins: Sequence[str] = (),
    *,
    strict: bool = False,
    autoload: bool | None = None,
    defaults: Mapping[str, Mapping[str, Options]] | None = None,
    log_failures: bool = True,
) -> PluginRegistry:
    """Build a fresh registry: built-ins, entry points, then ``LAUNCHPLANE_PLUGINS``/``plugins``.

    ``plugins`` holds ``--plugins`` values (each may be comma-separated);
    ``autoload=None`` reads ``LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD``;
    ``defaults`` holds option defaults by kind key and name
    (``{"secret-provider": {"file-vault": {"path": ...}}}``, from an agent
    config). Nothing is cached between calls (Python still imports each
    module once per process): every call builds a new pluggy manager, new
    registries and new instances, so tests and callers with different
    ``--plugins`` never share state. ``log_failures=False`` logs a plugin
    that failed to load at debug level only: for a command that reports
    ``registry.load_errors`` itself (``plan``, ``plugins``), so the user reads
    each failure once.
    """
    from_env = split_list([os.environ.get(PLUGINS_ENV, "")])
    from_option = split_list([plugins] if isinstance(plugins, str) else plugins)
    specs = from_env + from_option
    blocked = frozenset(s.removeprefix(BLOCK_PREFIX) for s in specs if s.startswith(BLOCK_PREFIX))
    forced: dict[str, Source] = {}
    for spec in from_env:
        forced.setdefault(spec, "LAUNCHPLANE_PLUGINS")
    for spec in from_option:
        forced.setdefault(spec, "--plugins")
    forced = {spec: source for spec, source in forced.items() if not spec.startswith(BLOCK_PREFIX)}
    if autoload is None:
        autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in {
            "1",
            "true",
            "yes",
        }
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    registry = PluginRegistry(pm, blocked, defaults)
    _Loader(registry, log_failures).load(_candidates(autoload=autoload, forced=forced))
    if strict and registry.load_errors:
        raise PluginError(_strict_message(registry))
    return registry


def split_list(values: Sequence[str]) -> list[str]:
    """``--plugins a,b --plugins c`` -> ``[a, b, c]``: the comma-list grammar of every option."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _strict_message(registry: PluginRegistry) -> str:
    failed = [(i.name, i.module, i.error) for i in registry.report() if i.error]
    if len(failed) == 1:
        name, module, error = failed[0]
        return f"plugin '{name}' ({module}) failed to load (--strict-plugins): {error}"
    lines = [f"{len(failed)} plugins failed to load (--strict-plugins):"]
    lines += [f"  - {name} ({module}): {error}" for name, module, error in failed]
    return "\n".join(lines)


@dataclass(frozen=True)
class _Candidate:
    """A plugin found but not yet imported.

    ``version`` is None for a forced module: it is looked up once the module
    is imported (:func:`_module_version`).
    """

    name: str
    module: str
    source: Source
    version: str | None
    load: Callable[[], object]
    builtin: BuiltinPlugin | None = None


def _candidates(*, autoload: bool, forced: Mapping[str, Source]) -> list[_Candidate]:
    """Every plugin to consider, in load order, the same module listed once."""
    found = [
        _Candidate(b.name, b.module, "builtin", __version__, _importer(b.module), b)
        for b in builtin_plugins.BUILTIN_PLUGINS
    ]
    if autoload:
        found += _entry_point_candidates()
    found += [
        _Candidate(module, module, source, None, _importer(module))
        for module, source in forced.items()
    ]
    seen: set[str] = set()
    unique = []
    for candidate in found:
        if candidate.module not in seen:
            seen.add(candidate.module)
            unique.append(candidate)
    return unique


def _entry_point_candidates() -> list[_Candidate]:
    candidates = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else None
        found = ep.dist.version if ep.dist is not None else "unknown"
        source: Source = "builtin" if dist == "launchplane" else "entrypoint"
        candidates.append(_Candidate(ep.name, ep.module, source, found, ep.load))
    return candidates


def _importer(module: str) -> Callable[[], object]:
    return lambda: importlib.import_module(module)


def _module_version(module: str, loaded: object | None) -> str:
    """A forced module's version: its distribution's, else its ``__version__``, else unknown.

    The distribution is the one installed package that ships the module's
    top-level package; several (a namespace package) or none fall back.
    """
    dists = set(packages_distributions().get(module.partition(".")[0], ()))
    if len(dists) == 1:
        try:
            return version(dists.pop())
        except PackageNotFoundError:
            pass
    declared = getattr(loaded, "__version__", None)
    return declared if isinstance(declared, str) and declared else "unknown"


class _Loader:
    """Imports, validates and registers candidates into one registry, isolating failures."""

    def __init__(self, registry: PluginRegistry, log_failures: bool = True) -> None:
        self.registry = registry
        self.pm = registry.pm
        self._failure_level = logging.WARNING if log_failures else logging.DEBUG
        for name in registry.blocked:
            self.pm.set_blocked(name)

    def load(self, candidates: Sequence[_Candidate]) -> None:
        names: dict[str, str] = {}
        for candidate in candidates:
            info = PluginInfo(
                candidate.name, candidate.module, candidate.version or "unknown", candidate.source
            )
            self.registry.track(info)
            if self.registry.is_blocked(candidate.name, candidate.module):
                self.pm.set_blocked(candidate.name)
                info.blocked = True
                continue
            if candidate.name in names:
                self._fail(
                    info, f"plugin name '{candidate.name}' is taken by {names[candidate.name]}"
                )
                continue
            names[candidate.name] = candidate.module
            self._load_one(candidate, info)
        self._warn_unused_blocks(candidates)
        self.pm.check_pending()

    def _load_one(self, candidate: _Candidate, info: PluginInfo) -> None:
        try:
            plugin = candidate.load()
        except Exception as exc:
            if candidate.version is None:
                info.version = _module_version(candidate.module, None)
            self._fail(info, self._describe_import_error(candidate, exc), exc)
            return
        if candidate.version is None:
            info.version = _module_version(candidate.module, plugin)
        if self.pm.is_registered(plugin):
            other = self.pm.get_name(plugin)
            self._fail(info, f"the same object is already registered as plugin '{other}'")
            return
        try:
            self.pm.register(plugin, name=candidate.name)
            self._check_hooks(plugin)
            staged = self._collect_registrations(plugin, candidate.name)
            self._check_duplicates(staged)
        except Exception as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._fail(info, _exception_text(exc), exc)
            return
        for kind, name, cls in staged:
            self.registry.add(kind, name, cls, info)

    def _describe_import_error(self, candidate: _Candidate, exc: Exception) -> str:
        """For a built-in missing its extra, the ``pip install`` line; else the error."""
        builtin = candidate.builtin
        missing_dependency = isinstance(exc, ImportError) and exc.name != candidate.module
        if builtin is not None and builtin.extra is not None and missing_dependency:
            kind, _, name = builtin.provides[0].partition(":")
            error = (
                exc
                if isinstance(exc, MissingExtraError)
                else MissingExtraError(kind, name, builtin.extra)
            )
            self.registry.note_missing_extra(builtin.name, error)
            return str(error)
        return _exception_text(exc)

    def _check_hooks(self, plugin: object) -> None:
        """``check_pending`` for one plugin, plus hook-like functions missing ``@hookimpl``.

        pluggy's own ``check_pending`` raises on the first problem without
        saying which plugin; this names the plugin, the hook and a suggestion.
        """
        known = [n for n in vars(hookspecs) if n.startswith(HOOK_PREFIX)]
        problems = []
        implemented = set()
        for caller in self.pm.get_hookcallers(plugin) or []:
            implemented.add(caller.name)
            impls = [i for i in caller.get_hookimpls() if i.plugin is plugin]
            if not caller.has_spec() and not any(i.optionalhook for i in impls):
                problems.append(f"unknown hook {caller.name}{suggest(caller.name, known)}")
        for attr in dir(plugin):
            hook_like = attr.startswith(HOOK_PREFIX) and callable(getattr(plugin, attr, None))
            if hook_like and attr not in implemented:
                problems.append(f"{attr} is not decorated with @launchplane.hookimpl")
        if problems:
            raise PluginError("; ".join(problems))

    def _collect_registrations(self, plugin: object, plugin_name: str) -> Staged:
        """Call this plugin's registration hooks only, checking every class."""
        staged: Staged = []
        for kind in KINDS:
            register = _register_function(kind, staged, plugin_name)
            for impl in getattr(self.pm.hook, kind.hook).get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(**{name: register for name in impl.argnames})
        return staged

    def _check_duplicates(self, staged: Staged) -> None:
        """First registration wins: a later plugin cannot silently replace a name."""
        seen: set[tuple[str, str]] = set()
        for kind, name, _ in staged:
            owner = self.registry.owner(kind, name)
            if owner is not None:
                raise PluginError(
                    f"{kind.label} '{name}' is already registered by plugin '{owner}' "
                    f"(the first registration wins; block it with --plugins=no:{owner} "
                    f"to use this one)"
                )
            if (kind.key, name) in seen:
                raise PluginError(f"{kind.label} '{name}' is registered twice")
            seen.add((kind.key, name))

    def _fail(self, info: PluginInfo, message: str, exc: Exception | None = None) -> None:
        message = _one_line(message)
        self.registry.fail(info, message)
        log.log(
            self._failure_level,
            "plugin '%s' (%s) skipped: %s",
            info.name,
            info.module,
            message,
            exc_info=exc is not None and log.isEnabledFor(logging.DEBUG),
        )

    def _warn_unused_blocks(self, candidates: Sequence[_Candidate]) -> None:
        known = {c.name for c in candidates} | {c.module for c in candidates}
        for name in sorted(self.registry.blocked - known):
            log.warning("--plugins=no:%s matches no plugin%s", name, suggest(name, known))


def _register_function(
    kind: PluginKind, staged: Staged, plugin_name: str
) -> Callable[[type[Any]], None]:
    """The ``register`` argument of one registration hook: typed, keyed, complete, staged."""

    def register(cls: type[Any]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, kind.base)):
            raise PluginError(
                f"register() of {kind.hook} takes a {kind.base.__name__} subclass, got {cls!r}"
            )
        key = getattr(cls, kind.attr, None)
        if not isinstance(key, str) or not key:
            raise PluginError(
                f"{cls.__name__} must set the class attribute '{kind.attr}' (a string)"
            )
        if kind is SECRET_PROVIDER and not SCHEME_RE.fullmatch(key):
            raise PluginError(
                f"{cls.__name__}.scheme {key!r} is not a valid scheme: "
                "lowercase letters, digits, '+', '.', '-', starting with a letter"
            )
        if inspect.isabstract(cls):
            missing = ", ".join(f"{method}()" for method in _abstract_methods(cls))
            raise PluginError(
                f"{kind.label} class '{cls.__name__}' (plugin '{plugin_name}') is incomplete: "
                f"missing {missing}"
            )
        staged.append((kind, key, cls))

    return register


def _abstract_methods(cls: type) -> list[str]:
    """``cls``'s abstract methods in the order the classes declare them, bases first."""
    pending = set(getattr(cls, "__abstractmethods__", ()))
    ordered = [name for klass in reversed(cls.__mro__) for name in vars(klass) if name in pending]
    return list(dict.fromkeys(ordered))


def _exception_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"


def _one_line(message: str) -> str:
    """A listing's error column: the lines of a message (pluggy's span three) joined by ``; ``."""
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())
