"""OpenAI Responses API: ``POST /v1/responses`` (plain and ``stream: true``) and
``POST /v1/responses/input_tokens``, through the shared pipeline (knobs apply).

Content comes from :func:`gateway.mock.content.generate`, as for chat: ``instructions``
and the input items are the prompt, function tools and ``tool_choice`` may make a
``function_call`` item, ``text.format`` json_object/json_schema gives JSON text,
``max_output_tokens`` cuts the text (status ``incomplete``). A ``reasoning`` setting (effort
not ``none``) adds a ``reasoning`` item first (a summary when ``reasoning.summary`` is set,
``encrypted_content`` with ``include: ["reasoning.encrypted_content"]``) and reasoning
tokens (knob ``thinking_tokens``). Automatic prompt caching as for chat
(:mod:`gateway.mock.caching`). Shapes: :mod:`gateway.mock.responses_wire`.

The mock keeps no responses: ``store`` is accepted and echoed, nothing is stored. Refused
with 400 (OpenAI's error shape), checked in this order:

1. ``previous_response_id`` set: code ``previous_response_not_found``;
2. ``input`` absent or not a string/array (``missing_required_parameter``/``invalid_type``),
   or an empty array (``empty_array``); ``max_output_tokens`` not an integer or below 16;
3. each input item in order: not an object (``invalid_type``); a ``function_call`` or
   ``function_call_output`` without ``call_id``; a ``function_call_output`` whose
   ``call_id`` no earlier ``function_call`` item has ("No tool call found for function call
   output with call_id ..."); a ``reasoning`` item without ``id`` or ``summary``, not
   followed by the output item it produced (an assistant ``message`` or other typed item
   carrying its ``id``), without ``encrypted_content`` ("Item with id ... not found.": the
   mock cannot look items up), or whose ``encrypted_content`` the mock did not issue for
   that id (code ``invalid_encrypted_content``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.mock.caching import openai_cached_tokens, seed_key
from gateway.mock.content import Prompt, ToolMode, ToolSpec, as_dict, generate, text_of
from gateway.mock.errors import BadRequest
from gateway.mock.pipeline import Call, ModelRoute, handle, json_or_truncated, stream_flag
from gateway.mock.reasoning import abbreviate, thinking_budget, thinking_words, verify_encrypted_content
from gateway.mock.responses_wire import Ids, Outcome, Reasoning, response_object, stream_plan
from gateway.mock.streaming import SSEResponse

MIN_OUTPUT_TOKENS = 16
INCLUDE_ENCRYPTED = "reasoning.encrypted_content"
_NOT_STORED = (
    " Items are not persisted when `store` is set to false. Try again with `store` set to true,"
    " or remove this item from your input."
)


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    """A checked Responses request: the generator's prompt, its words (for caching) and the reasoning setting."""

    prompt: Prompt
    words: list[str]
    reasoning: Reasoning | None


def parse_responses(body: dict[str, Any], model: str) -> ResponsesRequest:
    """Check and read a Responses request (see the module doc for what is refused)."""
    previous = body.get("previous_response_id")
    if previous is not None:
        message = f"Previous response with id '{previous}' not found."
        raise BadRequest(message, "previous_response_id", "previous_response_not_found")
    items = input_items(body.get("input"))
    limit = _output_limit(body.get("max_output_tokens"))
    check_items(items, body.get("store") is not False)
    mode, forced = _tool_choice(body.get("tool_choice"))
    fmt = as_dict(as_dict(body.get("text")).get("format"))
    schema = fmt.get("schema")
    words = text_of(body.get("instructions")).split() + [w for item in items for w in item_text(item).split()]
    prompt = Prompt(
        model=model,
        prompt_tokens=len(words),
        last_user=_last_user(items),
        tools=_tools(body.get("tools")),
        tool_mode=mode,
        forced_tool=forced,
        after_tool_result=item_type(items[-1]) == "function_call_output",
        json_mode=fmt.get("type") in ("json_object", "json_schema"),
        json_schema=schema if isinstance(schema, dict) else None,
        max_tokens=limit,
    )
    return ResponsesRequest(prompt, words, _reasoning(body))


def input_items(raw: Any) -> list[Any]:
    """``input`` as a list of items (a string is one user message)."""
    if raw is None:
        raise BadRequest("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list):
        message = f"Invalid type for 'input': expected a string or an array, but got {_json_type(raw)} instead."
        raise BadRequest(message, "input", "invalid_type")
    if not raw:
        message = (
            "Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead."
        )
        raise BadRequest(message, "input", "empty_array")
    return raw


def _output_limit(raw: Any) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool):
        message = f"Invalid type for 'max_output_tokens': expected an integer, but got {_json_type(raw)} instead."
        raise BadRequest(message, "max_output_tokens", "invalid_type")
    if raw < MIN_OUTPUT_TOKENS:
        message = (
            "Invalid 'max_output_tokens': integer below minimum value. "
            f"Expected a value >= {MIN_OUTPUT_TOKENS}, but got {raw} instead."
        )
        raise BadRequest(message, "max_output_tokens", "integer_below_min_value")
    return raw


def item_type(item: Any) -> str | None:
    """An input item's type; an item without one but with a ``role`` is a message."""
    item = as_dict(item)
    kind = item.get("type")
    if kind is None and "role" in item:
        return "message"
    return kind if isinstance(kind, str) else None


def item_text(item: Any) -> str:
    """The words an input item adds to the prompt: message text, call arguments, call output."""
    kind, item = item_type(item), as_dict(item)
    if kind == "message":
        return text_of(item.get("content"))
    if kind == "function_call":
        return str(item.get("arguments") or "")
    if kind == "function_call_output":
        return text_of(item.get("output"))
    return ""


def check_items(items: list[Any], store: bool) -> None:
    """Refuse input items the real API refuses (step 3 of the module doc)."""
    calls: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            message = f"Invalid type for 'input[{index}]': expected an object, but got {_json_type(item)} instead."
            raise BadRequest(message, f"input[{index}]", "invalid_type")
        kind = item_type(item)
        if kind == "function_call":
            calls.add(_required_str(item, index, "call_id"))
        elif kind == "function_call_output":
            call_id = _required_str(item, index, "call_id")
            if call_id not in calls:
                raise BadRequest(f"No tool call found for function call output with call_id {call_id}.", "input")
        elif kind == "reasoning":
            _check_reasoning(items, index, store)


def _check_reasoning(items: list[Any], index: int, store: bool) -> None:
    item = items[index]
    item_id = _required_str(item, index, "id")
    if not isinstance(item.get("summary"), list):
        param = f"input[{index}].summary"
        raise BadRequest(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")
    following = items[index + 1] if index + 1 < len(items) else None
    if not _is_output_item(following):
        message = f"Item '{item_id}' of type 'reasoning' was provided without its required following item."
        raise BadRequest(message, "input")
    content = item.get("encrypted_content")
    if content is None:
        raise BadRequest(f"Item with id '{item_id}' not found." + ("" if store else _NOT_STORED), "input")
    if not isinstance(content, str) or not verify_encrypted_content(item_id, content):
        message = f"The encrypted content {abbreviate(str(content))} could not be verified."
        raise BadRequest(message, None, "invalid_encrypted_content")


def _is_output_item(item: Any) -> bool:
    """Whether ``item`` is an output item sent back with its id (what must follow a reasoning item)."""
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        return False
    kind = item.get("type")
    if kind == "message":
        return item.get("role") == "assistant"
    return isinstance(kind, str) and kind not in ("function_call_output", "item_reference")


def _required_str(item: dict[str, Any], index: int, name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        param = f"input[{index}].{name}"
        raise BadRequest(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _last_user(items: list[Any]) -> str:
    for item in reversed(items):
        if item_type(item) == "message" and as_dict(item).get("role") == "user":
            text = text_of(as_dict(item).get("content"))
            if text:
                return text
    return ""


def _tools(raw: Any) -> tuple[ToolSpec, ...]:
    """Function tools (``{type: function, name, parameters}``); other tool types are skipped."""
    if not isinstance(raw, list):
        return ()
    return tuple(
        ToolSpec(t["name"], as_dict(t.get("parameters")))
        for t in raw
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)
    )


def _tool_choice(raw: Any) -> tuple[ToolMode, str | None]:
    if raw in ("none", "required"):
        return raw, None
    choice = as_dict(raw)
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return "required", choice["name"]
    return "auto", None


def _reasoning(body: dict[str, Any]) -> Reasoning | None:
    raw = body.get("reasoning")
    if not isinstance(raw, dict) or raw.get("effort") == "none":
        return None
    include = body.get("include")
    summary = raw.get("summary")
    return Reasoning(
        effort=str(raw.get("effort") or "medium"),
        summary="detailed" if summary == "auto" else summary if isinstance(summary, str) else None,
        encrypted=isinstance(include, list) and INCLUDE_ENCRYPTED in include,
    )


def outcome(call: Call) -> Outcome:
    """Generate the answer to ``call`` (reasoning takes its words out of ``max_output_tokens``)."""
    request = parse_responses(call.body, call.model)
    prompt, thought = request.prompt, None
    if request.reasoning is not None:
        count = thinking_budget(call.behaviour.thinking_tokens, None, prompt.max_tokens)
        thought = " ".join(thinking_words(prompt.last_user, count))
        if prompt.max_tokens is not None:
            prompt = replace(prompt, max_tokens=prompt.max_tokens - count)
    reply = generate(prompt, call.behaviour)
    cached = openai_cached_tokens(request.words, seed_key(call.model, call.body.get("tools")), call.prefixes)
    return Outcome(reply, cached, thought, request.reasoning)


def respond_create(call: Call) -> Response:
    result = outcome(call)
    if not stream_flag(call.body):
        return json_or_truncated(call, response_object(call.body, call.model, result, Ids(), final=True))
    complete = call.behaviour.garbage != "truncate"
    return SSEResponse(stream_plan(call.body, call.model, result, complete), call.behaviour)


def respond_input_tokens(call: Call) -> Response:
    """``{"object": "response.input_tokens", "input_tokens": n}``: the ``input_tokens`` a
    create with this body reports."""
    request = parse_responses(call.body, call.model)
    return json_or_truncated(call, {"object": "response.input_tokens", "input_tokens": request.prompt.prompt_tokens})


CREATE = ModelRoute("openai", "openai.responses", respond_create, stream_flag)
INPUT_TOKENS = ModelRoute("openai", "openai.responses.input_tokens", respond_input_tokens)


async def create(request: Request) -> Response:
    return await handle(request, CREATE)


async def input_tokens(request: Request) -> Response:
    return await handle(request, INPUT_TOKENS)


def routes() -> list[Route]:
    return [
        Route("/v1/responses", create, methods=["POST"]),
        Route("/v1/responses/input_tokens", input_tokens, methods=["POST"]),
    ]
