"""Canonical audio and file content parts -> Gemini ``inlineData`` parts.

- ``{"type": "input_audio", "input_audio": {"data", "format"}}`` -> ``inlineData`` with the
  format's MIME type (:data:`AUDIO_MIME`: the formats Gemini documents for audio input;
  ``mp3`` is sent as ``audio/mpeg``, as in ``fixtures/gemini/generate_content_inline_audio``).
- ``{"type": "file", "file": {"file_data", "filename"}}`` -> ``inlineData``: ``file_data`` is a
  base64 ``data:`` URL whose MIME type is sent (``application/pdf`` for a PDF), or bare base64
  whose type comes from the ``filename`` extension (:data:`FILE_MIME`).
- A ``file`` with only a ``file_id`` is refused (``unsupported_value``): an id names a file
  uploaded to OpenAI, and Gemini's Files API has its own ids and upload step, so there is
  nothing to map it to.

The base64 text is passed on as given (Gemini reads the standard and the URL-safe alphabet);
it is checked to be base64 so junk fails here with the field's path, not upstream. Other keys
of the parts (``cache_control``, ``filename``) have no Gemini equivalent and are dropped.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any

from gateway.canonical import JSON
from gateway.errors import InvalidRequest

AUDIO_MIME = MappingProxyType(
    {
        "wav": "audio/wav",
        "mp3": "audio/mpeg",
        "aiff": "audio/aiff",
        "aac": "audio/aac",
        "ogg": "audio/ogg",
        "flac": "audio/flac",
    }
)
"""``input_audio.format`` -> MIME type (OpenAI defines ``wav`` and ``mp3``; the others are
Gemini's remaining documented audio types)."""

FILE_MIME = MappingProxyType(
    {
        "pdf": "application/pdf",
        "txt": "text/plain",
        "png": "image/png",
        "jpg": "image/jpeg",
        "jpeg": "image/jpeg",
        "webp": "image/webp",
        "heic": "image/heic",
        "heif": "image/heif",
        **{ext: mime for ext, mime in AUDIO_MIME.items()},
    }
)
"""Filename extension -> MIME type, for a ``file_data`` that is bare base64."""

_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


def audio_part(audio: Any, param: str) -> JSON:
    """An ``input_audio`` object (at ``param``) -> an ``inlineData`` part."""
    if not isinstance(audio, dict):
        raise InvalidRequest("input_audio must be an object", param=param, code="invalid_type")
    data = _base64(audio.get("data"), f"{param}.data")
    fmt = audio.get("format")
    if fmt is None:
        raise InvalidRequest("input_audio needs a format", param=f"{param}.format", code="missing_required_parameter")
    if not isinstance(fmt, str):
        raise InvalidRequest("input_audio.format must be a string", param=f"{param}.format", code="invalid_type")
    mime = AUDIO_MIME.get(fmt.lower())
    if mime is None:
        raise InvalidRequest(
            f"audio format {fmt!r} is not supported by Gemini (use one of {', '.join(AUDIO_MIME)})",
            param=f"{param}.format",
            code="unsupported_value",
        )
    return {"inlineData": {"mimeType": mime, "data": data}}


def file_part(file: Any, param: str) -> JSON:
    """A ``file`` object (at ``param``) -> an ``inlineData`` part."""
    if not isinstance(file, dict):
        raise InvalidRequest("file must be an object", param=param, code="invalid_type")
    raw = file.get("file_data")
    if raw is None:
        if file.get("file_id") is not None:
            raise InvalidRequest(
                "a file_id cannot be sent to Gemini (it names an OpenAI upload); send the file as file_data",
                param=f"{param}.file_id",
                code="unsupported_value",
            )
        raise InvalidRequest("file needs file_data", param=f"{param}.file_data", code="missing_required_parameter")
    if not isinstance(raw, str):
        raise InvalidRequest("file_data must be a string", param=f"{param}.file_data", code="invalid_type")
    if raw.startswith("data:"):
        mime, data = _data_url(raw, f"{param}.file_data")
    else:
        mime, data = _mime_from_name(file.get("filename"), param), raw
    return {"inlineData": {"mimeType": mime, "data": _base64(data, f"{param}.file_data")}}


def _data_url(url: str, param: str) -> tuple[str, str]:
    header, sep, data = url[len("data:") :].partition(",")
    if not sep or not header.endswith(";base64"):
        raise InvalidRequest("file_data must be a base64 data: URL", param=param, code="invalid_value")
    mime = header[: -len(";base64")].split(";")[0].strip().lower()
    if "/" not in mime:
        raise InvalidRequest("file_data's data: URL needs a MIME type", param=param, code="invalid_value")
    return mime, data


def _mime_from_name(filename: Any, param: str) -> str:
    ext = PurePosixPath(filename).suffix.lower().lstrip(".") if isinstance(filename, str) else ""
    mime = FILE_MIME.get(ext)
    if mime is None:
        raise InvalidRequest(
            "file_data without a data: URL needs a filename with a known extension (pdf, txt, images, audio)",
            param=f"{param}.file_data",
            code="invalid_value",
        )
    return mime


def _base64(data: Any, param: str) -> str:
    if data is None or data == "":
        raise InvalidRequest("base64 data is required", param=param, code="missing_required_parameter")
    if not isinstance(data, str):
        raise InvalidRequest("base64 data must be a string", param=param, code="invalid_type")
    if _BASE64.fullmatch(data) is None:
        raise InvalidRequest("data is not base64", param=param, code="invalid_value")
    return data
