"""Provider-only fields across formats: a request's ``provider_options``.

A client may send fields that only one provider knows in a namespaced object (the
openai SDK's ``extra_body`` puts it at the top level)::

    "provider_options": {"anthropic": {"top_k": 5}, "gemini": {"safetySettings": [...]}}

The keys are provider kinds as the config names them (``openai``, ``anthropic``,
``gemini``, ``novita``, ``openai_compatible``). Only the serving deployment's own entry
applies, and only for the top-level fields on that deployment's ``provider_options``
allow-list; the others' entries are ignored. Rules:

- the object's shape is checked before routing: ``provider_options`` must be an object,
  each key a provider kind and each value an object (a 400 naming the path otherwise);
- a field of the serving provider's entry that is not on the deployment's allow-list
  refuses the request *on that deployment* (``unsupported_value``, naming
  ``provider_options.<kind>.<field>``): the router tries the alias's next deployment, and
  the client gets the refusal when none takes it;
- an allowed field is written into the upstream body at the top level, after the
  translation: an object merged one level deep into an object already there (so
  ``{"generationConfig": {"seed": 7}}`` adds to the translated generation config),
  anything else replacing what was there;
- ``provider_options`` itself is never sent upstream (gateway/canonical.py EXTENSIONS).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import Any, get_args

import orjson

from gateway.canonical import JSON
from gateway.config.settings import ProviderKind
from gateway.errors import InvalidRequest
from gateway.providers.base import WireRequest

FIELD = "provider_options"
KINDS: tuple[str, ...] = get_args(ProviderKind)


def checked(req: JSON) -> dict[str, JSON] | None:
    """The request's ``provider_options`` once its shape is right; None when it has none."""
    options = req.get(FIELD)
    if options is None:
        return None
    if not isinstance(options, dict):
        raise InvalidRequest(f"{FIELD} must be an object keyed by provider", param=FIELD, code="invalid_type")
    for kind, fields in options.items():
        if kind not in KINDS:
            raise InvalidRequest(
                f"{FIELD}.{kind}: unknown provider (one of {', '.join(KINDS)})",
                param=f"{FIELD}.{kind}",
                code="invalid_value",
            )
        if not isinstance(fields, dict):
            raise InvalidRequest(
                f"{FIELD}.{kind} must be an object of fields", param=f"{FIELD}.{kind}", code="invalid_type"
            )
    return options


def for_deployment(options: dict[str, JSON] | None, kind: str, allowed: Collection[str]) -> JSON:
    """The fields of ``options`` for a deployment of provider ``kind`` with allow-list ``allowed``;
    a field off the list is an :class:`InvalidRequest` naming it."""
    fields = (options or {}).get(kind)
    if not fields:
        return {}
    for name in fields:
        if name not in allowed:
            listed = ", ".join(sorted(allowed)) if allowed else "none"
            raise InvalidRequest(
                f"{FIELD}.{kind}.{name} is not allowed on this deployment (allowed: {listed})",
                param=f"{FIELD}.{kind}.{name}",
                code="unsupported_value",
            )
    return fields


def merged(body: JSON, fields: JSON) -> JSON:
    """``body`` with ``fields`` written in (objects merged one level deep); a new dict."""
    out = dict(body)
    for name, value in fields.items():
        there = out.get(name)
        out[name] = {**there, **value} if isinstance(there, dict) and isinstance(value, dict) else value
    return out


def apply_to_wire(wire: WireRequest, fields: JSON) -> WireRequest:
    """``wire`` with ``fields`` merged into its JSON body (unchanged when there are none)."""
    if not fields or wire.body is None:
        return wire
    body: Any = orjson.loads(wire.body)
    if not isinstance(body, dict):  # every provider sends an object; nothing to merge into otherwise
        return wire
    return replace(wire, body=orjson.dumps(merged(body, fields)))
