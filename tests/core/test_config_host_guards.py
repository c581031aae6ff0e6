"""The queue's ``guardrails:`` keys and how git URLs and workdirs are classified."""

from __future__ import annotations

import pytest

from launchplane.core.config import resolve_job
from launchplane.core.config.host_guards import remote_kind
from launchplane.core.config.queue_check import check_queue_config
from launchplane.core.errors import ConfigError


def test_guardrails_is_a_queue_setting() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_job({}, {"guardrails": {"workdir_roots": ["/"]}})
    assert [(e.path, e.message) for e in caught.value.errors] == [
        ("guardrails", "is a queue setting that only an admin can change")
    ]


@pytest.mark.parametrize(
    ("guardrails", "path", "message"),
    [
        ({"workdir_roots": ["data"]}, "guardrails.workdir_roots", "'data' is not an absolute"),
        ({"env_deny": ["A*B"]}, "guardrails.env_deny", "'A*B' is not an env name or a PREFIX*"),
        ({"env_allow": ["*"]}, "guardrails.env_allow", "'*' is not an env name"),
        ({"git_local_remote": True}, "guardrails.git_local_remote", "git_local_remotes"),
    ],
)
def test_bad_guardrails_are_the_admins_error(guardrails: dict, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_queue_config({"guardrails": guardrails})
    [error] = caught.value.errors
    assert error.path == path and message in error.message, error


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://github.com/org/repo.git", "remote"),
        ("HTTPS://github.com/org/repo.git", "remote"),
        ("git@github.com:org/repo.git", "remote"),
        ("host:repo", "remote"),
        ("ssh://git@host:2222/org/repo", "remote"),
        ("git+ssh://host/repo", "remote"),
        ("git://host/repo", "remote"),
        ("file:///srv/repo", "local"),
        ("/srv/repo", "local"),
        ("./repo", "local"),
        ("repo", "local"),
        ("dir/with:colon", "local"),
        ("ext::sh -c id", "remote helper 'ext::'"),
        ("fd::0", "remote helper 'fd::'"),
        ("foo+bar::x", "remote helper 'foo+bar::'"),
        ("gopher://host/x", "unknown transport 'gopher://' (a remote helper)"),
    ],
)
def test_remote_kind_follows_gits_rules(url: str, kind: str) -> None:
    assert remote_kind(url) == kind


def test_admin_submission_is_trusted_with_the_host() -> None:
    job = {
        "workdir": "/home/me/project",
        "env": {"LD_LIBRARY_PATH": "/opt/lib"},
    }
    resolved = resolve_job({}, job, trusted=True)
    assert (resolved.workdir, resolved.env) == ("/home/me/project", {"LD_LIBRARY_PATH": "/opt/lib"})
    with pytest.raises(ConfigError) as caught:
        resolve_job({}, job)
    assert {e.path for e in caught.value.errors} == {"workdir", "env.LD_LIBRARY_PATH"}
    # Locks bind admins too.
    with pytest.raises(ConfigError):
        resolve_job({"command": ["a"], "locked": ["command"]}, {"command": ["b"]}, trusted=True)


def test_a_null_passthrough_env_name_is_the_admins_choice() -> None:
    queue = {"passthrough_env": ["PATH"]}
    assert resolve_job(queue, {"env": {"PATH": None}}).env == {"PATH": None}
    with pytest.raises(ConfigError):
        resolve_job(queue, {"env": {"PATH": "/tmp/bin"}})
