"""The published JSON Schema of topology files, and its errors as located problems.

The schema checks shape: keys, types, enums, ranges. Each jsonschema error is
mapped back to the YAML node it is about (the key itself for an unknown key)
and reworded for a person, with a hint: a did-you-mean, how to quote, or the
schema's own description of the field.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from podnet.topology.problems import Path, Problems, dotted
from podnet.topology.yamlmarks import Document

__all__ = ["check_schema", "did_you_mean", "schema", "schema_text"]


def schema_text() -> str:
    """The topology file's JSON Schema (draft 2020-12), as published."""
    return resources.files("podnet.topology").joinpath("schema.json").read_text(encoding="utf-8")


@functools.cache
def schema() -> dict[str, Any]:
    """The schema as a parsed (shared, do not modify) mapping."""
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def check_schema(doc: Document, problems: Problems) -> None:
    """Validate ``doc`` against the schema; report every error at its node."""
    for error in _validator().iter_errors(doc.data):
        _report(error, doc, problems)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """``"did you mean 'x'?"`` for the closest choice, or None."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


_Handler = Callable[[ValidationError, Path, Document, Problems], None]


def _report(error: ValidationError, doc: Document, problems: Problems) -> None:
    path: Path = tuple(error.absolute_path)
    if "propertyNames" in error.absolute_schema_path:
        _bad_key(error, path, problems)
        return
    handler = _HANDLERS.get(str(error.validator), _generic)
    handler(error, path, doc, problems)


def _subschema(error: ValidationError) -> dict[str, Any]:
    """The schema object holding the failed keyword."""
    return dict(error.schema) if isinstance(error.schema, dict) else {}


def _rule(error: ValidationError) -> Any:
    """The failed keyword's value in the schema (e.g. the enum's choices)."""
    return error.validator_value


def _mapping_keys(error: ValidationError) -> list[str]:
    instance = error.instance
    return [str(k) for k in instance] if isinstance(instance, dict) else []


def _describe(error: ValidationError) -> str | None:
    """First sentence of the failing subschema's description, as a hint."""
    text = _subschema(error).get("description")
    return _first_sentence(text) if isinstance(text, str) else None


def _first_sentence(text: str) -> str:
    sentence = text.split(". ", maxsplit=1)[0].rstrip(".")
    if sentence[1:2].isupper():  # an acronym such as MTU keeps its case
        return sentence
    return sentence[:1].lower() + sentence[1:]


def _bad_key(error: ValidationError, path: Path, problems: Problems) -> None:
    key = str(error.instance)
    problems.add(
        (*path, key),
        f"key {key!r} in {dotted(path)} is not valid",
        _describe(error),
        key=True,
        weak=True,
    )


def _unknown_keys(error: ValidationError, path: Path, doc: Document, problems: Problems) -> None:
    known = dict(_subschema(error).get("properties", {}))
    patterns = list(_subschema(error).get("patternProperties", {}))
    for key in _mapping_keys(error):
        if key in known or any(re.search(p, key) for p in patterns):
            continue
        where = "at the top level" if not path else f"in {dotted(path)}"
        shown = [*sorted(known), *(p.lstrip("^") + "*" for p in patterns)]
        hint = did_you_mean(key, known) or "valid keys here: " + ", ".join(shown)
        problems.add((*path, key), f"unknown key {key!r} {where}", hint, key=True)


def _required(error: ValidationError, path: Path, doc: Document, problems: Problems) -> None:
    props = _subschema(error).get("properties", {})
    for key in _rule(error):
        if isinstance(error.instance, dict) and key not in error.instance:
            text = props.get(key, {}).get("description", "")
            hint = f"add {key}: — {_first_sentence(text)}" if text else f"add {key}:"
            where = "the file" if not path else dotted(path)
            problems.add(path, f"{where} is missing the required key {key!r}", hint)


_TYPE_NAMES = {
    "string": "text",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "empty",
}


def _kind(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"text ({value!r})"
    return "a list" if isinstance(value, list) else "a mapping"


def _type(error: ValidationError, path: Path, doc: Document, problems: Problems) -> None:
    rule = _rule(error)
    wanted = [rule] if isinstance(rule, str) else list(rule)
    if path == () and error.instance is None:
        problems.add(path, "the file is empty", "start with name: <topology name>")
        return
    expected = " or ".join(_TYPE_NAMES.get(w, w) for w in wanted if w != "null")
    message = f"{dotted(path)} must be {expected}, not {_kind(error.instance)}"
    problems.add(path, message, _type_hint(error, wanted, doc.raw(path)))


def _type_hint(error: ValidationError, wanted: list[str], raw: str | None) -> str | None:
    value = error.instance
    if "string" in wanted and raw is not None and not isinstance(value, str):
        return f'quote it: "{raw}"'
    if "boolean" in wanted and isinstance(value, str):
        return "write true or false"
    if "array" in wanted and raw is not None:
        return f"write a list: [{raw}]"
    keys = sorted(_subschema(error).get("properties", {}))
    if "object" in wanted and keys:
        return "write a mapping with keys such as " + ", ".join(keys)
    return _describe(error)


def _enum(error: ValidationError, path: Path, doc: Document, problems: Problems) -> None:
    choices = [str(c) for c in _rule(error)]
    message = f"{dotted(path)} is {error.instance!r}, not one of: " + ", ".join(choices)
    hint = did_you_mean(str(error.instance), choices) if isinstance(error.instance, str) else None
    if hint is None and isinstance(error.instance, bool):
        hint = f'write one of them, quoted: "{choices[0]}"'
    problems.add(path, message, hint or _describe(error))


_BOUNDS = {
    "minimum": "is {value}; the minimum is {limit}",
    "maximum": "is {value}; the maximum is {limit}",
    "minItems": "has {count} items; at least {limit} needed",
    "maxItems": "has {count} items; at most {limit} allowed",
    "minLength": "is empty",
    "maxLength": "is {count} characters; at most {limit} allowed",
    "pattern": "{value!r} has characters that are not allowed",
}


def _bound(error: ValidationError, path: Path, doc: Document, problems: Problems) -> None:
    value = error.instance
    count = len(value) if isinstance(value, str | list) else 0
    text = _BOUNDS[str(error.validator)].format(value=value, limit=_rule(error), count=count)
    weak = str(error.validator) in {"minLength", "maxLength", "pattern"}
    problems.add(path, f"{dotted(path)} {text}", _describe(error), weak=weak)


def _generic(error: ValidationError, path: Path, doc: Document, problems: Problems) -> None:
    problems.add(path, f"{dotted(path)}: {error.message}", _describe(error))


_HANDLERS: dict[str, _Handler] = {
    "additionalProperties": _unknown_keys,
    "required": _required,
    "type": _type,
    "enum": _enum,
    **dict.fromkeys(_BOUNDS, _bound),
}
