"""The docker builder against a real engine: builds, skips, rebuilds, pushes, keeps secrets out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dockerkit import BASE_IMAGE, HELLO, NONCE, Log, context, job_spec, make_app

from launchplane.core.interfaces import Image, PluginError
from launchplane.core.plugins import get_plugin_manager
from launchplane.plugins.builders.docker import (
    CONTENT_HASH_LABEL,
    DockerBuilder,
    DockerBuilderOptions,
    LocalImage,
)
from launchplane.plugins.runners.docker import DockerRunner

pytestmark = [pytest.mark.docker, pytest.mark.anyio]


def listing(docker: Any, image: Image, path: str = "/app") -> list[str]:
    output = docker.containers.run(
        image.pinned, ["ls", "-A", path], remove=True, network_mode="none"
    )
    return sorted(output.decode().split())


async def test_generated_dockerfile_builds_hello(
    docker: Any, hello_image: Image, tmp_path: Path
) -> None:
    assert isinstance(hello_image, LocalImage) and hello_image.built
    assert hello_image.ref.startswith("launchplane/lptest-hello:")
    tag = hello_image.ref.rsplit(":", 1)[1]
    assert len(tag) == 16
    # Pinned by the local image id, which is what the engine knows it by.
    attrs = docker.images.get(hello_image.ref).attrs
    assert hello_image.pinned == hello_image.digest == attrs["Id"]
    config = attrs["Config"]
    assert config["User"] == "10001:10001"  # never root
    assert config["Cmd"] == ["python", "train.py"]
    assert config["WorkingDir"] == "/app"
    assert config["Labels"][CONTENT_HASH_LABEL].startswith(tag)
    expected = {p.name for p in HELLO.iterdir() if p.name not in ("__pycache__", "output")}
    assert listing(docker, hello_image) == sorted({*expected, "nonce.txt"})
    output = docker.containers.run(
        hello_image.pinned, ["python", "train.py", "--epochs", "2"], remove=True
    )
    assert b"epoch   2/2" in output


async def test_same_inputs_do_not_rebuild(docker: Any, hello_image: Image, tmp_path: Path) -> None:
    app = make_app(tmp_path / "hello")  # a fresh copy: same content, new mtimes and inode numbers
    log = Log()
    job = job_spec("hello", workdir=str(app), entry_point="train.py")

    again = await DockerBuilder().build(job, context(tmp_path, "same", log=log))

    assert again == LocalImage(ref=hello_image.ref, digest=hello_image.digest, built=False)
    tag = hello_image.ref.rsplit(":", 1)[1]
    assert log.lines == [
        f"image {hello_image.ref} already built (content hash {tag}, found locally); skipping build"
    ]


async def test_args_are_not_part_of_the_image(
    docker: Any, hello_image: Image, tmp_path: Path
) -> None:
    app = make_app(tmp_path / "hello")
    job = job_spec("hello", workdir=str(app), entry_point="train.py", args=["--lr", "0.1"])
    image = await DockerBuilder().build(job, context(tmp_path, "args"))
    assert image is not None and image.ref == hello_image.ref and not image.built


async def test_changing_one_source_file_rebuilds_with_a_new_tag(
    docker: Any, hello_image: Image, tmp_path: Path
) -> None:
    app = make_app(tmp_path / "hello")
    with (app / "train.py").open("a") as handle:
        handle.write("# a change\n")
    log = Log()
    job = job_spec("hello", workdir=str(app), entry_point="train.py")

    image = await DockerBuilder().build(job, context(tmp_path, "changed", log=log))

    assert image is not None and image.built
    assert image.ref != hello_image.ref and image.ref.startswith("launchplane/lptest-hello:")
    assert any(line.startswith("Step 1/") for line in log.lines)
    # Only the code layer is new: the steps before COPY come from the cache.
    assert "Using cache" in log.text()


async def test_mode_change_rebuilds(docker: Any, hello_image: Image, tmp_path: Path) -> None:
    app = make_app(tmp_path / "hello")
    (app / "train.py").chmod(0o755)
    job = job_spec("hello", workdir=str(app), entry_point="train.py")
    image = await DockerBuilder().build(job, context(tmp_path, "mode"))
    assert image is not None and image.ref != hello_image.ref


async def test_dockerignored_files_do_not_change_the_hash(docker: Any, tmp_path: Path) -> None:
    ignore = {".dockerignore": "# local junk\ndata/\n*.log\n!keep.log\n"}
    builder = DockerBuilder()
    first_app = make_app(tmp_path / "first", ignore)
    job = job_spec("ignore", workdir=str(first_app), entry_point="train.py")
    first = await builder.build(job, context(tmp_path, "ignore1"))

    junk = {"data/big.bin": "x" * 100_000, "data/sub/more.bin": "x", "debug.log": "noise"}
    second_app = make_app(tmp_path / "second", {**ignore, **junk})
    job = job_spec("ignore", workdir=str(second_app), entry_point="train.py")
    second = await builder.build(job, context(tmp_path, "ignore2"))

    assert first is not None and second is not None
    assert first.built and not second.built and second.ref == first.ref
    assert ".git" not in listing(docker, first)
    kept_app = make_app(tmp_path / "third", {**ignore, "keep.log": "kept"})
    job = job_spec("ignore", workdir=str(kept_app), entry_point="train.py")
    third = await builder.build(job, context(tmp_path, "ignore3"))
    assert third is not None and third.built  # "!keep.log" re-includes it: new content
    assert "keep.log" in listing(docker, third)
    assert ".launchplane.Dockerfile" not in listing(docker, third)


async def test_the_jobs_own_dockerfile_is_used(docker: Any, tmp_path: Path) -> None:
    dockerfile = f'FROM {BASE_IMAGE}\nCOPY . /srv\nCMD ["python3", "/srv/train.py"]\n'
    app = make_app(tmp_path / "own", {"Dockerfile": dockerfile})
    log = Log()
    job = job_spec("own", workdir=str(app))

    image = await DockerBuilder().build(job, context(tmp_path, "own", log=log))

    assert image is not None and image.built
    assert "with Dockerfile" in log.lines[0]
    assert docker.images.get(image.ref).attrs["Config"]["Cmd"] == ["python3", "/srv/train.py"]
    assert "train.py" in listing(docker, image, "/srv")


async def test_requirements_satisfied_offline_install_into_the_venv(
    docker: Any, tmp_path: Path
) -> None:
    # pip is in every new venv: the requirement is satisfied without a network.
    # The nonce makes the requirements layer new on every run: an engine that
    # built it before would take the pip step from its cache and print nothing.
    app = make_app(tmp_path / "reqs", {"requirements.txt": f"# tools {NONCE}\npip\n"})
    log = Log()
    job = job_spec("reqs", workdir=str(app), entry_point="train.py")

    image = await DockerBuilder().build(job, context(tmp_path, "reqs", log=log))

    assert image is not None and image.built
    assert "RUN pip install -r /app/requirements.txt" in log.text()
    assert "Requirement already satisfied: pip" in log.text()
    output = docker.containers.run(
        image.pinned, ["python", "-c", "import sys; print(sys.prefix)"], remove=True
    )
    assert output.decode().strip() == "/opt/venv"


async def test_environment_yml_without_conda_is_a_clear_error(docker: Any, tmp_path: Path) -> None:
    app = make_app(tmp_path / "conda", {"environment.yml": "dependencies:\n  - python=3.11\n"})
    job = job_spec("conda", workdir=str(app), entry_point="train.py")

    with pytest.raises(PluginError) as caught:
        await DockerBuilder().build(job, context(tmp_path, "conda"))

    message = str(caught.value)
    assert "environment.yml" in message and BASE_IMAGE in message
    assert "conda, mamba or micromamba" in message
    assert "builder.base_image" in message and "requirements.txt" in message


async def test_a_secret_never_reaches_the_image_or_the_build_log(
    docker: Any, tmp_path: Path
) -> None:
    secret = f"s3cr3t-{NONCE}"
    app = make_app(tmp_path / "secret")
    log = Log()
    job = job_spec(
        "secret",
        workdir=str(app),
        entry_point="train.py",
        env={"PUBLIC": "yes"},
        secrets={"HF_TOKEN": "env:HF_TOKEN"},
    )
    ctx = context(tmp_path, "secret", env={"HF_TOKEN": secret, "PUBLIC": "yes"}, log=log)

    image = await DockerBuilder().build(job, ctx)

    assert image is not None and image.built
    found = docker.images.get(image.ref)
    inspected = json.dumps(found.attrs)
    history = json.dumps(found.history())
    assert secret not in inspected and secret not in history
    assert "HF_TOKEN" not in inspected and "HF_TOKEN" not in history
    assert not any("PUBLIC" in item for item in found.attrs["Config"]["Env"] or [])
    assert secret not in log.text()


async def test_push_to_the_registry_and_run_by_digest(
    docker: Any, registry: str, tmp_path: Path
) -> None:
    app = make_app(tmp_path / "pushed")
    job = job_spec(
        "pushed",
        workdir=str(app),
        entry_point="train.py",
        args=["--epochs", "1"],
        builder={"type": "docker", "base_image": BASE_IMAGE, "options": {"registry": registry}},
    )
    log = Log()
    options = DockerBuilderOptions(registry=registry)
    image = await DockerBuilder(options).build(job, context(tmp_path, "push", log=log))

    assert image is not None and image.built
    assert image.ref.startswith(f"{registry}/lptest-pushed:")
    assert image.digest is not None and image.digest.startswith("sha256:")
    assert image.pinned == f"{registry}/lptest-pushed@{image.digest}"
    assert any("digest: " + image.digest in line for line in log.lines)

    # Another engine has nothing locally: drop the local copy, then skip + pull by digest.
    docker.images.remove(image.ref, force=True)
    log = Log()
    again = await DockerBuilder(options).build(job, context(tmp_path, "push-again", log=log))
    assert again == Image(ref=image.ref, digest=image.digest, built=False)
    assert f"found in registry {registry}); skipping build" in log.lines[0]

    run_log = Log()
    ctx = context(tmp_path, "by-digest", log=run_log)
    run = await DockerRunner().submit(job, again, ctx)
    result = await run.wait()

    assert result.exit_code == 0, result.reason
    assert f"pulling image {image.pinned}" in run_log.lines
    assert (ctx.workdir / "output" / "checkpoint.json").is_file()


async def test_a_job_with_an_image_is_passed_through(docker: Any, tmp_path: Path) -> None:
    log = Log()
    job = job_spec("passthrough", docker={"image": BASE_IMAGE})
    image = await DockerBuilder().build(job, context(tmp_path, "passthrough", log=log))
    assert image == Image(ref=BASE_IMAGE)
    assert "as is" in log.lines[0]


async def test_no_code_and_no_image_is_an_error(docker: Any, tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="nothing to build"):
        await DockerBuilder().build(job_spec("nothing"), context(tmp_path, "nothing"))


async def test_unknown_builder_option_names_its_path(docker: Any, tmp_path: Path) -> None:
    """The registry validates builder.options with DockerBuilderOptions before building."""
    with pytest.raises(
        PluginError,
        match=r"^builder\.options\.registy: unknown key \(did you mean 'registry'\?\) "
        r"\(builder 'docker'\)$",
    ):
        get_plugin_manager().builder("docker", {"registy": "x"})


async def test_aclose_closes_the_docker_client(
    docker: Any, hello_image: Image, tmp_path: Path
) -> None:
    builder = DockerBuilder()
    app = make_app(tmp_path / "hello")
    await builder.build(
        job_spec("hello", workdir=str(app), entry_point="train.py"), context(tmp_path, "close")
    )
    client = builder._docker
    assert client is not None
    pools = client.api.get_adapter(client.api.base_url).pools
    assert len(pools) > 0  # connections to the engine are open

    await builder.aclose()
    await builder.aclose()  # a second call finds nothing left to close

    assert len(pools) == 0 and builder._docker is None
