"""Reading a spec file into plain data, safely.

Spec files come from people we do not know.  Reading one never constructs
an object, never recurses without bound and never does more than linear work
in the size of the file, which is itself bounded (`MAX_BYTES`):

- YAML is read with SafeLoader's composer, constructor and resolver (on
  libyaml's parser when PyYAML has it, 3x faster), with more refused while
  composing, before anything is constructed: tags (`!!python/object...`,
  `!foo`, even `!!str`), anchors and aliases (a few lines can expand to
  gigabytes), nesting deeper than `MAX_DEPTH`, more than `MAX_NODES` keys
  and values, keys that are not strings, duplicate keys (the last would
  silently win), and numeric literals longer than `MAX_NUMBER_LENGTH`
  (Python's int() is quadratic in the digits).  Scalars resolve as in YAML
  1.2's core schema: dates, merge keys, `yes`/`no`, `1:04` and `0b1` are not
  special, `1e-3` is a float, and `010` (octal in YAML 1.1) is refused.
- JSON is pre-scanned for nesting depth and long numbers, then parsed with
  duplicate keys, NaN/Infinity and more than `MAX_NODES` keys and values
  refused.
- Either way, numbers must be finite and strings may not hold control
  characters (other than tab, newline and carriage return) or lone surrogates.

Every problem is one `SpecError`: a field (dotted path, or "" for the whole
file) and a one-line message, with the line where the parser knows it.
"""

from __future__ import annotations

import json
import math
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 64 * 1024
MAX_DEPTH = 12
MAX_NUMBER_LENGTH = 100  # characters of one numeric literal
# Keys and values (collections included) in one spec; a valid spec has under 200.  Beyond it,
# reading stops at once: 64 KiB of list items would otherwise cost a second to read and check.
MAX_NODES = 1000
_SHOWN = 60  # characters of a value quoted in a message


class SpecError(ValueError):
    """A problem with a spec, located by field (dotted path, or "" for the whole file).

    Both parts are made printable and one line long, whatever the spec held.
    """

    def __init__(self, field: str, message: str) -> None:
        field = clip(printable(field), 100)
        message = one_line(printable(message))
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def one_line(text: str) -> str:
    return " ".join(text.split())


def printable(text: str) -> str:
    """`text` with every non-printable character escaped (\\n, \\x00, \\ud800, ...)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def clip(text: str, limit: int = _SHOWN) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(value: Any) -> str:
    """repr of a value for a message, clipped."""
    return clip(repr(value))


_BAD_CHARACTER = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _string_problem(text: str) -> str | None:
    found = _BAD_CHARACTER.search(text)
    if found is None:
        return None
    return f"character U+{ord(found.group()):04X} is not allowed in {shown(text)}"


def _join(path: list[str]) -> str:
    return ".".join(path)


_TOO_MANY = f"a spec holds at most {MAX_NODES} keys and values"


# --- YAML ---------------------------------------------------------------------------------

_YAML = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT = _YAML + "str", _YAML + "int", _YAML + "float"
_NODE_EVENTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)


def _shown_tag(tag: str) -> str:
    return "!!" + tag[len(_YAML) :] if tag.startswith(_YAML) else tag


class _StrictComposer(
    yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver
):
    """SafeLoader's composer, constructor and resolver, refusing while composing what a spec
    never needs (see the module).  The events come from a parser mixed in below."""

    def __init__(self) -> None:
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._path: list[str] = []  # of the node being composed
        self._depth = 0  # collections around it
        self._nodes = 0  # composed so far

    # Provided by the parser class it is mixed with.
    peek_event: Callable[[], Any]
    dispose: Callable[[], None]

    def compose_node(self, parent: Any, index: Any) -> Any:
        # Mapping values come with their key node as `index`, sequence items with an int.
        pushed = parent is not None and index is not None
        if pushed:
            if isinstance(index, yaml.ScalarNode):
                self._path.append(str(index.value))
            else:  # an int, or a collection used as a key (refused once the mapping is read)
                self._path.append(str(index) if isinstance(index, int) else "?")
        try:
            event = self.peek_event()
            field, line = _join(self._path), event.start_mark.line + 1
            self._nodes += 1
            if self._nodes > MAX_NODES:
                raise SpecError(field, f"{_TOO_MANY} (line {line})")
            if isinstance(event, yaml.AliasEvent):
                raise SpecError(
                    field, f"YAML aliases are not allowed: *{clip(str(event.anchor))} (line {line})"
                )
            if isinstance(event, _NODE_EVENTS):
                if event.anchor is not None:
                    raise SpecError(
                        field, f"YAML anchors are not allowed: &{clip(event.anchor)} (line {line})"
                    )
                if event.tag is not None:
                    raise SpecError(
                        field,
                        f"YAML tags are not allowed: {clip(_shown_tag(event.tag))} (line {line})",
                    )
            collection = isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent)
            if collection:
                self._depth += 1
                if self._depth > MAX_DEPTH:
                    raise SpecError(
                        field, f"nesting is deeper than {MAX_DEPTH} levels (line {line})"
                    )
            node = super().compose_node(parent, index)
            if collection:
                self._depth -= 1
            return node
        finally:
            if pushed:
                self._path.pop()

    def compose_scalar_node(self, anchor: Any) -> Any:
        node = super().compose_scalar_node(anchor)
        field, line = _join(self._path), node.start_mark.line + 1
        if node.tag in (_INT, _FLOAT):
            if len(node.value) > MAX_NUMBER_LENGTH:
                raise SpecError(
                    field,
                    f"a number of {len(node.value)} characters; the limit is {MAX_NUMBER_LENGTH}"
                    f" (line {line})",
                )
            if node.tag == _INT and _LEADING_ZERO.fullmatch(node.value):
                raise SpecError(
                    field,
                    f"ambiguous number {shown(node.value)}: a leading zero means octal in YAML"
                    f" 1.1, decimal in YAML 1.2; write {int(node.value)} (or 0o... for octal)"
                    f" (line {line})",
                )
            try:
                value = (
                    self.construct_yaml_float(node)
                    if node.tag == _FLOAT
                    else _construct_core_int(self, node)
                )
            except ValueError:
                raise SpecError(
                    field, f"not a valid number: {shown(node.value)} (line {line})"
                ) from None
            if isinstance(value, float) and not math.isfinite(value):
                raise SpecError(
                    field, f"numbers must be finite, got {clip(node.value)} (line {line})"
                )
        elif node.tag == _STR:
            problem = _string_problem(node.value)
            if problem is not None:
                raise SpecError(field, f"{problem} (line {line})")
        return node

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        seen: set[str] = set()
        for key_node, _ in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR:
                got = (
                    shown(key_node.value)
                    if isinstance(key_node, yaml.ScalarNode)
                    else f"a {key_node.id}"
                )
                raise SpecError(_join(self._path), f"keys must be strings, got {got} (line {line})")
            if key_node.value in seen:
                raise SpecError(
                    _join([*self._path, key_node.value]), f"duplicate key (line {line})"
                )
            seen.add(key_node.value)
        return node


# Scalars resolve as in YAML 1.2's core schema, not PyYAML's YAML 1.1: no timestamps (a date
# is a string), no merge keys (`<<` is a key like any other), no `yes`/`no`/`on`/`off`
# booleans, no sexagesimal (`1:04` is the string "1:04", not 64), no binary or `_`
# separators; `0o17` is octal and `0x1f` hexadecimal, as written.  A decimal integer with a
# leading zero (`010`: 8 in YAML 1.1, 10 in 1.2) is refused rather than guessed.  `1e-3`
# (no dot) is a float, as in 1.2.
_CORE_RESOLVERS: list[tuple[str, str, str]] = [
    (_YAML + "bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        _FLOAT,
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
]
_CORE_TAGS = {_YAML + "bool", _INT, _FLOAT, _YAML + "timestamp", _YAML + "merge"}
_StrictComposer.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _CORE_TAGS]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
for _tag, _pattern, _first in _CORE_RESOLVERS:
    _StrictComposer.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
_LEADING_ZERO = re.compile(r"[-+]?0[0-9]+")


def _construct_core_int(_loader: Any, node: yaml.ScalarNode) -> int:
    """An integer of YAML 1.2's core schema (the resolver above has checked its form)."""
    text = str(node.value)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text)


_StrictComposer.add_constructor(_INT, _construct_core_int)


class _PyStrictLoader(
    _StrictComposer, yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser
):
    """Events from PyYAML's pure-Python parser."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _StrictComposer.__init__(self)


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _CStrictLoader(_StrictComposer, CParser):
        """Events from libyaml's parser: the same checks, about 3x faster than pure Python."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _StrictComposer.__init__(self)

    _StrictSafeLoader: Callable[[str], _StrictComposer] = _CStrictLoader
else:  # pragma: no cover (PyYAML wheels bundle libyaml)
    _StrictSafeLoader = _PyStrictLoader


def _yaml_problem(e: yaml.YAMLError, text: str) -> SpecError:
    """One line from PyYAML's multi-line message: what, and where."""
    if isinstance(e, yaml.MarkedYAMLError) and e.problem_mark is not None:
        mark = e.problem_mark
        if e.problem == "exceeded maximum nesting depth":  # libyaml's own limit, 1000
            return SpecError(
                "", f"nesting is deeper than {MAX_DEPTH} levels (line {mark.line + 1})"
            )
        context = f"{e.context}: " if e.context else ""
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        return SpecError("", f"malformed YAML: {context}{e.problem} ({where})")
    if isinstance(e, yaml.reader.ReaderError):
        line = text.count("\n", 0, e.position) + 1
        return SpecError(
            "", f"malformed YAML: character U+{e.character:04X} is not allowed (line {line})"
        )
    return SpecError("", f"malformed YAML: {clip(one_line(str(e)), 200)}")


# --- JSON ---------------------------------------------------------------------------------

# Outside strings: brackets, and runs of number characters too long to be a spec's number.
# A string runs to its closing quote or the end of its line (JSON strings hold no newline), so
# an unterminated one cannot make the scan quadratic.
_JSON_TOKENS = re.compile(
    r'"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"?|[\[{]|[\]}]|[-+.0-9eE]{' + str(MAX_NUMBER_LENGTH + 1) + ",}"
)


def _scan_json(text: str) -> None:
    """Refuse deep nesting and long numbers before json.loads sees them."""
    depth = 0
    for token in _JSON_TOKENS.finditer(text):
        first = token.group()[0]
        if first == '"':
            continue
        line = text.count("\n", 0, token.start()) + 1
        if first in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise SpecError("", f"nesting is deeper than {MAX_DEPTH} levels (line {line})")
        elif first in "]}":
            depth -= 1
        else:
            raise SpecError(
                "",
                f"a number of {len(token.group())} characters; the limit is {MAX_NUMBER_LENGTH}"
                f" (line {line})",
            )


class _JsonObject(list[tuple[str, Any]]):
    """An object's pairs as parsed, checked (with their path) by `_from_json`."""


_JSON_CONSTANTS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _json_number_name(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _from_json(value: Any, path: list[str], nodes: list[int]) -> Any:
    """Parsed JSON -> plain data; duplicate keys, non-finite numbers and bad strings refused.

    `nodes` counts keys and values, as the YAML composer does.
    """
    nodes[0] += 1
    if nodes[0] > MAX_NODES:
        raise SpecError(_join(path), _TOO_MANY)
    if isinstance(value, _JsonObject):
        out: dict[str, Any] = {}
        for key, item in value:
            nodes[0] += 1
            problem = _string_problem(key)
            if problem is not None:
                raise SpecError(_join(path), f"key: {problem}")
            if key in out:
                raise SpecError(_join([*path, key]), "duplicate key")
            out[key] = _from_json(item, [*path, key], nodes)
        return out
    if isinstance(value, list):
        return [_from_json(item, [*path, str(i)], nodes) for i, item in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(_join(path), f"numbers must be finite, got {_json_number_name(value)}")
    if isinstance(value, str):
        problem = _string_problem(value)
        if problem is not None:
            raise SpecError(_join(path), problem)
    return value


# --- files --------------------------------------------------------------------------------


def parse(data: bytes, suffix: str) -> dict[str, Any]:
    """Bytes of a spec file -> a mapping; raises SpecError."""
    if len(data) > MAX_BYTES:
        raise SpecError("", f"file is {len(data)} bytes; the limit is {MAX_BYTES}")
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise SpecError(
            "", f"not UTF-8 (invalid byte 0x{data[e.start]:02x} at offset {e.start}, line {line})"
        ) from None
    try:
        if suffix.lower() == ".json":
            _scan_json(text)
            document = _from_json(
                json.loads(
                    text, object_pairs_hook=_JsonObject, parse_constant=_JSON_CONSTANTS.__getitem__
                ),
                [],
                [0],
            )
        else:
            loader = _StrictSafeLoader(text)
            try:
                document = loader.get_single_data()
            finally:
                loader.dispose()
    except SpecError:
        raise
    except RecursionError:  # not expected: depth is checked before anything recurses
        raise SpecError("", f"nesting is deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as e:
        raise SpecError(
            "", f"malformed JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
    except yaml.YAMLError as e:
        raise _yaml_problem(e, text) from None
    if not isinstance(document, dict):
        raise SpecError("", f"a spec is a mapping of fields, got {type(document).__name__}")
    return document


def read(path: Path) -> tuple[dict[str, Any], str]:
    """(document, source text) of a spec file; raises SpecError.

    Only a regular file is read, and never more than MAX_BYTES + 1 bytes of
    it: /dev/zero or a FIFO is refused, not waited on.
    """
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise SpecError("", "not a regular file")
        if info.st_size > MAX_BYTES:
            raise SpecError("", f"file is {info.st_size} bytes; the limit is {MAX_BYTES}")
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise SpecError("", f"cannot read: {e.strerror or type(e).__name__}") from None
    document = parse(data, path.suffix)
    return document, data.decode("utf-8").removeprefix("\ufeff")
