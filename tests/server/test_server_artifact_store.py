"""A queue names its artifact store: checked at create like a builder's options, queue-only."""

from __future__ import annotations

import pytest
from kit import QUEUE, claim_now

from launchplane.core.client import LaunchplaneClient, ValidationFailed
from launchplane.server.embedded import EmbeddedServer

pytestmark = pytest.mark.anyio


async def test_a_queue_with_a_file_store_is_accepted_and_resolved_into_its_jobs(
    server: EmbeddedServer, submitter: LaunchplaneClient, agent: LaunchplaneClient
) -> None:
    store = {"type": "file", "options": {"root": "/srv/artifacts"}}
    await server.ensure_queue(QUEUE, {"resource": "local-process", "artifact_store": store})
    await submitter.submit_job(QUEUE, {"command": ["true"]})
    lease = await claim_now(agent)
    assert lease.resolved.model_dump(mode="json")["artifact_store"] == store


@pytest.mark.parametrize(
    ("store", "path", "words"),
    [
        ({"type": "s3", "options": {}}, "artifact_store.options.bucket", "Field required"),
        ({"type": "file", "options": {"rot": "/x"}}, "artifact_store.options.rot", "root"),
        ({"type": "fiel"}, "artifact_store.type", "did you mean 'file'"),
    ],
)
async def test_a_store_the_agents_could_not_use_is_refused_naming_the_field(
    admin: LaunchplaneClient, store: dict, path: str, words: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await admin.create_queue(
            "bad-store", {"resource": "local-process", "artifact_store": store}
        )
    assert any(e["path"] == path and words in e["message"] for e in caught.value.errors), (
        caught.value.errors
    )


async def test_a_submitter_cannot_send_a_job_to_another_store(
    admin: LaunchplaneClient, submitter: LaunchplaneClient
) -> None:
    await admin.create_queue("stored", {"resource": "local-process"})
    job = {"command": ["true"], "artifact_store": {"type": "file", "options": {"root": "/tmp"}}}
    with pytest.raises(ValidationFailed) as caught:
        await submitter.submit_job("stored", job)
    assert any(e["path"] == "artifact_store" for e in caught.value.errors), caught.value.errors
