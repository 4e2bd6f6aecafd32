"""Component specs as the command line writes them.

``name``, ``name:value`` or ``name:key=value,key=value``. The bare value sets the component's
positional parameter (``file:in.flac``, ``wav:out.wav``) and may be followed by keys
(``file:in.flac,start=3``). A value holding a comma is quoted (``wav:path="a,b.wav"``); when no item
is a ``key=value`` the whole text is the value, so ``file:a,b.wav`` needs no quotes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import SpecError

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\Z")
KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
QUOTES = "\"'"


@dataclass(frozen=True)
class Spec:
    name: str
    value: str | None = None  # the positional value, if any
    params: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return format_spec(self)


def parse_spec(text: str) -> Spec:
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not NAME.match(name):
        raise SpecError(f"bad component spec {text!r}: expected name, name:value or name:key=value,...")
    if not sep:
        return Spec(name)
    items = _split_items(rest, text)
    keyed = [_key_of(item) is not None for item in items]
    if not any(keyed):
        # No key=value anywhere: the whole text is one value (paths may contain commas).
        value = _unquote(rest, text) if len(items) == 1 else rest
        return Spec(name, value)
    value = None
    params: dict[str, str] = {}
    for position, item in enumerate(items):
        key = _key_of(item)
        if key is None:
            if position != 0:
                raise SpecError(
                    f"bad component spec {text!r}: {item!r} is not key=value "
                    "(only the first item may be a bare value; quote values that contain commas)"
                )
            value = _unquote(item, text)
            continue
        if key in params:
            raise SpecError(f"bad component spec {text!r}: {key!r} is given twice")
        params[key] = _unquote(item[len(key) + 1 :], text)
    return Spec(name, value, params)


def format_spec(spec: Spec) -> str:
    """The inverse of parse_spec: ``parse_spec(format_spec(s)) == s``."""
    items = [] if spec.value is None else [_quote(spec.value, positional=True)]
    items += [f"{key}={_quote(value)}" for key, value in spec.params.items()]
    return spec.name if not items and spec.value is None else f"{spec.name}:{','.join(items)}"


def _key_of(item: str) -> str | None:
    key, eq, _ = item.partition("=")
    return key if eq and KEY.match(key) else None


def _split_items(rest: str, text: str) -> list[str]:
    """Split on commas outside quotes. A quote opens only at the start of an item or value."""
    items, current, quote = [], [], None
    value_start = True
    for char in rest:
        if quote:
            current.append(char)
            quote = None if char == quote else quote
            continue
        if char == ",":
            items.append("".join(current))
            current, value_start = [], True
            continue
        if char in QUOTES and value_start:
            quote = char
        # a value starts right after the first "=" that follows a key
        value_start = char == "=" and KEY.match("".join(current)) is not None
        current.append(char)
    if quote:
        raise SpecError(f"bad component spec {text!r}: unterminated {quote} quote")
    items.append("".join(current))
    return items


def _unquote(value: str, text: str) -> str:
    if len(value) >= 2 and value[0] in QUOTES and value[-1] == value[0]:
        return value[1:-1]
    if value and value[0] in QUOTES:  # ("" is in every string: an empty value is no quote)
        raise SpecError(f"bad component spec {text!r}: text after the closing quote in {value!r}")
    return value


def _quote(value: str, positional: bool = False) -> str:
    plain = "," not in value and value[:1] not in QUOTES
    if plain and not (positional and _key_of(value)):
        return value
    for quote in QUOTES:
        if quote not in value:
            return f"{quote}{value}{quote}"
    raise SpecError(f"cannot write {value!r} in a spec: it holds both kinds of quote")
