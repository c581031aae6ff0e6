"""What counts as unpinned, the pinned spec of a record, and its hash (``core/pins.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from launchplane.core.pins import (
    Pins,
    pinned_spec,
    pinned_spec_from_record,
    record_spec_hash,
    requirement_unpinned,
    spec_hash,
    unpinned_inputs,
)
from launchplane.core.spec import ResolvedJob

DIGEST = "sha256:" + "a" * 64
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def paths(job: dict[str, Any], code_root: Path | None = None) -> dict[str, str]:
    return {
        item.path: item.message
        for item in unpinned_inputs(ResolvedJob.model_validate(job), code_root)
    }


@pytest.mark.parametrize(
    ("job", "path", "said"),
    [
        ({"input_artifacts": ["data:latest"]}, "input_artifacts[0]", "data:latest names an alias"),
        ({"input_artifacts": ["data"]}, "input_artifacts[0]", "no alias, so it means data:latest"),
        (
            {"input_artifacts": [{"name": "data", "alias": "best", "path": "/in"}]},
            "input_artifacts[0]",
            "pin a version (data:vN",
        ),
        ({"artifact": "code:latest"}, "artifact", "code:latest names an alias"),
        ({"git": {"repository": "r", "branch": "main"}}, "git.branch", "set git.commit"),
        ({"git": {"repository": "r"}}, "git.commit", "default branch"),
        ({"docker": {"image": "python:3.11"}}, "docker.image", "python@sha256:..."),
        (
            {"docker": {"image": "reg:5000/team/img:1"}},
            "docker.image",
            "reg:5000/team/img@sha256:",
        ),
        ({"builder": {"base_image": "ubuntu:22.04"}}, "builder.base_image", "pin it by digest"),
        (
            {"builder": {"accelerator": {"base_image": "nvidia/cuda:12.1"}}},
            "builder.accelerator.base_image",
            "nvidia/cuda@sha256:",
        ),
        ({"requirements": ["a==1", "b==2", "c", "torch>=2"]}, "requirements[3]", "'torch>=2'"),
    ],
)
def test_each_unpinned_kind_has_its_warning(job: dict[str, Any], path: str, said: str) -> None:
    found = paths(job)
    assert path in found, found
    assert said in found[path]


def test_requirements_lists_each_unpinned_line() -> None:
    found = paths({"requirements": ["a==1", "b", "c>=1", "d==1.*"]})
    assert set(found) == {"requirements[1]", "requirements[2]", "requirements[3]"}


def test_pinned_forms_produce_no_warning() -> None:
    job = {
        "git": {"repository": "r", "branch": "main", "commit": COMMIT},
        "docker": {"image": f"python@{DIGEST}"},
        "builder": {
            "base_image": f"ubuntu:22.04@{DIGEST}",
            "accelerator": {"base_image": f"cuda@{DIGEST}"},
        },
        "input_artifacts": ["data:v3", {"name": "model", "alias": "v0", "path": "/m"}],
        "artifact": "code:v12",
        "requirements": ["numpy==1.26.4", "torch===2.1.0+cpu", "x==1 ; python_version<'4'"],
    }
    assert paths(job) == {}


def test_a_dockerfile_job_names_its_image_rather_than_pulling_it() -> None:
    assert paths({"docker": {"image": "mine:dev", "dockerfile": "Dockerfile"}}) == {}


@pytest.mark.parametrize(
    ("line", "unpinned"),
    [
        ("numpy==1.26.4", False),
        ("numpy == 1.26.4  # the one we test", False),
        ("numpy>=1.20", True),
        ("numpy", True),
        ("numpy==1.*", True),
        ("numpy~=1.26", True),
        ("numpy --hash=sha256:abcd", False),
        ("# a comment", False),
        ("", False),
        ("-r other.txt", False),
        ("--index-url https://example.com/simple", False),
        ("-e git+https://h/r.git@main#egg=r", True),
        (f"-e git+https://h/r.git@{COMMIT}#egg=r", False),
        ("r @ git+https://h/r.git@main", True),
        (f"r @ git+https://h/r.git@{COMMIT}", False),
        ("r @ https://h/r-1.0.tar.gz#sha256=abc", False),
        ("./local/package", True),
    ],
)
def test_requirement_lines(line: str, unpinned: bool) -> None:
    assert requirement_unpinned(line) is unpinned


def test_requirements_txt_of_the_code_root_by_line_number(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "# deps\nnumpy==1.26.4\npandas\n\ntorch \\\n  --hash=sha256:abc\nscipy>=1\n"
    )
    found = paths({}, tmp_path)
    assert set(found) == {"requirements.txt:3", "requirements.txt:7"}
    assert "'pandas' is not pinned" in found["requirements.txt:3"]
    assert paths({}, tmp_path / "elsewhere") == {}


# -- the pinned spec and its hash -------------------------------------------------------


def resolved(**fields: Any) -> dict[str, Any]:
    return ResolvedJob.model_validate({"queue": "q", **fields}).model_dump(mode="json")


def record(spec: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {"spec": spec, "code": None, "image": None, **sections}


def test_hash_is_over_canonical_json_whatever_the_key_order() -> None:
    spec = resolved(hyperparameters={"lr": 0.1, "epochs": 3}, env={"A": "1", "B": "2"})
    shuffled = json.loads(json.dumps(spec, sort_keys=True))
    reversed_keys = {key: shuffled[key] for key in reversed(list(shuffled))}
    reversed_keys["hyperparameters"] = {"epochs": 3, "lr": 0.1}
    assert spec_hash(pinned_spec(spec, Pins())) == spec_hash(pinned_spec(reversed_keys, Pins()))
    assert spec_hash(pinned_spec(spec, Pins())).startswith("sha256:")
    assert len(spec_hash(pinned_spec(spec, Pins()))) == len("sha256:") + 64


def test_hash_changes_with_a_hyperparameter() -> None:
    one = resolved(hyperparameters={"lr": 0.1})
    two = resolved(hyperparameters={"lr": 0.2})
    assert spec_hash(pinned_spec(one, Pins())) != spec_hash(pinned_spec(two, Pins()))


def test_per_submission_fields_are_not_in_the_hash() -> None:
    base = resolved(hyperparameters={"lr": 0.1}, secrets={"TOKEN": "env:A"})
    other = {
        **base,
        "queue": "elsewhere",
        "priority": "critical",
        "author": "someone",
        "wandb_run_id": "abc",
        "sweep_id": "s1",
        "secrets": {"TOKEN": "<hidden>"},  # as a submitter sees it
        "secret_providers": {"vault": {"address": "x"}},
    }
    assert record_spec_hash(record(base)) == record_spec_hash(record(other))
    renamed = {**base, "secrets": {"OTHER": "env:A"}}
    assert record_spec_hash(record(base)) != record_spec_hash(record(renamed))


def test_a_branch_run_hashes_as_its_commit() -> None:
    """The record of a branch run and a job that names the commit: the same code, one hash."""
    by_branch = record(
        resolved(git={"repository": "https://h/r.git", "branch": "main"}),
        code={"commit": COMMIT, "dirty": False},
    )
    by_commit = record(
        resolved(git={"repository": "https://h/r.git", "commit": COMMIT}),
        code={"commit": COMMIT, "dirty": False},
    )
    pinned = pinned_spec_from_record(by_branch)
    assert pinned is not None
    assert pinned["git"] == {"repository": "https://h/r.git", "commit": COMMIT, "patch": None}
    assert record_spec_hash(by_branch) == record_spec_hash(by_commit)
    moved = {**by_branch, "code": {"commit": "f" * 40, "dirty": False}}
    assert record_spec_hash(moved) != record_spec_hash(by_branch)


def test_image_by_digest_and_artifact_versions_replace_tag_and_alias() -> None:
    spec = resolved(
        docker={"image": "reg/img:1"},
        input_artifacts=["data:latest", {"name": "model", "path": "/m"}],
    )
    facts = {
        "image": {"ref": "reg/img:1", "digest": DIGEST, "pinned": f"reg/img@{DIGEST}"},
        "artifacts": {
            "inputs": [
                {"name": "data", "alias": "latest", "version": "v4", "digest": "sha256:d"},
                {"name": "model", "alias": None, "version": "v0", "digest": "sha256:m"},
            ]
        },
    }
    pinned = pinned_spec_from_record(record(spec, **facts))
    assert pinned is not None
    assert pinned["docker"]["image"] == f"reg/img@{DIGEST}"
    assert [(a["alias"], a["digest"]) for a in pinned["input_artifacts"]] == [
        ("v4", "sha256:d"),
        ("v0", "sha256:m"),
    ]
    # A job that names those versions and that digest pins the same inputs.
    again = resolved(
        docker={"image": f"reg/img@{DIGEST}"},
        input_artifacts=["data:v4", {"name": "model", "alias": "v0", "path": "/m"}],
    )
    assert record_spec_hash(record(again, **facts)) == record_spec_hash(record(spec, **facts))
    other_data = json.loads(json.dumps(facts))
    other_data["artifacts"]["inputs"][0].update(version="v5", digest="sha256:e")
    assert record_spec_hash(record(spec, **other_data)) != record_spec_hash(record(spec, **facts))


def test_inputs_the_agent_did_not_resolve_keep_their_names_and_do_not_shift_the_pins() -> None:
    # The record lists only what the agent resolved: not an s3:// input the runner reads,
    # nor a W&B slot the job's own SDK fetches.
    spec = resolved(
        input_artifacts=[
            "s3://bucket/raw",
            {"name": "acme/p/labels", "slot": "labels"},
            "data:latest",
        ],
    )
    inputs = [{"name": "data", "alias": "latest", "version": "v4", "digest": "sha256:d"}]
    pinned = pinned_spec_from_record(record(spec, artifacts={"inputs": inputs}))
    assert pinned is not None
    assert [(a["name"], a.get("alias"), a.get("digest")) for a in pinned["input_artifacts"]] == [
        ("s3://bucket/raw", None, None),
        ("acme/p/labels", None, None),
        ("data", "v4", "sha256:d"),
    ]


def test_an_image_the_run_built_is_not_put_in_the_spec() -> None:
    spec = resolved(docker={"image": "mine:dev"})
    image = {"ref": "mine:dev", "digest": DIGEST, "pinned": f"mine@{DIGEST}", "built": True}
    built = {"image": image}
    pinned = pinned_spec_from_record(record(spec, **built))
    assert pinned is not None and pinned["docker"]["image"] == "mine:dev"


def test_a_workdir_run_hashes_its_commit_and_dirtiness() -> None:
    spec = resolved(workdir="/srv/code")
    clean = record(spec, code={"commit": COMMIT, "dirty": False})
    dirty = record(spec, code={"commit": COMMIT, "dirty": True})
    pinned = pinned_spec_from_record(clean)
    assert pinned is not None and pinned["workdir_git"] == {"commit": COMMIT, "dirty": False}
    assert record_spec_hash(clean) != record_spec_hash(dirty)


def test_a_record_without_spec_has_no_hash() -> None:
    assert record_spec_hash({"spec": None}) is None


def test_the_run_record_carries_the_hash_of_its_pinned_spec() -> None:
    from launchplane.agent.records import RunRecorder
    from launchplane.core.interfaces import Image

    recorder = RunRecorder(
        job_id="j1",
        attempt=1,
        run_id="j1-1",
        queue="q",
        queue_version=3,
        agent_id="box",
        host="host",
        job=ResolvedJob(git={"repository": "https://u:p@h/r.git", "branch": "main"}),
        commit=COMMIT,
        image=Image("reg/img:1", DIGEST),
    )
    built = recorder.build(
        state="succeeded", exit_code=0, failure_stage=None, reason=None, plugins={}
    )
    assert built["spec_hash"] == record_spec_hash(built)
    by_commit = ResolvedJob(git={"repository": "https://h/r.git", "commit": COMMIT})
    recorder.job = by_commit
    again = recorder.build(
        state="succeeded", exit_code=0, failure_stage=None, reason=None, plugins={}
    )
    assert again["spec_hash"] == built["spec_hash"]
