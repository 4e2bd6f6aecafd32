"""Sink path templates: ``wav:out/{stem}.wav`` filled from a batch's file or a room's track.

A template names plain fields only (``{stem}``, ``{identity}``), as a shell's ``${stem}`` does:
Python's format syntax (``{stem.upper}``, ``{stem[0]}``, ``{stem!r}``, ``{stem:>20}``) and a field that
nothing fills are refused before anything runs; ``{{`` and ``}}`` write a brace.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Mapping

from .errors import UsageError

# where nothing fills a field: why, said after "nothing fills {stem} here"
NO_FIELDS = "fields are filled from a batch's files (file:rec/*.flac) or a room's tracks (track:*)"


def field_list(fields) -> str:
    return ", ".join(f"{{{name}}}" for name in fields)


def _parts(template: str, known: Collection[str], why: str) -> list[tuple[str, str | None]]:
    """``template`` as (text, field or None) pairs, after checking it names only ``known`` fields."""
    hint = f"fields: {field_list(known)}" if known else why or NO_FIELDS
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise UsageError(f"{template}: bad template ({exc}); {hint}; write a brace as {{{{ or }}}}") from None
    parts = []
    for text, name, spec, conversion in parsed:
        if name is not None:
            written = _written(name, conversion, spec)
            if not known:
                raise UsageError(f"{template}: nothing fills {written} here: {hint}")
            if name not in known or conversion or spec:
                raise UsageError(f"{template}: unknown field {written}; known fields: {field_list(known)}")
        parts.append((text, name))
    return parts


def _written(name: str, conversion: str | None, spec: str | None) -> str:
    """A field as the template wrote it: ``{stem}``, ``{stem!r}``, ``{stem:>20}``."""
    return "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"


def _braced(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def fill_some(template: str, fields: Mapping[str, str]) -> str:
    """``template`` with the plain fields that ``fields`` holds filled in, and the rest left as written
    (other fields, doubled braces), for a later :func:`fill`: a worker fills its job's ``{room}`` and
    ``{job}`` before a fan-out fills each stream's ``{identity}``. A template that does not parse is
    returned as it is: its ``fill`` refuses it."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return template
    out = []
    for text, name, spec, conversion in parsed:
        out.append(_braced(text))
        if name is not None:
            plain = name in fields and not spec and not conversion
            out.append(_braced(fields[name]) if plain else _written(name, conversion, spec))
    return "".join(out)


def fill(template: str, fields: Mapping[str, str], why: str = "") -> str:
    """``template`` with each ``{field}`` replaced by its value in ``fields`` and ``{{``/``}}`` by a
    brace; the values are put in as they are. Raises :class:`UsageError` (one line)
    for a field not in ``fields`` or written in format syntax, and for a stray brace; ``why`` says why
    no field is filled where ``fields`` is empty (a mix: one output for all its inputs)."""
    return "".join(
        text + (fields[name] if name is not None else "") for text, name in _parts(template, fields, why)
    )


def used_fields(template: str) -> set[str]:
    """The names of the fields that ``template`` uses, without what follows them (``{stem.upper}``
    uses ``stem``); a template that does not parse uses none (it is refused when it is filled)."""
    try:
        return {
            re.split(r"[.\[]", name, maxsplit=1)[0]
            for _, name, _, _ in string.Formatter().parse(template)
            if name
        }
    except ValueError:
        return set()
