"""OpenAI Responses answers -> canonical: the non-stream ``Response`` object
(:func:`completion_from_response`), the stream decoder
(:class:`ResponsesStreamDecoder`), and what they share (finish reasons, usage,
failed-response errors).

A ``Response`` is a list of output *items*: ``message`` items (their
``output_text`` parts are the answer, ``refusal`` parts the refusal),
``function_call`` items (the tool calls; the canonical id is the item's
``call_id``, not its ``fc_`` item id), ``reasoning`` items (their summary
texts, or raw ``reasoning_text`` content when a server sends no summary,
become ``reasoning_content``, parts joined by a blank line) and built-in tool
items (``web_search_call``, ``file_search_call``, ...), which have no canonical
form and are skipped, as are item types added later.

Finish reasons: an ``incomplete`` response says why in
``incomplete_details.reason``: ``max_output_tokens`` -> ``length`` and
``content_filter`` -> ``content_filter`` (these win over ``tool_calls``: a
truncated call's arguments are not valid JSON); otherwise ``tool_calls`` when
the answer holds a function call, else ``stop``. ``failed`` raises the
response's ``error`` as an :class:`UpstreamError`.

HTTP error answers use OpenAI's envelope
(:func:`gateway.providers.openai_compat.openai_error`), except that a 400
``model_not_found`` (how the Responses API answers an unknown model; chat
completions says 404) is read as the 404 it means: the deployment's model is
wrong, so another deployment may serve.

Streams are named events whose data repeats the name in ``type``; the decoder
keys on ``type`` (the event name when ``type`` is missing). No ``[DONE]``: the
stream ends after ``response.completed``, ``response.incomplete`` or
``response.failed``. The first canonical chunk (with ``role: assistant``) is
only sent with the first piece of content, so an ``error`` event right after
``response.created`` still happens before the client got anything and the
router may fall back. The terminal event gives the finishing chunk and the
usage-only chunk at once; ``finish`` then returns nothing more.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from gateway.canonical import JSON, make_chunk, make_completion, make_usage
from gateway.errors import UpstreamBadResponse, UpstreamError
from gateway.providers.base import SSEEvent, error_member, parse_event_json
from gateway.providers.openai_compat import openai_error

WHO = "openai responses"

# ``error.code`` of a failed response / an ``error`` event -> the HTTP status it
# would have had; an error inside a 200 stream has no status line.
STATUS_BY_CODE: Mapping[str, int] = MappingProxyType(
    {
        "server_error": 500,
        "rate_limit_exceeded": 429,
        "insufficient_quota": 429,
        "vector_store_timeout": 504,
        "context_length_exceeded": 400,
        "invalid_prompt": 400,
        "bio_policy": 400,
        "data_residency_mismatch": 400,
        "invalid_image": 400,
        "invalid_image_format": 400,
        "invalid_base64_image": 400,
        "invalid_image_url": 400,
        "image_too_large": 400,
        "image_too_small": 400,
        "image_parse_error": 400,
        "image_content_policy_violation": 400,
        "invalid_image_mode": 400,
        "image_file_too_large": 400,
        "unsupported_image_media_type": 400,
        "empty_image_file": 400,
        "failed_to_download_image": 400,
        "image_file_not_found": 400,
    }
)

_INCOMPLETE_REASONS: Mapping[str, str] = MappingProxyType(
    {"max_output_tokens": "length", "content_filter": "content_filter"}
)
_FINISHED = frozenset({None, "completed", "incomplete"})


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _detail(raw: Mapping[str, Any], block: str, key: str) -> int | None:
    details = raw.get(block)
    value = details.get(key) if isinstance(details, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def canonical_usage(raw: Mapping[str, Any]) -> JSON:
    """Responses ``usage`` -> canonical. ``input_tokens`` includes the cached (read and
    written) ones and ``output_tokens`` the reasoning ones, as in chat completions;
    ``cache_write_tokens`` (newer models) -> ``prompt_tokens_details.cache_write_tokens``."""
    usage = make_usage(
        _count(raw.get("input_tokens")),
        _count(raw.get("output_tokens")),
        cached=_detail(raw, "input_tokens_details", "cached_tokens"),
        reasoning=_detail(raw, "output_tokens_details", "reasoning_tokens"),
    )
    written = _detail(raw, "input_tokens_details", "cache_write_tokens")
    if written is not None:
        usage.setdefault("prompt_tokens_details", {})["cache_write_tokens"] = written
    return usage


def finish_reason(response: Mapping[str, Any], has_calls: bool) -> str:
    """The canonical finish reason of a finished response (see the module docstring)."""
    if response.get("status") == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        if isinstance(reason, str) and reason in _INCOMPLETE_REASONS:
            return _INCOMPLETE_REASONS[reason]
    return "tool_calls" if has_calls else "stop"


def response_error(err: Any, prefix: str) -> UpstreamError:
    """A failed response's ``error`` ``{code, message}`` (or an ``error``
    event, flat or with an ``error`` member) -> UpstreamError; the status
    follows from the code (502, retryable, when unknown)."""
    if isinstance(err, dict) and isinstance(err.get("error"), dict):
        err = err["error"]
    if not isinstance(err, dict):
        err = {}
    code = err.get("code") if isinstance(err.get("code"), str) else None
    etype = err.get("type") if isinstance(err.get("type"), str) else None
    message = str(err.get("message") or f"the response failed ({code or etype or 'no error code'})")
    param = err.get("param")
    return UpstreamError(
        prefix + message,
        upstream_status=STATUS_BY_CODE.get(code or etype or "", 502),
        code=code,
        param=param if isinstance(param, str) else None,
        error_type=etype if etype and etype != "error" else None,
    )


def responses_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """An HTTP error answer -> UpstreamError (see the module docstring)."""
    err = error_member(body)
    if status == 400 and isinstance(err, dict) and err.get("code") == "model_not_found":
        status = 404
    return openai_error(status, headers, body)


def _strings(parts: Any, kind: str, key: str) -> list[str]:
    if not isinstance(parts, list):
        return []
    return [p[key] for p in parts if isinstance(p, dict) and p.get("type") == kind and isinstance(p.get(key), str)]


def reasoning_texts(item: Mapping[str, Any]) -> list[str]:
    """A reasoning item's summary texts, else its raw ``reasoning_text`` content."""
    return _strings(item.get("summary"), "summary_text", "text") or _strings(
        item.get("content"), "reasoning_text", "text"
    )


def tool_call(item: Mapping[str, Any]) -> JSON:
    """A ``function_call`` item -> a canonical tool call (id = ``call_id``)."""
    call_id, name, arguments = item.get("call_id") or item.get("id"), item.get("name"), item.get("arguments")
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise UpstreamBadResponse(f"{WHO} function_call item lacks a call_id or a name")
    arguments = arguments if isinstance(arguments, str) else ""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def completion_from_response(body: Any, model: str) -> JSON:
    """A ``Response`` object -> canonical ``chat.completion`` (module docstring)."""
    if not isinstance(body, dict):
        raise UpstreamBadResponse(f"{WHO} answer is not a JSON object")
    status = body.get("status")
    if status == "failed":
        raise response_error(body.get("error"), f"{WHO} response failed: ")
    if status not in _FINISHED:
        raise UpstreamBadResponse(f"{WHO} answer has status {status!r}, not a finished response")
    output = body.get("output")
    if not isinstance(output, list):
        raise UpstreamBadResponse(f"{WHO} answer has no output list")
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[JSON] = []
    reasoning: list[str] = []
    for item in output:
        if not isinstance(item, dict):
            raise UpstreamBadResponse(f"{WHO} answer has an output item that is not an object")
        kind = item.get("type")
        if kind == "message":
            texts.extend(_strings(item.get("content"), "output_text", "text"))
            refusals.extend(_strings(item.get("content"), "refusal", "refusal"))
        elif kind == "function_call":
            calls.append(tool_call(item))
        elif kind == "reasoning":
            reasoning.extend(reasoning_texts(item))
    text = "".join(texts)
    message: JSON = {"role": "assistant", "content": text if text or not calls else None}
    if refusals:
        message["refusal"] = "".join(refusals)
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    usage = body.get("usage")
    created = body.get("created_at")
    return make_completion(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or model),
        message=message,
        finish_reason=finish_reason(body, bool(calls)),
        usage=canonical_usage(usage) if isinstance(usage, dict) else None,
        created=created if isinstance(created, int) and not isinstance(created, bool) else None,
    )


def _call_keys(item_id: Any, output_index: Any) -> list[str]:
    """Where a streamed call is found: by its item id, else its output index."""
    keys = [f"item:{item_id}"] if isinstance(item_id, str) and item_id else []
    if isinstance(output_index, int) and not isinstance(output_index, bool):
        keys.append(f"out:{output_index}")
    return keys


class _Call:
    """One streamed function call: its canonical index and the arguments sent so far."""

    __slots__ = ("arguments", "index")

    def __init__(self, index: int, arguments: str) -> None:
        self.index = index
        self.arguments = arguments


class ResponsesStreamDecoder:
    """Responses stream events -> canonical chunks (see the module docstring).

    Function calls get tool-call indexes 0, 1, 2... in the order their items
    are added; argument deltas find their call by ``item_id`` (else
    ``output_index``). Events of other types are ignored.
    """

    __slots__ = ("_calls", "_created", "_done", "_id", "_model", "_ncalls", "_reasoning_part", "_started", "_usage")

    def __init__(self, model: str) -> None:
        self._created = int(time.time())
        self._id = ""
        self._model = model
        self._done = False
        self._started = False
        self._usage: JSON | None = None
        self._calls: dict[str, _Call] = {}  # "item:<id>" and "out:<output_index>" -> call
        self._ncalls = 0
        self._reasoning_part: tuple[Any, Any] | None = None

    @property
    def done(self) -> bool:
        return self._done

    @property
    def usage(self) -> JSON | None:
        return self._usage

    def on_event(self, event: SSEEvent) -> list[JSON]:
        if self._done or event.data.strip() == "[DONE]":
            return []
        payload = parse_event_json(event.data, WHO)
        kind = payload.get("type") or event.event
        match kind:
            case "response.created" | "response.in_progress":
                self._meta(payload.get("response"))
            case "response.output_text.delta":
                return self._delta("content", payload.get("delta"))
            case "response.refusal.delta":
                return self._delta("refusal", payload.get("delta"))
            case "response.reasoning_summary_text.delta":
                return self._reasoning(payload, payload.get("summary_index"))
            case "response.reasoning_text.delta":
                return self._reasoning(payload, payload.get("content_index"))
            case "response.output_item.added" | "response.output_item.done":
                return self._item(payload)
            case "response.function_call_arguments.delta":
                return self._arguments(payload)
            case "response.completed" | "response.incomplete":
                return self._terminal(payload.get("response"))
            case "response.failed":
                self._done = True
                response = payload.get("response")
                err = response.get("error") if isinstance(response, dict) else None
                raise response_error(err, f"{WHO} stream failed: ")
            case "error":
                self._done = True
                raise response_error(payload, f"{WHO} stream error: ")
        return []  # web_search_call.*, content_part.*, *.done and types added later

    def finish(self) -> list[JSON]:
        if not self._done:
            raise UpstreamBadResponse(f"{WHO} stream ended before response.completed (truncated)")
        return []

    def _chunk(self, delta: JSON | None = None, finish_reason: str | None = None, usage: JSON | None = None) -> JSON:
        if not self._started and (delta is not None or finish_reason is not None):
            delta = {"role": "assistant", **(delta or {})}
            self._started = True
        return make_chunk(
            id=self._id, model=self._model, created=self._created, delta=delta, finish_reason=finish_reason, usage=usage
        )

    def _meta(self, response: Any) -> JSON:
        if not isinstance(response, dict):
            raise UpstreamBadResponse(f"{WHO} stream event has no response object")
        self._id = str(response.get("id") or self._id)
        self._model = str(response.get("model") or self._model)
        created = response.get("created_at")
        if isinstance(created, int) and not isinstance(created, bool):
            self._created = created
        return response

    def _delta(self, key: str, text: Any) -> list[JSON]:
        return [self._chunk(delta={key: text})] if isinstance(text, str) and text else []

    def _reasoning(self, payload: JSON, part: Any) -> list[JSON]:
        text = payload.get("delta")
        if not isinstance(text, str) or not text:
            return []
        key = (payload.get("item_id"), part)
        if self._reasoning_part is not None and key != self._reasoning_part:
            text = "\n\n" + text  # a new summary part: joined as in the non-stream answer
        self._reasoning_part = key
        return [self._chunk(delta={"reasoning_content": text})]

    def _find(self, keys: list[str]) -> _Call | None:
        return next((self._calls[k] for k in keys if k in self._calls), None)

    def _item(self, payload: JSON) -> list[JSON]:
        item = payload.get("item")
        if not isinstance(item, dict):
            raise UpstreamBadResponse(f"{WHO} output_item event has no item")
        if item.get("type") != "function_call":
            return []
        keys = _call_keys(item.get("id"), payload.get("output_index"))
        raw = item.get("arguments")
        arguments = raw if isinstance(raw, str) else ""
        call = self._find(keys)
        if call is None:  # .added (or a .done whose .added never came): the whole call
            call = _Call(self._ncalls, arguments)
            self._ncalls += 1
            self._calls.update(dict.fromkeys(keys, call))
            return [self._chunk(delta={"tool_calls": [{"index": call.index, **tool_call(item)}]})]
        # .done of a known call: send what the deltas missed, if anything
        rest = arguments[len(call.arguments) :] if arguments.startswith(call.arguments) else ""
        call.arguments += rest
        return [self._call_delta(call, rest)] if rest else []

    def _call_delta(self, call: _Call, text: str) -> JSON:
        return self._chunk(delta={"tool_calls": [{"index": call.index, "function": {"arguments": text}}]})

    def _arguments(self, payload: JSON) -> list[JSON]:
        call = self._find(_call_keys(payload.get("item_id"), payload.get("output_index")))
        text = payload.get("delta")
        if call is None or not isinstance(text, str) or not text:
            return []
        call.arguments += text
        return [self._call_delta(call, text)]

    def _terminal(self, response: Any) -> list[JSON]:
        response = self._meta(response)
        self._done = True
        usage = response.get("usage")
        if isinstance(usage, dict):
            self._usage = canonical_usage(usage)
        output = response.get("output")
        has_calls = self._ncalls > 0 or (
            isinstance(output, list) and any(isinstance(i, dict) and i.get("type") == "function_call" for i in output)
        )
        chunks = [self._chunk(delta={}, finish_reason=finish_reason(response, has_calls))]
        if self._usage is not None:
            chunks.append(self._chunk(usage=self._usage))
        return chunks
