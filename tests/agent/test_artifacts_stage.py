"""The ``artifacts`` stage: a real ``file`` store on a tmp dir, a real server and agent on loopback.

Inputs are resolved to a version and digest, cached by digest and mounted for
the local-process runner; outputs are uploaded after a success only.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from agentkit import QUEUE
from kit import log_lines, running_agent, wait_for_state

from launchplane.agent.artifacts import ArtifactCache, cache_key
from launchplane.core.client import LaunchplaneClient, ValidationFailed
from launchplane.core.interfaces import Image, JobContext, Mount, PluginError
from launchplane.core.spec import ResolvedJob
from launchplane.plugins.artifacts.file import FileArtifactStore, FileStoreOptions
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio

VARIABLE = "LAUNCHPLANE_ARTIFACT_DATASET"

READ = (
    'cat "$LAUNCHPLANE_ARTIFACT_DATASET/data.txt"; echo; echo "at $LAUNCHPLANE_ARTIFACT_DATASET"; '
    'if touch "$LAUNCHPLANE_ARTIFACT_DATASET/new" 2>/dev/null; then echo writable; '
    "else echo read-only; fi"
)


def file_store(root: Path) -> FileArtifactStore:
    return FileArtifactStore(FileStoreOptions(root=root))


async def seed(store: FileArtifactStore, tmp_path: Path, name: str, text: str) -> Any:
    """Upload a folder holding ``data.txt`` = ``text`` as a new version of ``name``."""
    folder = tmp_path / "seed" / text
    folder.mkdir(parents=True)
    (folder / "data.txt").write_text(text)
    return await store.upload(folder, name)


async def store_queue(server: EmbeddedServer, root: Path, **extra: Any) -> None:
    await server.ensure_queue(
        QUEUE,
        {
            "resource": "local-process",
            "lease_ttl_seconds": 3,
            "artifact_store": {"type": "file", "options": {"root": str(root)}},
            **extra,
        },
    )


async def test_input_is_read_through_its_variable_pinned_and_cached(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    store = file_store(tmp_path / "store")
    await seed(store, tmp_path, "dataset", "hello v0")
    v1 = await seed(store, tmp_path, "dataset", "hello v1")
    await store_queue(server, tmp_path / "store")
    work = tmp_path / "work"
    async with running_agent(server, work, [QUEUE]) as agent:
        first = await client.submit_job(
            QUEUE, {"command": ["sh", "-c", READ], "input_artifacts": ["dataset:latest"]}
        )
        done = await wait_for_state(client, first["id"])
        record = await client.get_record(first["id"])
        cache = agent._services.artifact_cache  # the agent's own counter (no mock)
        assert cache.downloads == 1
        entry = work / ".artifact-cache" / v1.digest.removeprefix("sha256:")
        inode = entry.stat().st_ino
        # The same digest by its version: no second download, the same cache entry.
        second = await client.submit_job(
            QUEUE, {"command": ["sh", "-c", READ], "input_artifacts": ["dataset:v1"]}
        )
        again = await wait_for_state(client, second["id"])
        assert cache.downloads == 1
        assert entry.stat().st_ino == inode

    assert done["state"] == "succeeded", done
    lines = await log_lines(client, first["id"])
    mounted = work / f"{first['id']}-1" / "artifacts" / "dataset"
    assert "hello v1" in lines and f"at {mounted}" in lines
    assert "read-only" in lines  # a read-only bind in the sandbox, even for root
    assert record["artifacts"] == {
        "inputs": [
            {
                "name": "dataset",
                "alias": "latest",
                "version": "v1",
                "digest": v1.digest,
                "size": len("hello v1"),
                "store": "file",
                "path": "artifacts/dataset",
            }
        ],
        "outputs": [],
        "code": None,
    }
    launch = json.loads((work / f"{first['id']}-1" / "launch.json").read_text())
    assert launch["artifact_inputs"] == record["artifacts"]["inputs"]  # kept for re-adoption
    assert again["state"] == "succeeded"
    second_lines = await log_lines(client, second["id"])
    assert "hello v1" in second_lines
    assert any("from the agent cache" in line for line in second_lines)
    assert (await client.get_record(second["id"]))["artifacts"]["inputs"][0]["version"] == "v1"


async def test_unsandboxed_job_reads_its_input_at_its_path(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    store = file_store(tmp_path / "store")
    await seed(store, tmp_path, "dataset", "plain")
    await store_queue(
        server, tmp_path / "store", resource_args={"local-process": {"isolation": "none"}}
    )
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(
            QUEUE,
            {
                "command": ["sh", "-c", 'cat data/in/data.txt; echo; echo "$' + VARIABLE + '"'],
                "input_artifacts": [{"name": "dataset", "path": "data/in"}],
            },
        )
        done = await wait_for_state(client, job["id"])
    assert done["state"] == "succeeded", done
    run_dir = tmp_path / "work" / f"{job['id']}-1"
    lines = await log_lines(client, job["id"])
    assert "plain" in lines and str(run_dir / "data" / "in") in lines
    assert (run_dir / "data" / "in").is_symlink()  # to the agent's read-only cache entry


async def test_outputs_are_uploaded_with_macros_and_latest_moves(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    await store_queue(server, tmp_path / "store")
    write = (
        'cd "$LAUNCHPLANE_OUTPUT_DIR" && mkdir -p model && echo "$W" > model/w '
        '&& echo "$W" > "run-$LAUNCHPLANE_RUN_ID"'
    )
    outputs = [{"name": "model", "path": "model", "alias": "best"}, "run-${run_id}"]
    jobs = []
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        for weights in ("one", "two"):
            job = await client.submit_job(
                QUEUE,
                {
                    "command": ["sh", "-c", write],
                    "env": {"W": weights},
                    "output_artifacts": outputs,
                },
            )
            done = await wait_for_state(client, job["id"])
            assert done["state"] == "succeeded", done
            jobs.append(job["id"])

    store = file_store(tmp_path / "store")
    latest = await store.resolve("model")
    assert latest.version == "v1" and set(latest.aliases) == {"latest", "best"}
    first = (await client.get_record(jobs[0]))["artifacts"]["outputs"]
    second = (await client.get_record(jobs[1]))["artifacts"]["outputs"]
    assert first[0] | {"digest": None, "size": None} == {
        "name": "model",
        "version": "v0",
        "digest": None,
        "size": None,
        "store": "file",
        "aliases": ["latest", "best"],
        "path": "model",
    }
    assert second[0]["version"] == "v1" and second[0]["digest"] == latest.digest
    run_output = await store.resolve(f"run-{jobs[0]}-1")  # ${run_id} expanded
    assert first[1]["name"] == f"run-{jobs[0]}-1" and first[1]["digest"] == run_output.digest
    assert (await store.resolve("model", "v0")).digest == first[0]["digest"]


async def test_failed_job_uploads_nothing(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    await store_queue(server, tmp_path / "store")
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(
            QUEUE,
            {
                "command": ["sh", "-c", 'echo w > "$LAUNCHPLANE_OUTPUT_DIR/model"; exit 3'],
                "output_artifacts": ["model"],
            },
        )
        done = await wait_for_state(client, job["id"])
        record = await client.get_record(job["id"])
    assert done["state"] == "failed" and record["result"]["failure_stage"] == "run"
    assert record["artifacts"] == {"inputs": [], "outputs": [], "code": None}
    with pytest.raises(PluginError, match="does not exist"):
        await file_store(tmp_path / "store").resolve("model")


async def test_missing_output_fails_the_job_in_stage_artifacts(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    await store_queue(server, tmp_path / "store")
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(
            QUEUE, {"command": ["true"], "output_artifacts": [{"name": "model", "path": "ckpt"}]}
        )
        done = await wait_for_state(client, job["id"])
        record = await client.get_record(job["id"])
    assert done["state"] == "failed", done
    result = record["result"]
    assert result["failure_stage"] == "artifacts" and result["exit_code"] == 0
    assert "output artifact model (store 'file')" in result["reason"]
    assert "wrote nothing at 'ckpt'" in result["reason"]


async def test_unknown_alias_fails_in_stage_artifacts_before_the_run(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    store = file_store(tmp_path / "store")
    await seed(store, tmp_path, "dataset", "x")
    await store_queue(server, tmp_path / "store")
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(
            QUEUE, {"command": ["echo", "ran"], "input_artifacts": ["dataset:golden"]}
        )
        done = await wait_for_state(client, job["id"])
        record = await client.get_record(job["id"])
    assert done["state"] == "failed"
    assert record["result"]["failure_stage"] == "artifacts"
    reason = record["result"]["reason"]
    assert "input artifact dataset:golden (store 'file')" in reason and "'golden'" in reason
    assert "ran" not in await log_lines(client, job["id"])
    assert "running" not in [event["state"] for event in done["events"]]


async def test_a_queue_without_a_store_fails_the_job_in_stage_artifacts(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(
            QUEUE, {"command": ["echo", "ran"], "input_artifacts": ["dataset"]}
        )
        done = await wait_for_state(client, job["id"])
        record = await client.get_record(job["id"])
    assert done["state"] == "failed"
    assert record["result"]["failure_stage"] == "artifacts"
    reason = record["result"]["reason"]
    assert f"queue '{QUEUE}' has none" in reason and "artifact_store: {type: file" in reason
    assert "ran" not in await log_lines(client, job["id"])


async def test_code_artifact_is_the_jobs_code_pinned_in_the_record(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    store = file_store(tmp_path / "store")
    bundle = tmp_path / "bundle" / "src"
    bundle.mkdir(parents=True)
    (bundle / "train.py").write_text(
        "import pathlib\nprint('trained by the bundle')\n"
        "pathlib.Path('written-beside-the-code').write_text('ok')\n"
    )
    first = await store.upload(bundle.parent, "code-bundle")
    await store_queue(server, tmp_path / "store")
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(
            QUEUE, {"artifact": "code-bundle:latest", "workdir": "src", "entry_point": "train.py"}
        )
        done = await wait_for_state(client, job["id"])
        record = await client.get_record(job["id"])
    assert done["state"] == "succeeded", record["result"]
    assert "trained by the bundle" in await log_lines(client, job["id"])
    code = record["artifacts"]["code"]
    assert (code["name"], code["alias"], code["version"]) == ("code-bundle", "latest", "v0")
    assert code["digest"] == first.digest
    # the job wrote beside its code (a copy), and the cached version is untouched
    assert (
        tmp_path / "work" / f"{job['id']}-1" / "code" / "src" / "written-beside-the-code"
    ).exists()
    cached = tmp_path / "work" / ".artifact-cache" / cache_key(first.digest) / "files" / "src"
    assert sorted(p.name for p in cached.iterdir()) == ["train.py"]


async def test_a_wandb_slot_input_is_left_to_the_job_on_a_queue_without_a_store(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    # W&B's overrides.artifacts: the job's own wandb.use_artifact("dataset") swaps it in.
    spec = {
        "overrides": {
            "entry_point": ["sh", "-c", 'echo "ran ${LAUNCHPLANE_ARTIFACT_DATASET:-unmounted}"'],
            "artifacts": {"dataset": "acme/mnist/dataset:v2"},
        }
    }
    async with running_agent(server, tmp_path / "work", [QUEUE]):
        job = await client.submit_job(QUEUE, spec)
        done = await wait_for_state(client, job["id"])
        record = await client.get_record(job["id"])
    assert done["state"] == "succeeded", record["result"]
    assert "ran unmounted" in await log_lines(client, job["id"])
    assert record["artifacts"]["inputs"] == []
    assert record["spec"]["input_artifacts"][0]["slot"] == "dataset"


async def test_submit_refuses_bad_artifact_names_aliases_and_paths(
    server: EmbeddedServer, client: LaunchplaneClient, tmp_path: Path
) -> None:
    await store_queue(server, tmp_path / "store")
    with pytest.raises(ValidationFailed) as caught:
        await client.submit_job(
            QUEUE,
            {
                "command": ["true"],
                "input_artifacts": [
                    {"name": "dataset", "alias": "a b"},
                    {"name": "x", "path": "../up"},
                    {"name": "y", "path": "output/y"},
                    "data.set",
                    "data_set",
                ],
                "output_artifacts": ["model-${HOME}", {"name": "m", "alias": "v2"}, "ok-${run_id}"],
            },
        )
    paths = {error["path"]: error["message"] for error in caught.value.errors}
    assert set(paths) == {
        "input_artifacts.0.alias",
        "input_artifacts.1.path",
        "input_artifacts.2.path",
        "input_artifacts.4",
        "output_artifacts.0.name",
        "output_artifacts.1.alias",
    }
    assert "only launch macros" in paths["output_artifacts.0.name"]
    assert "LAUNCHPLANE_ARTIFACT_DATA_SET" in paths["input_artifacts.4"]


async def test_one_digest_is_downloaded_once_and_a_killed_download_is_cleaned(
    tmp_path: Path,
) -> None:
    store = file_store(tmp_path / "store")
    version = await seed(store, tmp_path, "dataset", "shared")
    cache = ArtifactCache(tmp_path / "cache")
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid whose process is gone: the agent that left the partial was killed
    leftover = cache.root / f".partial-{cache_key(version.digest)}-{dead.pid}-0000"
    (leftover / "files").mkdir(parents=True)
    (leftover / "files" / "data.txt").write_text("half")

    fetched: list[tuple[Path, bool]] = []

    async def fetch() -> None:
        fetched.append(await cache.fetch(store, version))

    async with anyio.create_task_group() as jobs:  # three jobs of one agent at once
        for _ in range(3):
            jobs.start_soon(fetch)

    assert cache.downloads == 1
    assert sorted(hit for _, hit in fetched) == [False, True, True]
    assert {path for path, _ in fetched} == {cache.root / cache_key(version.digest) / "files"}
    assert (fetched[0][0] / "data.txt").read_text() == "shared"
    assert not leftover.exists()
    assert [p.name for p in cache.root.iterdir()] == [cache_key(version.digest)]


@pytest.mark.parametrize(
    ("runner", "refusal"),
    [
        ("kubernetes", "runner 'kubernetes' cannot mount the agent's download in a pod"),
        ("sagemaker", "not supported by runner 'sagemaker' yet"),
    ],
)
async def test_runners_without_mounts_refuse_input_artifacts_at_submit(
    runner: str, refusal: str, tmp_path: Path
) -> None:
    """Before any cluster or AWS call: no cluster is needed to see the refusal."""
    from launchplane.core.plugins import get_plugin_manager

    registry = get_plugin_manager()
    job = ResolvedJob.model_validate({"resource": runner, "command": ["true"]})
    ctx = JobContext(job_id="j", run_id="j-1", attempt=1, queue=QUEUE, workdir=tmp_path)
    ctx.mounts.append(Mount(tmp_path, "artifacts/dataset", "LAUNCHPLANE_ARTIFACT_DATASET"))
    with pytest.raises(PluginError, match=refusal):
        await registry.runner(runner).submit(job, Image("img:1"), ctx)
