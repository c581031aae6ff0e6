"""What pins a job's inputs, what does not, and the hash of a run's pinned spec.

A run is reproducible when every input it reads is named by something that
cannot move: code by commit, images by digest, artifacts by version,
requirements by ``==``. :func:`unpinned_inputs` lists each input that is not
(``plan`` and submit show them as warnings; ``--strict-pins`` and a queue's
``guardrails.require_pins`` make them errors).

A run's record says what its moving names resolved to (``code.commit``,
``image.pinned``, ``artifacts.inputs[i].version``/``digest``).
:func:`pinned_spec` puts those into the resolved spec and drops what belongs
to one submission rather than to the computation (:data:`PER_RUN`); its
:func:`spec_hash` is the ``spec_hash`` of the record. Two runs with equal
hashes ran the same code, image, data, configuration and runner settings.
``launchplane reproduce`` submits a run again with those pins, so the new run's
hash equals the old one's (``docs/configuration.md``, "Pinning and reproduce").
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launchplane.core.errors import ConfigError, FieldError
from launchplane.core.interfaces import ARTIFACT_VERSION
from launchplane.core.spec import ArtifactRef, ResolvedJob

REQUIREMENTS_TXT = "requirements.txt"
DIGEST = "@sha256:"
PER_RUN = ("queue", "priority", "author", "wandb_run_id", "sweep_id", "secret_providers")
"""Fields of the resolved spec left out of the pinned spec (and its hash).

``queue`` and ``priority`` say where and in which order a job waits, not what it
computes (a run reproduced on another queue with the same settings has the same
hash); ``author`` is who submitted it; ``wandb_run_id`` and ``sweep_id`` name the W&B
run and sweep it reported to (a reproduction is a new W&B run). ``secret_providers``
are provider options only admins may see; ``secrets`` keep their variable names but
not their references, for the same reason (a secret's value is never pinned anyway).
"""
_FULL_COMMIT = re.compile(r"@[0-9a-f]{40}\b")


class UnpinnedInputWarning(UserWarning):
    """``launchplane.submit``'s warning for each unpinned input the server listed."""


@dataclass(frozen=True)
class Unpinned:
    """One input that can change between two runs of the same spec, and how to pin it."""

    path: str
    """Where it is: ``git.branch``, ``input_artifacts[0]``, ``requirements.txt:5``."""
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def unpinned_inputs(
    job: ResolvedJob | Mapping[str, Any], code_root: Path | None = None
) -> list[Unpinned]:
    """Every input of ``job`` that is named by something that can move, in field order.

    ``job`` is a :class:`ResolvedJob` or its JSON form (``model_dump(mode="json")``,
    as the server stores it). With ``code_root`` (the job's code on this machine),
    the unpinned lines of its ``requirements.txt`` are listed too.
    """
    spec = job.model_dump(mode="json") if isinstance(job, ResolvedJob) else job
    found = [
        *_git_unpinned(spec.get("git")),
        *_artifact_unpinned("artifact", spec.get("artifact")),
        *_image_unpinned(spec),
        *(
            item
            for index, ref in enumerate(spec.get("input_artifacts") or ())
            for item in _artifact_unpinned(f"input_artifacts[{index}]", ref)
        ),
        *(
            Unpinned(f"requirements[{index}]", _requirement_message(line))
            for index, line in enumerate(spec.get("requirements") or ())
            if requirement_unpinned(line)
        ),
    ]
    if code_root is not None:
        found += requirements_file_unpinned(code_root)
    return found


def refuse_unpinned(found: Sequence[Unpinned], why: str, *, source: str | None = None) -> None:
    """Raise one ConfigError naming each unpinned input and its fix, ``why`` after each
    (``--strict-pins``, or the queue's ``guardrails.require_pins``); nothing when none."""
    if found:
        errors = [FieldError(item.path, f"{item.message} ({why})") for item in found]
        raise ConfigError(errors, source=source)


def requirements_file_unpinned(code_root: Path) -> list[Unpinned]:
    """The unpinned lines of ``code_root/requirements.txt`` (``requirements.txt:LINE``).

    Builders install that file when the code has one; an agent can check it only
    after the checkout, a submitter before submitting local code.
    """
    path = code_root / REQUIREMENTS_TXT
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [
        Unpinned(f"{REQUIREMENTS_TXT}:{number}", _requirement_message(line))
        for number, line in _logical_lines(text)
        if requirement_unpinned(line)
    ]


@functools.lru_cache(maxsize=8192)
def requirement_unpinned(line: str) -> bool:
    """Whether one requirements line can install different code on another day.

    Pinned: ``name==1.2.3`` (not ``==1.*``), ``name===x``, any line with a
    ``--hash``, a direct URL with a full commit (``@<40 hex>``) or a
    ``#sha256=``. Options other than ``-e`` (``-r other.txt``, ``--index-url``),
    comments and blank lines are not requirements. Cached: the server judges every
    job it answers with, and jobs of one project share their requirement lines.
    """
    text = _without_comment(line)
    if not text or "--hash" in text:
        return False
    if text.startswith("-"):
        if not text.startswith(("-e", "--editable")):
            return False
        return not _url_pinned(text)
    spec = text.split(";", 1)[0]
    if "://" in spec or spec.startswith(("git+", "file:", ".", "/")):
        return not _url_pinned(spec)
    if "===" in spec:
        return False
    return not re.search(r"==\s*[^,*\s]+(?:,|$|\s)", spec + " ")


def _url_pinned(text: str) -> bool:
    return bool(_FULL_COMMIT.search(text)) or "sha256=" in text


def _without_comment(line: str) -> str:
    text = line.strip()
    if "#" not in text:
        return text
    if text.startswith("#"):
        return ""
    return re.split(r"\s#", text, maxsplit=1)[0].strip()


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines of a requirements file joined across ``\\`` continuations, with their first number."""
    pending: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending.append(line.rstrip()[:-1])
            continue
        yield start, " ".join([*pending, line])
        pending = []
    if pending:
        yield start, " ".join(pending)


def _requirement_message(line: str) -> str:
    return (
        f"{_without_comment(line)!r} is not pinned: a new release can install other code; "
        "pin it with == (pip freeze prints what is installed), or add --hash"
    )


def _git_unpinned(git: Mapping[str, Any] | None) -> list[Unpinned]:
    if not git or git.get("commit"):
        return []
    if git.get("branch"):
        return [
            Unpinned(
                "git.branch",
                f"branch {git['branch']!r} without a commit runs whatever the branch points "
                "at when the job starts; set git.commit (the run's record shows the commit "
                "it checked out)",
            )
        ]
    return [
        Unpinned(
            "git.commit",
            "no commit: the repository's default branch is checked out at launch; set "
            "git.commit (the run's record shows the commit it checked out)",
        )
    ]


def _artifact_unpinned(path: str, ref: Any) -> list[Unpinned]:
    if ref is None:
        return []
    if isinstance(ref, str):  # the code ``artifact:`` is a "name:alias" string
        name, alias = _artifact_name(ref)
    else:
        name, alias = str(ref.get("name")), ref.get("alias") or ""
    if ARTIFACT_VERSION.match(alias):
        return []
    said = (
        f"{name!r} has no alias, so it means {name}:latest"
        if not alias
        else (f"{name}:{alias} names an alias, which can move to another version")
    )
    return [
        Unpinned(
            path,
            f"{said}; pin a version ({name}:vN; the run's record shows the version it resolved)",
        )
    ]


def _artifact_name(text: str) -> tuple[str, str]:
    """``(name, alias)`` of ``name:alias`` as :class:`ArtifactRef` splits it (a URI's
    ``scheme://`` is not an alias); the alias is ``""`` when there is none."""
    ref = ArtifactRef.model_validate(text)
    return ref.name, ref.alias or ""


def _image_unpinned(spec: Mapping[str, Any]) -> list[Unpinned]:
    docker = spec.get("docker") or {}
    builder = spec.get("builder") or {}
    accelerator = builder.get("accelerator") or {}
    images = [
        ("docker.image", docker.get("image") if not docker.get("dockerfile") else None),
        ("builder.base_image", builder.get("base_image")),
        ("builder.accelerator.base_image", accelerator.get("base_image")),
    ]
    return [
        Unpinned(
            path,
            f"{image!r} is a tag, which can be pushed again with other content; pin it by "
            f"digest ({_repository(image)}@sha256:...; `docker buildx imagetools inspect "
            f"{image}` prints it)",
        )
        for path, image in images
        if image and DIGEST not in image
    ]


def _repository(image: str) -> str:
    """``registry:5000/name`` of ``registry:5000/name:tag`` (a port is not a tag)."""
    head, _, last = image.rpartition("/")
    name = last.split(":", 1)[0]
    return f"{head}/{name}" if head else name


# -- the pinned spec and its hash -------------------------------------------------------


@dataclass(frozen=True)
class Pins:
    """What a run learned about its moving names: the facts its record keeps."""

    commit: str | None = None
    """``code.commit``: the commit checked out (git), or a local workdir's HEAD."""
    dirty: bool | None = None
    """``code.dirty``: the code was not exactly ``commit`` (a patch, local changes)."""
    image: str | None = None
    """``image.pinned`` when it is by digest and the run did not build it."""
    inputs: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    """``artifacts.inputs``: per input artifact, in order, ``version`` and ``digest``."""
    code_artifact: Mapping[str, Any] | None = None
    """``artifacts.code``: the code ``artifact:``'s ``version`` and ``digest``, if any."""


def pins_from_record(record: Mapping[str, Any]) -> Pins:
    """The :class:`Pins` of a run record (whichever of its sections exist)."""
    code = record.get("code") or {}
    image = record.get("image") or {}
    artifacts = record.get("artifacts") or {}
    pinned = image.get("pinned")
    by_digest = isinstance(pinned, str) and DIGEST in pinned and not image.get("built")
    return Pins(
        commit=code.get("commit"),
        dirty=code.get("dirty"),
        image=pinned if by_digest else None,
        inputs=tuple(artifacts.get("inputs") or ()),
        code_artifact=artifacts.get("code"),
    )


def with_pins(spec: Mapping[str, Any], pins: Pins) -> dict[str, Any]:
    """A copy of ``spec`` whose moving names are what the run resolved them to.

    ``git.commit`` the commit checked out (the branch is kept: it is where the
    commit came from), ``docker.image`` the image by digest when the run pulled one
    it did not build, ``input_artifacts[i].alias`` and the code ``artifact``'s alias
    the version each resolved to. A job with these fields runs the same inputs
    (``launchplane reproduce`` submits them).
    """
    pinned = copy.deepcopy(dict(spec))
    git = pinned.get("git")
    if isinstance(git, dict) and pins.commit:
        git["commit"] = pins.commit
    docker = pinned.get("docker")
    if isinstance(docker, dict) and docker.get("image") and pins.image:
        docker["image"] = pins.image
    for ref, facts in _input_pins(pinned.get("input_artifacts"), pins.inputs):
        ref["alias"] = facts["version"]
    code = pins.code_artifact
    if isinstance(pinned.get("artifact"), str) and code and code.get("version"):
        pinned["artifact"] = f"{_artifact_name(pinned['artifact'])[0]}:{code['version']}"
    return pinned


def _input_pins(
    refs: Any, inputs: Sequence[Mapping[str, Any]]
) -> Iterator[tuple[dict[str, Any], Mapping[str, Any]]]:
    """Each input ref of a spec with the record entry that pinned it, matched by name in
    order: the record lists only what the agent resolved (not an ``s3://`` input a runner
    reads itself, nor a W&B slot the job's SDK fetches), so positions need not agree."""
    pending = [facts for facts in inputs if isinstance(facts, Mapping) and facts.get("version")]
    for ref in refs or ():
        if not isinstance(ref, dict):
            continue
        match = next((facts for facts in pending if facts.get("name") == ref.get("name")), None)
        if match is not None:
            pending.remove(match)
            yield ref, match


def pinned_spec(spec: Mapping[str, Any], pins: Pins) -> dict[str, Any]:
    """``spec`` (a resolved job's JSON) :func:`with_pins`, in the one form that is hashed.

    Beyond :func:`with_pins`:

    * ``git.branch`` is dropped when the commit is known (the commit decides the
      code; the branch only found it), so a job by branch and one by its commit agree;
    * a local ``workdir``'s commit and dirtiness go in ``workdir_git``;
    * each pinned input artifact gets its ``digest`` (the code ``artifact``:
      ``artifact_digest``);
    * ``secrets`` are their names only, and the :data:`PER_RUN` fields are gone.

    Macros (``${run_id}``) stay unexpanded, as the spec keeps them: every run
    derives them again. The result is for hashing and comparing, not a job to submit.
    """
    pinned = with_pins(spec, pins)
    for key in PER_RUN:
        pinned.pop(key, None)
    pinned["secrets"] = sorted(pinned.get("secrets") or ())
    git = pinned.get("git")
    if isinstance(git, dict) and pins.commit:
        git.pop("branch", None)
    elif git is None and pinned.get("workdir") and pins.commit:
        pinned["workdir_git"] = {"commit": pins.commit, "dirty": bool(pins.dirty)}
    for ref, facts in _input_pins(pinned.get("input_artifacts"), pins.inputs):
        ref["digest"] = facts.get("digest")
    code = pins.code_artifact
    if isinstance(pinned.get("artifact"), str) and code and code.get("version"):
        pinned["artifact_digest"] = code.get("digest")
    return pinned


def pinned_spec_from_record(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pinned spec of a run record; None when the record has no spec (nothing ran)."""
    spec = record.get("spec")
    if not isinstance(spec, Mapping):
        return None
    return pinned_spec(spec, pins_from_record(record))


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: one text per value, whatever its key order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_hash(pinned: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of a pinned spec's canonical JSON."""
    return "sha256:" + hashlib.sha256(canonical_json(pinned).encode("utf-8")).hexdigest()


def record_spec_hash(record: Mapping[str, Any]) -> str | None:
    """The ``spec_hash`` a run record should carry (None when it has no spec)."""
    pinned = pinned_spec_from_record(record)
    return spec_hash(pinned) if pinned is not None else None


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """The paths at which two pinned specs differ (why two hashes differ), sorted."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        found: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            child = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                found.append(child)
            else:
                found += differences(a[key], b[key], child)
        return found
    return [] if a == b else [path or "<root>"]
