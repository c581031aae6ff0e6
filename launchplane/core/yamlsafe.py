"""Safe loading of YAML and JSON launch configs, with limits a server can rely on.

Configs arrive from users (files, ``--set`` values, HTTP bodies), so the loader
treats them as untrusted input:

* only plain data: strings, numbers, booleans, null, lists and mappings. Any
  other tag (``!!python/object``, ``!custom``, ``!!binary``, ``!!timestamp``)
  is an error instead of an object or a silent type change;
* scalars follow the YAML 1.2 core schema (what JSON and most people expect):
  ``3e-4`` is a float, ``yes``/``no``/``on``/``off`` stay strings, ``010`` is
  ten and ``1:30`` is a string (PyYAML's YAML 1.1 default makes them a string,
  booleans, eight and ninety). ``yaml_version="1.1"`` reads them the YAML 1.1
  way instead - how W&B's tools (PyYAML ``safe_load``) read a W&B document -
  except that a timestamp stays text (a launch config holds no dates);
  :func:`reading_differences` lists the plain scalars the two readings disagree on;
* a duplicate key is an error (YAML parsers silently keep the last one, which
  hides half of an "option A # OR option B" example);
* the text holds no control characters but tab, newline and carriage return,
  and no Unicode non-characters (U+FFFE, U+FDD0, ...), in YAML and JSON alike:
  the error names the character, its line and its column. A value that needs
  one writes it as an escape (``"\\e"`` in YAML, ``"\\u001b"`` in JSON);
* documents are limited in size, nesting depth and alias use. Aliases are
  counted *while composing*, weighted by the size of what they point at, so a
  "billion laughs" document is refused after a few thousand nodes, in
  milliseconds, before anything is built.

Errors are :class:`~launchplane.core.errors.ConfigError` naming the source,
the line and, where known, the dotted path of the offending node.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, CollectionStartEvent, NodeEvent, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver, Resolver
from yaml.scanner import Scanner

from launchplane.core.errors import ConfigError, FieldError, join_path

YamlVersion = Literal["1.2", "1.1"]

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_ALIASES = 100
MAX_ALIAS_NODES = 10_000
"""How many nodes all aliases together may pull in (a ``<<: *defaults`` merge
of a 50-key mapping costs 51). Legitimate configs stay far below; a bomb
crosses it within a few levels."""

_YAML_TAG = "tag:yaml.org,2002:"
_NULL, _BOOL, _INT, _FLOAT = (_YAML_TAG + t for t in ("null", "bool", "int", "float"))
_STR, _SEQ, _MAP, _MERGE = (_YAML_TAG + t for t in ("str", "seq", "map", "merge"))
_ALLOWED_TAGS = frozenset({_NULL, _BOOL, _INT, _FLOAT, _STR, _SEQ, _MAP, _MERGE})

_NULL_RE = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


@dataclass(frozen=True)
class Limits:
    """The bounds a document must stay within; the defaults suit every launch config."""

    max_bytes: int = MAX_DOCUMENT_BYTES
    max_depth: int = MAX_DEPTH
    max_aliases: int = MAX_ALIASES
    max_alias_nodes: int = MAX_ALIAS_NODES


DEFAULT_LIMITS = Limits()


def load_document(
    text: str,
    *,
    source: str,
    limits: Limits = DEFAULT_LIMITS,
    syntax: Literal["yaml", "json"] | None = None,
    yaml_version: YamlVersion = "1.2",
) -> Any:
    """Parse one YAML (or, for a ``*.json`` source, JSON) document into plain data.

    ``source`` names the document in errors (a file path, ``--set``, ``request
    body``). JSON - a source ending in ``.json``, or ``syntax="json"`` - is
    parsed with the json module under the same size, depth and duplicate-key
    rules. ``yaml_version="1.1"`` reads plain scalars as W&B's tools do (see
    the module docstring); every other rule is the same.
    """
    _check_size(text, source, limits)
    json_text = syntax == "json" or (syntax is None and source.lower().endswith(".json"))
    check_characters(text, source=source, syntax="json" if json_text else "yaml")
    if json_text:
        return _load_json(text, source, limits)
    loader_class = _Loader11 if yaml_version == "1.1" else _Loader
    return _load_yaml(text, source, limits, loader_class)


class ReadingWarning(UserWarning):
    """A W&B-shaped document holds a value YAML 1.2 and YAML 1.1 read differently."""


@dataclass(frozen=True)
class ReadingDifference:
    """A plain scalar that YAML 1.2 (launchplane) and YAML 1.1 (W&B) read differently."""

    path: str
    """Dotted path of the value (of the mapping, for a key); ``""`` for the root."""
    line: int
    text: str
    """The scalar as written (``3e-4``)."""
    launchplane: Any
    wandb: Any
    is_key: bool = False

    def message(self, read_as: Literal["launchplane", "wandb"]) -> str:
        """One warning line; ``read_as`` says which reading the document was given."""
        where = self.path or "<root>"
        if self.is_key:
            where += f" (the key {self.text})"
        if read_as == "launchplane":
            return (
                f"{where}: launchplane reads {self.text} as {_describe(self.launchplane)}; "
                f"wandb reads {_describe(self.wandb)}; quote it to say which"
            )
        return (
            f"{where}: read as wandb reads it, {self.text} is {_describe(self.wandb)}; "
            f"launchplane's own files read {_describe(self.launchplane)}; quote it to say which"
        )


def reading_differences(
    text: str, *, source: str, limits: Limits = DEFAULT_LIMITS
) -> list[ReadingDifference]:
    """Every plain scalar (value or key) that YAML 1.2 and YAML 1.1 read differently.

    A W&B document read as launchplane reads it (or the other way round)
    is warned about value by value with these; quoted and explicitly tagged
    scalars read the same in both and are never listed. For YAML files only: a
    ``.json`` file is read by the json module everywhere (as YAML, a bare
    ``3e-4`` in it would be listed).
    The document is parsed once, with the same safety rules as
    :func:`load_document` (its errors are the same ConfigError).
    """
    _check_size(text, source, limits)
    check_characters(text, source=source, syntax="yaml")
    loader = _Loader(text, source, limits)
    try:
        with _yaml_errors(source):
            root = loader.get_single_node()
        if root is None:
            return []
        wandb = _Loader11("", source, limits)
        found: list[ReadingDifference] = []
        seen: set[int] = set()
        for node, path, is_key in _scalars(root, ()):
            if id(node) in seen or id(node) not in loader.plain_scalars:
                continue
            seen.add(id(node))
            ours = loader.construct_object(node)
            tag = wandb.resolve(ScalarNode, node.value, (True, False))
            theirs = wandb.yaml_constructors[tag](
                wandb, ScalarNode(tag, node.value, node.start_mark, node.end_mark)
            )
            if not _same(ours, theirs):
                found.append(
                    ReadingDifference(
                        _path_text(path),
                        node.start_mark.line + 1,
                        node.value,
                        ours,
                        theirs,
                        is_key,
                    )
                )
        return found
    finally:
        loader.dispose()


def _scalars(
    node: Node, path: tuple[Any, ...]
) -> Iterator[tuple[ScalarNode, tuple[Any, ...], bool]]:
    """Each scalar below ``node`` with its path and whether it is a mapping key."""
    if isinstance(node, ScalarNode):
        yield node, path, False
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            yield from _scalars(item, (*path, index))
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            if key.tag == _MERGE:
                yield from _scalars(value, path)
                continue
            if isinstance(key, ScalarNode):
                yield key, path, True
            yield from _scalars(value, (*path, str(key.value)))


def _same(ours: Any, theirs: Any) -> bool:
    if type(ours) is not type(theirs):
        return False
    return bool(ours == theirs or (ours != ours and theirs != theirs))  # nan is nan here


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return f"the string {str(value)!r}"


def dump_document(data: Any) -> str:
    """YAML text that any YAML 1.1 or 1.2 parser reads back to the same data.

    Strings that either schema would read as something else (``"3e-4"``,
    ``"yes"``, ``"010"``) are quoted. A string holding a character that
    :func:`check_characters` refuses in a document's text (PyYAML writes NEL
    and non-characters as they are) makes the whole document ASCII, escapes
    and all, so that what is dumped always loads again.
    """
    options: dict[str, Any] = {"Dumper": _Dumper, "sort_keys": False, "default_flow_style": False}
    text = yaml.dump(data, allow_unicode=True, **options)
    if _FORBIDDEN_CHARACTER_RE.search(text) is None:
        return text
    return yaml.dump(data, allow_unicode=False, **options)


def format_size(size: int) -> str:
    """``1 MiB`` / ``1.5 MiB`` / ``512 KiB`` / ``80 bytes``, for error messages."""
    for unit, scale in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def _check_size(text: str, source: str, limits: Limits) -> None:
    # A character is at least one UTF-8 byte: encode only when it could matter.
    if len(text) * 4 <= limits.max_bytes:
        return
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise ConfigError(
            f"the document is {format_size(size)} ({size} bytes), over the limit of "
            f"{format_size(limits.max_bytes)} ({limits.max_bytes} bytes); "
            "keep large data in artifacts and reference them",
            source=source,
        )


_FORBIDDEN_CHARACTER_RE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufdd0-\ufdef"
    + "".join(chr(plane | 0xFFFE) + chr(plane | 0xFFFF) for plane in range(0, 0x110000, 0x10000))
    + "]"
)
"""Control characters but tab, LF and CR (C0, DEL, C1 - NEL too), and the 66 non-characters.

YAML's reader refuses most of them with an error that has no position (and,
raised before parsing starts, escaped the loader's error handling); JSON's
parser takes some raw (DEL, U+FFFE) and names none. One rule for both."""

_CONTROL_NAMES = (
    *("NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "HT", "LF", "VT"),
    *("FF", "CR", "SO", "SI", "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB"),
    *("CAN", "EM", "SUB", "ESC", "FS", "GS", "RS", "US"),
)


def check_characters(text: str, *, source: str, syntax: Literal["yaml", "json"]) -> None:
    """ConfigError at the first character a config's text may not hold (see the module docstring).

    The message names the character, its line and its column (both from 1):
    ``line 3: control character U+0007 (BEL) is not allowed in YAML (column 7)``.
    """
    found = _FORBIDDEN_CHARACTER_RE.search(text)
    if found is None:
        return
    at = found.start()
    line = text.count("\n", 0, at) + 1
    column = at - text.rfind("\n", 0, at)
    code = ord(found[0])
    if code < 0x20:
        what = f"control character U+{code:04X} ({_CONTROL_NAMES[code]})"
    elif code == 0x7F:
        what = "control character U+007F (DEL)"
    elif code <= 0x9F:
        what = f"control character U+{code:04X} (C1 control)"
    else:
        what = f"non-character U+{code:04X}"
    message = f"{what} is not allowed in {syntax.upper()} (column {column})"
    if 0 < code <= 0xFFFF:  # an escape that YAML and JSON read alike; no store keeps a NUL
        message += f'; a value that needs it writes "\\u{code:04x}" in a double-quoted string'
    raise ConfigError([FieldError("", message, line)], source=source)


# --- YAML -----------------------------------------------------------------------------


def _load_yaml(text: str, source: str, limits: Limits, loader_class: type[_Loader]) -> Any:
    loader = loader_class(text, source, limits)
    try:
        with _yaml_errors(source):
            return loader.get_single_data()
    finally:
        loader.dispose()


@contextlib.contextmanager
def _yaml_errors(source: str) -> Iterator[None]:
    """PyYAML's errors as a ConfigError naming the source and the line."""
    try:
        yield
    except ConfigError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError(
            [FieldError("", f"invalid YAML: {problem}", line)], source=source
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", source=source) from None


class _Resolver(BaseResolver):
    """YAML 1.2 core schema for plain scalars, plus PyYAML's ``<<`` merge key."""


for _tag, _regexp, _first in (
    (_BOOL, _BOOL_RE, "tTfF"),
    (_INT, _INT_RE, "-+0123456789"),
    (_FLOAT, _FLOAT_RE, "-+0123456789."),
    (_NULL, _NULL_RE, ["~", "n", "N", ""]),
    (_MERGE, re.compile(r"^<<$"), "<"),
):
    _Resolver.add_implicit_resolver(_tag, _regexp, list(_first))


class _Composer(Composer):
    """Builds the node graph while enforcing depth, tag and alias limits.

    Each node's expanded size (nodes, nesting height) is accumulated bottom-up
    on a stack; an alias adds its target's expanded size. That is what makes
    an alias bomb visible before it is ever expanded.
    """

    source: str
    limits: Limits

    def __init__(self) -> None:
        super().__init__()
        self._path: list[str | int] = []
        self._depth = 0
        self._aliases = 0
        self._alias_nodes = 0
        self._sizes: dict[str, tuple[int, int]] = {}
        self._stack: list[list[int]] = [[0, 0]]
        self.mapping_paths: dict[int, tuple[str | int, ...]] = {}
        self.plain_scalars: set[int] = set()
        """Ids of the scalars whose type came from the schema (plain, no tag)."""

    def compose_scalar_node(self, anchor: str | None) -> ScalarNode:
        event = self.peek_event()
        node = super().compose_scalar_node(anchor)
        if event.tag is None and event.implicit[0]:
            self.plain_scalars.add(id(node))
        return node

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        pushed = _segment(parent, index)
        if pushed is not None:
            self._path.append(pushed)
        try:
            event = self.peek_event()
            if isinstance(event, AliasEvent):
                return self._compose_alias(event, parent, index)
            return self._compose_fresh(event, parent, index)
        finally:
            if pushed is not None:
                self._path.pop()

    def _compose_alias(self, event: AliasEvent, parent: Node | None, index: Any) -> Node:
        anchor = event.anchor
        self._aliases += 1
        if self._aliases > self.limits.max_aliases:
            raise self._error(event, f"more than {self.limits.max_aliases} aliases (*name)")
        size = self._sizes.get(anchor) if anchor in self.anchors else None
        if anchor in self.anchors and size is None:
            raise self._error(event, f"alias *{anchor} refers to a node that contains it")
        if size is not None:
            nodes, height = size
            self._alias_nodes += nodes
            if self._alias_nodes > self.limits.max_alias_nodes:
                raise self._error(
                    event,
                    f"aliases expand to more than {self.limits.max_alias_nodes} nodes "
                    "(an alias bomb?); write the data out or use fewer aliases",
                )
            if self._depth + height > self.limits.max_depth:
                raise self._depth_error(event)
            self._add(nodes, height)
        return super().compose_node(parent, index)

    def _compose_fresh(self, event: NodeEvent, parent: Node | None, index: Any) -> Node:
        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and tag not in _ALLOWED_TAGS:
            raise self._error(
                event,
                f"tag {_show_tag(tag)} is not allowed: launch configs hold only strings, "
                "numbers, booleans, null, lists and mappings",
            )
        collection = isinstance(event, CollectionStartEvent)
        if collection:
            self._depth += 1
            if self._depth > self.limits.max_depth:
                raise self._depth_error(event)
        self._stack.append([1, 0])
        try:
            node = super().compose_node(parent, index)
        finally:
            nodes, height = self._stack.pop()
            if collection:
                self._depth -= 1
        height += int(collection)
        if event.anchor is not None:
            self._sizes[event.anchor] = (nodes, height)
        if isinstance(node, MappingNode):
            self.mapping_paths[id(node)] = tuple(self._path)
        self._add(nodes, height)
        return node

    def _add(self, nodes: int, height: int) -> None:
        parent = self._stack[-1]
        parent[0] += nodes
        parent[1] = max(parent[1], height)

    def _depth_error(self, event: NodeEvent) -> ConfigError:
        return self._error(event, f"nested deeper than {self.limits.max_depth} levels")

    def _error(self, event: NodeEvent | ScalarEvent, message: str) -> ConfigError:
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        return ConfigError([FieldError(_path_text(self._path), message, line)], source=self.source)


class _Constructor(SafeConstructor):
    """SafeConstructor restricted to JSON-like types, refusing duplicate keys."""

    yaml_constructors: dict[Any, Any] = {}  # PyYAML's per-class registry, filled below
    mapping_paths: dict[int, tuple[str | int, ...]]
    source: str

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        self._check_keys(node)
        return super().construct_mapping(node, deep=deep)

    def _check_keys(self, node: MappingNode) -> None:
        seen: dict[Any, int] = {}
        path = self.mapping_paths.get(id(node), ())
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode):
                raise self._key_error(path, "mapping keys must be strings or numbers", line)
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise self._key_error(
                    (*path, key),
                    f"duplicate key '{key}' (first set on line {seen[key]}); "
                    "keep one of them - a YAML mapping cannot hold the same key twice",
                    line,
                )
            seen[key] = line

    def _key_error(self, path: tuple[Any, ...], message: str, line: int) -> ConfigError:
        return ConfigError([FieldError(_path_text(path), message, line)], source=self.source)

    def construct_core_int(self, node: ScalarNode) -> int:
        text = str(self.construct_scalar(node))
        try:
            return _parse_int(text)
        except ValueError:
            raise self._scalar_error(node, "an integer") from None

    def construct_core_float(self, node: ScalarNode) -> float:
        text = str(self.construct_scalar(node))
        special = {".inf": "inf", "+.inf": "inf", "-.inf": "-inf", ".nan": "nan"}
        try:
            return float(special.get(text.lower(), text))
        except ValueError:
            raise self._scalar_error(node, "a float") from None

    def construct_core_bool(self, node: ScalarNode) -> bool:
        text = str(self.construct_scalar(node)).lower()
        if text not in ("true", "false"):
            raise self._scalar_error(node, "true or false")
        return text == "true"

    def _scalar_error(self, node: ScalarNode, expected: str) -> ConfigError:
        return ConfigError(
            [FieldError("", f"{node.value!r} is not {expected}", node.start_mark.line + 1)],
            source=self.source,
        )


def _parse_int(text: str) -> int:
    lowered = text.lower()
    if lowered.startswith("0o"):
        return int(text[2:], 8)
    if lowered.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


for _tag, _method in (
    (_NULL, SafeConstructor.construct_yaml_null),
    (_BOOL, _Constructor.construct_core_bool),
    (_INT, _Constructor.construct_core_int),
    (_FLOAT, _Constructor.construct_core_float),
    (_STR, SafeConstructor.construct_yaml_str),
    (_SEQ, SafeConstructor.construct_yaml_seq),
    (_MAP, SafeConstructor.construct_yaml_map),
    (None, SafeConstructor.construct_undefined),
):
    _Constructor.yaml_constructors[_tag] = _method


class _Loader(Reader, Scanner, Parser, _Composer, _Constructor, _Resolver):
    """The one loader launchplane uses for YAML: safe, limited, YAML 1.2 scalars."""

    def __init__(self, text: str, source: str, limits: Limits) -> None:
        self.source = source
        self.limits = limits
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _Composer.__init__(self)
        _Constructor.__init__(self)
        _Resolver.__init__(self)


class _Loader11(_Loader):
    """The same loader, reading plain scalars as YAML 1.1 (PyYAML's ``safe_load``) does.

    Its tables are PyYAML's own, without timestamps (kept as text) and the
    ``=``/``!``/``&``/``*`` oddities (strings).
    """

    yaml_implicit_resolvers: dict[Any, Any] = {
        first: [(tag, regexp) for tag, regexp in entries if tag in _ALLOWED_TAGS]
        for first, entries in Resolver.yaml_implicit_resolvers.items()
    }
    yaml_constructors: dict[Any, Any] = {
        **_Constructor.yaml_constructors,
        _BOOL: SafeConstructor.construct_yaml_bool,
        _INT: SafeConstructor.construct_yaml_int,
        _FLOAT: SafeConstructor.construct_yaml_float,
    }


class _Dumper(yaml.SafeDumper):
    """SafeDumper that also quotes strings the YAML 1.2 core schema would retype."""


for _tag, _regexp, _first in (
    (_INT, _INT_RE, "-+0123456789"),
    (_FLOAT, _FLOAT_RE, "-+0123456789."),
):
    _Dumper.add_implicit_resolver(_tag, _regexp, list(_first))


def _segment(parent: Node | None, index: Any) -> str | int | None:
    """The path segment of a child node: its key or list index; None for keys and the root."""
    if parent is None:
        return None
    if isinstance(index, int):
        return index
    if isinstance(index, ScalarNode):
        return str(index.value)
    return None if index is None else "?"


def _path_text(path: tuple[Any, ...] | list[Any]) -> str:
    return join_path(*path)


def _show_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_YAML_TAG) if tag.startswith(_YAML_TAG) else tag


# --- JSON -----------------------------------------------------------------------------


def _load_json(text: str, source: str, limits: Limits) -> Any:
    try:
        data = json.loads(text, object_pairs_hook=_json_object)
    except _DuplicateKey as exc:
        raise ConfigError(
            f"duplicate key '{exc.key}' in a JSON object; keep one of them", source=source
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [FieldError("", f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno)],
            source=source,
        ) from None
    except RecursionError:
        raise ConfigError(f"nested deeper than {limits.max_depth} levels", source=source) from None
    too_deep = _first_too_deep(data, limits.max_depth)
    if too_deep is not None:
        raise ConfigError(
            [FieldError(_path_text(too_deep), f"nested deeper than {limits.max_depth} levels")],
            source=source,
        )
    return data


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return data


def _first_too_deep(data: Any, max_depth: int) -> tuple[Any, ...] | None:
    """The path of the first collection nested deeper than ``max_depth``, else None."""
    for path, depth in _collections(data):
        if depth > max_depth:
            return path
    return None


def _collections(data: Any) -> Iterator[tuple[tuple[Any, ...], int]]:
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(data, (), 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict):
            items: Any = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            continue
        yield path, depth
        stack.extend((child, (*path, key), depth + 1) for key, child in items)
