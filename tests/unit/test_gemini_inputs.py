"""Audio and PDF inputs and logprobs on the Gemini provider (issue 12, item 6).

Requests are compared with the recorded ones in shared/fixtures/gemini. google-genai
re-encodes bytes (``inlineData.data``, a replayed ``thoughtSignature``) in the URL-safe
base64 alphabet and pydantic-ai adds its own ``id`` to functionCall/functionResponse and
``responseModalities: ["TEXT"]``; an OpenAI client sends standard base64. So the canonical
requests below carry the recorded bytes in standard base64, and the comparison decodes
``inlineData`` back to bytes (:func:`comparable`). The recorded audio request sends the
tool result and the next user message as two user turns; the provider merges consecutive
turns of one role (gemini_request.py), so the comparison merges them too.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import orjson
import pytest

from gateway.canonical import JSON
from gateway.errors import InvalidRequest
from gateway.providers.base import Target
from gateway.providers.gemini import GeminiProvider
from gateway.providers.gemini_stream import new_tool_call_id
from tests.unit.fixtures import decode_events, load_json, random_pieces, sse_events, user

PROVIDER = GeminiProvider()
BASE = "https://generativelanguage.googleapis.com/v1beta"
AUDIO = "gemini/generate_content_inline_audio"
PDF = "gemini/generate_content_inline_pdf"
LOGPROBS = "gemini/generate_content_logprobs_vertex"


def target(model: str = "gemini-2.5-flash", **kw: Any) -> Target:
    return Target("gemini", model, BASE, api_key="k", auth_header="x-goog-api-key", auth_scheme="", **kw)


def chat(req: JSON, model: str = "gemini-2.5-flash") -> JSON:
    wire = PROVIDER.chat_request(req, target(model), stream=False)
    assert wire.body is not None
    body: JSON = orjson.loads(wire.body)
    return body


def standard(data: str) -> str:
    """Base64 text (either alphabet) re-encoded in the standard alphabet, padded."""
    return base64.b64encode(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))).decode()


def comparable(contents: list[JSON]) -> list[JSON]:
    """Contents with inline data and signatures as standard base64, no part ids, and
    consecutive turns of one role merged."""
    out: list[JSON] = []
    for turn in copy.deepcopy(contents):
        if out and out[-1]["role"] == turn["role"]:
            out[-1]["parts"].extend(turn["parts"])
        else:
            out.append(turn)
    for turn in out:
        for part in turn["parts"]:
            if "inlineData" in part:
                part["inlineData"]["data"] = standard(part["inlineData"]["data"])
            if "thoughtSignature" in part:
                part["thoughtSignature"] = standard(part["thoughtSignature"])
            for key in ("functionCall", "functionResponse"):
                part.get(key, {}).pop("id", None)
    return out


# --- audio ----------------------------------------------------------------------------


def audio_request() -> JSON:
    """The recorded audio conversation as a canonical request."""
    recorded = load_json(f"{AUDIO}.request.json")
    first, call_turn, result_turn, last = recorded["contents"]
    call = call_turn["parts"][0]
    call_id = new_tool_call_id(call["thoughtSignature"])
    inline = last["parts"][1]["inlineData"]
    assert inline["mimeType"] == "audio/mpeg"
    declaration = recorded["tools"][0]["functionDeclarations"][0]
    return {
        "model": "alias",
        "messages": [
            user(first["parts"][0]["text"]),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": call["functionCall"]["name"], "arguments": "{}"},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": call_id,
                "content": orjson.dumps(result_turn["parts"][0]["functionResponse"]["response"]).decode(),
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": last["parts"][0]["text"]},
                    {
                        "type": "input_audio",
                        "input_audio": {"data": standard(inline["data"]), "format": "mp3"},
                        "cache_control": {"type": "ephemeral"},
                    },
                ],
            },
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": declaration["name"],
                    "description": declaration["description"],
                    "parameters": declaration["parameters_json_schema"],
                },
            }
        ],
    }


def test_inline_audio_request() -> None:
    recorded = load_json(f"{AUDIO}.request.json")
    body = chat(audio_request())
    assert comparable(body["contents"]) == comparable(recorded["contents"])
    sent = body["contents"][2]["parts"][2]["inlineData"]
    assert base64.b64decode(sent["data"]) == base64.urlsafe_b64decode(
        recorded["contents"][3]["parts"][1]["inlineData"]["data"]
    )
    assert (
        body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]
        == (recorded["tools"][0]["functionDeclarations"][0]["parameters_json_schema"])
    )
    assert "generationConfig" not in body  # recorded: only the default responseModalities


def test_inline_audio_answer() -> None:
    raw = load_json(f"{AUDIO}.json")
    out = PROVIDER.chat_response(raw, target())
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": 'The audio file contains a male voice saying, "Hello, my name is Marcelo."',
    }
    assert out["usage"] == {"prompt_tokens": 229, "completion_tokens": 17, "total_tokens": 246}


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("wav", "audio/wav"), ("mp3", "audio/mpeg"), ("MP3", "audio/mpeg"), ("flac", "audio/flac"), ("ogg", "audio/ogg")],
)
def test_audio_formats(fmt: str, mime: str) -> None:
    data = standard(load_json(f"{AUDIO}.request.json")["contents"][3]["parts"][1]["inlineData"]["data"][:400])
    part = {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}
    parts = chat({"messages": [{"role": "user", "content": [part]}]})["contents"][0]["parts"]
    assert parts == [{"inlineData": {"mimeType": mime, "data": data}}]


# --- PDF ------------------------------------------------------------------------------


def pdf_request(file: JSON) -> JSON:
    recorded = load_json(f"{PDF}.request.json")
    text = recorded["contents"][0]["parts"][0]["text"]
    return {
        "messages": [
            {"role": "system", "content": recorded["systemInstruction"]["parts"][0]["text"]},
            {"role": "user", "content": [{"type": "text", "text": text}, {"type": "file", "file": file}]},
        ]
    }


def pdf_data() -> str:
    return standard(load_json(f"{PDF}.request.json")["contents"][0]["parts"][1]["inlineData"]["data"])


@pytest.mark.parametrize(
    "file",
    [
        {"filename": "dummy.pdf", "file_data": f"data:application/pdf;base64,{pdf_data()}"},
        {"file_data": f"data:application/pdf;base64,{pdf_data()}", "file_id": "file-ignored"},
        {"filename": "Dummy.PDF", "file_data": pdf_data()},
    ],
)
def test_inline_pdf_request(file: JSON) -> None:
    recorded = load_json(f"{PDF}.request.json")
    body = chat(pdf_request(file), "gemini-2.0-flash")
    assert comparable(body["contents"]) == comparable(recorded["contents"])
    assert body["contents"][0]["parts"][1]["inlineData"] == {"mimeType": "application/pdf", "data": pdf_data()}
    assert body["systemInstruction"] == {"parts": recorded["systemInstruction"]["parts"]}
    assert "generationConfig" not in body  # recorded: {}


def test_inline_pdf_answer() -> None:
    out = PROVIDER.chat_response(load_json(f"{PDF}.json"), target("gemini-2.0-flash"))
    assert out["choices"][0]["message"]["content"] == "The document appears to be a dummy PDF file.\n"
    assert out["choices"][0]["logprobs"] is None  # avgLogprobs alone is not OpenAI logprobs
    assert out["usage"] == {"prompt_tokens": 1305, "completion_tokens": 11, "total_tokens": 1316}


# --- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "param", "code"),
    [
        ({"type": "file", "file": {"file_id": "file-abc"}}, "file.file_id", "unsupported_value"),
        ({"type": "file", "file": {"filename": "a.pdf"}}, "file.file_data", "missing_required_parameter"),
        ({"type": "file", "file": "data:application/pdf;base64,QQ=="}, "file", "invalid_type"),
        ({"type": "file", "file": {"file_data": 12}}, "file.file_data", "invalid_type"),
        ({"type": "file", "file": {"file_data": "data:application/pdf,QQ=="}}, "file.file_data", "invalid_value"),
        ({"type": "file", "file": {"file_data": "data:;base64,QQ=="}}, "file.file_data", "invalid_value"),
        ({"type": "file", "file": {"file_data": "QQ==", "filename": "a.docx"}}, "file.file_data", "invalid_value"),
        ({"type": "file", "file": {"file_data": "QQ=="}}, "file.file_data", "invalid_value"),
        (
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,"}},
            "file.file_data",
            "missing_required_parameter",
        ),
        (
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,not base64!"}},
            "file.file_data",
            "invalid_value",
        ),
        ({"type": "input_audio", "input_audio": "QQ=="}, "input_audio", "invalid_type"),
        ({"type": "input_audio", "input_audio": {"format": "wav"}}, "input_audio.data", "missing_required_parameter"),
        ({"type": "input_audio", "input_audio": {"data": 5, "format": "wav"}}, "input_audio.data", "invalid_type"),
        ({"type": "input_audio", "input_audio": {"data": "Q Q", "format": "wav"}}, "input_audio.data", "invalid_value"),
        ({"type": "input_audio", "input_audio": {"data": "QQ=="}}, "input_audio.format", "missing_required_parameter"),
        ({"type": "input_audio", "input_audio": {"data": "QQ==", "format": 1}}, "input_audio.format", "invalid_type"),
        (
            {"type": "input_audio", "input_audio": {"data": "QQ==", "format": "pcm16"}},
            "input_audio.format",
            "unsupported_value",
        ),
    ],
)
def test_bad_media_parts(part: JSON, param: str, code: str) -> None:
    req = {"messages": [user("first"), {"role": "assistant", "content": "ok"}, {"role": "user", "content": [part]}]}
    with pytest.raises(InvalidRequest) as err:
        chat(req)
    assert (err.value.param, err.value.code, err.value.status) == (f"messages[2].content[0].{param}", code, 400)


# --- logprobs -------------------------------------------------------------------------


def test_logprobs_request() -> None:
    recorded = load_json(f"{LOGPROBS}.request.json")
    req = {"messages": [user(recorded["contents"][0]["parts"][0]["text"])], "logprobs": True, "top_logprobs": 5}
    body = chat(req)
    assert body["contents"] == recorded["contents"]
    config = {k: v for k, v in recorded["generationConfig"].items() if k != "responseModalities"}
    assert body["generationConfig"] == config == {"responseLogprobs": True, "logprobs": 5}


def test_logprobs_request_variants() -> None:
    assert chat({"messages": [user("x")], "logprobs": True})["generationConfig"] == {"responseLogprobs": True}
    assert "generationConfig" not in chat({"messages": [user("x")], "logprobs": False})
    config = chat({"messages": [user("x")], "logprobs": True, "top_logprobs": 0})["generationConfig"]
    assert config == {"responseLogprobs": True, "logprobs": 0}


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"logprobs": "yes"}, "logprobs", "invalid_type"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "invalid_value"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs", "invalid_value"),
        ({"logprobs": True, "top_logprobs": "5"}, "top_logprobs", "invalid_type"),
        ({"logprobs": True, "top_logprobs": 2.5}, "top_logprobs", "invalid_type"),
        ({"top_logprobs": 5}, "top_logprobs", "invalid_value"),
        ({"logprobs": False, "top_logprobs": 5}, "top_logprobs", "invalid_value"),
    ],
)
def test_bad_logprobs(extra: JSON, param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        chat({"messages": [user("x")], **extra})
    assert (err.value.param, err.value.code, err.value.status) == (param, code, 400)


def expected_logprobs(raw: JSON) -> JSON:
    result = raw["candidates"][0]["logprobsResult"]
    return {
        "content": [
            {
                "token": chosen["token"],
                "logprob": chosen["logProbability"],
                "bytes": None,
                "top_logprobs": [
                    {"token": alt["token"], "logprob": alt["logProbability"], "bytes": None}
                    for alt in top["candidates"]
                ],
            }
            for chosen, top in zip(result["chosenCandidates"], result["topCandidates"], strict=True)
        ],
        "refusal": None,
    }


def test_logprobs_answer() -> None:
    raw = load_json(f"{LOGPROBS}.json")
    choice = PROVIDER.chat_response(raw, target())["choices"][0]
    assert choice["logprobs"] == expected_logprobs(raw)
    content = choice["logprobs"]["content"]
    assert "".join(t["token"] for t in content) == choice["message"]["content"] == "2 + 2 = 4"
    assert content[0]["token"] == "2" and content[0]["logprob"] == -0.01972555
    assert [t["token"] for t in content[0]["top_logprobs"]] == ["2", "4", "Four", "$", "**"]
    assert all(len(t["top_logprobs"]) == 5 for t in content)


def test_logprobs_answer_zero_values_left_out() -> None:
    # Gemini's JSON leaves out zero values: a certain token has no logProbability.
    raw = load_json(f"{LOGPROBS}.json")
    result = raw["candidates"][0]["logprobsResult"]
    del result["chosenCandidates"][2]["logProbability"]
    del result["topCandidates"][2]["candidates"][0]["logProbability"]
    del result["topCandidates"][6:]
    content = PROVIDER.chat_response(raw, target())["choices"][0]["logprobs"]["content"]
    assert content[2]["logprob"] == 0.0
    assert content[2]["top_logprobs"][0] == {"token": " ", "logprob": 0.0, "bytes": None}
    assert content[6]["top_logprobs"] == []


@pytest.mark.parametrize("seed", range(4))
def test_logprobs_on_a_stream_event(seed: int) -> None:
    # No recorded stream carries logprobs: the recorded answer framed as one SSE event.
    raw = load_json(f"{LOGPROBS}.json")
    sse = b"data: " + orjson.dumps(raw) + b"\r\n\r\n"
    chunks = decode_events(PROVIDER.stream_decoder(target()), sse_events(random_pieces(sse, seed)))
    carrying = [c for c in chunks if c["choices"] and c["choices"][0]["logprobs"] is not None]
    assert len(carrying) == 1
    assert carrying[0]["choices"][0]["delta"]["content"] == "2 + 2 = 4"
    assert carrying[0]["choices"][0]["logprobs"] == expected_logprobs(raw)
