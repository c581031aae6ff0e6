"""Guardrails (issue 15) under a submit-time fuzz: no input reaches the agent's env or escapes.

hypothesis draws template values, env names and values, and workdirs; each
job is resolved exactly as the server resolves a submitter's job
(``resolve_job``, which ``POST /jobs`` calls; no server in the loop, so that
thousands of examples run in seconds). For every job that is accepted:

* expanding it as the agent does - with an agent environment that holds a
  canary token, given to every field, not only ``env`` - never yields the
  canary (no value forms a ``${NAME}``, alone or next to the queue's text);
* a templated command has exactly the queue's words (a value is one word);
* no env name a deny-list pattern covers got through;
* the workdir is inside the checkout or inside the queue's root.
"""

from __future__ import annotations

import json
import posixpath

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launchplane.core.config import resolve_job
from launchplane.core.config.envnames import DENIED, HARMLESS, matches
from launchplane.core.config.macros import expand_macros
from launchplane.core.errors import ConfigError

CANARY = "canary-agent-token-5f1c"
AGENT_ENV = {"LAUNCHPLANE_TOKEN": CANARY, "HOME": CANARY, "A": CANARY, "x": CANARY}
MACROS = {"run_id": "r-1", "job_id": "j", "queue": "q", "project": "p", "entity": "e"}
ROOT = "/srv/shared"

# Text made mostly of the characters that build references and placeholders.
syntax = st.text(alphabet="${}AH_Ex.LAUNCHPLANE_TOKEN-{{ }}'\" \\", max_size=24)

TEMPLATED_QUEUE = {
    "command": "python train.py --a {{a}} {{a}}{{b}} pre-{{b}}",
    "args": ["{{a}}{{b}}", "$${{{a}}}", "${{b}}"],
    "env": {"ONE": "{{a}}{{b}}", "TWO": "${{{a}}}{{b}}", "THREE": "$$${{b}}"},
    "resource_args": {"docker": {"labels": {"l": "{{a}}${run_id}{{b}}"}}},
    "template_variables": {"a": {"type": "string"}, "b": {"type": "string"}},
}
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def agent_view(job: dict[str, object]) -> str:
    """The job as the agent would launch it, every field expanded with the agent's env."""
    expanded = expand_macros(job, MACROS, AGENT_ENV, keep_missing=True)
    return json.dumps(expanded)


@FUZZ
@given(a=syntax, b=syntax)
def test_template_values_never_reach_the_agent_env_nor_add_words(a: str, b: str) -> None:
    try:
        resolved = resolve_job(TEMPLATED_QUEUE, {"template_variables": {"a": a, "b": b}})
    except ConfigError:
        return  # refused: nothing reaches the agent
    shown = resolved.model_dump(
        mode="json", include={"command", "args", "env", "resource_args", "entry_point"}
    )
    assert CANARY not in agent_view(shown)
    assert resolved.command is not None and len(resolved.command) == 6


env_names = st.one_of(
    st.sampled_from([pattern.rstrip("*") for pattern, _ in DENIED]).flatmap(
        lambda stem: st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", max_size=6).map(
            lambda tail: stem + tail
        )
    ),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_abc0", min_size=1, max_size=12),
)


@FUZZ
@given(env=st.dictionaries(env_names, syntax, max_size=4))
def test_env_names_and_values_never_escape(env: dict[str, str]) -> None:
    try:
        resolved = resolve_job({}, {"env": env})
    except ConfigError:
        return
    for name in resolved.env:
        assert name in HARMLESS or not any(matches(name, p) for p, _ in DENIED), name
    assert CANARY not in agent_view({"env": resolved.env})


workdirs = st.lists(
    st.sampled_from(["..", ".", "src", "", "~", "srv", "shared", "etc", "a..b"]), max_size=6
).flatmap(
    lambda parts: st.sampled_from(["", "/", "/srv/shared/"]).map(
        lambda head: head + "/".join(parts)
    )
)


@FUZZ
@given(workdir=workdirs, with_git=st.booleans(), with_root=st.booleans())
def test_workdirs_stay_in_the_checkout_or_the_root(
    workdir: str, with_git: bool, with_root: bool
) -> None:
    roots = [ROOT] if with_root else []
    queue = {"guardrails": {"workdir_roots": roots}} if roots else {}
    job: dict[str, object] = {"workdir": workdir}
    if with_git:
        job["git"] = {"repository": "https://example.com/r.git"}
    try:
        resolved = resolve_job(queue, job)
    except ConfigError:
        return
    given_dir = resolved.workdir or ""
    assert not given_dir.startswith("~")
    if posixpath.isabs(given_dir):
        normal = posixpath.normpath(given_dir)
        assert any(normal == root or normal.startswith(root + "/") for root in roots), normal
    else:
        placed = posixpath.normpath(posixpath.join("/checkout", given_dir))
        assert placed == "/checkout" or placed.startswith("/checkout/")
