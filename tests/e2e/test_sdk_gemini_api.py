"""The official google-genai SDK against the gateway: embeddings, token counts, the
model list, API keys and errors (Google's envelope, as the SDK raises it). Raw httpx
where the SDK cannot show it (headers, ``key=``, malformed bodies).

Generation, streaming, tools and chats: test_sdk_gemini.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.genai import errors, types

from tests.e2e.conftest import Mock
from tests.e2e.genai_support import (
    API_VERSIONS,
    CHAT_ALIASES,
    HELLO,
    TARGET,
    UPSTREAM,
    Clients,
    error_reason,
    field_violations,
    mock_reply,
)
from tests.e2e.harness import LIMITED_KEY, MASTER_KEY, GatewayProcess

EMBED_ALIASES = ("gemini-embed", "embed")


def good_body(**extra: Any) -> dict[str, Any]:
    """A valid GenerateContentRequest, with ``extra`` top-level fields."""
    return {"contents": [{"role": "user", "parts": [{"text": HELLO}]}], **extra}


@pytest.fixture
def clients(gateway: GatewayProcess) -> Iterator[Clients]:
    made = Clients(gateway)
    yield made
    made.close()


@pytest.fixture
def raw(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    """A plain client with no key: each test sends its own."""
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        yield client


def _texts(*texts: str) -> list[types.Content]:
    # Separate Contents: given a list of strings, the SDK folds them into one multimodal
    # content (one vector) for any model whose name holds "gemini" (t_is_multimodal_embedding_model).
    return [types.Content(parts=[types.Part(text=t)]) for t in texts]


# --- embeddings ------------------------------------------------------------------------


@pytest.mark.parametrize("dims", [None, 8])
@pytest.mark.parametrize("alias", EMBED_ALIASES)
def test_embed_content(clients: Clients, alias: str, dims: int | None) -> None:
    config = types.EmbedContentConfig(output_dimensionality=dims) if dims else None
    models = clients.make().models
    batch = models.embed_content(model=alias, contents=_texts("first text", "second text"), config=config)
    assert batch.embeddings and len(batch.embeddings) == 2
    vectors = [e.values for e in batch.embeddings]
    assert all(v and len(v) == (dims or 16) and all(isinstance(x, float) for x in v) for v in vectors)
    assert vectors[0] != vectors[1]
    single = models.embed_content(model=alias, contents="first text", config=config)
    assert single.embeddings and len(single.embeddings) == 1
    assert single.embeddings[0].values == pytest.approx(vectors[0])


@pytest.mark.parametrize("alias", EMBED_ALIASES)
def test_embed_content_task_type_and_title(clients: Clients, alias: str) -> None:
    config = types.EmbedContentConfig(task_type="RETRIEVAL_DOCUMENT", title="A title")
    result = clients.make().models.embed_content(model=alias, contents="a document", config=config)
    assert result.embeddings and len(result.embeddings[0].values or []) == 16


def test_embed_content_list_of_strings_to_an_openai_upstream(clients: Clients) -> None:
    result = clients.make().models.embed_content(model="embed", contents=["one", "two", "three"])
    assert result.embeddings and [len(e.values or []) for e in result.embeddings] == [16, 16, 16]


def test_embeddings_agree_across_upstream_formats(clients: Clients) -> None:
    """The mock derives a vector from the text only: the Gemini pass-through and the
    OpenAI translation must hand back the same numbers for the same text."""
    models = clients.make().models
    gemini = models.embed_content(model="gemini-embed", contents=_texts("same text"))
    openai = models.embed_content(model="embed", contents=_texts("same text"))
    assert gemini.embeddings and openai.embeddings
    assert openai.embeddings[0].values == pytest.approx(gemini.embeddings[0].values)


def test_embed_content_on_a_chat_model_is_refused(clients: Clients) -> None:
    with pytest.raises(errors.ClientError) as err:
        clients.make().models.embed_content(model="chat", contents="text")
    assert (err.value.code, err.value.status) == (400, "INVALID_ARGUMENT")
    assert error_reason(err.value) == "WRONG_MODEL_KIND"


# --- token counts -----------------------------------------------------------------------


@pytest.mark.parametrize("api_version", API_VERSIONS)
@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_count_tokens(clients: Clients, alias: str, api_version: str | None) -> None:
    result = clients.make(api_version=api_version).models.count_tokens(model=alias, contents=HELLO)
    assert result.total_tokens and result.total_tokens > 0
    assert result.sdk_http_response and result.sdk_http_response.headers
    how = "upstream" if TARGET[alias] == "gemini" else "estimated"
    assert result.sdk_http_response.headers["x-gateway-token-count"] == how
    if how == "upstream":
        assert result.total_tokens == 3, "the mock's count: the prompt tokens a generation would report"


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_count_tokens_raw(raw: httpx.Client, mock: Mock, alias: str) -> None:
    response = raw.post(f"/v1beta/models/{alias}:countTokens", json=good_body(), headers={"x-goog-api-key": MASTER_KEY})
    assert response.status_code == 200
    body = response.json()
    assert body["totalTokens"] > 0
    if TARGET[alias] == "gemini":
        assert response.headers["x-gateway-token-count"] == "upstream"
        assert "estimated" not in body and mock.calls("mock-gemini") == 1
    else:
        assert response.headers["x-gateway-token-count"] == "estimated"
        assert body["estimated"] is True and mock.calls(UPSTREAM[alias]) == 0


# --- models ------------------------------------------------------------------------------


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_models_list_and_get(clients: Clients, api_version: str | None) -> None:
    models = clients.make(api_version=api_version).models
    listed = {m.name: m.supported_actions for m in models.list()}
    for alias in ("chat", "claude", "gemini"):
        assert listed[f"models/{alias}"] == ["generateContent", "streamGenerateContent", "countTokens"]
    for alias in EMBED_ALIASES:
        assert listed[f"models/{alias}"] == ["embedContent", "batchEmbedContents"]
    card = models.get(model="gemini")
    assert card.name == "models/gemini" and card.display_name == "gemini"
    with pytest.raises(errors.ClientError) as err:
        models.get(model="no-such-model")
    assert (err.value.code, err.value.status) == (404, "NOT_FOUND")


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_models_shows_only_what_the_key_may_use(clients: Clients, api_version: str | None) -> None:
    models = clients.make(key=LIMITED_KEY, api_version=api_version).models
    assert [m.name for m in models.list()] == ["models/chat"]
    assert models.get(model="chat").name == "models/chat"
    with pytest.raises(errors.ClientError) as err:
        models.get(model="gemini")
    assert err.value.code == 404


# --- keys --------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/v1", "/v1beta"])
@pytest.mark.parametrize("how", ["x-goog-api-key", "bearer"], ids=["x-goog-api-key", "authorization-bearer"])
def test_key_headers(raw: httpx.Client, prefix: str, how: str) -> None:
    headers = {"x-goog-api-key": MASTER_KEY} if how == "x-goog-api-key" else {"authorization": f"Bearer {MASTER_KEY}"}
    response = raw.post(f"{prefix}/models/gemini:generateContent", json=good_body(), headers=headers)
    assert response.status_code == 200
    assert response.json()["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize("prefix", ["/v1", "/v1beta"])
def test_key_query_parameter_is_never_logged(raw: httpx.Client, gateway: GatewayProcess, prefix: str) -> None:
    good = raw.post(f"{prefix}/models/chat:generateContent?key={MASTER_KEY}", json=good_body())
    assert good.status_code == 200
    listed = raw.get(f"/v1beta/models?key={MASTER_KEY}")
    assert listed.status_code == 200 and listed.json()["models"]
    wrong = "sk-wrong-query-key-4242"
    refused = raw.post(f"{prefix}/models/chat:generateContent?key={wrong}", json=good_body())
    assert refused.status_code == 401
    assert refused.json()["error"]["status"] == "UNAUTHENTICATED"
    log = gateway.log()
    assert f"{prefix}/models/chat:generateContent" in log
    assert MASTER_KEY not in log and wrong not in log and "key=" not in log


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_bad_key(clients: Clients, mock: Mock, api_version: str | None) -> None:
    with pytest.raises(errors.ClientError) as err:
        clients.make(key="sk-not-a-real-key", api_version=api_version).models.generate_content(
            model="gemini", contents=HELLO
        )
    assert (err.value.code, err.value.status) == (401, "UNAUTHENTICATED")
    assert error_reason(err.value) == "API_KEY_INVALID"
    assert mock.calls("mock-gemini") == 0


def test_limited_key(clients: Clients, mock: Mock) -> None:
    models = clients.make(key=LIMITED_KEY).models
    assert models.generate_content(model="chat", contents=HELLO).text
    for call in (
        lambda: models.generate_content(model="gemini", contents=HELLO),
        lambda: models.count_tokens(model="gemini", contents=HELLO),
        lambda: models.embed_content(model="gemini-embed", contents="text"),
    ):
        with pytest.raises(errors.ClientError) as err:
            call()
        assert (err.value.code, err.value.status) == (403, "PERMISSION_DENIED")
        assert error_reason(err.value) == "MODEL_NOT_ALLOWED"
    assert mock.calls("mock-gemini") == 0 and mock.calls("mock-gemini-embed") == 0


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model(clients: Clients, stream: bool) -> None:
    models = clients.make().models
    with pytest.raises(errors.ClientError) as err:
        if stream:
            list(models.generate_content_stream(model="no-such-model", contents=HELLO))
        else:
            models.generate_content(model="no-such-model", contents=HELLO)
    assert (err.value.code, err.value.status) == (404, "NOT_FOUND")
    assert error_reason(err.value) == "MODEL_NOT_FOUND"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_upstream_rate_limit(clients: Clients, mock: Mock, alias: str, stream: bool) -> None:
    mock.behave(UPSTREAM[alias], error_status=429)
    models = clients.make().models
    with pytest.raises(errors.ClientError) as err:
        if stream:
            list(models.generate_content_stream(model=alias, contents=HELLO))
        else:
            models.generate_content(model=alias, contents=HELLO)
    assert (err.value.code, err.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert mock.calls(UPSTREAM[alias]) == 2, "one attempt plus the gateway's max_retries=1; no SDK retry"


def test_upstream_retry_after_becomes_retry_info(clients: Clients, mock: Mock) -> None:
    mock.behave("rl-model", error_status=429, retry_after=30)
    with pytest.raises(errors.ClientError) as err:
        clients.make().models.generate_content(model="ratelimited", contents=HELLO)
    assert err.value.code == 429
    details: Any = err.value.details["error"]["details"]
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"} in details
    assert mock.calls("rl-model") == 1, "a Retry-After beyond max_retry_after_s is not waited for"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_upstream_server_error(clients: Clients, mock: Mock, alias: str, stream: bool) -> None:
    mock.behave(UPSTREAM[alias], error_status=500)
    models = clients.make().models
    with pytest.raises(errors.ServerError) as err:
        if stream:
            list(models.generate_content_stream(model=alias, contents=HELLO))
        else:
            models.generate_content(model=alias, contents=HELLO)
    assert (err.value.code, err.value.status) == (500, "INTERNAL")
    assert mock.calls(UPSTREAM[alias]) == 2


@pytest.mark.parametrize("alias", CHAT_ALIASES)
def test_upstream_stream_cut_short(clients: Clients, mock: Mock, alias: str) -> None:
    """An upstream that drops the stream midway: the client gets what came, then the
    error event, which the SDK raises (502 UNAVAILABLE) instead of ending quietly."""
    mock.behave(UPSTREAM[alias], disconnect_after_chunks=3)
    received: list[str] = []
    with pytest.raises(errors.ServerError) as err:
        for chunk in clients.make().models.generate_content_stream(model=alias, contents=HELLO):
            received.append(chunk.text or "")
    assert (err.value.code, err.value.status) == (502, "UNAVAILABLE")
    text = "".join(received)
    assert text and mock_reply(alias, HELLO).startswith(text) and text != mock_reply(alias, HELLO)


def test_upstream_recovers_after_transient_failures(clients: Clients, mock: Mock) -> None:
    mock.behave("mock-gpt", error_status=503, fail_times=1)
    response = clients.make().models.generate_content(model="chat", contents=HELLO)
    assert response.text and mock.calls("mock-gpt") == 2


def test_out_of_range_config_names_the_field(clients: Clients, mock: Mock) -> None:
    with pytest.raises(errors.ClientError) as err:
        clients.make().models.generate_content(
            model="chat", contents=HELLO, config=types.GenerateContentConfig(temperature=7)
        )
    assert (err.value.code, err.value.status) == (400, "INVALID_ARGUMENT")
    assert field_violations(err.value) == ["generationConfig.temperature"]
    assert mock.calls("mock-gpt") == 0


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"contents": 5}, "contents", "INVALID_TYPE"),
        ({}, "contents", "MISSING_REQUIRED_PARAMETER"),
        ({"contents": []}, "contents", "INVALID_VALUE"),
        ({"contents": [{"role": "user", "parts": [{"txt": "hi"}]}]}, "contents.0.parts.0.txt", "UNSUPPORTED_VALUE"),
        (good_body(generationConfig={"temperature": "hot"}), "generationConfig.temperature", "INVALID_TYPE"),
        (good_body(bogus=1), "bogus", "UNSUPPORTED_VALUE"),
    ],
)
@pytest.mark.parametrize("alias", ["gemini", "chat"])
def test_bad_body_names_the_field(
    raw: httpx.Client, mock: Mock, alias: str, body: Any, field: str, reason: str
) -> None:
    response = raw.post(f"/v1beta/models/{alias}:generateContent", json=body, headers={"x-goog-api-key": MASTER_KEY})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    violations = [v["field"] for d in error["details"] if "fieldViolations" in d for v in d["fieldViolations"]]
    assert violations == [field]
    assert [d["reason"] for d in error["details"] if "reason" in d] == [reason]
    assert mock.calls(UPSTREAM[alias]) == 0


def test_stream_without_alt_sse_is_refused(raw: httpx.Client) -> None:
    response = raw.post(
        "/v1beta/models/gemini:streamGenerateContent", json=good_body(), headers={"x-goog-api-key": MASTER_KEY}
    )
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
