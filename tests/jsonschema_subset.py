"""A validator for the subset of JSON Schema that tenax/export/transcript.schema.json uses:
type, const, enum, minimum, properties, required, additionalProperties (bool), items, oneOf,
anyOf, not and local $ref. An unknown keyword is an error, so the schema cannot silently outgrow it."""

from __future__ import annotations

from typing import Any

TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
         "integer": int, "number": (int, float)}
KNOWN = {"type", "const", "enum", "minimum", "properties", "required", "additionalProperties", "items", "oneOf",
         "anyOf", "not", "$ref", "description", "title", "$schema", "$id", "$defs", "version"}


def _is(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, TYPES[name])


def errors(value: Any, schema: dict, root: dict | None = None, at: str = "$") -> list[str]:
    root = root or schema
    unknown = set(schema) - KNOWN
    assert not unknown, f"schema keyword(s) {unknown} not supported by this validator"
    if "$ref" in schema:
        node: Any = root
        for key in schema["$ref"].removeprefix("#/").split("/"):
            node = node[key]
        return errors(value, node, root, at)
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, n) for n in names):
            return [f"{at}: {type(value).__name__} is not {'/'.join(names)}"]
    if "const" in schema and value != schema["const"]:
        return [f"{at}: {value!r} is not {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{at}: {value!r} is not one of {schema['enum']}"]
    out: list[str] = []
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        out.append(f"{at}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        out += [f"{at}: missing {k!r}" for k in schema.get("required", []) if k not in value]
        props = schema.get("properties", {})
        for k, v in value.items():
            if k in props:
                out += errors(v, props[k], root, f"{at}.{k}")
            elif schema.get("additionalProperties", True) is False:
                out.append(f"{at}: unexpected {k!r}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            out += errors(v, schema["items"], root, f"{at}[{i}]")
    if "not" in schema and not errors(value, schema["not"], root, at):
        out.append(f"{at}: matches what it must not: {schema['not']}")
    for key, want in (("oneOf", lambda n: n == 1), ("anyOf", lambda n: n >= 1)):
        if key in schema:
            results = [errors(value, s, root, at) for s in schema[key]]
            if not want(sum(not r for r in results)):
                best = min(results, key=len) if all(results) else ["matches more than one"]
                out.append(f"{at}: {key} failed ({sum(not r for r in results)} matched): {best[:3]}")
    return out
