"""The plugin manager and ``launchplane plugins``, with real plugin modules and distributions.

Plugins are real files written under ``tmp_path`` and put on ``sys.path``;
third-party distributions are real ``.dist-info`` directories there, found by
``importlib.metadata`` exactly as an installed package would be.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from launchplane.cli.plugins import plugins as plugins_command
from launchplane.core import builtin_plugins
from launchplane.core.builtin_plugins import BUILTIN_PLUGINS, BuiltinPlugin
from launchplane.core.interfaces import JobContext, MissingExtraError, PluginError
from launchplane.core.plugins import PluginInfo, PluginRegistry, get_plugin_manager
from launchplane.core.registry import KINDS
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.builders.noop import NoopBuilder

REPO = Path(__file__).resolve().parents[2]

SLURM_PLUGIN = """
    from launchplane import hookimpl
    from launchplane.core.interfaces import Runner

    class SlurmRunner(Runner):
        name = "slurm"
        needs_image = False

        def describe(self, job, image):
            return {}

        async def submit(self, job, image, ctx):
            raise NotImplementedError("listing tests never submit")

    @hookimpl
    def launchplane_register_runners(register):
        register(SlurmRunner)
"""


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for plugin modules and dist-infos; forgotten afterwards."""
    monkeypatch.delenv("LAUNCHPLANE_PLUGINS", raising=False)
    monkeypatch.delenv("LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(str(tmp_path)):
            del sys.modules[name]


def write_module(root: Path, name: str, body: str) -> None:
    (root / f"{name}.py").write_text(textwrap.dedent(body))


def write_dist(root: Path, dist: str, version: str, entry_points: dict[str, str]) -> None:
    """An installed distribution as pip leaves it: METADATA plus entry_points.txt."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[launchplane]\n{lines}")


def info_of(registry: PluginRegistry, name: str) -> PluginInfo:
    return next(info for info in registry.report() if info.name == name)


# --- built-ins ---------------------------------------------------------------


def test_builtins_load_first_from_their_own_table(plugin_dir: Path) -> None:
    registry = get_plugin_manager()
    report = registry.report()
    assert [i.name for i in report[: len(BUILTIN_PLUGINS)]] == [b.name for b in BUILTIN_PLUGINS]
    assert {i.source for i in report[: len(BUILTIN_PLUGINS)]} == {"builtin"}
    assert registry.builders["noop"] is NoopBuilder
    assert "env" in registry.secret_providers
    # launchplane's own entry points name the same modules: listed once only.
    assert len([i for i in report if i.module == "launchplane.plugins.secrets.env"]) == 1


def test_builtin_table_matches_pyproject_entry_points() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared["launchplane"] == {b.name: b.module for b in BUILTIN_PLUGINS}


def test_builtins_register_what_their_table_row_says(plugin_dir: Path) -> None:
    registry = get_plugin_manager()
    for builtin in BUILTIN_PLUGINS:
        info = info_of(registry, builtin.name)
        assert info.error is None, info.error
        assert sorted(info.registered) == sorted(builtin.provides)


def test_disabling_autoload_keeps_builtins_and_forced_plugins(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_module(plugin_dir, "acme_slurm", SLURM_PLUGIN)
    write_dist(plugin_dir, "acme-slurm", "2.3.4", {"slurm": "acme_slurm"})
    write_module(plugin_dir, "forced_mod", "")
    monkeypatch.setenv("LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("LAUNCHPLANE_PLUGINS", "forced_mod")

    registry = get_plugin_manager()

    names = [i.name for i in registry.report()]
    assert "slurm" not in names and "slurm" not in registry.runners
    assert "forced_mod" in names
    assert {"noop"} <= set(registry.builders) and {"env"} <= set(registry.secret_providers)
    # The parameter overrides the environment.
    assert "slurm" in get_plugin_manager(autoload=True).runners


# --- load order and sources ----------------------------------------------------


def test_load_order_builtins_entry_points_env_then_option(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_module(plugin_dir, "acme_slurm", SLURM_PLUGIN)
    write_dist(plugin_dir, "acme-slurm", "2.3.4", {"slurm": "acme_slurm"})
    write_module(plugin_dir, "from_env", "")
    write_module(plugin_dir, "from_option_a", "")
    write_module(plugin_dir, "from_option_b", "")
    monkeypatch.setenv("LAUNCHPLANE_PLUGINS", "from_env")

    registry = get_plugin_manager(["from_option_a,from_option_b"])

    report = registry.report()
    sources = [i.source for i in report]
    order = ["builtin", "entrypoint", "LAUNCHPLANE_PLUGINS", "--plugins"]
    assert sources == sorted(sources, key=order.index)
    assert [i.name for i in report if i.source == "LAUNCHPLANE_PLUGINS"] == ["from_env"]
    assert [i.name for i in report if i.source == "--plugins"] == [
        "from_option_a",
        "from_option_b",
    ]
    slurm = info_of(registry, "slurm")
    assert (slurm.source, slurm.version, slurm.module) == ("entrypoint", "2.3.4", "acme_slurm")
    assert slurm.registered == ["runner:slurm"]
    assert info_of(registry, "from_env").version == "unknown"  # no distribution, no __version__


def test_a_forced_module_shows_its_own_version(plugin_dir: Path) -> None:
    """Its distribution's version, else its ``__version__``, else unknown; never launchplane's."""
    write_module(plugin_dir, "versioned", '__version__ = "3.1.4"\n')
    (plugin_dir / "acme_tools").mkdir()
    (plugin_dir / "acme_tools" / "__init__.py").write_text('__version__ = "0.0.0-stale"\n')
    (plugin_dir / "acme_tools" / "launch.py").write_text("")
    write_dist(plugin_dir, "acme-tools", "4.5.6", {})
    info = next(plugin_dir.glob("acme_tools-*.dist-info"))
    (info / "top_level.txt").write_text("acme_tools\n")
    write_module(plugin_dir, "bare", "")

    registry = get_plugin_manager(["versioned,acme_tools.launch,bare,no_such_module_xyz"])

    assert info_of(registry, "versioned").version == "3.1.4"
    assert info_of(registry, "acme_tools.launch").version == "4.5.6"
    assert info_of(registry, "bare").version == "unknown"
    missing = info_of(registry, "no_such_module_xyz")
    assert (missing.version, missing.error) == (
        "unknown",
        "ModuleNotFoundError: No module named 'no_such_module_xyz'",
    )


def test_a_module_named_twice_keeps_the_source_that_loaded_it(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_module(plugin_dir, "both", "")
    monkeypatch.setenv("LAUNCHPLANE_PLUGINS", "both")
    registry = get_plugin_manager(["both"])
    assert [i.source for i in registry.report() if i.module == "both"] == ["LAUNCHPLANE_PLUGINS"]


def test_forcing_an_installed_plugin_lists_it_once(plugin_dir: Path) -> None:
    write_module(plugin_dir, "acme_slurm", SLURM_PLUGIN)
    write_dist(plugin_dir, "acme-slurm", "2.3.4", {"slurm": "acme_slurm"})
    registry = get_plugin_manager(["acme_slurm"])
    assert [i.source for i in registry.report() if i.module == "acme_slurm"] == ["entrypoint"]


# --- blocking --------------------------------------------------------------------


def test_no_name_blocks_a_builtin_and_explains_itself(plugin_dir: Path) -> None:
    registry = get_plugin_manager(["no:env"])
    assert "env" not in registry.secret_providers
    assert info_of(registry, "env").blocked
    assert registry.pm.is_blocked("env")
    assert "env" not in registry.load_errors
    with pytest.raises(PluginError, match=r"blocked \(--plugins=no:env\)"):
        registry.secret_provider("env")


def test_blocked_plugin_is_never_imported(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_module(plugin_dir, "broken_vendor", "raise RuntimeError('vendor bug')")
    write_dist(plugin_dir, "broken-vendor", "1.0", {"vendor": "broken_vendor"})
    monkeypatch.setenv("LAUNCHPLANE_PLUGINS", "no:vendor")
    registry = get_plugin_manager(strict=True)
    assert info_of(registry, "vendor").blocked
    assert "broken_vendor" not in sys.modules


def test_no_module_name_blocks_too(plugin_dir: Path) -> None:
    write_module(plugin_dir, "acme_slurm", SLURM_PLUGIN)
    write_dist(plugin_dir, "acme-slurm", "2.3.4", {"slurm": "acme_slurm"})
    registry = get_plugin_manager(["no:acme_slurm"])
    assert "slurm" not in registry.runners
    assert info_of(registry, "slurm").blocked


def test_blocking_an_unknown_name_warns_with_a_suggestion(
    plugin_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="launchplane.core.plugins"):
        get_plugin_manager(["no:nop"])
    assert "no:nop matches no plugin (did you mean 'noop'?)" in caplog.text


# --- error isolation ------------------------------------------------------------


def test_plugin_failing_to_import_is_reported_and_skipped(plugin_dir: Path) -> None:
    write_module(plugin_dir, "broken_vendor", "raise RuntimeError('vendor bug')")
    write_dist(plugin_dir, "broken-vendor", "1.0", {"vendor": "broken_vendor"})
    write_module(plugin_dir, "acme_slurm", SLURM_PLUGIN)

    registry = get_plugin_manager(["acme_slurm"])

    assert registry.load_errors == {"vendor": "RuntimeError: vendor bug"}
    assert info_of(registry, "vendor").error == "RuntimeError: vendor bug"
    assert "slurm" in registry.runners  # loaded after the broken one


def test_strict_makes_an_import_failure_fatal_naming_plugin_and_error(plugin_dir: Path) -> None:
    write_module(plugin_dir, "broken_vendor", "import no_such_dependency_xyz")
    with pytest.raises(PluginError) as caught:
        get_plugin_manager(["broken_vendor"], strict=True)
    message = str(caught.value)
    assert "plugin 'broken_vendor'" in message
    assert "No module named 'no_such_dependency_xyz'" in message


def test_registration_hook_error_skips_the_whole_plugin(plugin_dir: Path) -> None:
    write_module(
        plugin_dir,
        "half_done",
        """
        from launchplane import hookimpl
        from launchplane.core.interfaces import Runner

        EVENTS = []

        class GoodRunner(Runner):
            name = "good"

            def describe(self, job, image):
                return {}

            async def submit(self, job, image, ctx):
                raise NotImplementedError

        @hookimpl
        def launchplane_register_runners(register):
            register(GoodRunner)
            raise KeyError("config missing")

        @hookimpl
        def launchplane_job_event(job_id, state, details):
            EVENTS.append(state)
        """,
    )
    registry = get_plugin_manager(["half_done"])
    assert registry.load_errors["half_done"] == "KeyError: 'config missing'"
    assert "good" not in registry.runners
    registry.emit_event("j1", "running", {})
    assert sys.modules["half_done"].EVENTS == []  # unregistered: its hooks do not run
    registry.pm.check_pending()


def test_misspelt_hook_is_caught_with_a_suggestion(plugin_dir: Path) -> None:
    write_module(
        plugin_dir,
        "typo_plugin",
        """
        from launchplane import hookimpl

        @hookimpl
        def launchplane_register_runner(register):
            pass
        """,
    )
    registry = get_plugin_manager(["typo_plugin"])
    assert registry.load_errors["typo_plugin"] == (
        "unknown hook launchplane_register_runner (did you mean 'launchplane_register_runners'?)"
    )
    registry.pm.check_pending()  # the offender was unregistered
    with pytest.raises(PluginError, match=r"typo_plugin.*unknown hook launchplane_register_runner"):
        get_plugin_manager(["typo_plugin"], strict=True)


def test_hook_without_hookimpl_decorator_is_an_error(plugin_dir: Path) -> None:
    write_module(plugin_dir, "forgot_marker", "def launchplane_register_runners(register): pass")
    registry = get_plugin_manager(["forgot_marker"])
    assert registry.load_errors["forgot_marker"] == (
        "launchplane_register_runners is not decorated with @launchplane.hookimpl"
    )


def test_hookimpl_asking_for_an_unknown_argument_is_an_error(plugin_dir: Path) -> None:
    write_module(
        plugin_dir,
        "bad_args",
        """
        from launchplane import hookimpl

        @hookimpl
        def launchplane_register_runners(register, registry):
            pass
        """,
    )
    registry = get_plugin_manager(["bad_args"])
    assert "registry" in registry.load_errors["bad_args"]
    registry.pm.check_pending()


def test_the_error_column_keeps_the_whole_reason_on_one_line(plugin_dir: Path) -> None:
    write_module(
        plugin_dir,
        "wrong_args",
        """
        from launchplane import hookimpl

        @hookimpl
        def launchplane_prepare_job(job, ctx, settings):
            pass
        """,
    )
    error = get_plugin_manager(["wrong_args"]).load_errors["wrong_args"]
    assert "\n" not in error
    assert error.startswith(
        "PluginValidationError: Plugin 'wrong_args' for hook 'launchplane_prepare_job'; "
    )
    assert "{'settings'} are declared in the hookimpl but can not be found" in error

    result = CliRunner().invoke(plugins_command, ["--plugins", "wrong_args"])
    row = next(line for line in result.stdout.splitlines() if line.startswith("wrong_args "))
    assert row.endswith("are declared in the hookimpl but can not be found in the hookspec")


# --- typed registries -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "register(object)",
            "register() of launchplane_register_runners takes a Runner subclass, "
            "got <class 'object'>",
        ),
        (
            "from launchplane.plugins.builders.noop import NoopBuilder\nregister(NoopBuilder)",
            "takes a Runner subclass, got <class 'launchplane.plugins.builders.noop.NoopBuilder'>",
        ),
        (
            "from launchplane.core.interfaces import Runner\n"
            "class Nameless(Runner): pass\nregister(Nameless)",
            "Nameless must set the class attribute 'name' (a string)",
        ),
    ],
)
def test_runner_registry_is_typed(plugin_dir: Path, body: str, expected: str) -> None:
    header = "from launchplane import hookimpl\n\n@hookimpl\n"
    hook = "def launchplane_register_runners(register):\n" + textwrap.indent(body, "    ")
    write_module(plugin_dir, "typed_plugin", header + hook + "\n")
    registry = get_plugin_manager(["typed_plugin"])
    assert expected in registry.load_errors["typed_plugin"]


INCOMPLETE_PLUGIN = """
    import abc
    from launchplane import hookimpl
    from launchplane.core.interfaces import Builder, Runner, SecretProvider

    # Abstract like the plugin contract's base classes: an implementation must
    # supply every abstract method before it can be registered.
    class RunnerContract(Runner, abc.ABC):
        @abc.abstractmethod
        def describe(self, job, image): ...

        @abc.abstractmethod
        async def submit(self, job, image, ctx): ...

    class BuilderContract(Builder, abc.ABC):
        @abc.abstractmethod
        async def build(self, job, ctx): ...

    class ProviderContract(SecretProvider, abc.ABC):
        @abc.abstractmethod
        async def resolve(self, ref): ...

    class {cls}({base}):
        {attr} = "{key}"
        {body}

    @hookimpl
    def {hook}(register):
        register({cls})
"""


@pytest.mark.parametrize(
    ("cls", "base", "attr", "key", "body", "hook", "missing"),
    [
        (
            "SlurmRunner",
            "RunnerContract",
            "name",
            "slurm",
            "def describe(self, job, image): return None",
            "launchplane_register_runners",
            "runner class 'SlurmRunner' (plugin 'half_done') is incomplete: missing submit()",
        ),
        (
            "BuildahBuilder",
            "BuilderContract",
            "name",
            "buildah",
            "pass",
            "launchplane_register_builders",
            "builder class 'BuildahBuilder' (plugin 'half_done') is incomplete: missing build()",
        ),
        (
            "Vault",
            "ProviderContract",
            "scheme",
            "vault",
            "pass",
            "launchplane_register_secret_providers",
            "secret provider class 'Vault' (plugin 'half_done') is incomplete: missing resolve()",
        ),
    ],
    ids=["runner", "builder", "secret-provider"],
)
def test_an_incomplete_class_is_refused_naming_what_is_missing(
    plugin_dir: Path, cls: str, base: str, attr: str, key: str, body: str, hook: str, missing: str
) -> None:
    source = INCOMPLETE_PLUGIN.format(cls=cls, base=base, attr=attr, key=key, body=body, hook=hook)
    write_module(plugin_dir, "half_done", source)
    registry = get_plugin_manager(["half_done"])
    assert registry.load_errors["half_done"] == missing
    assert info_of(registry, "half_done").registered == []
    assert all(key not in registry.classes(kind) for kind in KINDS)


def test_every_missing_method_is_named(plugin_dir: Path) -> None:
    source = INCOMPLETE_PLUGIN.format(
        cls="SlurmRunner",
        base="RunnerContract",
        attr="name",
        key="slurm",
        body="pass",
        hook="launchplane_register_runners",
    )
    write_module(plugin_dir, "empty_runner", source)
    error = get_plugin_manager(["empty_runner"]).load_errors["empty_runner"]
    head, _, missing = error.partition(" is incomplete: missing ")
    assert head == "runner class 'SlurmRunner' (plugin 'empty_runner')"
    assert sorted(missing.split(", ")) == ["describe()", "submit()"]
    with pytest.raises(PluginError, match=r"empty_runner.*missing"):
        get_plugin_manager(["empty_runner"], strict=True)


def test_secret_provider_scheme_must_be_parseable(plugin_dir: Path) -> None:
    write_module(
        plugin_dir,
        "bad_scheme",
        """
        from launchplane import hookimpl
        from launchplane.core.interfaces import SecretProvider

        class Vault(SecretProvider):
            scheme = "Vault:KV"

            async def resolve(self, ref):
                return "x"

        @hookimpl
        def launchplane_register_secret_providers(register):
            register(Vault)
        """,
    )
    registry = get_plugin_manager(["bad_scheme"])
    assert "Vault.scheme 'Vault:KV' is not a valid scheme" in registry.load_errors["bad_scheme"]


def test_duplicate_name_first_registration_wins(plugin_dir: Path) -> None:
    write_module(
        plugin_dir,
        "shadow_noop",
        """
        from launchplane import hookimpl
        from launchplane.core.interfaces import Builder, Runner

        class ShadowNoop(Builder):
            name = "noop"

            async def build(self, job, ctx):
                return None

        class ExtraRunner(Runner):
            name = "extra"

            def describe(self, job, image):
                return {}

            async def submit(self, job, image, ctx):
                raise NotImplementedError

        @hookimpl
        def launchplane_register_builders(register):
            register(ShadowNoop)

        @hookimpl
        def launchplane_register_runners(register):
            register(ExtraRunner)
        """,
    )
    write_dist(plugin_dir, "shadow", "0.1", {"shadow": "shadow_noop"})

    registry = get_plugin_manager()
    assert registry.builders["noop"] is NoopBuilder
    assert registry.load_errors["shadow"] == (
        "builder 'noop' is already registered by plugin 'noop' (the first registration wins; "
        "block it with --plugins=no:noop to use this one)"
    )
    assert "extra" not in registry.runners  # a failing plugin is skipped as a whole

    replaced = get_plugin_manager(["no:noop"])
    assert replaced.builders["noop"].__name__ == "ShadowNoop"
    assert "extra" in replaced.runners


def test_plugin_name_taken_by_a_builtin_is_an_error(plugin_dir: Path) -> None:
    write_module(plugin_dir, "other_env", "")
    write_dist(plugin_dir, "other-env", "1.0", {"env": "other_env"})
    registry = get_plugin_manager()
    assert registry.secret_providers["env"].__module__ == "launchplane.plugins.secrets.env"
    errors = [i.error for i in registry.report() if i.module == "other_env"]
    assert errors == ["plugin name 'env' is taken by launchplane.plugins.secrets.env"]


# --- lookups -------------------------------------------------------------------------


def test_instances_are_created_once_per_registry(plugin_dir: Path) -> None:
    registry = get_plugin_manager()
    assert registry.builder("noop") is registry.builder("noop")
    assert isinstance(registry.builder("noop"), NoopBuilder)
    assert get_plugin_manager().builder("noop") is not registry.builder("noop")


def test_unknown_name_lists_available_and_suggests(plugin_dir: Path) -> None:
    registry = get_plugin_manager()
    with pytest.raises(PluginError) as caught:
        registry.runner("local-proces")
    assert str(caught.value).startswith(
        "unknown runner 'local-proces' (did you mean 'local-process'?); available: "
    )
    assert "local-process" in str(caught.value)


NICE_PLUGIN = SLURM_PLUGIN.replace("SlurmRunner", "NiceRunner").replace('"slurm"', '"nice-process"')


def test_a_blocked_third_party_runner_says_it_is_blocked(plugin_dir: Path) -> None:
    write_module(plugin_dir, "acme_nice", NICE_PLUGIN)
    write_dist(plugin_dir, "acme-nice", "1.2", {"nice-process": "acme_nice"})
    assert "nice-process" in get_plugin_manager().runners

    for block in ("no:nice-process", "no:acme_nice"):
        registry = get_plugin_manager([block])
        with pytest.raises(PluginError) as caught:
            registry.runner("nice-process")
        assert str(caught.value) == (
            "runner 'nice-process' is not registered: plugin 'nice-process' (acme_nice) "
            f"is blocked (--plugins={block})"
        )
        assert "local-process" not in str(caught.value)


def test_a_near_miss_of_a_blocked_runner_says_the_suggestion_is_blocked(
    plugin_dir: Path,
) -> None:
    registry = get_plugin_manager(["no:local-process"])
    with pytest.raises(PluginError) as caught:
        registry.runner("local-proces")
    assert str(caught.value).startswith(
        "unknown runner 'local-proces' (did you mean 'local-process'? it comes from plugin "
        "'local-process', which is blocked (--plugins=no:local-process)); available: "
    )

    write_module(plugin_dir, "acme_nice", NICE_PLUGIN)
    write_dist(plugin_dir, "acme-nice", "1.2", {"nice-process": "acme_nice"})
    with pytest.raises(PluginError, match=r"did you mean 'nice-process'\? it is not registered: "):
        get_plugin_manager(["no:nice-process"]).runner("nice-proces")


def test_unknown_name_mentions_plugins_that_failed(plugin_dir: Path) -> None:
    write_module(plugin_dir, "broken_vendor", "raise RuntimeError('x')")
    registry = get_plugin_manager(["broken_vendor"])
    with pytest.raises(
        PluginError, match="failed to load: broken_vendor; see `launchplane plugins`"
    ):
        registry.runner("vendor")


def test_builtin_missing_its_extra_gives_one_pip_line(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_module(plugin_dir, "fake_k8s_runner", "import kubernetes_client_that_is_not_installed")
    fake = BuiltinPlugin("fake-k8s", "fake_k8s_runner", ("runner:fake-k8s",), "kubernetes")
    monkeypatch.setattr(builtin_plugins, "BUILTIN_PLUGINS", (*BUILTIN_PLUGINS, fake))

    registry = get_plugin_manager()

    line = "runner 'fake-k8s' needs: pip install 'launchplane[kubernetes]'"
    assert registry.load_errors["fake-k8s"] == line
    with pytest.raises(MissingExtraError) as caught:
        registry.runner("fake-k8s")
    assert str(caught.value) == line


def test_builtin_whose_class_needs_its_extra_at_creation(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_module(
        plugin_dir,
        "fake_cloud_runner",
        """
        from launchplane import hookimpl
        from launchplane.core.interfaces import Runner

        class FakeCloudRunner(Runner):
            name = "fakecloud"

            def __init__(self):
                import boto3_that_is_not_installed  # noqa: F401

            def describe(self, job, image):
                return {}

            async def submit(self, job, image, ctx):
                raise NotImplementedError

        @hookimpl
        def launchplane_register_runners(register):
            register(FakeCloudRunner)
        """,
    )
    fake = BuiltinPlugin("sagemaker", "fake_cloud_runner", ("runner:sagemaker",), "aws")
    monkeypatch.setattr(builtin_plugins, "BUILTIN_PLUGINS", (*BUILTIN_PLUGINS, fake))
    registry = get_plugin_manager()
    with pytest.raises(
        MissingExtraError, match=r"^runner 'fakecloud' needs: pip install 'launchplane\[aws\]'$"
    ):
        registry.runner("fakecloud")


# --- the other hooks ------------------------------------------------------------------

OBSERVERS = """
    from launchplane import hookimpl

    SEEN = []

    @hookimpl
    def launchplane_job_event(job_id, state, details):
        {action}
"""


def test_emit_event_survives_a_failing_observer(
    plugin_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_module(
        plugin_dir, "loud_observer", OBSERVERS.format(action="raise RuntimeError('smtp down')")
    )
    write_module(
        plugin_dir,
        "quiet_observer",
        OBSERVERS.format(action="SEEN.append((job_id, state, details))"),
    )
    registry = get_plugin_manager(["quiet_observer,loud_observer"])

    with caplog.at_level(logging.ERROR, logger="launchplane.core.plugins"):
        registry.emit_event("job-1", "succeeded", {"exit_code": 0})

    assert sys.modules["quiet_observer"].SEEN == [("job-1", "succeeded", {"exit_code": 0})]
    assert "plugin 'loud_observer': launchplane_job_event(job-1, succeeded) failed" in caplog.text
    assert "smtp down" in caplog.text


def test_prepare_job_hook_adjusts_the_context(plugin_dir: Path, tmp_path: Path) -> None:
    write_module(
        plugin_dir,
        "wandb_like",
        """
        from launchplane import hookimpl

        @hookimpl
        def launchplane_prepare_job(job, ctx):
            ctx.env["WANDB_PROJECT"] = job.project or "uncategorized"
            ctx.labels["integration"] = "wandb"
        """,
    )
    registry = get_plugin_manager(["wandb_like"])
    ctx = JobContext(job_id="j", run_id="r", attempt=1, queue="q", workdir=tmp_path)
    registry.hook.launchplane_prepare_job(job=ResolvedJob(project="vision"), ctx=ctx)
    assert ctx.env == {"WANDB_PROJECT": "vision"}
    assert ctx.labels == {"integration": "wandb"}


# --- `launchplane plugins` -----------------------------------------------------------


def test_plugins_command_json(plugin_dir: Path) -> None:
    write_module(plugin_dir, "acme_slurm", SLURM_PLUGIN)
    write_dist(plugin_dir, "acme-slurm", "2.3.4", {"slurm": "acme_slurm"})
    write_module(plugin_dir, "broken_vendor", "raise RuntimeError('vendor bug')")

    result = CliRunner().invoke(plugins_command, ["--json", "--plugins", "broken_vendor"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["slurm"] == {
        "name": "slurm",
        "module": "acme_slurm",
        "version": "2.3.4",
        "source": "entrypoint",
        "registered": ["runner:slurm"],
        "error": None,
        "blocked": False,
    }
    assert by_name["noop"]["registered"] == ["builder:noop"]
    assert by_name["broken_vendor"]["source"] == "--plugins"
    assert data["load_errors"] == {"broken_vendor": "RuntimeError: vendor bug"}
    assert "slurm" in data["runners"] and "env" in data["secret_providers"]


def test_plugins_command_strict_exits_1(plugin_dir: Path) -> None:
    write_module(plugin_dir, "broken_vendor", "raise RuntimeError('vendor bug')")
    result = CliRunner().invoke(plugins_command, ["--plugins=broken_vendor", "--strict-plugins"])
    assert result.exit_code == 1
    assert "RuntimeError: vendor bug" in result.stdout  # the table still shows why
    assert "plugins failed to load (--strict-plugins): broken_vendor" in result.stderr

    clean = CliRunner().invoke(plugins_command, ["--strict-plugins"])
    assert clean.exit_code == 0, clean.output


def test_plugins_command_table(plugin_dir: Path) -> None:
    result = CliRunner().invoke(plugins_command, ["--plugins", "no:env"])
    assert result.exit_code == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "VERSION", "SOURCE", "REGISTERED", "ERROR"]
    assert any(
        row.split()[:4] == ["noop", rows[0].split()[1], "builtin", "builder:noop"] for row in rows
    )
    assert any(row.startswith("env ") and "(blocked)" in row for row in rows)
    (schemes,) = [line for line in result.stdout.splitlines() if line.startswith("secret schemes")]
    assert "env" not in schemes.removeprefix("secret schemes: ").split(", ")  # others may remain


def test_plugins_command_reads_the_environment_in_a_real_process(tmp_path: Path) -> None:
    write_module(tmp_path, "acme_slurm", SLURM_PLUGIN)
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(tmp_path),
        "LAUNCHPLANE_PLUGINS": "acme_slurm,no:noop",
        "LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from launchplane.cli import main; main()",
            "plugins",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(completed.stdout)
    builtin = {item for plugin in BUILTIN_PLUGINS for item in plugin.provides}
    runners = {item.split(":", 1)[1] for item in builtin if item.startswith("runner:")}
    builders = {item.split(":", 1)[1] for item in builtin if item.startswith("builder:")}
    assert data["runners"] == sorted(runners | {"slurm"})
    assert data["builders"] == sorted(builders - {"noop"})
