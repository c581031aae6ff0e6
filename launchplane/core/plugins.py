"""The plugin manager: finds plugins, isolates their failures, keeps typed registries.

Load order (``entrypoints.md`` documents it for plugin authors):

1. built-in plugins, from :data:`BUILTIN_PLUGINS`. They are loaded from this
   table, not from installed metadata, so they are present with autoload off
   and in a source checkout whose metadata is stale;
2. entry points of the ``launchplane`` group, unless autoload is off
   (``LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD=1``). launchplane's own entry points
   name the built-in modules again and are skipped as duplicates;
3. modules named in ``LAUNCHPLANE_PLUGINS`` and then ``--plugins``
   (comma-separated), imported and registered.

``no:NAME`` in the plugin list blocks a plugin by entry point name or module
name; a blocked plugin is never imported. A plugin that fails in any way
(import error, unknown hook, bad or duplicate registration) is reported by
name and skipped as a whole: none of its hooks run and nothing it registered
is kept. ``strict=True`` turns any failure into a :class:`PluginError`.

Only stdlib, pluggy and light ``launchplane.core`` modules are imported here:
every command that touches plugins pays for this module.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import entry_points
from typing import Any, Literal

import pluggy

from launchplane._version import __version__
from launchplane.core import hookspecs
from launchplane.core.errors import suggest
from launchplane.core.interfaces import (
    SCHEME_RE,
    Builder,
    MissingExtraError,
    PluginError,
    Runner,
    SecretProvider,
)

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "launchplane"
PLUGINS_ENV = "LAUNCHPLANE_PLUGINS"
DISABLE_AUTOLOAD_ENV = "LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_PREFIX = "no:"
HOOK_PREFIX = "launchplane_"

Source = Literal["builtin", "entrypoint", "--plugins"]


@dataclass(frozen=True)
class BuiltinPlugin:
    """A plugin shipped with launchplane; mirrors one entry point in pyproject.toml.

    ``provides`` (``"runner:kubernetes"``) lets the registry answer "which
    extra do I install?" for a name whose module could not even be imported;
    a test checks it against what the module really registers.
    """

    name: str
    module: str
    provides: tuple[str, ...]
    extra: str | None = None


BUILTIN_PLUGINS: tuple[BuiltinPlugin, ...] = (
    BuiltinPlugin("noop", "launchplane.plugins.builders.noop", ("builder:noop",)),
    BuiltinPlugin("local-process", "launchplane.plugins.runners.local", ("runner:local-process",)),
    BuiltinPlugin("env", "launchplane.plugins.secrets.env", ("secret-provider:env",)),
    BuiltinPlugin(
        "docker-builder", "launchplane.plugins.builders.docker", ("builder:docker",), "docker"
    ),
    BuiltinPlugin(
        "docker-runner", "launchplane.plugins.runners.docker", ("runner:docker",), "docker"
    ),
)


@dataclass(frozen=True)
class PluginKind:
    """One typed registry: what ``register()`` accepts and how it is keyed."""

    key: str
    label: str
    hook: str
    base: type
    attr: str


BUILDER = PluginKind("builder", "builder", "launchplane_register_builders", Builder, "name")
RUNNER = PluginKind("runner", "runner", "launchplane_register_runners", Runner, "name")
SECRET_PROVIDER = PluginKind(
    "secret-provider",
    "secret provider",
    "launchplane_register_secret_providers",
    SecretProvider,
    "scheme",
)
KINDS = (BUILDER, RUNNER, SECRET_PROVIDER)


@dataclass
class PluginInfo:
    """One line of ``launchplane plugins``: where a plugin came from and what it did."""

    name: str
    module: str
    version: str
    source: Source
    registered: list[str] = field(default_factory=list)
    error: str | None = None
    blocked: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Candidate:
    """A plugin found but not yet imported."""

    name: str
    module: str
    source: Source
    version: str
    load: Callable[[], object]
    builtin: BuiltinPlugin | None = None


class PluginRegistry:
    """The loaded plugins: the pluggy manager plus typed registries of classes.

    Built by :func:`get_plugin_manager`. Instances of registered classes are
    created on first use and cached, one per name, for the registry's life.
    """

    def __init__(self, pm: pluggy.PluginManager, blocked: frozenset[str] = frozenset()) -> None:
        self.pm = pm
        self.builders: dict[str, type[Builder]] = {}
        self.runners: dict[str, type[Runner]] = {}
        self.secret_providers: dict[str, type[SecretProvider]] = {}
        self.load_errors: dict[str, str] = {}
        """Plugin name -> why it was skipped. Blocked plugins are not errors."""
        self._blocked = blocked
        self._infos: list[PluginInfo] = []
        self._owners: dict[str, str] = {}
        self._missing_extras: dict[str, MissingExtraError] = {}
        self._instances: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def hook(self) -> Any:
        """``pm.hook``: call ``registry.hook.launchplane_prepare_job(job=..., ctx=...)``."""
        return self.pm.hook

    def builder(self, name: str) -> Builder:
        return self._instance(BUILDER, name)

    def runner(self, name: str) -> Runner:
        return self._instance(RUNNER, name)

    def secret_provider(self, scheme: str) -> SecretProvider:
        return self._instance(SECRET_PROVIDER, scheme)

    def report(self) -> list[PluginInfo]:
        """Every plugin found, in load order, including blocked and failed ones (copies)."""
        return [replace(info, registered=list(info.registered)) for info in self._infos]

    def emit_event(self, job_id: str, state: str, details: dict[str, Any]) -> None:
        """Tell every ``launchplane_job_event`` observer; a failing observer is logged only.

        Each observer is called on its own (pluggy would stop at the first
        exception), so one broken notifier neither breaks a launch nor
        silences the others.
        """
        args = {"job_id": job_id, "state": state, "details": details}
        for impl in reversed(self.pm.hook.launchplane_job_event.get_hookimpls()):
            try:
                impl.function(**{name: args[name] for name in impl.argnames})
            except Exception:
                log.exception(
                    "plugin %r: launchplane_job_event(%s, %s) failed; ignored",
                    impl.plugin_name,
                    job_id,
                    state,
                )

    def table(self, kind: PluginKind) -> dict[str, type[Any]]:
        """The registry of one kind (``registry.table(RUNNER) is registry.runners``)."""
        tables: dict[str, dict[str, Any]] = {
            BUILDER.key: self.builders,
            RUNNER.key: self.runners,
            SECRET_PROVIDER.key: self.secret_providers,
        }
        return tables[kind.key]

    def _instance(self, kind: PluginKind, name: str) -> Any:
        cls = self.table(kind).get(name)
        if cls is None:
            raise self._unknown(kind, name)
        key = f"{kind.key}:{name}"
        with self._lock:
            if key not in self._instances:
                self._instances[key] = self._construct(kind, name, cls)
            return self._instances[key]

    def _construct(self, kind: PluginKind, name: str, cls: type[Any]) -> Any:
        owner = self._owners[f"{kind.key}:{name}"]
        try:
            return cls()
        except ImportError as exc:
            builtin = _builtin_named(owner)
            if builtin is not None and builtin.extra is not None:
                raise MissingExtraError(kind.key, name, builtin.extra) from exc
            raise PluginError(f"{kind.label} '{name}' (plugin '{owner}'): {exc}") from exc
        except Exception as exc:
            raise PluginError(
                f"{kind.label} '{name}' (plugin '{owner}') could not be created: {exc}"
            ) from exc

    def _unknown(self, kind: PluginKind, name: str) -> PluginError:
        """The most useful error for a name nobody registered."""
        builtin = _builtin_providing(f"{kind.key}:{name}")
        if builtin is not None and builtin.name in self._missing_extras:
            return self._missing_extras[builtin.name]
        if builtin is not None and builtin.name in self.load_errors:
            return PluginError(
                f"{kind.label} '{name}' is unavailable: plugin '{builtin.name}' failed to load: "
                f"{self.load_errors[builtin.name]}"
            )
        if builtin is not None and self._is_blocked(builtin.name, builtin.module):
            return PluginError(
                f"{kind.label} '{name}' comes from plugin '{builtin.name}', "
                f"which is blocked (--plugins=no:{builtin.name})"
            )
        available = sorted(self.table(kind))
        message = (
            f"unknown {kind.label} '{name}'{suggest(name, available)}; "
            f"available: {', '.join(available) or 'none'}"
        )
        if self.load_errors:
            failed = ", ".join(sorted(self.load_errors))
            message += f" (plugins that failed to load: {failed}; see `launchplane plugins`)"
        return PluginError(message)

    def _is_blocked(self, name: str, module: str) -> bool:
        return name in self._blocked or module in self._blocked


def get_plugin_manager(
    plugins: Sequence[str] = (),
    *,
    strict: bool = False,
    autoload: bool | None = None,
) -> PluginRegistry:
    """Build a fresh registry: built-ins, entry points, then ``LAUNCHPLANE_PLUGINS``/``plugins``.

    ``plugins`` holds ``--plugins`` values (each may be comma-separated);
    ``autoload=None`` reads ``LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD``. Nothing is
    cached between calls (Python still imports each module once per process):
    every call builds a new pluggy manager, new registries and new instances,
    so tests and callers with different ``--plugins`` never share state.
    """
    specs = _split_specs([os.environ.get(PLUGINS_ENV, "")]) + _split_specs(
        [plugins] if isinstance(plugins, str) else plugins
    )
    blocked = frozenset(s.removeprefix(BLOCK_PREFIX) for s in specs if s.startswith(BLOCK_PREFIX))
    forced = list(dict.fromkeys(s for s in specs if not s.startswith(BLOCK_PREFIX)))
    if autoload is None:
        autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in {
            "1",
            "true",
            "yes",
        }
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    registry = PluginRegistry(pm, blocked)
    _Loader(registry).load(_candidates(autoload=autoload, forced=forced))
    if strict and registry.load_errors:
        raise PluginError(_strict_message(registry))
    return registry


def _split_specs(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _strict_message(registry: PluginRegistry) -> str:
    failed = [(i.name, i.module, i.error) for i in registry.report() if i.error]
    if len(failed) == 1:
        name, module, error = failed[0]
        return f"plugin '{name}' ({module}) failed to load (--strict-plugins): {error}"
    lines = [f"{len(failed)} plugins failed to load (--strict-plugins):"]
    lines += [f"  - {name} ({module}): {error}" for name, module, error in failed]
    return "\n".join(lines)


def _candidates(*, autoload: bool, forced: Sequence[str]) -> list[_Candidate]:
    """Every plugin to consider, in load order, the same module listed once."""
    found = [
        _Candidate(b.name, b.module, "builtin", __version__, _importer(b.module), b)
        for b in BUILTIN_PLUGINS
    ]
    if autoload:
        found += _entry_point_candidates()
    found += [
        _Candidate(module, module, "--plugins", __version__, _importer(module)) for module in forced
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
        version = ep.dist.version if ep.dist is not None else "unknown"
        source: Source = "builtin" if dist == "launchplane" else "entrypoint"
        candidates.append(_Candidate(ep.name, ep.module, source, version, ep.load))
    return candidates


def _importer(module: str) -> Callable[[], object]:
    return lambda: importlib.import_module(module)


def _builtin_named(name: str) -> BuiltinPlugin | None:
    return next((b for b in BUILTIN_PLUGINS if b.name == name), None)


def _builtin_providing(registered: str) -> BuiltinPlugin | None:
    return next((b for b in BUILTIN_PLUGINS if registered in b.provides), None)


class _Loader:
    """Imports, validates and registers candidates into one registry, isolating failures."""

    def __init__(self, registry: PluginRegistry) -> None:
        self.registry = registry
        self.pm = registry.pm
        for name in registry._blocked:
            self.pm.set_blocked(name)

    def load(self, candidates: Sequence[_Candidate]) -> None:
        names: dict[str, str] = {}
        for candidate in candidates:
            info = PluginInfo(candidate.name, candidate.module, candidate.version, candidate.source)
            self.registry._infos.append(info)
            if self.registry._is_blocked(candidate.name, candidate.module):
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
            self._fail(info, self._describe_import_error(candidate, exc), exc)
            return
        if self.pm.is_registered(plugin):
            other = self.pm.get_name(plugin)
            self._fail(info, f"the same object is already registered as plugin '{other}'")
            return
        try:
            self.pm.register(plugin, name=candidate.name)
            self._check_hooks(plugin)
            staged = self._collect_registrations(plugin)
            self._check_duplicates(staged)
        except Exception as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._fail(info, _exception_text(exc), exc)
            return
        self._commit(staged, info)

    def _describe_import_error(self, candidate: _Candidate, exc: Exception) -> str:
        """One line; for a built-in missing its extra, the ``pip install`` line."""
        builtin = candidate.builtin
        missing_dependency = isinstance(exc, ImportError) and exc.name != candidate.module
        if builtin is not None and builtin.extra is not None and missing_dependency:
            kind, _, name = builtin.provides[0].partition(":")
            error = (
                exc
                if isinstance(exc, MissingExtraError)
                else MissingExtraError(kind, name, builtin.extra)
            )
            self.registry._missing_extras[builtin.name] = error
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

    def _collect_registrations(self, plugin: object) -> list[tuple[PluginKind, str, type[Any]]]:
        """Call this plugin's registration hooks only, type-checking every class."""
        staged: list[tuple[PluginKind, str, type[Any]]] = []
        for kind in KINDS:
            register = _register_function(kind, staged)
            for impl in getattr(self.pm.hook, kind.hook).get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(**{name: register for name in impl.argnames})
        return staged

    def _check_duplicates(self, staged: list[tuple[PluginKind, str, type[Any]]]) -> None:
        """First registration wins: a later plugin cannot silently replace a name."""
        seen: set[str] = set()
        for kind, name, _ in staged:
            key = f"{kind.key}:{name}"
            owner = self.registry._owners.get(key)
            if owner is not None:
                raise PluginError(
                    f"{kind.label} '{name}' is already registered by plugin '{owner}' "
                    f"(the first registration wins; block it with --plugins=no:{owner} "
                    f"to use this one)"
                )
            if key in seen:
                raise PluginError(f"{kind.label} '{name}' is registered twice")
            seen.add(key)

    def _commit(self, staged: list[tuple[PluginKind, str, type[Any]]], info: PluginInfo) -> None:
        for kind, name, cls in staged:
            self.registry.table(kind)[name] = cls
            self.registry._owners[f"{kind.key}:{name}"] = info.name
            info.registered.append(f"{kind.key}:{name}")

    def _fail(self, info: PluginInfo, message: str, exc: Exception | None = None) -> None:
        info.error = message
        self.registry.load_errors[info.name] = message
        log.warning(
            "plugin '%s' (%s) skipped: %s",
            info.name,
            info.module,
            message,
            exc_info=exc is not None and log.isEnabledFor(logging.DEBUG),
        )

    def _warn_unused_blocks(self, candidates: Sequence[_Candidate]) -> None:
        known = {c.name for c in candidates} | {c.module for c in candidates}
        for name in sorted(self.registry._blocked - known):
            log.warning("--plugins=no:%s matches no plugin%s", name, suggest(name, known))


def _register_function(
    kind: PluginKind, staged: list[tuple[PluginKind, str, type[Any]]]
) -> Callable[[type[Any]], None]:
    """The ``register`` argument of one registration hook: typed, keyed, staged."""

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
        staged.append((kind, key, cls))

    return register


def _exception_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
