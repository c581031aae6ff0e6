"""Launch facts: what one agent's recorder knew, taken back whole by another, or not at all."""

from __future__ import annotations

import json
from typing import Any

import pytest

from launchplane.agent.records import RunRecorder
from launchplane.core.interfaces import Image, RunState
from launchplane.core.spec import ResolvedJob


def recorder() -> RunRecorder:
    return RunRecorder(
        job_id="j1",
        attempt=1,
        run_id="j1-1",
        queue="q",
        queue_version=3,
        agent_id="box",
        host="host",
        job=ResolvedJob(workdir="/srv/code"),
    )


def record(recorder: RunRecorder) -> dict[str, Any]:
    built = recorder.build(
        state=RunState.SUCCEEDED, exit_code=0, failure_stage=None, reason=None, plugins={}
    )
    del built["timestamps"]["finished"]
    return built


def test_launch_facts_restored_give_the_same_record() -> None:
    launching = recorder()
    for stage in ("claimed", "resolving", "building", "running"):
        launching.mark(stage)
    launching.commit, launching.dirty = "0" * 40, True
    launching.image = Image("registry.example/app:1", "sha256:" + "a" * 64, built=True)
    launching.builder = "docker"
    launching.env_names, launching.secret_names = ["RUN_LABEL", "LAUNCHPLANE_RUN_ID"], ["TOKEN"]
    adopting = recorder()
    adopting.mark("claimed")  # the adopting agent's own claim is later

    adopting.restore(json.loads(json.dumps(launching.launch_facts())))

    assert record(adopting) == record(launching)
    assert record(adopting)["code"]["dirty"] is True
    assert record(adopting)["image"]["pinned"] == "registry.example/app@sha256:" + "a" * 64


@pytest.mark.parametrize(
    "damage",
    [
        {"version": 2},
        {"commit": 7},
        {"dirty": "yes"},
        {"image": {"digest": None, "built": False}},
        {"image": "app:1"},
        {"env": ["A", 1]},
        {"secrets": "TOKEN"},
        {"timestamps": {"launched": "2025-01-01T00:00:00Z"}},
        {"timestamps": {"running": 5}},
    ],
)
def test_malformed_launch_facts_are_refused_and_change_nothing(damage: dict[str, Any]) -> None:
    launching = recorder()
    launching.mark("running")
    launching.commit, launching.builder = "0" * 40, "noop"
    facts = {**launching.launch_facts(), **damage}
    adopting = recorder()
    before = record(adopting)

    with pytest.raises(ValueError, match="launch facts"):
        adopting.restore(facts)

    assert record(adopting) == before
