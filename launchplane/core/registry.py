"""Typed registries of plugin classes, keyed by kind, and the instances made from them.

One table of kinds (:data:`KINDS`) drives everything: the registration hook
each kind is collected from, what ``register()`` accepts, how a class is
keyed, where its options live in config, the lookups and the listing. A new
kind is one :class:`PluginKind` row, one hookspec and one interface.

Instances are created on first use, one per (kind, name, options) for the
registry's life, and closed together by :meth:`PluginRegistry.aclose` when
the agent (or ``launchplane run``/``plan``) stops. :mod:`launchplane.core.loader`
fills a registry; this module imports no plugin and does no I/O.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

from launchplane.core import builtin_plugins
from launchplane.core.config.resolve import model_errors
from launchplane.core.errors import FieldError, join_path, suggest
from launchplane.core.interfaces import (
    ArtifactStore,
    Builder,
    MissingExtraError,
    PluginError,
    Runner,
    SecretProvider,
)

if TYPE_CHECKING:
    import pluggy

# One logger for the whole plugin machinery (registry and loader): the name
# users already filter on.
log = logging.getLogger("launchplane.core.plugins")

Source = Literal["builtin", "entrypoint", "LAUNCHPLANE_PLUGINS", "--plugins"]
"""Where a plugin was found: launchplane's table, an entry point, or the variable or
option that forced it."""

Options = Mapping[str, Any]
"""A plugin's options as configured: a mapping its ``options_model`` validates."""


@dataclass(frozen=True)
class PluginKind:
    """One typed registry: the hook it is filled from, what it accepts, how it is keyed.

    Errors in a plugin's options are reported under ``options_at``
    (``secret_providers.file-vault.path: Field required (provider 'file-vault')``).
    """

    key: str
    """``runner``: the prefix of ``runner:slurm`` in listings."""
    label: str
    """``secret provider``: how messages name the kind."""
    short: str
    """``provider``: how an options error names the plugin."""
    hook: str
    base: type
    attr: str
    """The class attribute holding the registry key (``name`` or ``scheme``)."""
    plural: str
    """``secret_providers``: the registry attribute and the ``--json`` key."""
    heading: str
    """``secret schemes``: the line of the ``launchplane plugins`` summary."""
    options_at: tuple[str, ...] | None
    """Where a plugin's options are configured, ``{name}`` for its key; None: nowhere yet."""


BUILDER = PluginKind(
    "builder",
    "builder",
    "builder",
    "launchplane_register_builders",
    Builder,
    "name",
    "builders",
    "builders",
    ("builder", "options"),
)
RUNNER = PluginKind(
    "runner",
    "runner",
    "runner",
    "launchplane_register_runners",
    Runner,
    "name",
    "runners",
    "runners",
    None,  # configured per job: resource_args.<name>, validated by resource_args_model
)
SECRET_PROVIDER = PluginKind(
    "secret-provider",
    "secret provider",
    "provider",
    "launchplane_register_secret_providers",
    SecretProvider,
    "scheme",
    "secret_providers",
    "secret schemes",
    ("secret_providers", "{name}"),
)
ARTIFACT_STORE = PluginKind(
    "artifact-store",
    "artifact store",
    "store",
    "launchplane_register_artifact_stores",
    ArtifactStore,
    "name",
    "artifact_stores",
    "artifact stores",
    ("artifact_store", "options"),
)
KINDS: tuple[PluginKind, ...] = (BUILDER, RUNNER, SECRET_PROVIDER, ARTIFACT_STORE)
"""Every kind, in the order their registration hooks are called and listed."""


@dataclass
class PluginInfo:
    """One line of ``launchplane plugins``: where a plugin came from and what it did."""

    name: str
    module: str
    version: str
    source: Source
    registered: list[str] = field(default_factory=list)
    error: str | None = None
    """Why the plugin was skipped, on one line. None for a loaded or blocked plugin."""
    blocked: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PluginOptionsError(PluginError):
    """A plugin's options do not validate with its ``options_model``.

    ``errors`` holds one :class:`FieldError` per problem, with its config path
    (``secret_providers.file-vault.path``), for callers that report fields.
    """

    def __init__(self, kind: PluginKind, name: str, errors: list[FieldError]) -> None:
        self.errors = errors
        problems = "; ".join(str(error) for error in errors)
        super().__init__(f"{problems} ({kind.short} '{name}')")


class PluginRegistry:
    """The loaded plugins: the pluggy manager plus one typed registry of classes per kind.

    Built by :func:`launchplane.core.loader.get_plugin_manager`. ``defaults``
    holds option defaults by kind key and name (an agent config's
    ``secret_providers:`` under ``"secret-provider"``); the options given to a
    lookup merge over them key by key, so a queue's value wins.
    """

    def __init__(
        self,
        pm: pluggy.PluginManager,
        blocked: frozenset[str] = frozenset(),
        defaults: Mapping[str, Mapping[str, Options]] | None = None,
    ) -> None:
        self.pm = pm
        self.blocked = blocked
        """``no:NAME`` values: plugin or module names that are never imported."""
        self.load_errors: dict[str, str] = {}
        """Plugin name -> why it was skipped. Blocked plugins are not errors."""
        self._defaults = {kind: dict(names) for kind, names in (defaults or {}).items()}
        self._classes: dict[str, dict[str, type[Any]]] = {kind.key: {} for kind in KINDS}
        self._owners: dict[tuple[str, str], str] = {}
        self._infos: list[PluginInfo] = []
        self._missing_extras: dict[str, MissingExtraError] = {}
        self._instances: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()

    # -- lookups ------------------------------------------------------------------

    @property
    def hook(self) -> Any:
        """``pm.hook``: call ``registry.hook.launchplane_prepare_job(job=..., ctx=...)``."""
        return self.pm.hook

    @property
    def builders(self) -> Mapping[str, type[Builder]]:
        return self.classes(BUILDER)

    @property
    def runners(self) -> Mapping[str, type[Runner]]:
        return self.classes(RUNNER)

    @property
    def secret_providers(self) -> Mapping[str, type[SecretProvider]]:
        return self.classes(SECRET_PROVIDER)

    @property
    def artifact_stores(self) -> Mapping[str, type[ArtifactStore]]:
        return self.classes(ARTIFACT_STORE)

    def classes(self, kind: PluginKind) -> Mapping[str, type[Any]]:
        """The registered classes of one kind, by name (read-only)."""
        return MappingProxyType(self._classes[kind.key])

    def builder(self, name: str, options: Options | None = None) -> Builder:
        """The builder ``name`` made with ``options`` (a job's ``builder.options``)."""
        return self._instance(BUILDER, name, options)

    def runner(self, name: str) -> Runner:
        return self._instance(RUNNER, name, None)

    def secret_provider(self, scheme: str, options: Options | None = None) -> SecretProvider:
        """The provider of ``scheme`` made with ``options`` (a queue's ``secret_providers``)."""
        return self._instance(SECRET_PROVIDER, scheme, options)

    def artifact_store(self, name: str, options: Options | None = None) -> ArtifactStore:
        """The store ``name`` made with ``options`` (a queue's ``artifact_store.options``)."""
        return self._instance(ARTIFACT_STORE, name, options)

    def validate_options(
        self, kind: PluginKind, name: str, options: Options | None = None
    ) -> BaseModel | None:
        """``options`` over the defaults, validated by the class's ``options_model``.

        None for a class without a model, which takes no options (any given
        are an error). Raises :class:`PluginOptionsError` naming each field
        and the plugin, or the lookup's error for a name nobody registered.
        Creates nothing, so a queue's options can be checked with it.
        """
        cls = self._class(kind, name)
        merged = self._merged(kind, name, options)
        model: type[BaseModel] | None = getattr(cls, "options_model", None)
        where = tuple(part.format(name=name) for part in kind.options_at or ("options",))
        if model is None:
            if merged:
                keys = ", ".join(sorted(map(str, merged)))
                raise PluginOptionsError(
                    kind,
                    name,
                    [FieldError(join_path(*where), f"takes no options, got: {keys}")],
                )
            return None
        try:
            return model.model_validate(merged)
        except ValidationError:
            raise PluginOptionsError(kind, name, model_errors(model, merged, where)) from None

    # -- lifecycle ----------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every instance created so far, once each; a failure is logged, not raised.

        Called when the agent stops (and by ``launchplane run``/``plan``), after
        its jobs have ended or been released. A lookup after this creates a new
        instance, which the next call closes.
        """
        with self._lock:
            instances = list(self._instances.items())
            self._instances.clear()
        for (kind_key, name, _), instance in instances:
            try:
                await instance.aclose()
            except Exception:
                log.exception(
                    "plugin %r: %s '%s': aclose() failed; ignored",
                    self._owners.get((kind_key, name)),
                    kind_key,
                    name,
                )

    # -- listing ------------------------------------------------------------------

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

    # -- filled by the loader -----------------------------------------------------

    def track(self, info: PluginInfo) -> None:
        """Add a plugin to the listing, in load order."""
        self._infos.append(info)

    def owner(self, kind: PluginKind, name: str) -> str | None:
        """The plugin that registered ``name`` of ``kind``, if any."""
        return self._owners.get((kind.key, name))

    def add(self, kind: PluginKind, name: str, cls: type[Any], info: PluginInfo) -> None:
        """Register a class checked by the loader, owned by the plugin ``info`` describes."""
        self._classes[kind.key][name] = cls
        self._owners[(kind.key, name)] = info.name
        info.registered.append(f"{kind.key}:{name}")

    def fail(self, info: PluginInfo, message: str) -> None:
        """Mark a plugin as skipped, ``message`` saying why (on one line)."""
        info.error = message
        self.load_errors[info.name] = message

    def note_missing_extra(self, plugin: str, error: MissingExtraError) -> None:
        """A built-in skipped for a missing extra: its names answer with the pip line."""
        self._missing_extras[plugin] = error

    def is_blocked(self, name: str, module: str) -> bool:
        return name in self.blocked or module in self.blocked

    # -- internals ----------------------------------------------------------------

    def _class(self, kind: PluginKind, name: str) -> type[Any]:
        cls = self._classes[kind.key].get(name)
        if cls is None:
            raise self._unknown(kind, name)
        return cls

    def _merged(self, kind: PluginKind, name: str, options: Options | None) -> dict[str, Any]:
        default = self._defaults.get(kind.key, {}).get(name)
        if not default:
            return dict(options or {})
        from launchplane.core.config import deep_merge

        return deep_merge(default, options or {})

    def _instance(self, kind: PluginKind, name: str, options: Options | None) -> Any:
        validated = self.validate_options(kind, name, options)
        # Keyed by the options as given (merged), not as dumped: a dump masks SecretStr.
        given = json.dumps(self._merged(kind, name, options), sort_keys=True, default=repr)
        key = (kind.key, name, given)
        with self._lock:
            if key not in self._instances:
                self._instances[key] = self._construct(kind, name, validated)
            return self._instances[key]

    def _construct(self, kind: PluginKind, name: str, options: BaseModel | None) -> Any:
        cls = self._classes[kind.key][name]
        owner = self._owners[(kind.key, name)]
        try:
            return cls() if options is None else cls(options=options)
        except ImportError as exc:
            builtin = builtin_plugins.builtin_named(owner)
            if builtin is not None and builtin.extra is not None:
                raise MissingExtraError(kind.key, name, builtin.extra) from exc
            raise PluginError(f"{kind.label} '{name}' (plugin '{owner}'): {exc}") from exc
        except Exception as exc:
            raise PluginError(
                f"{kind.label} '{name}' (plugin '{owner}') could not be created: {exc}"
            ) from exc

    def _unknown(self, kind: PluginKind, name: str) -> PluginError:
        """The most useful error for a name nobody registered."""
        builtin = builtin_plugins.builtin_providing(f"{kind.key}:{name}")
        if builtin is not None and builtin.name in self._missing_extras:
            return self._missing_extras[builtin.name]
        if builtin is not None and builtin.name in self.load_errors:
            return PluginError(
                f"{kind.label} '{name}' is unavailable: plugin '{builtin.name}' failed to load: "
                f"{self.load_errors[builtin.name]}"
            )
        blocked = self._blocked_names(kind)
        if name in blocked:
            return PluginError(f"{kind.label} '{name}' {blocked[name]}")
        available = sorted(self._classes[kind.key])
        hint = suggest(name, [*available, *blocked])
        for candidate, why in blocked.items():
            if hint == f" (did you mean '{candidate}'?)":
                hint = f" (did you mean '{candidate}'? it {why})"
        message = (
            f"unknown {kind.label} '{name}'{hint}; available: {', '.join(available) or 'none'}"
        )
        if self.load_errors:
            failed = ", ".join(sorted(self.load_errors))
            message += f" (plugins that failed to load: {failed}; see `launchplane plugins`)"
        return PluginError(message)

    def _blocked_names(self, kind: PluginKind) -> dict[str, str]:
        """Names of ``kind`` a blocked plugin would have registered -> why they are missing.

        A built-in's names are known from its table row. A third-party plugin
        is never imported when blocked, so what it registers is unknown; its
        plugin (entry point) name is taken as a name it registers, which is
        the convention (``slurm = "acme_slurm"`` registers runner ``slurm``).
        """
        names: dict[str, str] = {}
        prefix = f"{kind.key}:"
        for info in self._infos:
            if not info.blocked:
                continue
            spec = info.name if info.name in self.blocked else info.module
            builtin = builtin_plugins.builtin_named(info.name)
            if builtin is not None and builtin.module == info.module:
                for item in builtin.provides:
                    if item.startswith(prefix):
                        names[item.removeprefix(prefix)] = (
                            f"comes from plugin '{info.name}', which is blocked "
                            f"(--plugins=no:{spec})"
                        )
            else:
                names.setdefault(
                    info.name,
                    f"is not registered: plugin '{info.name}' ({info.module}) is blocked "
                    f"(--plugins=no:{spec})",
                )
        return names
