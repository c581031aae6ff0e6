"""Loading configs: the safe YAML/JSON loader and ``base_config`` chains."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from launchplane.core.config import load_job_file, load_queue_file
from launchplane.core.errors import ConfigError
from launchplane.core.yamlsafe import Limits, dump_document, load_document


def error_of(text: str, source: str = "job.yaml", **limits: int) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_document(text, source=source, limits=Limits(**limits))
    return caught.value


# --- what a document may contain -----------------------------------------------------


def test_scalars_follow_yaml_1_2_core_schema() -> None:
    data = load_document(
        "lr: 3e-4\nwarmup: 1.5e3\nflag: yes\nswitch: off\nzip: 010\ntime: 1:30\n"
        "hex: 0x1F\noct: 0o17\nt: True\nn: ~\nday: 2024-01-01\nquoted: '3'\n",
        source="job.yaml",
    )
    assert data == {
        "lr": 0.0003,
        "warmup": 1500.0,
        "flag": "yes",
        "switch": "off",
        "zip": 10,
        "time": "1:30",
        "hex": 31,
        "oct": 15,
        "t": True,
        "n": None,
        "day": "2024-01-01",
        "quoted": "3",
    }


def test_standard_tags_and_merge_keys_are_allowed() -> None:
    text = "base: &base {a: 1, b: 2}\nx:\n  <<: *base\n  b: 3\ns: !!str 4\nf: !!float 1\n"
    assert load_document(text, source="q.yaml") == {
        "base": {"a": 1, "b": 2},
        "x": {"a": 1, "b": 3},
        "s": "4",
        "f": 1.0,
    }


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("x: !!python/object:os.system ls\n", "!!python/object:os.system"),
        ("x: !!python/object/apply:os.system [ls]\n", "!!python/object/apply:os.system"),
        ("x: !custom 1\n", "!custom"),
        ("x: !!binary aGVsbG8=\n", "!!binary"),
        ("x: !!timestamp 2024-01-01\n", "!!timestamp"),
        ("x: !!set {a, b}\n", "!!set"),
        ("x:\n  y: !Ref Foo\n", "!Ref"),
    ],
)
def test_unknown_tags_are_refused_with_path_and_line(text: str, shown: str) -> None:
    error = error_of(text)
    assert f"tag {shown} is not allowed" in str(error)
    assert error.errors[0].line in (1, 2)
    assert error.errors[0].path in ("x", "x.y")
    assert str(error).startswith("job.yaml: x")


def test_duplicate_keys_name_both_lines() -> None:
    error = error_of("env:\n  A: 1\n  B: 2\n  A: 3\n")
    assert str(error) == (
        "job.yaml: env.A (line 4): duplicate key 'A' (first set on line 2); keep one of them - "
        "a YAML mapping cannot hold the same key twice"
    )


def test_duplicate_keys_are_compared_by_value() -> None:
    assert "duplicate key '1'" in str(error_of("1: a\n01: b\n"))


def test_merge_key_overridden_by_an_explicit_key_is_not_a_duplicate() -> None:
    assert load_document("a: &a {x: 1}\nb:\n  <<: *a\n  x: 2\n", source="s")["b"] == {"x": 2}


def test_mapping_keys_must_be_scalars() -> None:
    assert "mapping keys must be strings or numbers" in str(error_of("? [a]\n: 1\n"))


def test_syntax_errors_name_the_line() -> None:
    error = error_of("a: [1, 2\nb: 3\n")
    assert error.errors[0].line is not None
    assert "invalid YAML" in str(error)


def test_a_file_holds_one_document() -> None:
    error = error_of("a: 1\n---\nb: 2\n")
    assert "expected a single document in the stream" in str(error)
    assert error.errors[0].line == 2


# --- limits ---------------------------------------------------------------------------


def billion_laughs(levels: int = 9, fanout: int = 9) -> str:
    lines = ['lol0: &lol0 "lol"']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*lol{level - 1}"] * fanout)
        lines.append(f"lol{level}: &lol{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_before_expansion() -> None:
    started = time.perf_counter()
    error = error_of(billion_laughs())
    elapsed = time.perf_counter() - started
    print(f"billion laughs refused in {elapsed * 1000:.1f} ms")
    assert "aliases expand to more than 10000 nodes (an alias bomb?)" in str(error)


def test_alias_bomb_in_a_flow_mapping_is_refused() -> None:
    lines = ["a: &a {x: 1, y: 2, z: 3}"]
    for level in range(1, 12):
        refs = ", ".join(f"k{i}: *{chr(96 + level)}" for i in range(8))
        lines.append(f"{chr(97 + level)}: &{chr(97 + level)} {{{refs}}}")
    assert "alias bomb" in str(error_of("\n".join(lines)))


def test_alias_uses_are_counted() -> None:
    text = "a: &a 1\nlist: [" + ", ".join(["*a"] * 101) + "]\n"
    assert "more than 100 aliases" in str(error_of(text))
    assert load_document("a: &a 1\nlist: [" + ", ".join(["*a"] * 100) + "]\n", source="s")


def test_recursive_alias_is_refused() -> None:
    assert "refers to a node that contains it" in str(error_of("a: &a [1, *a]\n"))


def test_oversized_document_names_size_and_limit() -> None:
    text = "a: '" + "x" * (1024 * 1024) + "'\n"
    error = error_of(text)
    assert str(error) == (
        "job.yaml: <root>: the document is 1 MiB (1048582 bytes), over the limit of 1 MiB "
        "(1048576 bytes); keep large data in artifacts and reference them"
    )


def test_size_counts_utf8_bytes() -> None:
    text = "a: '" + "é" * 600 + "'\n"  # 600 characters, 1200 bytes
    assert "over the limit of 1 KiB" in str(error_of(text, max_bytes=1024))


def test_deep_nesting_is_refused() -> None:
    deep = "[" * 65 + "]" * 65
    assert "nested deeper than 64 levels" in str(error_of(deep))
    assert load_document("[" * 64 + "]" * 64, source="ok.yaml") is not None


def test_deep_nesting_through_an_alias_is_refused() -> None:
    inner = "[" * 40 + "]" * 40
    text = f"a: &a {inner}\nb: {'[' * 30}*a{']' * 30}\n"
    assert "nested deeper than 64 levels" in str(error_of(text))


def test_block_style_nesting_is_refused_too() -> None:
    text = "".join(f"{'  ' * level}k{level}:\n" for level in range(70)) + "  " * 70 + "v\n"
    assert "nested deeper than 64 levels" in str(error_of(text))


# --- JSON -----------------------------------------------------------------------------


def test_json_is_parsed_with_the_json_module() -> None:
    assert load_document('{"a": [1, 2.5, true, null, "3e-4"]}', source="x.json") == {
        "a": [1, 2.5, True, None, "3e-4"]
    }


def test_json_duplicate_keys_are_refused() -> None:
    assert "duplicate key 'a'" in str(error_of('{"a": 1, "a": 2}', source="x.json"))


def test_json_depth_and_size_limits_apply() -> None:
    assert "nested deeper than 64 levels" in str(error_of("[" * 65 + "]" * 65, source="x.json"))
    assert "nested deeper" in str(error_of("[" * 100_000 + "]" * 100_000, source="x.json"))
    assert "over the limit" in str(
        error_of('"' + "x" * 2000 + '"', source="x.json", max_bytes=1024)
    )


def test_json_syntax_errors_name_line_and_column() -> None:
    error = error_of('{\n  "a": [1, 2\n}', source="x.json")
    assert error.errors[0].line == 3
    assert "invalid JSON" in str(error)


# --- dumping --------------------------------------------------------------------------


def test_dump_quotes_strings_any_yaml_parser_would_retype() -> None:
    data = {"lr": "3e-4", "flag": "yes", "zip": "010", "n": "null", "real": 3e-4}
    text = dump_document(data)
    assert "'3e-4'" in text and "'yes'" in text and "'010'" in text
    assert load_document(text, source="out.yaml") == data
    import yaml

    assert yaml.safe_load(text) == data


# --- files and base_config ------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_config_chain_is_merged_relative_to_each_file(tmp_path: Path) -> None:
    write(tmp_path / "team/base.yaml", "env: {A: base, B: base}\nargs: [--a]\n")
    write(tmp_path / "team/mid.yaml", "base_config: base.yaml\nenv: {B: mid, C: mid}\n")
    job = write(tmp_path / "me/job.yaml", "base_config: ../team/mid.yaml\nenv: {C: job}\n")
    assert load_job_file(job) == {"env": {"A": "base", "B": "mid", "C": "job"}, "args": ["--a"]}


def test_each_file_is_normalised_before_merging(tmp_path: Path) -> None:
    write(
        tmp_path / "base.yaml", "job:\n  docker:\n    image: base:1\n    dockerfile: Dockerfile\n"
    )
    job = write(tmp_path / "job.yaml", "base_config: base.yaml\ndocker:\n  image: mine:2\n")
    assert load_job_file(job) == {"docker": {"image": "mine:2", "dockerfile": "Dockerfile"}}


def test_base_config_cycle_prints_the_chain(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "base_config: b.yaml\n")
    write(tmp_path / "b.yaml", "base_config: a.yaml\n")
    with pytest.raises(ConfigError) as caught:
        load_job_file(tmp_path / "a.yaml")
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert (
        str(caught.value) == f"{b}: base_config: base_config chain has a cycle: {a} -> {b} -> {a}"
    )


def test_self_reference_is_a_cycle(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yaml", "base_config: ./a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*a\.yaml"):
        load_job_file(path)


def test_missing_base_names_the_file_that_referenced_it(tmp_path: Path) -> None:
    job = write(tmp_path / "jobs/job.yaml", "base_config: nowhere.yaml\n")
    with pytest.raises(ConfigError) as caught:
        load_job_file(job)
    assert str(caught.value) == (
        f"{job}: base_config: 'nowhere.yaml' not found: no file {tmp_path}/jobs/nowhere.yaml "
        "(a base_config path is relative to the file that names it)"
    )


def test_missing_base_suggests_the_path_relative_to_the_file(tmp_path: Path) -> None:
    write(tmp_path / "team-configs/llm-base.yaml", "entity: research-team\n")
    job = write(
        tmp_path / "researcher-a/my-experiment.yaml", "base_config: team-configs/llm-base.yaml\n"
    )
    with pytest.raises(ConfigError, match=r"did you mean '\.\./team-configs/llm-base\.yaml'\?"):
        load_job_file(job)


def test_missing_job_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: <root>: file not found"):
        load_job_file(tmp_path / "nope.yaml")


def test_base_config_must_be_a_path(tmp_path: Path) -> None:
    job = write(tmp_path / "job.yaml", "base_config: [a.yaml]\n")
    with pytest.raises(ConfigError, match="base_config: must be a file path"):
        load_job_file(job)


def test_a_config_file_holds_a_mapping(tmp_path: Path) -> None:
    job = write(tmp_path / "job.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match=r"must hold a mapping of keys .* not a list"):
        load_job_file(job)
    assert load_job_file(write(tmp_path / "empty.yaml", "# nothing yet\n")) == {}


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    job = write(tmp_path / "big.yaml", "a: 1\n" + "#" * 4096 + "\n")
    with pytest.raises(ConfigError, match=r"the file is 4 KiB \(4102 bytes\), over the limit"):
        load_job_file(job, limits=Limits(max_bytes=1024))


def test_not_utf8(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_job_file(job)


def test_json_job_file_with_base_config(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "env: {A: '1'}\n")
    job = write(tmp_path / "job.json", '{"base_config": "base.yaml", "env": {"B": "2"}}')
    assert load_job_file(job) == {"env": {"A": "1", "B": "2"}}


def test_queue_file_canonicalises_locked_paths(tmp_path: Path) -> None:
    queue = write(
        tmp_path / "q.yaml",
        "locked:\n  - job.docker.image\n  - resource_args.builder.accelerator\n"
        '  - resource_args.kubernetes.requests."nvidia.com/gpu"\n',
    )
    assert load_queue_file(queue)["locked"] == [
        "docker.image",
        "builder.accelerator",
        'resource_args.kubernetes.requests."nvidia.com/gpu"',
    ]
