"""Codex agent sessions replayed through ``POST /v1/responses`` over loopback HTTP
(tests/e2e/codex_session.py): stateless (the whole item history replayed, reasoning items
with their encrypted content) and stored (``previous_response_id`` chaining), on an OpenAI
Responses upstream (pass-through: the mock verifies the encrypted content it issued and
that each reasoning item is followed by its output item) and on OpenAI chat, Anthropic and
Gemini upstreams (translated: reasoning items dropped). Every session's spend is checked to
a nano-dollar against the sum of its turns' costs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from gateway.mock.reasoning import encrypted_content, verify_encrypted_content
from tests.e2e.codex_session import (
    INSTRUCTIONS,
    REASONING,
    TOOL_OUTPUTS,
    TOOLS,
    CodexSession,
    call_output,
    opening,
    run,
)
from tests.e2e.replay_rig import Received, Rig
from tests.e2e.wire_rules import problems

UPSTREAM_PATHS = {
    "resp-api": "/v1/responses",
    "chat": "/v1/chat/completions",
    "claude": "/v1/messages",
    "gemini": "/models/mock-gemini:",
}
ALIASES = list(UPSTREAM_PATHS)
MODES = [(True, False), (False, False), (True, True), (False, True)]
MODE_IDS = ["stream-stateless", "plain-stateless", "stream-stored", "plain-stored"]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    started = Rig(tmp_path_factory.mktemp("codex-replay"))
    yield started
    started.close()


@pytest.fixture
def fresh_key(rig: Rig, request: pytest.FixtureRequest) -> Iterator[tuple[openai.OpenAI, str]]:
    """A fresh mock (nothing recorded or cached) and a fresh key: (its client, its id)."""
    rig.reset()
    key, key_id = rig.new_key(f"codex-{request.node.name}")
    with openai.OpenAI(base_url=rig.url + "/v1", api_key=key, max_retries=0) as client:
        yield client, key_id


def reasoning_items(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for item in output if item["type"] == "reasoning"]


def assert_rules_kept(requests: list[Received]) -> None:
    for received in requests:
        assert problems(received.path, received.json()) == [], received.body.decode()


@pytest.mark.parametrize(("stream", "store"), MODES, ids=MODE_IDS)
def test_codex_session_on_a_responses_upstream_replays_the_encrypted_reasoning(
    rig: Rig, fresh_key: tuple[openai.OpenAI, str], stream: bool, store: bool
) -> None:
    client, key_id = fresh_key
    codex = CodexSession(client, "resp-api", stream=stream, store=store)
    run(codex)
    assert [t.headers["x-gateway-deployment"] for t in codex.turns] == ["resp-api/0"] * 4
    for turn in codex.turns:  # every turn reasoned first; the content is the mock's own, for that item
        (reasoning,) = reasoning_items(turn.output)
        assert turn.output[0] is reasoning and reasoning["summary"], turn.output
        if not store:
            assert verify_encrypted_content(reasoning["id"], reasoning["encrypted_content"])
        assert turn.response["id"].startswith("resp_") and turn.response["store"] is store

    upstream = rig.upstream(UPSTREAM_PATHS["resp-api"])
    assert len(upstream) == 4, [r.path for r in rig.received]
    assert_rules_kept(upstream)
    for n, (turn, received) in enumerate(zip(codex.turns, upstream, strict=True)):
        body = received.json()
        assert body["model"] == "mock-gpt" and body["store"] is False and "previous_response_id" not in body
        assert (body["instructions"], body["tools"], body["reasoning"]) == (INSTRUCTIONS, TOOLS, REASONING)
        assert "reasoning.encrypted_content" in body["include"], "the upstream is asked statelessly"
        if not store:
            assert body["input"] == turn.sent["input"], "a stateless history goes upstream as the client sent it"
        sent = [i for i in body["input"] if i.get("type") == "reasoning"]
        assert len(sent) == n, "every earlier reasoning item, once"
        assert all(verify_encrypted_content(i["id"], i["encrypted_content"]) for i in sent)
        assert body["input"] == turn.history, "the whole conversation, items as the client received them"
    if store:
        last = codex.turns[-1].response["id"]
        stored = client.responses.retrieve(last)
        assert stored.id == last and stored.status == "completed"
    rig.assert_spend_is_the_sum(key_id, codex.charges)


@pytest.mark.parametrize(("stream", "store"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("alias", ["chat", "claude", "gemini"])
def test_codex_session_translated_drops_reasoning_and_keeps_the_tool_loop_rules(
    rig: Rig, fresh_key: tuple[openai.OpenAI, str], alias: str, stream: bool, store: bool
) -> None:
    client, key_id = fresh_key
    codex = CodexSession(client, alias, stream=stream, store=store)
    run(codex)
    assert [t.headers["x-gateway-deployment"] for t in codex.turns] == [f"{alias}/0"] * 4
    upstream = rig.upstream(UPSTREAM_PATHS[alias])
    assert len(upstream) == 4, [r.path for r in rig.received]
    assert_rules_kept(upstream)
    for received in upstream:
        assert b"encrypted_content" not in received.body and b"gAAAAAB" not in received.body
    calls = [i["call_id"] for t in codex.turns for i in t.output if i["type"] == "function_call"]
    assert len(calls) == 2 and len(set(calls)) == 2
    if alias == "chat":
        last = upstream[-1].json()
        assert [c["id"] for m in last["messages"] for c in m.get("tool_calls") or []] == calls
    if alias == "claude":
        last = upstream[-1].json()
        uses = [
            b["id"] for m in last["messages"] for b in m["content"] if isinstance(b, dict) and b["type"] == "tool_use"
        ]
        assert uses == calls
    rig.assert_spend_is_the_sum(key_id, codex.charges)


def test_a_tampered_encrypted_content_is_refused_by_the_upstream_and_not_charged(
    rig: Rig, fresh_key: tuple[openai.OpenAI, str]
) -> None:
    client, key_id = fresh_key
    codex = CodexSession(client, "resp-api", stream=True)
    call = opening(codex)
    (reasoning,) = reasoning_items(codex.history)
    reasoning["encrypted_content"] = encrypted_content("rs_another_item")  # genuine, but another item's
    with pytest.raises(openai.BadRequestError) as refused:
        codex.send([call_output(call["call_id"], TOOL_OUTPUTS[0])])
    assert refused.value.code == "invalid_encrypted_content", refused.value.body
    assert len(rig.upstream(UPSTREAM_PATHS["resp-api"])) == 2, "refused by the upstream, not retried"
    rig.assert_spend_is_the_sum(key_id, codex.charges)  # the first turn only
