"""The OpenAI Responses ingress dialect (``POST /v1/responses``), sans-IO.

Clients (``client.responses.create``, Codex, LangChain's ``use_responses_api``)
send a Responses body; :func:`parse_responses` checks it and returns the
canonical chat request, so any provider can answer it; the answer goes back as
a ``Response`` object (:func:`render_response`, or the event stream of
:class:`gateway.dialects.responses_stream.ResponsesStream`). The gateway issues
the response ids and stores the conversation itself: the server gives this
module the items of the earlier turns (``history``, resolved from
``previous_response_id``) and stores :func:`input_items` and
:func:`output_items` of each answer.

A Responses upstream gets the client's own body instead (:func:`apply_native`):
the whole conversation, stateless (``store: false``), with OpenAI's reasoning
replayed through ``reasoning.encrypted_content`` (the gateway's own reasoning
items, which hold another provider's thinking, are left out).

Top-level fields, Responses -> canonical (items: gateway/dialects/responses_items.py):

==========================  =====================================================
``model``                   passed (required)
``input``                   translated to ``messages``, after ``history``
``instructions``            translated: a system message at the front (this
                            request's only; never inherited from ``history``)
``tools``                   ``function`` tools translated; built-in tools
                            (web_search, file_search, mcp, ...) and custom tools
                            refused
``tool_choice``             translated (auto/none/required/``{type: function,
                            name}``); other forms refused; auto/none dropped
                            when there are no tools
``parallel_tool_calls``     passed when there are tools
``text.format``             translated to ``response_format`` (``text`` dropped)
``text.verbosity``          translated to ``verbosity``
``reasoning``               ``effort`` -> ``reasoning_effort``; ``summary``
                            (auto/concise/detailed; or the deprecated
                            ``generate_summary``) -> ``include_reasoning: true``;
                            the object is kept as ``reasoning``
``max_output_tokens``       translated to ``max_tokens`` (at least 1)
``temperature``, ``top_p``  passed (0..2, 0..1)
``user``,                   translated to ``user`` (``safety_identifier`` first)
``safety_identifier``
``metadata``                passed (string values)
``stream``                  passed (+ ``stream_options.include_usage``)
``prompt_cache_key``,       passed (OpenAI chat knows them; other providers
``prompt_cache_retention``, drop them)
``prompt_cache_options``,
``service_tier``
``previous_response_id``    resolved by the server into ``history``; echoed
``store``                   the gateway's own store; echoed, never sent on
``include``                 dropped; ``reasoning.encrypted_content`` in it
                            puts the gateway's thinking blocks into the
                            answer's reasoning item (responses_reasoning.py)
``truncation``              dropped (``auto`` cannot be honoured; an overlong
                            input fails upstream)
``top_logprobs``,           dropped (logprobs are not rendered; built-in tools
``max_tool_calls``,         are refused; only obfuscation padding)
``stream_options``
``background``              refused when true (no background responses)
``conversation``,           refused (no conversations, no saved prompts, no
``prompt``,                 server-side compaction or moderation)
``context_management``,
``moderation``
other fields                dropped (a Responses upstream gets them through
                            :func:`apply_native`)
==========================  =====================================================
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.canonical import JSON
from gateway.config.settings import Params
from gateway.dialects.checks import bad, expect
from gateway.dialects.responses_checks import check_top_level
from gateway.dialects.responses_items import append_item, check_item, drop_reasoning_only, input_items
from gateway.dialects.responses_reasoning import ENCRYPTED_REASONING, SUMMARIES, is_gateway_content
from gateway.dialects.responses_render import output_items, reasoning_blocks, render_response, response_id, rewrite
from gateway.errors import GatewayError, InvalidRequest, Untranslatable

__all__ = [
    "apply_native",
    "input_items",
    "input_tokens_body",
    "output_items",
    "parse_responses",
    "reasoning_blocks",
    "render_error",
    "render_response",
    "response_id",
    "rewrite",
]

PASSED = ("metadata", "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options", "service_tier")
# Canonical names in a deployment's params / drop_params -> Responses names.
INTEGERS = (("max_output_tokens", 1, 10_000_000), ("top_logprobs", 0, 20), ("max_tool_calls", 1, 10_000))
NATIVE_NAMES = {"max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens"}


def parse_responses(body: JSON, history: list[JSON]) -> JSON:
    """A checked create-response body -> the canonical chat request.
    ``history``: the items of the earlier turns, in order (from the store)."""
    model = body.get("model")
    if model is None:
        raise bad("you must provide a model parameter", "model", "missing_required_parameter")
    expect(model, str, "model", "a string")
    if not model:
        raise bad("model must not be empty", "model")
    check_top_level(body)
    messages = _messages(body, history)
    req: JSON = {"model": model, "messages": messages}
    tools = _tools(body.get("tools"))
    if tools:
        req["tools"] = tools
        if body.get("parallel_tool_calls") is not None:
            req["parallel_tool_calls"] = body["parallel_tool_calls"]
    choice = _tool_choice(body.get("tool_choice"), {t["function"]["name"] for t in tools})
    if choice is not None:
        req["tool_choice"] = choice
    req.update(_text(body.get("text")))
    req.update(_reasoning(body.get("reasoning")))
    req.update(_numbers(body))
    user = _user(body)
    if user is not None:
        req["user"] = user
    for name in PASSED:
        if body.get(name) is not None:
            req[name] = body[name]
    if body.get("stream") is not None:
        req["stream"] = body["stream"]
        if body["stream"]:
            req["stream_options"] = {"include_usage": True}
    return req


def _messages(body: JSON, history: list[JSON]) -> list[JSON]:
    messages: list[JSON] = []
    instructions = body.get("instructions")
    if instructions is not None:
        expect(instructions, str, "instructions", "a string")
        if instructions:
            messages.append({"role": "system", "content": instructions})
    for i, item in enumerate(history):
        try:
            stored = check_item(item, f"history.{i}")
        except Untranslatable:
            raise  # only a Responses upstream can continue this conversation
        except InvalidRequest as err:
            raise bad(
                f"the conversation of previous_response_id cannot be continued here: {err.message}",
                "previous_response_id",
            ) from None
        append_item(messages, stored)
    for item in input_items(body):
        append_item(messages, item)
    messages = drop_reasoning_only(messages)
    for message in messages:
        if message["role"] != "system":
            return messages
    raise bad("input must contain at least one message or function call output", "input")


def _tools(tools: Any) -> list[JSON]:
    if tools is None:
        return []
    expect(tools, list, "tools", "an array")
    out: list[JSON] = []
    for i, tool in enumerate(tools):
        param = f"tools.{i}"
        expect(tool, dict, param, "an object")
        kind = tool.get("type")
        if kind != "function":
            raise Untranslatable(
                f"tools of type {kind!r} cannot be translated: only a deployment speaking the Responses API "
                "(api: responses) takes built-in tools; others take function tools only",
                param=f"{param}.type",
            )
        name = tool.get("name")
        if name is None:
            raise bad(f"{param}.name is required", f"{param}.name", "missing_required_parameter")
        expect(name, str, f"{param}.name", "a string")
        fn: JSON = {"name": name}
        if tool.get("description") is not None:
            expect(tool["description"], str, f"{param}.description", "a string")
            fn["description"] = tool["description"]
        if tool.get("parameters") is not None:
            expect(tool["parameters"], dict, f"{param}.parameters", "a JSON schema object")
            fn["parameters"] = tool["parameters"]
        if tool.get("strict") is not None:
            expect(tool["strict"], bool, f"{param}.strict", "a boolean")
            fn["strict"] = tool["strict"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any, names: set[str]) -> Any:
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise bad("tool_choice must be 'none', 'auto', 'required' or an object", "tool_choice", "unsupported_value")
        if not names:
            if choice == "required":
                raise bad("tool_choice 'required' needs function tools", "tool_choice")
            return None  # chat upstreams refuse a tool_choice without tools
        return choice
    expect(choice, dict, "tool_choice", "a string or an object")
    if choice.get("type") != "function":
        raise bad(
            f"tool_choice of type {choice.get('type')!r} is not supported: use a function",
            "tool_choice.type",
            "unsupported_value",
        )
    name = choice.get("name")
    expect(name, str, "tool_choice.name", "a string")
    if name not in names:
        raise bad(f"tool_choice names {name!r}, which is not in tools", "tool_choice.name")
    return {"type": "function", "function": {"name": name}}


def _text(text: Any) -> JSON:
    if text is None:
        return {}
    expect(text, dict, "text", "an object")
    out: JSON = {}
    if text.get("verbosity") is not None:
        if text["verbosity"] not in ("low", "medium", "high"):
            raise bad("text.verbosity must be low, medium or high", "text.verbosity")
        out["verbosity"] = text["verbosity"]
    fmt = text.get("format")
    if fmt is None:
        return out
    expect(fmt, dict, "text.format", "an object")
    kind = fmt.get("type")
    if kind == "json_object":
        out["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        name = fmt.get("name")
        expect(name, str, "text.format.name", "a string")
        expect(fmt.get("schema"), dict, "text.format.schema", "a JSON schema object")
        spec: JSON = {"name": name, "schema": fmt["schema"]}
        for key, typ in (("description", str), ("strict", bool)):
            if fmt.get(key) is not None:
                expect(fmt[key], typ, f"text.format.{key}", f"a {typ.__name__}")
                spec[key] = fmt[key]
        out["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif kind != "text":
        raise bad("text.format.type must be text, json_object or json_schema", "text.format.type", "unsupported_value")
    return out


def _reasoning(reasoning: Any) -> JSON:
    if reasoning is None:
        return {}
    expect(reasoning, dict, "reasoning", "an object")
    out: JSON = {"reasoning": reasoning}
    effort = reasoning.get("effort")
    if effort is not None:
        expect(effort, str, "reasoning.effort", "a string")
        out["reasoning_effort"] = effort
    for key in ("summary", "generate_summary"):  # generate_summary: the API's deprecated name
        summary = reasoning.get(key)
        if summary is None:
            continue
        expect(summary, str, f"reasoning.{key}", "a string")
        if summary not in SUMMARIES:
            raise bad(f"reasoning.{key} must be one of {', '.join(SUMMARIES)}", f"reasoning.{key}")
        out["include_reasoning"] = True
    return out


def _numbers(body: JSON) -> JSON:
    out: JSON = {}
    for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        value = body.get(name)
        if value is not None:
            expect(value, (int, float), name, "a number")
            if not low <= value <= high:
                raise bad(f"{name} must be between {low:g} and {high:g}, got {value}", name)
            out[name] = value
    for name, low, high in INTEGERS:
        value = body.get(name)
        if value is not None:
            expect(value, int, name, "an integer")
            if not low <= value <= high:
                raise bad(f"{name} must be between {low} and {high}, got {value}", name)
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    return out


def _user(body: JSON) -> str | None:
    for name in ("safety_identifier", "user"):
        if body.get(name) is not None:
            expect(body[name], str, name, "a string")
    user = body.get("safety_identifier") or body.get("user")
    return user if isinstance(user, str) else None


def apply_native(body: JSON, model: str, params: Params, drop: frozenset[str], history: list[JSON]) -> JSON:
    """The body for a Responses upstream: the whole conversation (``history`` +
    this input, reasoning items verbatim), stateless, with the deployment's
    model, parameter policy and dropped parameters. ``body`` is not modified."""
    out = {k: v for k, v in body.items() if k != "previous_response_id"}
    out["model"] = model
    out["input"] = [item for item in [*history, *input_items(body, lenient=True)] if not _gateway_reasoning(item)]
    out["store"] = False
    given = body.get("include")
    include = list(given) if isinstance(given, list) else []
    if ENCRYPTED_REASONING not in include:
        include.append(ENCRYPTED_REASONING)
    out["include"] = include
    _apply_policy(out, params)
    for name in drop:
        key = NATIVE_NAMES.get(name, name)
        if key not in ("model", "input"):
            out.pop(key, None)
    return out


def _gateway_reasoning(item: JSON) -> bool:
    """A reasoning item the gateway rendered (its thinking blocks mean nothing to OpenAI,
    which would refuse the ``encrypted_content``)."""
    return item.get("type") == "reasoning" and is_gateway_content(item.get("encrypted_content"))


def _apply_policy(out: JSON, params: Params) -> None:
    """gateway/server/service.py ``apply_params`` on a Responses body: defaults
    for what is unset, ranges clamped, ``max_tokens_cap`` on ``max_output_tokens``."""
    for name, value in params.defaults.items():
        out.setdefault(NATIVE_NAMES.get(name, name), value)
    for name, (low, high) in params.ranges.items():
        key = NATIVE_NAMES.get(name, name)
        value = out.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = min(max(value, low), high)
    cap = params.max_tokens_cap
    if cap is not None:
        value = out.get("max_output_tokens")
        if not isinstance(value, int) or value > cap:
            out["max_output_tokens"] = cap


def render_error(err: GatewayError) -> tuple[int, bytes]:
    """(HTTP status, OpenAI error envelope) of ``err``."""
    return err.http_status, orjson.dumps(err.to_body())


def input_tokens_body(n: int, *, estimated: bool) -> JSON:
    """The answer of ``POST /v1/responses/input_tokens``; ``estimated`` marks a
    count the gateway estimated rather than one an upstream counted."""
    body: JSON = {"object": "response.input_tokens", "input_tokens": n}
    if estimated:
        body["estimated"] = True
    return body
