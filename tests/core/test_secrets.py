"""Secret references, the redactor, and resolution through real provider plugins."""

from __future__ import annotations

import base64
import json
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus, urlencode

import pytest

from launchplane.agent.secrets import resolve_secrets
from launchplane.core.interfaces import PluginError, SecretRef, SecretRefError, parse_ref
from launchplane.core.plugins import get_plugin_manager
from launchplane.core.redaction import MIN_SECRET_LENGTH, Redactor

SECRET = "pa ss/w+rd?&=~très"  # needs quoting, has base64 padding, non-ASCII


# --- parse_ref ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aws-sm:prod/db#password", SecretRef("aws-sm", "prod/db", "password")),
        ("env:HF_TOKEN", SecretRef("env", "HF_TOKEN")),
        ("k8s:wandb-credentials#api-key", SecretRef("k8s", "wandb-credentials", "api-key")),
        ("  vault:kv/data/x#f  ", SecretRef("vault", "kv/data/x", "f")),
    ],
)
def test_parse_ref(text: str, expected: SecretRef) -> None:
    assert parse_ref(text) == expected
    assert str(parse_ref(text)) == text.strip()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("env:", "'env:' has no path after the scheme"),
        ("aws-sm:prod/db#", "'aws-sm:prod/db#' has an empty #key"),
        ("aws-sm:prod/db#a#b", "'aws-sm:prod/db#a#b' has more than one '#'"),
        ("env:MY VAR", "'env:MY VAR' contains whitespace"),
    ],
)
def test_parse_ref_errors_name_the_reference_and_the_form(text: str, problem: str) -> None:
    with pytest.raises(SecretRefError) as caught:
        parse_ref(text)
    assert str(caught.value) == (
        f"secret reference {problem}; "
        "expected scheme:path[#key], e.g. env:HF_TOKEN or aws-sm:prod/db#password"
    )


@pytest.mark.parametrize("pasted", ["hf_AbCdEf0123456789", "Passw0rd:hunter2", "p@ss:word"])
def test_a_pasted_secret_is_not_echoed(pasted: str) -> None:
    with pytest.raises(SecretRefError) as caught:
        parse_ref(pasted)
    assert pasted not in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "expected scheme:path[#key]" in str(caught.value)


def test_parse_error_is_a_value_error_for_validators() -> None:
    assert issubclass(SecretRefError, ValueError)
    assert issubclass(SecretRefError, PluginError)


# --- Redactor -----------------------------------------------------------------------


def test_scrubs_plain_base64_and_url_encoded_forms() -> None:
    redactor = Redactor()
    assert redactor.add(SECRET)
    raw = SECRET.encode()
    forms = {
        "plain": SECRET,
        "base64": base64.b64encode(raw).decode(),
        "base64 unpadded": base64.b64encode(raw).decode().rstrip("="),
        "urlsafe base64": base64.urlsafe_b64encode(raw).decode(),
        "urlsafe unpadded": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "quote": quote(SECRET),
        "quote safe=''": quote(SECRET, safe=""),
        "quote_plus": quote_plus(SECRET),
        "json escaped": json.dumps(SECRET)[1:-1],
    }
    assert len(set(forms.values())) > 6  # the test value really has distinct forms
    for label, form in forms.items():
        assert redactor.scrub(f"<{form}>") == "<***>", label


def test_scrubs_a_secret_inside_a_query_string_and_json_log() -> None:
    redactor = Redactor()
    redactor.add(SECRET)
    url = "https://api.example.com/x?" + urlencode({"token": SECRET, "page": 2})
    assert redactor.scrub(url) == "https://api.example.com/x?token=***&page=2"
    assert redactor.scrub(json.dumps({"msg": f"login {SECRET}"})) == '{"msg": "login ***"}'


def test_scrub_obj_walks_nested_structures() -> None:
    redactor = Redactor()
    redactor.add("tok-123456")
    record = {
        "env": {"HF_TOKEN": "tok-123456", "tok-123456": "key too"},
        "args": ["--token", "tok-123456", ("tuple tok-123456", 3)],
        "exit_code": 0,
        "ok": None,
    }
    assert redactor.scrub_obj(record) == {
        "env": {"HF_TOKEN": "***", "***": "key too"},
        "args": ["--token", "***", ("tuple ***", 3)],
        "exit_code": 0,
        "ok": None,
    }
    assert record["env"]["HF_TOKEN"] == "tok-123456"  # a copy, not in place


def test_short_values_are_not_registered() -> None:
    redactor = Redactor()
    assert not redactor.add("a" * (MIN_SECRET_LENGTH - 1))
    assert redactor.scrub("aaa bbb") == "aaa bbb"


def test_longest_value_wins() -> None:
    redactor = Redactor()
    redactor.add("abcd")
    redactor.add("abcdefgh")
    assert redactor.scrub("abcdefgh abcd") == "*** ***"


def test_multiline_secret_is_scrubbed_line_by_line() -> None:
    pem = (
        "-----BEGIN KEY-----\nMIIBVwIBADANBgkqhkiG9w0BAQEF\nAASCATswggE3AgEAAkEA\n-----END KEY-----"
    )
    redactor = Redactor()
    redactor.add(pem)
    assert redactor.scrub(pem) == "***"
    assert redactor.scrub("read line: MIIBVwIBADANBgkqhkiG9w0BAQEF") == "read line: ***"


def test_regex_characters_are_literal() -> None:
    redactor = Redactor()
    redactor.add("a.b*c(d)")
    assert redactor.scrub("aXbbc(d) a.b*c(d)") == "aXbbc(d) ***"


def test_concurrent_adds_and_scrubs() -> None:
    redactor = Redactor()
    values = [f"secret-value-{i:03d}" for i in range(200)]

    def add(chunk: list[str]) -> None:
        for value in chunk:
            redactor.add(value)
            redactor.scrub(f"log {value}")

    threads = [threading.Thread(target=add, args=(values[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert redactor.scrub(" ".join(values)) == " ".join(["***"] * len(values))


# --- resolve_secrets ------------------------------------------------------------------


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv("LAUNCHPLANE_PLUGINS", raising=False)
    monkeypatch.setenv("LAUNCHPLANE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(str(tmp_path)):
            del sys.modules[name]


LEAKY_PROVIDER = """
    import os
    from launchplane import hookimpl
    from launchplane.core.interfaces import SecretProvider

    class Leaky(SecretProvider):
        '''Fails with a message that quotes a secret value, as careless code does.'''
        scheme = "leaky"

        async def resolve(self, ref):
            raise ValueError("token rejected: " + os.environ["AGENT_TOKEN"])

    @hookimpl
    def launchplane_register_secret_providers(register):
        register(Leaky)
"""


@pytest.mark.anyio
async def test_resolves_through_the_env_provider_and_registers_values(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_HF", "hf_0123456789abcdef")
    monkeypatch.setenv("AGENT_DB", SECRET)
    redactor = Redactor()

    resolved = await resolve_secrets(
        {"HF_TOKEN": "env:AGENT_HF", "DB_PASSWORD": "env:AGENT_DB"}, get_plugin_manager(), redactor
    )
    values = resolved.values

    assert values == {"HF_TOKEN": "hf_0123456789abcdef", "DB_PASSWORD": SECRET}
    assert list(values) == ["HF_TOKEN", "DB_PASSWORD"]
    assert redactor.scrub(f"{SECRET} hf_0123456789abcdef") == "*** ***"


@pytest.mark.anyio
async def test_unknown_scheme_lists_available_schemes(plugin_dir: Path) -> None:
    with pytest.raises(PluginError) as caught:
        await resolve_secrets({"DB": "aws-sn:prod/db#password"}, get_plugin_manager(), Redactor())
    message = str(caught.value)
    assert message.startswith("secret DB: unknown secret provider 'aws-sn'")
    assert "env" in message.split("; available: ")[1].split(", ")
    assert "prod/db" not in message  # only the scheme is named


@pytest.mark.anyio
async def test_all_misconfigured_secrets_are_reported_together(plugin_dir: Path) -> None:
    with pytest.raises(PluginError) as caught:
        await resolve_secrets(
            {"A": "nope:x", "B": "env:", "C": "hunter2hunter2"}, get_plugin_manager(), Redactor()
        )
    message = str(caught.value)
    assert message.startswith("3 secrets are misconfigured:")
    assert "secret A: unknown secret provider 'nope'" in message
    assert "secret B: secret reference 'env:' has no path" in message
    assert "secret C: not a secret reference" in message
    assert "hunter2hunter2" not in message


@pytest.mark.anyio
async def test_provider_failure_names_variable_and_reference_never_a_value(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (plugin_dir / "leaky_provider.py").write_text(textwrap.dedent(LEAKY_PROVIDER))
    monkeypatch.setenv("AGENT_TOKEN", "agent-token-value-42")
    registry = get_plugin_manager(["leaky_provider"])
    redactor = Redactor()

    with pytest.raises(PluginError) as caught:
        await resolve_secrets(
            {"TOKEN": "env:AGENT_TOKEN", "OTHER": "leaky:team/key#k", "MISSING": "env:NOT_SET_X"},
            registry,
            redactor,
        )

    message = str(caught.value)
    assert "agent-token-value-42" not in message
    assert message == (
        "2 secrets could not be resolved:\n"
        "  - secret OTHER (leaky:team/key#k): ValueError: token rejected: ***\n"
        "  - secret MISSING (env:NOT_SET_X): environment variable NOT_SET_X is not set on the agent"
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    # The value that did resolve is registered even though the call failed.
    assert redactor.scrub("agent-token-value-42") == "***"


NATIVE_PROVIDER = """
    from launchplane import hookimpl
    from launchplane.core.interfaces import SecretProvider

    class ClusterSecrets(SecretProvider):
        '''Kubernetes-like: the cluster's runner reads the secret itself.'''
        scheme = "cluster"

        async def resolve(self, ref):
            raise AssertionError(f"resolve({ref}) called: the value passed the agent")

        def native_ref(self, ref, runner):
            if runner != "cluster-runner":
                return None
            return {"secretKeyRef": {"name": ref.path, "key": ref.key}}

    @hookimpl
    def launchplane_register_secret_providers(register):
        register(ClusterSecrets)
"""


@pytest.mark.anyio
async def test_a_native_reference_is_handed_on_and_the_value_never_fetched(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (plugin_dir / "native_provider.py").write_text(textwrap.dedent(NATIVE_PROVIDER))
    monkeypatch.setenv("AGENT_HF", "hf_0123456789abcdef")
    secrets = {"HF_TOKEN": "env:AGENT_HF", "DB": "cluster:db-credentials#password"}
    registry = get_plugin_manager(["native_provider"])

    resolved = await resolve_secrets(secrets, registry, Redactor(), runner="cluster-runner")

    assert resolved.values == {"HF_TOKEN": "hf_0123456789abcdef"}
    assert resolved.native == {
        "DB": {"secretKeyRef": {"name": "db-credentials", "key": "password"}}
    }
    assert resolved.names == {"HF_TOKEN", "DB"}

    # Another runner cannot use the reference: the provider is asked for the value.
    with pytest.raises(PluginError, match=r"^secret DB \(cluster:db-credentials#password\): "):
        await resolve_secrets(secrets, registry, Redactor(), runner="local-process")
