"""``job: entity/project/name:alias`` fetched from a real W&B server through the wandb package.

Opt-in: skipped unless ``LAUNCHPLANE_TEST_WANDB_API_KEY`` is set (and the
``wandb`` package, extra ``launchplane[wandb]``, is installed). Also read:
``LAUNCHPLANE_TEST_WANDB_JOB`` - a job artifact that key can read
(``entity/project/job-name:latest``; a repo or image job) - and
``LAUNCHPLANE_TEST_WANDB_BASE_URL`` for a W&B server other than wandb.ai.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from launchplane.core.config import load_job_file
from launchplane.core.errors import ConfigError
from launchplane.core.spec import JobSpec

API_KEY = os.environ.get("LAUNCHPLANE_TEST_WANDB_API_KEY")
JOB = os.environ.get("LAUNCHPLANE_TEST_WANDB_JOB")

pytestmark = pytest.mark.skipif(
    not API_KEY, reason="set LAUNCHPLANE_TEST_WANDB_API_KEY to run the W&B fetch tests"
)


@pytest.fixture
def wandb_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """W&B credentials from the test's variables only, and a W&B directory of the test's own."""
    pytest.importorskip("wandb", reason="pip install 'launchplane[wandb]'")
    assert API_KEY
    monkeypatch.setenv("WANDB_API_KEY", API_KEY)
    base_url = os.environ.get("LAUNCHPLANE_TEST_WANDB_BASE_URL")
    if base_url:
        monkeypatch.setenv("WANDB_BASE_URL", base_url)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_job_named_in_a_job_file_is_fetched_and_translated(wandb_env: None, tmp_path: Path) -> None:
    if not JOB:
        pytest.skip("set LAUNCHPLANE_TEST_WANDB_JOB=entity/project/job-name:alias")
    job_file = tmp_path / "job.yaml"
    job_file.write_text(f"job: {JOB}\n")

    layer = load_job_file(job_file)

    assert layer["job"] == JOB
    assert layer["project"] == JOB.split("/")[1]  # W&B's default project: the job's
    assert layer.get("git") or layer.get("docker"), layer
    if layer.get("git"):
        assert layer["git"]["repository"] and layer["git"]["commit"]
    JobSpec.model_validate(layer)
    assert not list(Path("/tmp").glob("launchplane-wandb-job-*"))  # the download is removed


def test_a_job_that_does_not_exist_is_a_clear_error(wandb_env: None, tmp_path: Path) -> None:
    entity_project = "/".join((JOB or "launchplane-test/none/x").split("/")[:2])
    name = f"{entity_project}/launchplane-no-such-job:latest"
    job_file = tmp_path / "job.yaml"
    job_file.write_text(f"job: {name}\n")
    with pytest.raises(ConfigError) as refused:
        load_job_file(job_file)
    assert refused.value.errors[0].path == "job"
    assert f"cannot fetch the W&B job '{name}'" in str(refused.value)


def test_without_credentials_it_says_how_to_configure_wandb(
    wandb_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY")
    (tmp_path / "netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    job_file = tmp_path / "job.yaml"
    job_file.write_text("job: acme/train/job-train:latest\n")
    with pytest.raises(ConfigError) as refused:
        load_job_file(job_file)
    assert "WANDB_API_KEY" in str(refused.value) and "wandb login" in str(refused.value)
