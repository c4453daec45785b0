"""Gemini ``tools``, ``toolConfig`` and OpenAPI-style ``Schema`` -> canonical.

- ``tools[].functionDeclarations[]`` -> canonical function tools. ``parametersJsonSchema``
  is JSON Schema already; ``parameters`` (Gemini's OpenAPI subset: ``"type": "STRING"``,
  ``nullable``, ``example``, ``propertyOrdering``) is converted by :func:`json_schema`.
  ``response``/``responseJsonSchema`` and ``behavior`` are dropped (no canonical place).
- Any other tool (``googleSearch``, ``codeExecution``, ``urlContext``, ``fileSearch``,
  ``googleMaps``, ...) runs inside Gemini and is refused, naming ``tools.N``.
- ``toolConfig.functionCallingConfig.mode``: AUTO -> ``auto``, NONE -> ``none``,
  ANY -> ``required`` (one ``allowedFunctionNames`` -> that function named, as OpenAI
  says it; several -> ``required`` with the tools narrowed to them, which is what
  Gemini does), VALIDATED -> ``auto`` (with the same narrowing). ``retrievalConfig`` and
  ``includeServerSideToolInvocations`` only matter for Gemini's own tools: dropped.
"""

from __future__ import annotations

from typing import Any

from gateway.canonical import JSON
from gateway.dialects.checks import bad
from gateway.dialects.gemini_fields import array, at, boolean, camel, fields, obj, string, text_of

_DECLARATION_FIELDS = (
    "name",
    "description",
    "parameters",
    "parametersJsonSchema",
    "response",
    "responseJsonSchema",
    "behavior",
)
_MODES = {"AUTO": "auto", "VALIDATED": "auto", "NONE": "none", "ANY": "required"}
_SCHEMA_TYPES = frozenset({"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})
_SCHEMA_FIELDS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
        "additionalProperties",
        "defs",
        "ref",
    }
)


def parse_tools(value: Any, param: str = "tools") -> list[JSON]:
    tools: list[JSON] = []
    for i, raw in enumerate(array(value, param)):
        where = at(param, i)
        for key, decls in obj(raw, where).items():
            if camel(key) != "functionDeclarations":
                raise bad(
                    f"{where}.{key} is a tool Gemini runs itself; it cannot be sent to another provider",
                    where,
                    "unsupported_value",
                )
            if decls is not None:
                path = at(where, "functionDeclarations")
                tools.extend(_declaration(d, at(path, k)) for k, d in enumerate(array(decls, path)))
    return tools


def _declaration(value: Any, param: str) -> JSON:
    decl = fields(value, param, _DECLARATION_FIELDS)
    fn: JSON = {"name": string(decl.get("name"), at(param, "name"), empty=False)}
    description = text_of(decl.get("description"), at(param, "description"))
    if description:
        fn["description"] = description
    if "parameters" in decl and "parametersJsonSchema" in decl:
        raise bad(f"{param} sets both parameters and parametersJsonSchema", at(param, "parametersJsonSchema"))
    if "parameters" in decl:
        fn["parameters"] = json_schema(decl["parameters"], at(param, "parameters"))
    elif "parametersJsonSchema" in decl:
        fn["parameters"] = obj(decl["parametersJsonSchema"], at(param, "parametersJsonSchema"))
    return {"type": "function", "function": fn}


def tool_choice(value: Any, tools: list[JSON], param: str = "toolConfig") -> tuple[Any, list[JSON]]:
    """(canonical ``tool_choice`` or None, the tools narrowed to ``allowedFunctionNames``)."""
    config = fields(value, param, ("functionCallingConfig", "retrievalConfig", "includeServerSideToolInvocations"))
    if "includeServerSideToolInvocations" in config:
        boolean(config["includeServerSideToolInvocations"], at(param, "includeServerSideToolInvocations"))
    if "functionCallingConfig" not in config:
        return None, tools
    where = at(param, "functionCallingConfig")
    calling = fields(config["functionCallingConfig"], where, ("mode", "allowedFunctionNames"))
    mode = string(calling.get("mode", "MODE_UNSPECIFIED"), at(where, "mode")).upper()
    if mode != "MODE_UNSPECIFIED" and mode not in _MODES:
        raise bad(
            f"{where}.mode must be AUTO, ANY, NONE or VALIDATED, got {mode!r}", at(where, "mode"), "unsupported_value"
        )
    names = _allowed(calling.get("allowedFunctionNames"), tools, at(where, "allowedFunctionNames"))
    if names and mode not in ("ANY", "VALIDATED"):
        raise bad("allowedFunctionNames needs mode ANY or VALIDATED", at(where, "allowedFunctionNames"))
    if mode == "MODE_UNSPECIFIED" or (not tools and mode != "ANY"):
        return None, tools
    if not tools:
        raise bad("mode ANY needs functionDeclarations in tools", at(where, "mode"))
    if mode == "ANY" and len(names) == 1:
        return {"type": "function", "function": {"name": names[0]}}, tools
    if names:
        tools = [t for t in tools if t["function"]["name"] in names]
    return _MODES[mode], tools


def _allowed(value: Any, tools: list[JSON], param: str) -> list[str]:
    if value is None:
        return []
    declared = {t["function"]["name"] for t in tools}
    names = [string(n, at(param, k), empty=False) for k, n in enumerate(array(value, param))]
    for k, name in enumerate(names):
        if name not in declared:
            raise bad(f"{param}.{k} names {name!r}, which no functionDeclaration declares", at(param, k))
    return list(dict.fromkeys(names))


def json_schema(value: Any, param: str) -> JSON:
    """Gemini's OpenAPI-style ``Schema`` -> JSON Schema: types lower-cased,
    ``nullable`` -> a ``null`` type, ``example`` -> ``examples``, ``defs``/``ref`` ->
    ``$defs``/``$ref``; ``propertyOrdering`` dropped."""
    schema = fields(value, param, _SCHEMA_FIELDS)
    out: JSON = {}
    for key, item in schema.items():
        where = at(param, key)
        if key == "type":
            kind = string(item, where).upper()
            if kind != "TYPE_UNSPECIFIED" and kind not in _SCHEMA_TYPES:
                raise bad(f"{where} must be one of {sorted(_SCHEMA_TYPES)}, got {item!r}", where, "unsupported_value")
            if kind != "TYPE_UNSPECIFIED":
                out["type"] = kind.lower()
        elif key in ("properties", "defs"):
            members = obj(item, where).items()
            out["$defs" if key == "defs" else key] = {n: json_schema(s, at(where, n)) for n, s in members}
        elif key == "items":
            out[key] = json_schema(item, where)
        elif key == "anyOf":
            out[key] = [json_schema(s, at(where, k)) for k, s in enumerate(array(item, where))]
        elif key == "additionalProperties":
            out[key] = item if isinstance(item, bool) else json_schema(item, where)
        elif key == "ref":
            out["$ref"] = string(item, where).replace("#/defs/", "#/$defs/")
        elif key == "example":
            out["examples"] = [item]
        elif key not in ("nullable", "propertyOrdering"):
            out[key] = item
    if schema.get("nullable") is True and "type" in out:
        out["type"] = [out["type"], "null"]
    return out
