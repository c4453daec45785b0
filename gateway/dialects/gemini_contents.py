"""Gemini ``contents`` and ``systemInstruction`` -> canonical chat messages.

- Turns: role ``user`` (also the missing role, and the legacy ``function``) ->
  user messages, ``model`` -> assistant messages.
- Parts: ``text`` -> text. A ``thought: true`` part is the model's reasoning: in a
  model turn its text (the turn's thought parts joined as they are, pieces of one
  text) -> the assistant message's ``reasoning_content``; a turn of thoughts alone
  gives no message (an assistant message needs content or tool calls); in a user
  turn it is dropped.
  ``inlineData`` images -> ``image_url`` data URLs, ``application/pdf`` -> a
  ``file`` part, WAV/MP3 audio -> ``input_audio``; ``fileData`` with an image MIME
  type and an http(s) URI (not a Gemini Files API one) -> ``image_url`` with the
  URI. Other media, other URIs and the code-execution parts are refused: no other
  provider can read them. ``thoughtSignature``, ``videoMetadata``,
  ``mediaResolution`` and ``partMetadata`` are dropped.
- ``functionCall`` (model turns) -> assistant ``tool_calls``: the part's ``id``, or
  ``call_<turn>_<part>``; ``args`` -> the JSON string ``arguments``.
- ``functionResponse`` (user turns) -> ``tool`` messages, placed before the turn's
  other parts; ``content`` is the ``response`` object as JSON. Each is paired with a
  call of the preceding model turn: by ``id`` when given, else by name in call order.
  A response that answers no call is refused, and so is a call left unanswered by
  the user turns after it (Gemini refuses both; OpenAI and Anthropic too). The calls
  of the last model turn may stay open when no user turn follows (countTokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway.canonical import JSON
from gateway.dialects.checks import bad
from gateway.dialects.gemini_fields import array, at, boolean, fields, missing, obj, standard_base64, string, text_of

CONTENT_FIELDS = frozenset({"role", "parts"})
_DATA_KINDS = (
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "toolCall",
    "toolResponse",
)
_PART_FIELDS = frozenset(
    {*_DATA_KINDS, "thought", "thoughtSignature", "videoMetadata", "mediaResolution", "partMetadata"}
)
_AUDIO_FORMATS = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/mp3": "mp3",
    "audio/mpeg": "mp3",
    "audio/mpeg3": "mp3",
    "audio/x-mp3": "mp3",
}
_FILES_API_HOST = "generativelanguage.googleapis.com"


@dataclass(slots=True)
class _Call:
    id: str
    name: str
    given_id: str | None
    param: str
    answered: bool = False


class Transcript:
    """Gemini turns in, canonical messages out (see the module docstring)."""

    __slots__ = ("_answering", "_pending", "messages")

    def __init__(self) -> None:
        self.messages: list[JSON] = []
        self._pending: list[_Call] = []
        self._answering = False  # a user turn came after the pending calls

    def add(self, content: Any, i: int) -> None:
        param = at("contents", i)
        turn = fields(content, param, CONTENT_FIELDS)
        role = string(turn.get("role", "user"), at(param, "role"))
        if "parts" not in turn:
            raise missing(at(param, "parts"))
        parts = array(turn["parts"], at(param, "parts"))
        if not parts:
            raise bad(f"{param}.parts must hold at least one part", at(param, "parts"))
        if role == "model":
            self._model_turn(parts, i)
        elif role in ("user", "function"):
            self._user_turn(parts, i)
        else:
            raise bad(f"{param}.role must be 'user' or 'model', got {role!r}", at(param, "role"), "unsupported_value")

    def finish(self) -> list[JSON]:
        """The messages; calls of the last model turn may stay open (countTokens)
        unless a user turn followed them."""
        if self._answering:
            self._check_answered()
        return self.messages

    def _check_answered(self) -> None:
        for call in self._pending:
            if not call.answered:
                raise bad(f"functionCall {call.name!r} at {call.param} has no functionResponse", call.param)

    def _model_turn(self, parts: list[Any], i: int) -> None:
        self._check_answered()
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[JSON] = []
        self._pending, self._answering = [], False
        for j, raw in enumerate(parts):
            param = at("contents", i, "parts", j)
            kind, value, part = read_part(raw, param)
            if kind == "text":
                (thoughts if part.get("thought") else texts).append(value)
            elif kind == "functionCall":
                calls.append(self._call(value, i, j, param))
            else:
                raise bad(
                    f"a {kind} part in a model turn cannot be sent to another provider",
                    at(param, kind),
                    "unsupported_value",
                )
        text = "".join(texts)
        if not text and not calls:
            return
        message: JSON = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = calls
        if "".join(thoughts):
            message["reasoning_content"] = "".join(thoughts)
        self.messages.append(message)

    def _call(self, value: Any, i: int, j: int, param: str) -> JSON:
        where = at(param, "functionCall")
        call = fields(value, where, ("id", "name", "args"))
        name = string(call.get("name"), at(where, "name"), empty=False)
        args = obj(call.get("args", {}), at(where, "args"))
        given = text_of(call.get("id"), at(where, "id"), empty=False)
        call_id = given or f"call_{i}_{j}"
        self._pending.append(_Call(call_id, name, given, param))
        return {"id": call_id, "type": "function", "function": {"name": name, "arguments": orjson.dumps(args).decode()}}

    def _user_turn(self, parts: list[Any], i: int) -> None:
        answers: list[JSON] = []
        content: list[JSON] = []
        for j, raw in enumerate(parts):
            param = at("contents", i, "parts", j)
            kind, value, part = read_part(raw, param)
            if kind == "functionResponse":
                answers.append(self._answer(value, param))
            elif kind == "text":
                if value and not part.get("thought"):
                    content.append({"type": "text", "text": value})
            else:
                content.append(media_part(kind, value, param))
        self._answering = self._answering or bool(self._pending)
        self.messages.extend(answers)
        if content:
            self.messages.append({"role": "user", "content": collapse(content)})

    def _answer(self, value: Any, param: str) -> JSON:
        where = at(param, "functionResponse")
        answer = fields(value, where, ("id", "name", "response", "parts", "willContinue", "scheduling"))
        for extra in ("parts", "willContinue", "scheduling"):
            if extra in answer:
                raise bad(f"{where}.{extra} cannot be sent to another provider", at(where, extra), "unsupported_value")
        name = string(answer.get("name"), at(where, "name"), empty=False)
        response = obj(answer.get("response", {}), at(where, "response"))
        given = text_of(answer.get("id"), at(where, "id"), empty=False)
        call = self._match(name, given, where)
        call.answered = True
        return {"role": "tool", "tool_call_id": call.id, "content": orjson.dumps(response).decode()}

    def _match(self, name: str, given: str | None, where: str) -> _Call:
        open_calls = [c for c in self._pending if not c.answered]
        by_id = given is not None and any(c.given_id is not None for c in self._pending)
        for call in open_calls:
            if (call.given_id == given) if by_id else (call.name == name):
                if call.name != name:
                    raise bad(f"{where} names {name!r} but call {given!r} is {call.name!r}", at(where, "name"))
                return call
        what = f"{name!r}" + (f" (id {given!r})" if given is not None else "")
        raise bad(f"functionResponse {what} answers no open functionCall of the preceding model turn", where)


def read_part(raw: Any, param: str) -> tuple[str, Any, JSON]:
    """(kind, value, all fields) of one part, which holds exactly one kind of data."""
    part = fields(raw, param, _PART_FIELDS)
    kinds = [k for k in _DATA_KINDS if k in part]
    if not kinds:
        raise bad(f"{param} holds no data (text, inlineData, functionCall, ...)", param, "missing_required_parameter")
    if len(kinds) > 1:
        raise bad(f"{param} holds {' and '.join(kinds)}; a part holds exactly one", param)
    if "thought" in part:
        boolean(part["thought"], at(param, "thought"))
    if "thoughtSignature" in part:
        string(part["thoughtSignature"], at(param, "thoughtSignature"))
    kind = kinds[0]
    value = part[kind]
    if kind == "text":
        value = string(value, at(param, "text"))
    return kind, value, part


def media_part(kind: str, value: Any, param: str) -> JSON:
    """A user part other than text or a function response -> a canonical part."""
    if kind == "inlineData":
        return _inline(value, at(param, kind))
    if kind == "fileData":
        return _file_uri(value, at(param, kind))
    if kind == "functionCall":
        raise bad(f"{param}.functionCall may only appear in a model turn", at(param, kind))
    raise bad(f"a {kind} part cannot be sent to another provider", at(param, kind), "unsupported_value")


def _inline(value: Any, param: str) -> JSON:
    blob = fields(value, param, ("mimeType", "data", "displayName"))
    if "mimeType" not in blob:
        raise missing(at(param, "mimeType"))
    mime = string(blob["mimeType"], at(param, "mimeType"), empty=False).lower()
    data = standard_base64(blob.get("data"), at(param, "data"))
    name = text_of(blob.get("displayName"), at(param, "displayName"))
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
    if mime == "application/pdf":
        return {"type": "file", "file": {"filename": name or "document.pdf", "file_data": f"data:{mime};base64,{data}"}}
    if mime in _AUDIO_FORMATS:
        return {"type": "input_audio", "input_audio": {"data": data, "format": _AUDIO_FORMATS[mime]}}
    raise bad(
        f"inlineData of type {mime!r} cannot be sent to another provider (images, PDF, WAV and MP3 audio can)",
        at(param, "mimeType"),
        "unsupported_value",
    )


def _file_uri(value: Any, param: str) -> JSON:
    ref = fields(value, param, ("mimeType", "fileUri", "displayName"))
    uri = string(ref.get("fileUri"), at(param, "fileUri"), empty=False)
    mime = text_of(ref.get("mimeType"), at(param, "mimeType")) or ""
    url = urlsplit(uri)
    if mime.lower().startswith("image/") and url.scheme in ("http", "https") and url.hostname != _FILES_API_HOST:
        return {"type": "image_url", "image_url": {"url": uri}}
    raise bad(
        "fileData cannot be sent to another provider (only images at a public http(s) URL can); "
        "send the bytes as inlineData",
        param,
        "unsupported_value",
    )


def system_message(value: Any, param: str) -> JSON | None:
    """``systemInstruction`` (a Content of text parts) -> a system message."""
    content = fields(value, param, CONTENT_FIELDS)
    texts: list[JSON] = []
    for j, raw in enumerate(array(content.get("parts", []), at(param, "parts"))):
        kind, text, _ = read_part(raw, at(param, "parts", j))
        if kind != "text":
            raise bad(f"{param} may hold text parts only", at(param, "parts", j, kind), "unsupported_value")
        if text:
            texts.append({"type": "text", "text": text})
    return {"role": "system", "content": collapse(texts)} if texts else None


def collapse(parts: list[JSON]) -> str | list[JSON]:
    """One text part -> its string (what most upstreams expect); anything else as parts."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        text: str = parts[0]["text"]
        return text
    return parts
