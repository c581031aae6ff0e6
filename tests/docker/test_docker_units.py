"""The engine-free parts of the docker plugins: Dockerfiles, hashes, argument validation, plan.

These need docker-py (for its .dockerignore matcher and types) but no engine.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from dockerkit import BASE_IMAGE, context, job_spec
from kit import require_service

from launchplane.core.interfaces import Image, PluginError
from launchplane.core.launch import entry_argv
from launchplane.plugins.builders import dockerfile
from launchplane.plugins.builders.docker import (
    DEFAULT_BASE_IMAGE,
    DockerBuilder,
    base_image,
    repository,
)
from launchplane.plugins.runners.docker import (
    DockerRunner,
    container_name,
    device_requests,
    docker_args,
    format_size,
    parse_size,
)


@pytest.fixture(autouse=True)
def docker_py() -> None:
    try:
        import docker  # noqa: F401
    except ImportError:
        require_service("docker-py", False, "pip install 'launchplane[docker]'")


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def digest(root: Path, extra: dict[str, bytes] | None = None) -> str:
    files = dockerfile.context_files(root, "Dockerfile")
    return dockerfile.content_hash(root, files, extra or {})


# -- dependencies and the generated Dockerfile ------------------------------------------


NONE = dockerfile.Dependencies("none")
PROJECT = "[project]\nname = 'x'\n"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, NONE),
        ({"requirements.txt": "# later\n\n"}, dockerfile.Dependencies("none", "requirements.txt")),
        (
            {"requirements.txt": "torch==2.1\n", "pyproject.toml": PROJECT},
            dockerfile.Dependencies("requirements", "requirements.txt"),
        ),
        ({"pyproject.toml": PROJECT}, dockerfile.Dependencies("pyproject", "pyproject.toml")),
        ({"pyproject.toml": "[tool.ruff]\nline-length = 100\n"}, NONE),
        (
            {"environment.yaml": "dependencies: []\n"},
            dockerfile.Dependencies("conda", "environment.yaml"),
        ),
    ],
)
def test_dependencies_are_detected_by_precedence(
    tmp_path: Path, files: dict[str, str], expected: dockerfile.Dependencies
) -> None:
    assert dockerfile.detect_dependencies(tree(tmp_path, files)) == expected


def test_requirements_are_installed_before_the_code_is_copied() -> None:
    deps = dockerfile.Dependencies("requirements", "requirements.txt")
    text = dockerfile.generate_dockerfile("python:3.11-slim", deps, ["python", "train.py"])
    lines = text.splitlines()
    assert lines[1:3] == ["FROM python:3.11-slim", "USER root"]
    assert "python3 -m venv /opt/venv" in lines[3]  # with pip: there is something to install
    pip = lines.index("RUN pip install -r /app/requirements.txt")
    assert lines[pip - 1] == "COPY requirements.txt /app/requirements.txt"
    assert lines[pip + 1] == "COPY --chown=10001:10001 . /app"
    assert lines[-2:] == ["USER 10001:10001", 'CMD ["python", "train.py"]']


def test_without_dependencies_the_venv_has_no_pip_and_no_cmd_without_entry_point() -> None:
    text = dockerfile.generate_dockerfile("base", dockerfile.Dependencies("none"), None)
    assert "python3 -m venv --without-pip /opt/venv" in text
    assert "pip install" not in text and "CMD" not in text


@pytest.mark.parametrize(
    ("tool", "install"),
    [
        ("micromamba", "micromamba install -y -n base -f /tmp/environment.yml"),
        ("mamba", "mamba env update -n base -f /tmp/environment.yml"),
        ("conda", "conda env update -n base -f /tmp/environment.yml"),
    ],
)
def test_conda_environments_use_the_base_images_tool(tool: str, install: str) -> None:
    deps = dockerfile.Dependencies("conda", "environment.yml")
    text = dockerfile.generate_dockerfile("condaforge/miniforge3", deps, None, tool)
    assert f"RUN {install} && {tool} clean -afy" in text
    assert "venv" not in text


def test_entry_points_run_with_python() -> None:
    assert entry_argv("train.py --fast") == ["python", "train.py", "--fast"]
    assert entry_argv(["bash", "run.sh"]) == ["bash", "run.sh"]
    assert entry_argv(None) is None


# -- the content hash ---------------------------------------------------------------------


def test_hash_ignores_mtimes_and_permission_noise(tmp_path: Path) -> None:
    first = tree(tmp_path / "a", {"train.py": "x", "pkg/mod.py": "y"})
    second = tree(tmp_path / "b", {"pkg/mod.py": "y", "train.py": "x"})
    os.utime(second / "train.py", (0, 0))
    (second / "pkg" / "mod.py").chmod(0o600)  # not executable either way: same mode
    (first / ".git").mkdir()
    (first / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert digest(first) == digest(second)


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "train.py").write_text("changed"),
        lambda root: (root / "train.py").rename(root / "main.py"),
        lambda root: (root / "train.py").chmod(0o755),
        lambda root: (root / "empty").mkdir(),
        lambda root: (root / "link").symlink_to("train.py"),
    ],
    ids=["content", "path", "exec-bit", "empty-dir", "symlink"],
)
def test_hash_changes_with_what_the_image_would_contain(tmp_path: Path, change: Any) -> None:
    root = tree(tmp_path, {"train.py": "x"})
    before = digest(root)
    change(root)
    assert digest(root) != before


def test_hash_covers_the_generated_dockerfile(tmp_path: Path) -> None:
    root = tree(tmp_path, {"train.py": "x"})
    one = digest(root, {dockerfile.GENERATED_DOCKERFILE: b"FROM a\n"})
    two = digest(root, {dockerfile.GENERATED_DOCKERFILE: b"FROM b\n"})
    assert one != two


def test_the_context_tar_is_normalised_and_deterministic(tmp_path: Path) -> None:
    root = tree(tmp_path, {"train.py": "x", "bin/run.sh": "#!/bin/sh\n"})
    (root / "bin" / "run.sh").chmod(0o700)
    files = dockerfile.context_files(root, "Dockerfile")
    extra = {"Dockerfile.gen": b"FROM x\n"}

    tars = []
    for _ in range(2):
        buffer = io.BytesIO()
        dockerfile.context_tar(root, files, extra, buffer)
        tars.append(buffer.getvalue())

    assert tars[0] == tars[1]
    with tarfile.open(fileobj=io.BytesIO(tars[0])) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == ["Dockerfile.gen", "bin", "bin/run.sh", "train.py"]
    assert oct(members["bin/run.sh"].mode) == oct(0o755)
    assert oct(members["train.py"].mode) == oct(0o644)
    assert {(m.uid, m.gid, m.mtime) for m in members.values()} == {(0, 0, 0)}


# -- builder decisions --------------------------------------------------------------------


def test_base_image_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAUNCHPLANE_DOCKER_BASE_IMAGE", raising=False)
    assert base_image(job_spec("b", builder={"type": "docker"})) == DEFAULT_BASE_IMAGE
    monkeypatch.setenv("LAUNCHPLANE_DOCKER_BASE_IMAGE", "agent/default:1")
    assert base_image(job_spec("b", builder={"type": "docker"})) == "agent/default:1"
    assert base_image(job_spec("b")) == BASE_IMAGE  # builder.base_image
    accelerated = job_spec(
        "b", builder={"base_image": "cpu:1", "accelerator": {"base_image": "cuda:12"}}
    )
    assert base_image(accelerated) == "cuda:12"


def test_repository_names_are_valid_image_names(tmp_path: Path) -> None:
    job = job_spec("x").model_copy(update={"name": "My Project/Train:v2"})
    assert repository(job, tmp_path, None) == "launchplane/my-project-train-v2"
    assert (
        repository(job, tmp_path, "127.0.0.1:5000/team/")
        == "127.0.0.1:5000/team/my-project-train-v2"
    )


@pytest.mark.anyio
async def test_a_missing_docker_py_is_one_install_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)  # `import docker` raises ImportError
    job = job_spec("missing", workdir=str(tmp_path))
    with pytest.raises(
        PluginError, match=r"^builder 'docker' needs: pip install 'launchplane\[docker\]'$"
    ):
        await DockerBuilder().build(job, context(tmp_path, "missing"))
    with pytest.raises(
        PluginError, match=r"^runner 'docker' needs: pip install 'launchplane\[docker\]'$"
    ):
        await DockerRunner().submit(job, Image(ref=BASE_IMAGE), context(tmp_path, "missing"))


# -- runner arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        (None, []),
        ("all", [{"count": -1}]),
        (2, [{"count": 2}]),
        ("4", [{"count": 4}]),
        ("device=0,1", [{"device_ids": ["0", "1"]}]),
        ('"device=GPU-3a2b"', [{"device_ids": ["GPU-3a2b"]}]),
    ],
)
def test_gpu_requests(gpus: Any, expected: list[dict[str, Any]]) -> None:
    import docker

    requests = [docker.types.DeviceRequest(**r) for r in device_requests(gpus)]
    wanted = [
        docker.types.DeviceRequest(driver="nvidia", capabilities=[["gpu"]], **e) for e in expected
    ]
    assert requests == wanted


@pytest.mark.parametrize("gpus", [0, "none", "device=", "count=x"])
def test_bad_gpu_requests_are_refused(gpus: Any) -> None:
    with pytest.raises(ValueError):
        device_requests(gpus)


def test_sizes() -> None:
    assert parse_size("512m") == 512 * 1024**2
    assert parse_size("1.5g") == 1536 * 1024**2
    assert parse_size("64MB") == 64 * 1024**2
    assert parse_size(1000) == 1000
    assert [format_size(s) for s in (32 * 1024**2, 2 * 1024**3, 1536 * 1024**2, 1000)] == [
        "32m",
        "2g",
        "1536m",
        "1000b",
    ]
    with pytest.raises(ValueError):
        parse_size("lots")


def test_env_and_volumes_accept_both_forms() -> None:
    args = docker_args(
        job_spec(
            "a",
            resource_args={
                "docker": {
                    "env": ["A=1", "B=x=y", "EMPTY="],
                    "volumes": {"/data": "/data", "/ckpt": {"bind": "/ckpt", "mode": "ro"}},
                }
            },
        )
    )
    assert args.env == {"A": "1", "B": "x=y", "EMPTY": ""}
    assert args.volumes == ["/data:/data", "/ckpt:/ckpt:ro"]
    mapping = docker_args(job_spec("a", resource_args={"docker": {"env": {"PORT": 29500}}}))
    assert mapping.env == {"PORT": "29500"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"gpu": "all"}, r"resource_args\.docker\.gpu: Extra inputs are not permitted"),
        ({"env": ["HF_TOKEN"]}, r"resource_args\.docker\.env: .*passthrough_env"),
        ({"volumes": ["/data"]}, r"resource_args\.docker\.volumes: .*SOURCE:/container/path"),
        ({"memory": "lots"}, r"resource_args\.docker\.memory: .*not a size"),
        ({"labels": {"launchplane.job_id": "x"}}, r"resource_args\.docker\.labels: .*launchplane"),
        ({"cpus": 0}, r"resource_args\.docker\.cpus: Input should be greater than 0"),
    ],
)
def test_bad_resource_args_name_their_path(args: dict[str, Any], message: str) -> None:
    with pytest.raises(PluginError, match=message):
        docker_args(job_spec("bad", resource_args={"docker": args}))


def test_container_names_are_valid() -> None:
    assert container_name("job-0a1b-2") == "lp-job-0a1b-2"
    assert container_name("we/ird id-1") == "lp-we-ird-id-1"


def test_describe_shows_env_names_and_secret_references_only() -> None:
    job = job_spec(
        "plan",
        entry_point="train.py",
        args=["--lr", "0.1"],
        env={"PUBLIC": "visible-value"},
        secrets={"HF_TOKEN": "env:HF_TOKEN", "DB_PASSWORD": "aws-sm:prod/db#password"},
        resource_args={"docker": {"gpus": "all", "memory": "8g", "env": {"NCCL_DEBUG": "INFO"}}},
    )
    image = Image(ref="127.0.0.1:5000/t/plan:abc", digest="sha256:" + "1" * 64)

    described = DockerRunner().describe(job, image)

    assert described["image"] == f"127.0.0.1:5000/t/plan@sha256:{'1' * 64}"
    assert described["name"] == "lp-<job_id>-<attempt>"
    assert described["command"] == ["python", "train.py", "--lr", "0.1"]
    assert described["environment"] == {
        "names": ["LAUNCHPLANE_OUTPUT_DIR", "NCCL_DEBUG", "PUBLIC", "PYTHONUNBUFFERED"],
        "secrets": {"DB_PASSWORD": "aws-sm:prod/db#password", "HF_TOKEN": "env:HF_TOKEN"},
    }
    assert described["device_requests"] == [
        {"driver": "nvidia", "capabilities": [["gpu"]], "count": -1}
    ]
    assert described["mem_limit"] == 8 * 1024**3
    assert described["volumes"] == ["<run dir>/output:/launchplane/output:rw"]
    assert "visible-value" not in repr(described)
