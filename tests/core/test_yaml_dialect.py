"""YAML 1.1 (how W&B's tools read a W&B document) next to launchplane's YAML 1.2 core reading.

Decided per document kind (docs/from-wandb.md): launchplane's own documents are
read as YAML 1.2; a document arriving through a W&B entry point (``-c``/``-R``
of submit, a W&B launch-config.yaml) as YAML 1.1, the way W&B reads it; a
W&B-shaped job file as YAML 1.2 with a warning for each value W&B reads
otherwise.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytest

from launchplane.core.config import load_job_file
from launchplane.core.errors import ConfigError
from launchplane.core.yamlsafe import (
    Limits,
    ReadingWarning,
    load_document,
    reading_differences,
)

# text -> (YAML 1.2 core, as launchplane reads it; YAML 1.1, as PyYAML's safe_load reads it)
READINGS: list[tuple[str, Any, Any]] = [
    ("3e-4", 0.0003, "3e-4"),
    ("1.0e-4", 0.0001, 0.0001),
    ("1.0e4", 10000.0, "1.0e4"),
    ("1.0e+4", 10000.0, 10000.0),
    ("yes", "yes", True),
    ("No", "No", False),
    ("on", "on", True),
    ("OFF", "OFF", False),
    ("010", 10, 8),
    ("0o17", 15, "0o17"),
    ("0b101", "0b101", 5),
    ("1_000", "1_000", 1000),
    ("1:30", "1:30", 90),
    ("0x1F", 31, 31),
    ("true", True, True),
    ("~", None, None),
    ("2024-01-02", "2024-01-02", "2024-01-02"),  # a timestamp stays text in both
    ("python:3.11", "python:3.11", "python:3.11"),
]


@pytest.mark.parametrize(("text", "launchplane", "wandb"), READINGS)
def test_the_two_readings(text: str, launchplane: Any, wandb: Any) -> None:
    ours = load_document(f"v: {text}\n", source="x.yaml")["v"]
    theirs = load_document(f"v: {text}\n", source="x.yaml", yaml_version="1.1")["v"]
    assert (type(ours), ours) == (type(launchplane), launchplane)
    assert (type(theirs), theirs) == (type(wandb), wandb)


def test_the_yaml_1_1_reading_keeps_every_safety_rule() -> None:
    def refused(text: str, **kwargs: Any) -> str:
        with pytest.raises(ConfigError) as caught:
            load_document(text, source="w.yaml", yaml_version="1.1", **kwargs)
        return str(caught.value)

    assert "tag !!python/object is not allowed" in refused("a: !!python/object {}\n")
    assert "tag !!timestamp is not allowed" in refused("a: !!timestamp 2024-01-01\n")
    assert "duplicate key 'a'" in refused("a: 1\na: 2\n")
    bomb = "a: &a [x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(12)
    )
    assert "alias bomb" in refused(bomb, limits=Limits(max_aliases=1000))
    assert "nested deeper than 3 levels" in refused(
        "a: {b: {c: {d: 1}}}\n", limits=Limits(max_depth=3)
    )


def test_differences_name_each_value_its_path_and_both_readings() -> None:
    text = (
        "overrides:\n"
        "  run_config:\n"
        "    lr: 3e-4\n"
        "    quoted: '3e-4'\n"
        "    tagged: !!str 3e-4\n"
        "    same: 0.5\n"
        "  args: [--fast, yes]\n"
        "on: 010\n"
    )
    found = reading_differences(text, source="spec.yaml")
    assert [(d.path, d.text, d.is_key, d.line) for d in found] == [
        ("overrides.run_config.lr", "3e-4", False, 3),
        ("overrides.args.1", "yes", False, 7),
        ("", "on", True, 8),
        ("on", "010", False, 8),
    ]
    assert found[0].message("launchplane") == (
        "overrides.run_config.lr: launchplane reads 3e-4 as the number 0.0003; "
        "wandb reads the string '3e-4'; quote it to say which"
    )
    assert found[0].message("wandb") == (
        "overrides.run_config.lr: read as wandb reads it, 3e-4 is the string '3e-4'; "
        "launchplane's own files read the number 0.0003; quote it to say which"
    )
    assert found[2].message("launchplane").startswith("<root> (the key on): ")
    assert reading_differences("", source="empty.yaml") == []


def test_differences_see_through_anchors_and_merge_keys_once() -> None:
    text = "base: &b {lr: 3e-4}\nrun:\n  <<: *b\n  flag: on\n"
    found = reading_differences(text, source="x.yaml")
    assert [d.path for d in found] == ["base.lr", "run.flag"]


def test_nan_reads_the_same() -> None:
    assert math.isnan(load_document("v: .nan\n", source="x.yaml", yaml_version="1.1")["v"])
    assert reading_differences("v: .nan\n", source="x.yaml") == []


def test_a_wandb_shaped_job_file_warns_for_each_value_wandb_reads_otherwise(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        "docker:\n  docker_image: python:3.11\n"
        "hyperparameters:\n  lr: 3e-4\n  warmup: yes\n  steps: '010'\n"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_job_file(path)
    messages = [str(w.message) for w in caught if issubclass(w.category, ReadingWarning)]
    assert messages == [
        f"{path}: hyperparameters.lr: launchplane reads 3e-4 as the number 0.0003; "
        "wandb reads the string '3e-4'; quote it to say which",
        f"{path}: hyperparameters.warmup: launchplane reads yes as the string 'yes'; "
        "wandb reads the boolean true; quote it to say which",
    ]


@pytest.mark.parametrize(
    "body",
    [
        "entry_point: python train.py\nhyperparameters:\n  lr: 3e-4\n",  # the seed format
        '{"overrides": {"run_config": {"lr": 3e-4}}}\n',  # JSON reads the same everywhere
    ],
)
def test_other_job_files_are_read_without_warnings(tmp_path: Path, body: str) -> None:
    path = tmp_path / ("job.json" if body.startswith("{") else "job.yaml")
    path.write_text(body)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_job_file(path)
