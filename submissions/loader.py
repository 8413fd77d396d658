"""Reading a spec file into plain data, safely.

Spec files come from people we do not know.  YAML is read with a safe
loader that also refuses what PyYAML's SafeLoader lets through: duplicate
keys (the last would silently win) and aliases (a few lines can expand to
gigabytes).  JSON rejects duplicate keys and NaN/Infinity literals.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 64 * 1024
MAX_DEPTH = 12


class SpecError(ValueError):
    """A problem with a spec, located by field (dotted path, or "" for the whole file)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class _StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader without aliases or duplicate keys, reading 1e-3 as a float (YAML 1.2)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise SpecError("", f"YAML aliases are not allowed (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise SpecError(
                    "", f"keys must be strings, got {key!r} (line {key_node.start_mark.line + 1})"
                )
            if key in seen:
                raise SpecError(key, f"duplicate key (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 reads "1e-3" (no dot) as a string; every spec author means a number.
_StrictSafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$""",
        re.X,
    ),
    list("-+0123456789"),
)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise SpecError(key, "duplicate key")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise SpecError("", f"{name} is not a valid number in a spec")


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def parse(data: bytes, suffix: str) -> dict[str, Any]:
    """Bytes of a spec file -> a mapping; raises SpecError."""
    if len(data) > MAX_BYTES:
        raise SpecError("", f"file is {len(data)} bytes; the limit is {MAX_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError("", f"not UTF-8 (invalid byte at offset {e.start})") from None
    try:
        if suffix.lower() == ".json":
            document = json.loads(
                text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant
            )
        else:
            document = yaml.load(text, Loader=_StrictSafeLoader)
    except SpecError:
        raise
    except RecursionError:
        raise SpecError("", "nesting is too deep") from None
    except json.JSONDecodeError as e:
        raise SpecError(
            "", f"malformed JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
    except yaml.YAMLError as e:
        raise SpecError("", f"malformed YAML: {one_line(str(e))}") from None
    if not isinstance(document, dict):
        raise SpecError("", f"a spec is a mapping of fields, got {type(document).__name__}")
    if depth(document) > MAX_DEPTH:
        raise SpecError("", f"nesting is deeper than {MAX_DEPTH} levels")
    return document


def read(path: Path) -> tuple[dict[str, Any], str]:
    """(document, source text) of a spec file; raises SpecError."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise SpecError("", f"file is {size} bytes; the limit is {MAX_BYTES}")
        data = path.read_bytes()
    except OSError as e:
        raise SpecError("", f"cannot read: {e.strerror}") from None
    document = parse(data, path.suffix)
    return document, data.decode("utf-8")


def one_line(text: str) -> str:
    return " ".join(text.split())
