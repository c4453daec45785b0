"""Canonical OpenAI chat -> Gemini ``GenerateContentRequest`` (:func:`generate_body`).

- ``system``/``developer`` messages (wherever they stand) -> ``systemInstruction``
  text parts; ``user``/``assistant`` -> ``user``/``model`` turns, consecutive
  turns of one role merged (Gemini wants them alternating).
- Assistant ``tool_calls`` -> ``functionCall {name, args}`` parts; a ``tool``
  message -> a ``functionResponse {name, response}`` part in a user turn, the name
  looked up from the assistant call with that ``tool_call_id``; ``response`` is
  the tool's content if that is a JSON object, else ``{"result": content}``.
- Content parts: text; ``image_url`` (``data:`` URL -> ``inlineData``, other
  URLs -> ``fileData`` with a MIME type from the extension, default image/jpeg);
  ``input_audio`` and ``file`` (base64 ``file_data``) -> ``inlineData``
  (:mod:`gateway.providers.gemini_media`; a ``file_id`` is refused). Other part
  types are refused with InvalidRequest.
- ``tools`` -> one ``functionDeclarations`` tool (``parametersJsonSchema`` takes
  the OpenAI JSON Schema as is); ``tool_choice`` auto/required/none/{function}
  -> ``functionCallingConfig`` AUTO/ANY/NONE(+``allowedFunctionNames``).
- ``generationConfig``: temperature, top_p->topP, top_k->topK,
  max_completion_tokens|max_tokens->maxOutputTokens, stop->stopSequences,
  n->candidateCount, presence/frequency_penalty, seed; ``response_format``
  json_object -> ``responseMimeType: application/json``, json_schema -> that
  plus ``responseJsonSchema``; ``reasoning_effort``/``reasoning_budget``/
  ``include_reasoning`` -> ``thinkingConfig`` (:mod:`gateway.providers.gemini_reasoning`);
  ``logprobs``/``top_logprobs`` -> ``responseLogprobs``/``logprobs``
  (:mod:`gateway.providers.gemini_logprobs`).
- Dropped silently (no Gemini equivalent, or not translated back): ``stream``,
  ``stream_options``, ``user``, ``metadata``, ``store``, ``logit_bias``,
  ``parallel_tool_calls``, ``service_tier``, ``prediction``, ``modalities``,
  ``audio``, ``verbosity``, ``web_search_options``, ``prompt_cache_key``,
  ``safety_identifier``, message ``name``, and an assistant message's
  ``reasoning_content`` and ``thinking_blocks`` (Gemini's thought parts need not be
  replayed; other providers' thinking cannot be). Keys in ``Target.drop_params`` are
  removed before translation.

Thought signatures (Gemini 3): a ``functionCall`` part may carry a
``thoughtSignature`` that must come back with that call in later turns. The
response side encodes it into the generated tool-call id (``call_<hex>_ts_<sig>``,
see :mod:`gateway.providers.gemini_stream`); :func:`tool_call_signature` decodes it
here and the ``functionCall`` part carries it again. A Gemini 3+ target rejects a
replayed call turn that has no signature at all (history from another model, or a
client that rewrote the ids), so such a turn gets Google's documented
``skip_thought_signature_validator`` placeholder on its first call. Signatures on
text parts are dropped (they are optional for Gemini).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway.canonical import JSON, message_text
from gateway.errors import InvalidRequest
from gateway.providers.gemini_logprobs import logprobs_config
from gateway.providers.gemini_media import audio_part, file_part
from gateway.providers.gemini_reasoning import gemini_version, thinking_config
from gateway.providers.gemini_stream import tool_call_signature

SKIP_SIGNATURE = "skip_thought_signature_validator"

_CONFIG_KEYS = MappingProxyType(
    {
        "temperature": "temperature",
        "top_p": "topP",
        "top_k": "topK",
        "n": "candidateCount",
        "presence_penalty": "presencePenalty",
        "frequency_penalty": "frequencyPenalty",
        "seed": "seed",
    }
)
_MODE_BY_CHOICE = MappingProxyType({"auto": "AUTO", "required": "ANY", "none": "NONE"})
_MIME_BY_EXT = MappingProxyType(
    {
        "png": "image/png",
        "jpg": "image/jpeg",
        "jpeg": "image/jpeg",
        "gif": "image/gif",
        "webp": "image/webp",
        "heic": "image/heic",
        "heif": "image/heif",
        "pdf": "application/pdf",
    }
)


def generate_body(params: JSON, model: str, reasoning_style: str = "auto") -> JSON:
    """Canonical chat params (None values and dropped keys removed) -> a
    ``GenerateContentRequest`` body (``reasoning_style``: the deployment's, see
    :mod:`gateway.providers.gemini_reasoning`)."""
    builder = _Contents(gemini3=_is_gemini3(model))
    messages = params.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest("messages must be a list", param="messages")
    for i, msg in enumerate(messages):
        builder.add(msg, i)
    if not builder.contents:
        raise InvalidRequest("Gemini needs at least one non-system message", param="messages")
    body: JSON = {"contents": builder.contents}
    if builder.system:
        body["systemInstruction"] = {"parts": builder.system}
    tools = params.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise InvalidRequest("tools must be a list", param="tools")
        body["tools"] = [{"functionDeclarations": [_declaration(t, i) for i, t in enumerate(tools)]}]
    if "tool_choice" in params:
        body["toolConfig"] = {"functionCallingConfig": _calling_config(params["tool_choice"])}
    config = _generation_config(params)
    thinking = thinking_config(params, model, reasoning_style)
    if thinking is not None:
        config["thinkingConfig"] = thinking
    if config:
        body["generationConfig"] = config
    return body


def _is_text(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)


class _Contents:
    """Canonical messages -> ``systemInstruction`` parts and ``contents`` turns."""

    __slots__ = ("_gemini3", "_names", "contents", "system")

    def __init__(self, *, gemini3: bool) -> None:
        self.system: list[JSON] = []
        self.contents: list[JSON] = []
        self._names: dict[str, str] = {}
        self._gemini3 = gemini3

    def add(self, msg: Any, i: int) -> None:
        if not isinstance(msg, dict):
            raise InvalidRequest("a message must be an object", param=f"messages[{i}]")
        role = msg.get("role")
        if role in ("system", "developer"):
            content = msg.get("content")
            if isinstance(content, list):  # one part per text part: blocks stay apart
                self.system.extend({"text": p["text"]} for p in content if _is_text(p) and p["text"])
            elif text := message_text(msg):
                self.system.append({"text": text})
        elif role == "user":
            self._append("user", _content_parts(msg.get("content"), f"messages[{i}].content"))
        elif role == "assistant":
            self._append("model", self._assistant_parts(msg, i))
        elif role == "tool":
            self._append("user", [self._function_response(msg, i)])
        else:
            raise InvalidRequest(f"unsupported message role {role!r}", param=f"messages[{i}].role")

    def _append(self, role: str, parts: list[JSON]) -> None:
        if not parts:
            return
        if self.contents and self.contents[-1]["role"] == role:
            self.contents[-1]["parts"].extend(parts)
        else:
            self.contents.append({"role": role, "parts": parts})

    def _assistant_parts(self, msg: JSON, i: int) -> list[JSON]:
        parts = _content_parts(msg.get("content"), f"messages[{i}].content")
        calls = msg.get("tool_calls") or []
        if not isinstance(calls, list):
            raise InvalidRequest("tool_calls must be a list", param=f"messages[{i}].tool_calls")
        call_parts = [self._function_call(c, f"messages[{i}].tool_calls[{j}]") for j, c in enumerate(calls)]
        if call_parts and self._gemini3 and not any("thoughtSignature" in p for p in call_parts):
            call_parts[0]["thoughtSignature"] = SKIP_SIGNATURE
        return parts + call_parts

    def _function_call(self, call: Any, param: str) -> JSON:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or call.get("type", "function") != "function":
            raise InvalidRequest("only function tool calls are supported", param=param)
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("a tool call needs a function name", param=f"{param}.function.name")
        part: JSON = {"functionCall": {"name": name, "args": _arguments(fn.get("arguments"), param)}}
        call_id = call.get("id")
        if isinstance(call_id, str):
            self._names[call_id] = name
            signature = tool_call_signature(call_id)
            if signature:
                part["thoughtSignature"] = signature
        return part

    def _function_response(self, msg: JSON, i: int) -> JSON:
        call_id = msg.get("tool_call_id")
        name = self._names.get(call_id) if isinstance(call_id, str) else None
        if name is None:
            raise InvalidRequest(
                f"tool message answers unknown tool_call_id {call_id!r}", param=f"messages[{i}].tool_call_id"
            )
        return {"functionResponse": {"name": name, "response": _tool_result(message_text(msg))}}


def _arguments(raw: Any, param: str) -> JSON:
    """A tool call's ``arguments`` JSON string -> the ``args`` object."""
    if raw is None or raw == "":
        return {}
    try:
        args = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        raise InvalidRequest("tool call arguments must be a JSON object", param=f"{param}.function.arguments")
    return args


def _tool_result(text: str) -> JSON:
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"result": text}


def _content_parts(content: Any, param: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of parts", param=param)
    parts = (_part(item, f"{param}[{j}]") for j, item in enumerate(content))
    return [p for p in parts if p is not None]


def _part(item: Any, param: str) -> JSON | None:
    if not isinstance(item, dict):
        raise InvalidRequest("a content part must be an object", param=param)
    kind = item.get("type")
    if kind in ("text", "refusal"):
        text = item.get(kind)
        if not isinstance(text, str):
            raise InvalidRequest(f"a {kind} part needs a string", param=f"{param}.{kind}")
        return {"text": text} if text else None
    if kind == "image_url":
        return _image_part(item.get("image_url"), f"{param}.image_url")
    if kind == "input_audio":
        return audio_part(item.get("input_audio"), f"{param}.input_audio")
    if kind == "file":
        return file_part(item.get("file"), f"{param}.file")
    raise InvalidRequest(f"content part type {kind!r} is not supported by Gemini", param=f"{param}.type")


def _image_part(image: Any, param: str) -> JSON:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise InvalidRequest("image_url needs a url", param=f"{param}.url")
    if url.startswith("data:"):
        return _data_url(url, f"{param}.url")
    if "://" not in url:
        raise InvalidRequest("image_url must be a data: URL or an absolute URL", param=f"{param}.url")
    return {"fileData": {"mimeType": _guess_mime(urlsplit(url).path, "image/jpeg"), "fileUri": url}}


def _data_url(url: str, param: str) -> JSON:
    header, sep, data = url[len("data:") :].partition(",")
    if not sep or not header.endswith(";base64"):
        raise InvalidRequest("only base64 data: URLs are supported", param=param)
    mime = header[: -len(";base64")].split(";")[0] or "image/jpeg"
    return {"inlineData": {"mimeType": mime, "data": data}}


def _guess_mime(path: str, default: str) -> str:
    return _MIME_BY_EXT.get(PurePosixPath(path).suffix.lower().lstrip("."), default)


def _declaration(tool: Any, i: int) -> JSON:
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(fn, dict) or tool.get("type", "function") != "function":
        raise InvalidRequest("Gemini supports function tools only", param=f"tools[{i}]")
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("a function tool needs a name", param=f"tools[{i}].function.name")
    decl: JSON = {"name": name}
    if isinstance(fn.get("description"), str):
        decl["description"] = fn["description"]
    if fn.get("parameters"):
        decl["parametersJsonSchema"] = fn["parameters"]
    return decl


def _calling_config(choice: Any) -> JSON:
    if isinstance(choice, str) and choice in _MODE_BY_CHOICE:
        return {"mode": _MODE_BY_CHOICE[choice]}
    fn = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if isinstance(name, str) and name:
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    raise InvalidRequest("unsupported tool_choice for Gemini", param="tool_choice")


def _generation_config(params: JSON) -> JSON:
    config: JSON = {gemini: params[key] for key, gemini in _CONFIG_KEYS.items() if key in params}
    max_tokens = params.get("max_completion_tokens", params.get("max_tokens"))
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = params.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    config.update(_response_format(params.get("response_format")))
    config.update(logprobs_config(params))
    return config


def _response_format(fmt: Any) -> JSON:
    if not isinstance(fmt, dict):
        return {}
    kind = fmt.get("type")
    if kind in (None, "text"):
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        out: JSON = {"responseMimeType": "application/json"}
        if isinstance(schema, dict):
            out["responseJsonSchema"] = schema
        return out
    raise InvalidRequest(f"unsupported response_format type {kind!r}", param="response_format.type")


def model_path(model: str) -> str:
    """``gemini-2.5-flash`` -> ``models/gemini-2.5-flash``; ``tunedModels/x`` as is."""
    return model if "/" in model else f"models/{model}"


def _is_gemini3(model: str) -> bool:
    version = gemini_version(model)
    return version is not None and version[0] >= 3
