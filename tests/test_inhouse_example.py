"""examples/inhouse-secrets, installed with pip as a user would, found through its entry point.

The package is installed with ``pip install --target`` into a temporary
directory (the shared venv is left untouched) and every check runs in a
subprocess with that directory on ``PYTHONPATH``, so discovery goes through
the real ``.dist-info`` and the ``launchplane`` entry point group.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "inhouse-secrets"
TOKEN = "inhouse-token-7f3a9c"
DB_PASSWORD = "correct horse battery staple"
CLI = [sys.executable, "-c", "from launchplane.cli import main; main()"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example pip-installed into its own directory, built from a copy: no build/ here."""
    root = tmp_path_factory.mktemp("inhouse")
    source = shutil.copytree(
        EXAMPLE, root / "src", ignore=shutil.ignore_patterns("build", "*.egg-info")
    )
    target = root / "site"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return target


@pytest.fixture
def env(site: Path, tmp_path: Path) -> dict[str, str]:
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(
        json.dumps({"ci/token": {"value": TOKEN}, "prod/db": {"password": DB_PASSWORD}})
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHPLANE_")}
    # The package under test next to the example, whatever the cwd of a command.
    environment["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)])
    environment["INHOUSE_SECRETS_FILE"] = str(secrets_file)
    return environment


def run(
    args: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def plugins_json(env: dict[str, str], *extra: str) -> dict:
    completed = run([*CLI, "plugins", "--json", *extra], env)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_installed_package_is_listed_by_launchplane_plugins(env: dict[str, str]) -> None:
    data = plugins_json(env)
    inhouse = next(p for p in data["plugins"] if p["name"] == "inhouse")
    assert inhouse == {
        "name": "inhouse",
        "module": "inhouse_secrets",
        "version": "0.1.0",
        "source": "entrypoint",
        "registered": ["secret-provider:inhouse"],
        "error": None,
        "blocked": False,
    }
    assert {"env", "inhouse"} <= set(data["secret_providers"])  # built-ins (aws-sm, k8s) too


def test_it_can_be_blocked_or_forced(env: dict[str, str]) -> None:
    assert "inhouse" not in plugins_json(env, "--plugins", "no:inhouse")["secret_providers"]
    env = {**env, "LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    assert "inhouse" not in plugins_json(env)["secret_providers"]
    forced = plugins_json({**env, "LAUNCHPLANE_PLUGINS": "inhouse_secrets"})
    assert [p["source"] for p in forced["plugins"] if p["module"] == "inhouse_secrets"] == [
        "LAUNCHPLANE_PLUGINS"
    ]
    assert "inhouse" in forced["secret_providers"]


RESOLVE = textwrap.dedent(
    """
    import json, sys
    import anyio
    from launchplane.core.interfaces import PluginError
    from launchplane.core.plugins import get_plugin_manager
    from launchplane.agent.secrets import resolve_secrets
    from launchplane.core.redaction import Redactor

    async def main():
        redactor = Redactor()
        try:
            values = (
                await resolve_secrets(
                    json.loads(sys.argv[1]),
                    get_plugin_manager(),
                    redactor,
                    options=json.loads(sys.argv[2]),
                )
            ).values
        except PluginError as exc:
            print(json.dumps({"error": str(exc)}))
            return
        print(json.dumps({"values": values, "scrubbed": redactor.scrub(" ".join(values.values()))}))

    anyio.run(main)
    """
)


def resolve(
    env: dict[str, str], secrets: dict[str, str], options: dict[str, Any] | None = None
) -> dict:
    """Resolve in a subprocess; ``options`` are the queue's ``secret_providers``."""
    completed = run(
        [sys.executable, "-c", RESOLVE, json.dumps(secrets), json.dumps(options or {})], env
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_resolves_secrets_through_the_entry_point(env: dict[str, str]) -> None:
    result = resolve(env, {"MY_TOKEN": "inhouse:ci/token#value", "DB": "inhouse:prod/db#password"})
    assert result["values"] == {"MY_TOKEN": TOKEN, "DB": DB_PASSWORD}
    assert result["scrubbed"] == "*** ***"


def test_resolution_errors_name_the_reference_not_the_value(env: dict[str, str]) -> None:
    result = resolve(env, {"MY_TOKEN": "inhouse:ci/token", "DB": "inhouse:prod/dbb#password"})
    assert result["error"] == (
        "2 secrets could not be resolved:\n"
        "  - secret MY_TOKEN (inhouse:ci/token): secret 'ci/token' has several keys; "
        "pick one with #KEY (value)\n"
        "  - secret DB (inhouse:prod/dbb#password): no secret 'prod/dbb' in the "
        "INHOUSE_SECRETS_FILE file"
    )
    assert TOKEN not in result["error"] and DB_PASSWORD not in result["error"]


def test_missing_secrets_file_variable_is_explained(env: dict[str, str]) -> None:
    env = {k: v for k, v in env.items() if k != "INHOUSE_SECRETS_FILE"}
    result = resolve(env, {"MY_TOKEN": "inhouse:ci/token#value"})
    assert result["error"] == (
        "secret MY_TOKEN (inhouse:ci/token#value): INHOUSE_SECRETS_FILE is not set on the agent; "
        "point it at the secrets file"
    )


def without_file_variable(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "INHOUSE_SECRETS_FILE"}


def test_a_queue_points_the_provider_at_its_file(env: dict[str, str], tmp_path: Path) -> None:
    """``secret_providers.inhouse.path``; it wins over the agent's INHOUSE_SECRETS_FILE."""
    store = tmp_path / "queue-secrets.json"
    store.write_text(json.dumps({"ci/token": {"value": "queue-file-token-1"}}))
    options = {"inhouse": {"path": str(store)}}

    for environment in (without_file_variable(env), env):
        result = resolve(environment, {"MY_TOKEN": "inhouse:ci/token#value"}, options)
        assert result["values"] == {"MY_TOKEN": "queue-file-token-1"}

    missing = resolve(env, {"DB": "inhouse:prod/dbb#password"}, options)
    assert missing["error"] == (
        f"secret DB (inhouse:prod/dbb#password): no secret 'prod/dbb' in {store}"
    )


def test_a_bad_provider_option_names_its_path_and_the_provider(env: dict[str, str]) -> None:
    result = resolve(env, {"MY_TOKEN": "inhouse:ci/token#value"}, {"inhouse": {"pth": "/x"}})
    assert result["error"] == (
        "secret_providers.inhouse.pth: unknown key (did you mean 'path'?) (provider 'inhouse')"
    )


def test_a_job_runs_with_the_secret_from_the_queue_configured_file(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Queue config -> server -> lease -> agent -> provider options -> the job's environment."""
    store = tmp_path / "queue-secrets.json"
    store.write_text(json.dumps({"ci/token": {"value": TOKEN}}))
    (tmp_path / "queue.yaml").write_text(
        textwrap.dedent(
            f"""
            resource: local-process
            secrets:
              MY_TOKEN: "inhouse:ci/token#value"
            secret_providers:
              inhouse: {{path: "{store}"}}
            """
        )
    )
    check = f"import os; print('token ok' if os.environ['MY_TOKEN'] == {TOKEN!r} else 'wrong')"
    (tmp_path / "job.yaml").write_text(json.dumps({"command": ["python3", "-c", check]}))
    environment = {**without_file_variable(env), "LAUNCHPLANE_HOME": str(tmp_path / "home")}

    done = run(
        [
            *CLI,
            "run",
            "job.yaml",
            "--queue-config",
            "queue.yaml",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        environment,
        cwd=tmp_path,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "token ok" in done.stdout
    assert TOKEN not in done.stdout + done.stderr


def test_plan_shows_the_reference_not_the_value(env: dict[str, str], tmp_path: Path) -> None:
    """``plan`` shows references and never resolves them; the value must not appear at all."""
    (tmp_path / "queue.yaml").write_text(
        textwrap.dedent(
            """
            resource: local-process
            secrets:
              MY_TOKEN: "inhouse:ci/token#value"
            """
        )
    )
    (tmp_path / "job.yaml").write_text('command: ["python", "-c", "print(1)"]\n')

    completed = run([*CLI, "plan", "job.yaml", "--queue-config", "queue.yaml"], env, cwd=tmp_path)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "inhouse:ci/token#value" in completed.stdout
    assert TOKEN not in completed.stdout + completed.stderr
    assert "inhouse" in plugins_json(env)["secret_providers"]

    checked = run(
        [*CLI, "plan", "job.yaml", "--queue-config", "queue.yaml", "--check-secrets", "--json"],
        env,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["secrets_check"] == {
        "MY_TOKEN": f"resolved ({len(TOKEN)} characters)"
    }
    assert TOKEN not in checked.stdout + checked.stderr

    broken = (tmp_path / "queue.yaml").read_text().replace("ci/token#value", "ci/nope#value")
    (tmp_path / "queue.yaml").write_text(broken)
    failed = run(
        [*CLI, "plan", "job.yaml", "--queue-config", "queue.yaml", "--check-secrets"],
        env,
        cwd=tmp_path,
    )
    assert failed.returncode == 2
    assert "MY_TOKEN" in failed.stderr and "inhouse:ci/nope#value" in failed.stderr


def test_plan_checks_secrets_with_the_queue_provider_options(
    env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "queue-secrets.json"
    store.write_text(json.dumps({"ci/token": {"value": TOKEN}}))
    queue = {
        "resource": "local-process",
        "secrets": {"MY_TOKEN": "inhouse:ci/token#value"},
        "secret_providers": {"inhouse": {"path": str(store)}},
    }
    (tmp_path / "queue.yaml").write_text(json.dumps(queue))
    (tmp_path / "job.yaml").write_text('command: ["true"]\n')
    plan = [*CLI, "plan", "job.yaml", "--queue-config", "queue.yaml", "--check-secrets", "--json"]

    checked = run(plan, without_file_variable(env), cwd=tmp_path)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["secrets_check"] == {
        "MY_TOKEN": f"resolved ({len(TOKEN)} characters)"
    }
