"""The ``wandb`` artifact store without a W&B server: names, options and its errors.

What needs a server (resolve, download, upload for real) is in
tests/wandb_online/, run when ``LAUNCHPLANE_TEST_WANDB_API_KEY`` is set.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from launchplane.core.client import LaunchplaneClient, ValidationFailed
from launchplane.core.interfaces import PluginError
from launchplane.core.spec import ArtifactRef
from launchplane.core.wandb_artifacts import WandbArtifactPath, parse_wandb_artifact
from launchplane.plugins.artifacts.wandb import (
    WandbArtifactStore,
    WandbStoreOptions,
    artifact_path,
)
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "wandb-artifact://acme/mnist/images:v3",
            WandbArtifactPath("acme", "mnist", "images", "v3"),
        ),
        ("wandb-artifact://acme/mnist/images", WandbArtifactPath("acme", "mnist", "images")),
        (
            "wandb-artifact://my-team/proj.x/data_set-1:best",
            WandbArtifactPath("my-team", "proj.x", "data_set-1", "best"),
        ),
    ],
)
def test_a_uri_parses_whole_and_as_the_job_spec_splits_it(
    text: str, expected: WandbArtifactPath
) -> None:
    assert parse_wandb_artifact(text) == expected
    ref = ArtifactRef.model_validate(text)  # the spec splits name:alias first
    assert parse_wandb_artifact(ref.name, ref.alias) == expected
    assert parse_wandb_artifact(expected.uri) == expected


@pytest.mark.parametrize(
    "text",
    [
        "wandb-artifact://acme/images:v1",
        "wandb-artifact://acme/mnist/images/extra",
        "wandb-artifact://acme/mnist/",
        "wandb-artifact://acme/../images",
        "artifact://acme/mnist/images",
    ],
)
def test_a_malformed_uri_is_an_error_that_shows_the_form(text: str) -> None:
    with pytest.raises(ValueError, match="wandb-artifact://entity/project/name"):
        parse_wandb_artifact(text)


def test_two_different_aliases_are_an_error() -> None:
    with pytest.raises(ValueError, match="name one"):
        parse_wandb_artifact("wandb-artifact://a/b/c:v1", "v2")


def test_a_plain_name_takes_the_project_from_the_options() -> None:
    options = WandbStoreOptions(entity="acme", project="mnist")
    assert artifact_path("images", None, options).qualified == "acme/mnist/images:latest"
    assert artifact_path("other/proj/x", "v2", options).qualified == "other/proj/x:v2"
    with pytest.raises(PluginError, match=r"artifact_store\.options\.entity"):
        artifact_path("images", None, WandbStoreOptions())


async def test_without_an_api_key_the_store_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no `wandb login`
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    store = WandbArtifactStore(options=WandbStoreOptions(entity="acme", project="mnist"))
    with pytest.raises(PluginError) as caught:
        await store.resolve("images", "latest")
    assert "needs a W&B API key on the agent" in str(caught.value)
    assert "WANDB_API_KEY" in str(caught.value) and "wandb login" in str(caught.value)


def test_without_the_wandb_package_the_store_names_the_extra() -> None:
    # A real interpreter in which `import wandb` fails (None in sys.modules makes it an
    # ImportError, as a missing package is): the package is installed in this venv.
    script = (
        "import sys, anyio; sys.modules['wandb'] = None\n"
        "from launchplane.plugins.artifacts.wandb import WandbArtifactStore, WandbStoreOptions\n"
        "store = WandbArtifactStore(options=WandbStoreOptions(entity='a', project='b'))\n"
        "try:\n    anyio.run(store.resolve, 'images')\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == (
        "MissingExtraError artifact store 'wandb' needs: pip install 'launchplane[wandb]'"
    )


async def test_bad_store_options_are_refused_when_the_queue_is_created(
    server: EmbeddedServer,
) -> None:
    store = {"type": "wandb", "options": {"entitty": "acme"}}
    async with LaunchplaneClient(server.url, server.admin_token) as admin:
        with pytest.raises(ValidationFailed) as caught:
            await admin.create_queue("bad", {"resource": "local-process", "artifact_store": store})
    errors = caught.value.errors
    assert any(
        e["path"] == "artifact_store.options.entitty" and "entity" in e["message"] for e in errors
    ), errors


def test_importing_the_plugins_does_not_import_wandb() -> None:
    script = (
        "import sys\n"
        "import launchplane.plugins.artifacts.wandb, launchplane.plugins.integrations.wandb\n"
        "print('wandb' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
