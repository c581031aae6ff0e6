"""The configuration package's face: its public names, its lazy YAML, the deprecated alias."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

import launchplane.core.config as config
from launchplane.core import templates

OLD_TEMPLATE_NAMES = [
    "PathKey",
    "MACRO_NAMES",
    "EXPANDED_FIELDS",
    "PLACEHOLDER_RE",
    "find_placeholders",
    "strings",
    "show_path",
    "CheckedQueue",
    "check_queue_config",
    "inspect_queue_config",
    "resolve_template_values",
    "check_value",
    "coerce_value",
    "describe_variable",
    "kind_of",
    "substitute",
    "expand_macros",
    "agent_env_references",
]


def test_every_public_name_is_still_there() -> None:
    for name in config.__all__:
        assert getattr(config, name) is not None, name
    assert config.canonical_path(("job", "docker", "image")) == ("docker", "image")


def test_importing_the_package_does_not_import_yaml() -> None:
    code = (
        "import sys, launchplane.core.config as c; "
        "print(sorted(m for m in sys.modules if m in ('yaml', 'launchplane.core.yamlsafe'))); "
        "c.load_document('a: 1', source='x'); print('yaml' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["[]", "True"]


@pytest.mark.parametrize("name", OLD_TEMPLATE_NAMES)
def test_the_old_templates_module_still_answers_with_a_warning(name: str) -> None:
    with pytest.warns(DeprecationWarning, match=rf"launchplane\.core\.templates\.{name} moved to"):
        value = getattr(templates, name)
    module = str(templates._MOVED[name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert value is getattr(importlib.import_module(module), name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = templates.nope  # type: ignore[attr-defined]
