"""ECR login for the docker builder: moto's GetAuthorizationToken, on a registry that checks it.

No real ECR is reachable here, so the login is forced by ``builder.options.ecr``
on a loopback registry: a second Debian ``docker-registry`` (distribution v2,
the same binary as the 127.0.0.1:5000 one) started by the test with htpasswd
auth whose only user is ``AWS`` with the password moto's token decodes to.
A push that did not carry the token from ``ecr:GetAuthorizationToken`` is
refused by that registry, so the tests see the login really used.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dockerkit import BASE_IMAGE, Log, context, job_spec, make_app
from kit import free_port, require_service

from launchplane.core import aws
from launchplane.core.interfaces import PluginError
from launchplane.plugins.builders.docker import DockerBuilder, DockerBuilderOptions
from launchplane.plugins.builders.ecr import EcrLogin, EcrOptions, ecr_host

pytestmark = [pytest.mark.docker, pytest.mark.aws, pytest.mark.anyio]

MOTO_ACCOUNT = "123456789012"
"""moto's default account; its ECR token decodes to ``AWS:<account>-auth-token``."""
PASSWORD = f"{MOTO_ACCOUNT}-auth-token"
REGISTRY_BINARY = "/usr/bin/docker-registry"


def bcrypt(password: str) -> str:
    """An htpasswd bcrypt hash (the registry accepts only bcrypt), via libcrypt."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # deprecated in 3.11, still the only bcrypt in the standard library

    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))


@pytest.fixture
def auth_registry(engine: Any, tmp_path: Path) -> Iterator[str]:
    """``127.0.0.1:<port>``: a registry that takes only ``AWS`` / moto's ECR password."""
    found = shutil.which(REGISTRY_BINARY) is not None
    require_service("docker-registry", found, "run scripts/services/docker.sh")
    port = free_port()
    (tmp_path / "htpasswd").write_text(f"AWS:{bcrypt(PASSWORD)}\n")
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'data'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
        f"auth: {{htpasswd: {{realm: lptest, path: {tmp_path / 'htpasswd'}}}}}\n"
    )
    process = subprocess.Popen(
        [REGISTRY_BINARY, "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while status(f"http://127.0.0.1:{port}/v2/") is None:
            assert process.poll() is None, "docker-registry exited"
            assert time.monotonic() < deadline, "docker-registry did not answer"
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        for image in engine.images.list():  # by id: its tag and repo digest go together
            if any(ref.startswith(f"127.0.0.1:{port}/") for ref in image.tags):
                engine.images.remove(image.id, force=True)


def status(url: str, password: str | None = None) -> int | None:
    """The HTTP status of GET ``url`` (with basic auth as AWS when ``password``), None if down."""
    request = urllib.request.Request(url)
    if password is not None:
        token = base64.b64encode(f"AWS:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


async def test_forced_ecr_login_pushes_with_the_token(
    docker: Any, auth_registry: str, aws_env: dict[str, str], moto_url: str, tmp_path: Path
) -> None:
    registry = f"{auth_registry}/lptest"
    options = {
        "registry": registry,
        "ecr": {"endpoint_url": moto_url, "region": "eu-central-1", "create_repositories": True},
    }
    app = make_app(tmp_path / "app")
    job = job_spec(
        "ecr",
        workdir=str(app),
        entry_point="train.py",
        builder={"type": "docker", "base_image": BASE_IMAGE, "options": options},
    )
    builder = DockerBuilder(DockerBuilderOptions.model_validate(options))
    log = Log()
    image = await builder.build(job, context(tmp_path, "ecr", log=log))

    assert image is not None and image.digest and image.digest.startswith("sha256:")
    assert image.pinned == f"{registry}/lptest-ecr@{image.digest}"
    tag = image.ref.rsplit(":", 1)[1]
    manifest = f"http://{auth_registry}/v2/lptest/lptest-ecr/manifests/{tag}"
    assert status(manifest) == 401  # the registry does check ...
    assert status(manifest, PASSWORD) == 200  # ... and the pushed tag is there
    assert (
        f"logged in to {auth_registry} with ecr:GetAuthorizationToken (region eu-central-1; "
        in log.lines[0]
    )
    assert "created ECR repository" in log.text()
    ecr = aws.client("ecr", aws.AwsOptions(region="eu-central-1"), kind="test", name="ecr")
    names = [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
    assert "lptest/lptest-ecr" in names  # ecr:CreateRepository reached moto's eu-central-1

    # The same inputs again: found in the registry (queried with the token), not rebuilt.
    again = Log()
    second = await builder.build(job, context(tmp_path, "ecr-again", log=again))
    assert second is not None and (second.digest, second.built) == (image.digest, False)
    assert f"found in registry {registry}); skipping build" in again.text()
    for line in log.lines + again.lines:
        assert PASSWORD not in line and base64.b64encode(PASSWORD.encode()).decode() not in line


async def test_without_the_login_the_registry_refuses(
    docker: Any, auth_registry: str, tmp_path: Path
) -> None:
    """The same registry without ``ecr``: the builder cannot even look the tag up."""
    options = {"registry": f"{auth_registry}/lptest"}
    job = job_spec(
        "ecr-denied",
        workdir=str(make_app(tmp_path / "app")),
        builder={"type": "docker", "base_image": BASE_IMAGE, "options": options},
    )
    builder = DockerBuilder(DockerBuilderOptions.model_validate(options))
    with pytest.raises(PluginError, match=r"cannot query registry for .*(unauthorized|no basic)"):
        await builder.build(job, context(tmp_path, "ecr-denied", log=Log()))


async def test_an_ecr_registry_name_implies_the_login_with_its_account_and_region(
    aws_env: dict[str, str],
) -> None:
    """GetAuthorizationToken on moto with the account and region read from the registry name."""
    registry = f"{MOTO_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/team"
    assert DockerBuilder(DockerBuilderOptions(registry=registry))._ecr is not None
    assert DockerBuilder(DockerBuilderOptions(registry="127.0.0.1:5000/x"))._ecr is None
    login = EcrLogin(registry, None)
    credentials, fresh = login.credentials()
    assert fresh and credentials.username == "AWS" and credentials.password == PASSWORD
    assert credentials.server == f"{MOTO_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
    assert login.where == f"registry {MOTO_ACCOUNT}, region eu-west-1"
    assert PASSWORD not in repr(credentials)
    other = EcrLogin("127.0.0.1:5000/x", EcrOptions(registry_id="210987654321"))
    assert other.credentials()[0].password == "210987654321-auth-token"  # registryIds was sent


def test_ecr_host_names() -> None:
    found = ecr_host("123456789012.dkr.ecr.us-gov-west-1.amazonaws.com/a/b")
    assert found is not None and (found["account"], found["region"]) == (
        "123456789012",
        "us-gov-west-1",
    )
    assert ecr_host("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com")
    assert ecr_host("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn")
    assert ecr_host("ghcr.io/org") is None
    assert ecr_host("12345.dkr.ecr.us-east-1.amazonaws.com") is None
