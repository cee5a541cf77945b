"""YAML from clients, bounded before it is built: size, nesting depth, scalar length, no
aliases.

PyYAML builds a document recursively (deep nesting ran out of Python's stack: a 500), turns
digits into ``int`` whatever their number (5,000 digits: Python's conversion limit, a 500),
and lets aliases share a node any number of times (a few hundred bytes that expand to
billions of nodes once validated). :func:`load` first walks the document's events with
libyaml's C parser, which builds nothing, and refuses what is too deep, too long or aliased,
then loads it with the C loader (about six times faster than the pure-Python one).
"""

from __future__ import annotations

from typing import Any

import yaml

from suangu.api.errors import MalformedBody, PayloadTooLarge
from suangu.core.errors import ValidationError

#: Longest scalar (a string or a number, in characters).
MAX_SCALAR = 4096
#: Most parse events (nodes) in one document.
MAX_EVENTS = 200_000

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _malformed(err: yaml.YAMLError) -> MalformedBody:
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or "malformed YAML"
    return MalformedBody(
        f"malformed YAML{where}: {problem}",
        field="body",
        fix="check the indentation and the ':' after each key",
    )


def _line(event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    return f" at line {mark.line + 1}" if mark is not None else ""


def check(text: str, *, max_depth: int) -> None:
    """Refuse (422 naming ``body``) a document nested deeper than ``max_depth``, with a
    scalar longer than :data:`MAX_SCALAR`, more than :data:`MAX_EVENTS` nodes, or an alias;
    malformed YAML is a 400."""
    depth = 0
    try:
        for n, event in enumerate(yaml.parse(text, Loader=_LOADER)):
            if n > MAX_EVENTS:
                raise ValidationError(
                    f"holds more than {MAX_EVENTS} values", field="body", fix="split it"
                )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > max_depth:
                    raise ValidationError(
                        f"nests deeper than {max_depth} levels{_line(event)}",
                        field="body",
                        fix="a job spec needs a few levels: orders:, a list, its fields",
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.ScalarEvent):
                if len(event.value) > MAX_SCALAR:
                    raise ValidationError(
                        f"holds a value of {len(event.value)} characters{_line(event)}; at "
                        f"most {MAX_SCALAR}",
                        field="body",
                        fix="shorten it: no field of an order needs that much",
                    )
            elif isinstance(event, yaml.AliasEvent):
                raise ValidationError(
                    f"uses an alias (*{event.anchor}){_line(event)}",
                    field="body",
                    fix="write the values out instead of anchors (&) and aliases (*)",
                )
    except yaml.YAMLError as err:
        raise _malformed(err) from None


def load(raw: bytes, *, max_bytes: int, max_depth: int) -> Any:
    """The document of ``raw`` (UTF-8 YAML), within the bounds (see :func:`check`)."""
    if len(raw) > max_bytes:
        raise PayloadTooLarge(
            f"is {len(raw)} bytes; at most {max_bytes}", field="body", fix="split it"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MalformedBody("is not UTF-8 text", field="body", fix="send UTF-8 YAML") from None
    check(text, max_depth=max_depth)
    try:
        return yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as err:
        raise _malformed(err) from None
    except (ValueError, RecursionError, OverflowError) as err:
        raise ValidationError(
            f"holds a value that cannot be read: {str(err)[:200]}",
            field="body",
            fix="check the numbers and dates in it",
        ) from None
