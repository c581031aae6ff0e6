"""``launchplane reproduce RUN_ID``: submit a recorded run again, everything pinned.

The run's record holds its resolved spec and what the run's moving names
resolved to (``code.commit``, ``image.pinned``, ``artifacts.inputs``). The new
job is that spec with those pins - ``git.commit`` the commit checked out,
``docker.image`` the image by digest, each input artifact ``name:vN`` - the same
hyperparameters and the same template values.

The record's spec is the *resolved* job: the queue's fields are merged into it,
and a submitter may not set what the queue locks or fills from a template
variable, nor ``${NAME}`` references or queue settings, even to the same value.
So what is submitted is only the job-level part: the spec's differences from
the job that the queue resolves with no job at all (an empty job with the run's
template values), plus the pins. The queue's own fields come back from the
queue, as they did the first time. Where the queue's field now differs from the
run's and the queue protects it, it cannot be set: it is listed, and the
expected hash will differ.

The run's ``spec_hash`` (``launchplane.core.pins``) is what the new run's
record will carry when everything is pinned and the queue is unchanged;
``--plan`` shows the job, the template values and that hash without
submitting. What cannot be pinned (an image without a registry digest, a local
workdir that was dirty or is not in git, secrets whose values may have changed,
a queue field that changed) is listed with why; ``--strict-pins`` turns those
into exit status 2.

The server keeps one record per job, the one of its last attempt: RUN_ID is a
job id, or ``<job id>-<attempt>`` naming that last attempt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from launchplane.cli._output import json_option, server_options
from launchplane.cli._pins import echo_warnings, strict_pins_option

if TYPE_CHECKING:
    from launchplane.core.client import LaunchplaneClient
    from launchplane.core.pins import Unpinned

_RUN_ID = re.compile(r"(?P<job>.+-.+)-(?P<attempt>\d+)")
NOT_SUBMITTED = ("queue", "resource", "template_values", "wandb_run_id", "author", "sweep_id")
"""Fields of a record's spec that never go into the reproduced job.

The queue decides ``resource`` (and the queue-only settings); template values
go as template values; the W&B run id, sweep and author belong to the first
submission (the new run is a new W&B run, submitted by whoever reproduces it).
"""
_MODEL_FIELDS = ("git", "docker", "builder", "input_artifacts", "output_artifacts")
"""Fields whose ``null`` members are defaults of a model, not values the job set."""


@click.command("reproduce")
@click.argument("run_id", metavar="RUN_ID")
@click.option("--queue", "-q", help="Submit to this queue [default: the run's queue].")
@click.option(
    "--plan",
    "plan_only",
    is_flag=True,
    help="Print the job that would be submitted and the spec hash it should get; submit nothing.",
)
@strict_pins_option
@server_options
@json_option
def reproduce(
    run_id: str,
    queue: str | None,
    plan_only: bool,
    strict_pins: bool,
    server: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Submit the run RUN_ID again from its record, with everything pinned.

    \b
    RUN_ID is a job id or <job id>-<attempt> (the server keeps the record of a
    job's last attempt). Code at the recorded commit, the image by digest, input
    artifacts by recorded version, the same hyperparameters and template values.
    What cannot be pinned is listed (--strict-pins: exit status 2, nothing
    submitted). The new run's record should carry the same spec_hash.
    """
    from launchplane.cli._output import call, fail_invalid, print_json
    from launchplane.core.errors import ConfigError

    job_id, attempt = split_run_id(run_id)

    async def run(client: LaunchplaneClient) -> tuple[Reproduction, dict[str, Any] | None]:
        record = await client.get_record(job_id)
        _check_attempt(run_id, record, attempt)
        target = queue or (record.get("queue") or {}).get("name")
        if not target:
            raise ConfigError("the record names no queue: pass --queue")
        config = (await client.get_queue(target))["config"]
        plan = reproduction(record, config, target)
        if plan_only or (strict_pins and plan.unpinned):
            return plan, None
        submitted = await client.submit_job(
            target, plan.job, (), plan.template_variables, strict_pins=strict_pins
        )
        return plan, submitted

    plan, submitted = call(server, token, run)
    if strict_pins and plan.unpinned:
        from launchplane.core.pins import refuse_unpinned

        try:
            refuse_unpinned(plan.unpinned, "--strict-pins", source=f"{run_id} cannot be pinned")
        except ConfigError as exc:
            fail_invalid(exc)
    echo_warnings(plan.unpinned)
    document = plan.document(run_id)
    if submitted is not None:
        # The new job's own warnings, but those of the plan only once.
        known = {item.path for item in plan.unpinned}
        echo_warnings(w for w in submitted.get("warnings", ()) if w.split(": ")[0] not in known)
        document["submitted"] = submitted
    if as_json:
        print_json(document)
    elif plan_only:
        from launchplane.core.yamlsafe import dump_document

        click.echo(dump_document(document), nl=False)
    else:
        assert submitted is not None
        click.echo(
            f"submitted {submitted['id']} to queue {plan.queue} (reproduces {run_id}, "
            f"expected spec_hash {plan.expected_hash})"
        )


def split_run_id(run_id: str) -> tuple[str, int | None]:
    """``(job id, attempt)`` of ``<job id>-<attempt>``; ``(run_id, None)`` for a job id.

    A job id is ``j-<hex>``: its own ``-`` is not an attempt's.
    """
    found = _RUN_ID.fullmatch(run_id)
    if found is None:
        return run_id, None
    return found["job"], int(found["attempt"])


def _check_attempt(run_id: str, record: Mapping[str, Any], attempt: int | None) -> None:
    from launchplane.core.errors import ConfigError

    kept = record.get("attempt")
    if attempt is not None and kept != attempt:
        raise ConfigError(
            f"the server keeps the record of a job's last attempt only, here attempt {kept} "
            f"({record.get('run_id')}); reproduce {record.get('job_id')} instead",
            source=run_id,
        )
    if not isinstance(record.get("spec"), Mapping):
        raise ConfigError("the run's record has no spec (it ended before it was resolved)")


@dataclass
class Reproduction:
    """What ``reproduce`` submits, and what it could not pin."""

    queue: str
    job: dict[str, Any]
    template_variables: dict[str, Any]
    expected_hash: str | None
    """The spec hash the new run's record should carry: the run's own."""
    predicted_hash: str | None
    """The hash of the job as this queue resolves it now, with the run's pins."""
    unpinned: list[Unpinned] = field(default_factory=list)

    def document(self, run_id: str) -> dict[str, Any]:
        return {
            "reproduces": run_id,
            "queue": self.queue,
            "job": self.job,
            "template_variables": self.template_variables,
            "spec_hash": self.expected_hash,
            "predicted_spec_hash": self.predicted_hash,
            "unpinned": [str(item) for item in self.unpinned],
        }


def reproduction(
    record: Mapping[str, Any], queue_config: Mapping[str, Any], queue: str
) -> Reproduction:
    """The job that reproduces ``record``'s run on ``queue`` (whose config is ``queue_config``).

    Raises ConfigError when the queue cannot resolve a job with the run's template values.
    """
    from launchplane.core.config import resolve_job
    from launchplane.core.pins import (
        differences,
        pinned_spec,
        pins_from_record,
        record_spec_hash,
        spec_hash,
        with_pins,
    )

    spec: Mapping[str, Any] = record["spec"]
    pins = pins_from_record(record)
    config = _without_secret_values(queue_config)
    declared = config.get("template_variables") or {}
    recorded = spec.get("template_values") or {}
    values = {name: value for name, value in recorded.items() if name in declared}
    unpinned = _unpinnable(record, pins, queue, set(recorded) - set(values))
    wanted = with_pins(spec, pins)
    baseline = _safe(resolve_job(config, {}, (), values, queue_name=queue, trusted=True))
    job, removed = _job_layer(wanted, baseline)
    job, refused = _allowed(job, config)
    unpinned += [_unpinned(path, why) for path, why in [*removed, *refused]]
    predicted = _safe(resolve_job(config, job, (), values, queue_name=queue, trusted=True))
    predicted_pinned = pinned_spec(predicted, pins)
    original = pinned_spec(spec, pins)
    expected = record.get("spec_hash") or record_spec_hash(record)
    predicted_hash = spec_hash(predicted_pinned)
    if predicted_hash != expected:
        known = {item.path for item in unpinned}
        unpinned += [
            _unpinned(
                path,
                f"differs from the run's: queue {queue!r} gives it another value (its config "
                "changed since, or it is another queue)",
            )
            for path in differences(original, predicted_pinned)
            if path not in known and path.split(".")[0] not in known
        ]
    return Reproduction(queue, job, values, expected, predicted_hash, unpinned)


def _unpinned(path: str, message: str) -> Unpinned:
    from launchplane.core.pins import Unpinned

    return Unpinned(path, message)


def _without_secret_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """The queue config with secret references a resolution can read (a submitter sees
    ``<hidden>``): only their names reach the spec hash, so any reference will do."""
    result = dict(config)
    if isinstance(result.get("secrets"), Mapping):
        result["secrets"] = {name: f"env:{name}" for name in result["secrets"]}
    result.pop("secret_providers", None)
    return result


def _safe(resolved: Any) -> dict[str, Any]:
    """A resolved job as its record shows it: JSON, a git URL without credentials."""
    from launchplane.agent.gitcode import safe_url

    spec = resolved.model_dump(mode="json")
    if spec.get("git"):
        spec["git"]["repository"] = safe_url(spec["git"]["repository"])
    return spec


def _job_layer(
    wanted: Mapping[str, Any], baseline: Mapping[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The job layer that, merged onto ``baseline``, gives ``wanted``; and what it cannot remove.

    The merge rule (``core/config/merge.py``): mappings merge key by key, anything
    else replaces. So only the differing leaves of mappings are sent, and a list or
    scalar whole.
    """
    from launchplane.core.spec import QUEUE_ONLY_KEYS

    removed: list[tuple[str, str]] = []
    layer: dict[str, Any] = {}
    for key, value in wanted.items():
        if key in NOT_SUBMITTED or key in QUEUE_ONLY_KEYS:
            continue
        part = _difference(value, baseline.get(key), key, removed)
        if part is not _SAME:
            layer[key] = _without_model_nones(value, part) if key in _MODEL_FIELDS else part
    return layer, removed


_SAME = object()


def _difference(value: Any, base: Any, path: str, removed: list[tuple[str, str]]) -> Any:
    if value == base:
        return _SAME
    if not (isinstance(value, Mapping) and isinstance(base, Mapping)):
        return value
    part: dict[str, Any] = {}
    for key in base:
        if key not in value:
            removed.append((f"{path}.{key}", "the queue sets it now and a job cannot remove a key"))
    for key, child in value.items():
        found = _difference(child, base.get(key), f"{path}.{key}", removed)
        if found is not _SAME:
            part[key] = found
    return part if part else _SAME


def _without_model_nones(value: Any, part: Any) -> Any:
    """``part`` without the ``null`` fields of models (``git.branch: null``): they are the
    model's defaults, and setting one would touch a path the queue may lock."""
    if isinstance(part, list):
        return [_without_model_nones(None, item) for item in part]
    if isinstance(part, dict):
        return {
            key: item if key == "options" else _without_model_nones(None, item)
            for key, item in part.items()
            if item is not None
        }
    return part


def _allowed(
    job: dict[str, Any], config: Mapping[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``job`` without what the queue's guards refuse (locked, templated), and why each."""
    from launchplane.core.config.guards import guard_tree, submitter_layer
    from launchplane.core.config.keypath import parse_path
    from launchplane.core.config.queue_check import inspect_queue_config

    errors: list[Any] = []
    submitter_layer(job, guard_tree(inspect_queue_config(config)), None, errors)
    refused = []
    for error in errors:
        path = parse_path(error.path) if error.path else ()
        if _delete(job, path):
            refused.append((error.path, f"cannot be set ({error.message})"))
    return job, refused


def _delete(document: dict[str, Any], path: tuple[Any, ...]) -> bool:
    """Delete ``path`` and the mappings it leaves empty; False when it is not there."""
    nodes: list[dict[str, Any]] = [document]
    for key in path[:-1]:
        node = nodes[-1].get(key)
        if not isinstance(node, dict):
            return False
        nodes.append(node)
    if not path or path[-1] not in nodes[-1]:
        return False
    del nodes[-1][path[-1]]
    for parent, key in zip(reversed(nodes[:-1]), reversed(path[:-1]), strict=True):
        if parent[key]:
            break
        del parent[key]
    return True


def _unpinnable(
    record: Mapping[str, Any], pins: Any, queue: str, undeclared: set[str]
) -> list[Unpinned]:
    """What the record could not pin, each with why."""
    from launchplane.core.pins import unpinned_inputs, with_pins

    spec: Mapping[str, Any] = record["spec"]
    image = record.get("image") or {}
    found: dict[str, str] = {}
    git, docker = spec.get("git"), spec.get("docker") or {}
    if git and not pins.commit:
        found["git.commit"] = "the record has no commit (the run ended before its checkout)"
    if not git and spec.get("workdir"):
        found["workdir"] = _workdir_reason(pins)
    if docker.get("image") and not docker.get("dockerfile") and not pins.image:
        found["docker.image"] = (
            f"the run's image {image.get('pinned') or docker['image']!r} has no registry "
            "digest, so the tag runs whatever it names now; push the image and run it by "
            "digest"
        )
    if image.get("built"):
        found["image"] = (
            f"the run built its image ({image.get('pinned')}); a reproduction builds it "
            "again from the same code, so unpinned base images and requirements may differ"
        )
    for index, ref in enumerate(spec.get("input_artifacts") or ()):
        facts = pins.inputs[index] if index < len(pins.inputs) else {}
        if not facts.get("version"):
            name = ref.get("name") if isinstance(ref, Mapping) else ref
            found[f"input_artifacts[{index}]"] = (
                f"the record has no version of {name!r} (the run ended before it was resolved)"
            )
    if spec.get("secrets"):
        names = ", ".join(sorted(spec["secrets"]))
        found["secrets"] = f"values are read at launch ({names}) and may have changed"
    for name in sorted(undeclared):
        found[f"template_values.{name}"] = (
            f"queue {queue!r} declares no template variable {name!r}: its value is not used"
        )
    # What is still unpinned in the spec itself (a base image by tag, requirements).
    for item in unpinned_inputs(with_pins(spec, pins)):
        found.setdefault(item.path, item.message)
    return [_unpinned(path, message) for path, message in found.items()]


def _workdir_reason(pins: Any) -> str:
    if pins.commit is None:
        return (
            "a local directory outside a git work tree: nothing records its code, the "
            "reproduction runs whatever it holds now"
        )
    if pins.dirty:
        return (
            f"the directory had uncommitted changes (at commit {pins.commit}): they are not "
            "recorded, the reproduction runs whatever it holds now"
        )
    return (
        f"a local directory (at commit {pins.commit} then): the reproduction runs whatever "
        "it holds now; its record's code.commit says whether that is still the commit"
    )
