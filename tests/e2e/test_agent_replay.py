"""Claude Code agent sessions replayed through ``POST /v1/messages`` over loopback HTTP
(tests/e2e/claude_code_session.py), on an Anthropic upstream (same-format pass-through)
and on OpenAI chat and Gemini upstreams (translated). The recorded upstream requests show
what reached the provider; every session's spend is checked to a nano-dollar against the
sum of its turns' costs. The Codex (Responses API) sessions are in
tests/e2e/test_agent_replay_codex.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from gateway.mock.reasoning import sign_thinking, verify_thinking
from tests.e2e.claude_code_session import (
    BETAS,
    CLAUDE_MODEL,
    PROMPTS,
    SYSTEM,
    THINKING,
    TOOL_OUTPUTS,
    TOOLS,
    USER_ID,
    ClaudeSession,
    run,
    tool_result,
    tool_use,
    user_text,
)
from tests.e2e.replay_rig import Received, Rig
from tests.e2e.wire_rules import problems

UPSTREAM_PATHS = {"claude": "/v1/messages", "chat": "/v1/chat/completions", "gemini": "/models/mock-gemini:"}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    started = Rig(tmp_path_factory.mktemp("claude-replay"))
    yield started
    started.close()


@pytest.fixture
def session(rig: Rig, request: pytest.FixtureRequest) -> Iterator[tuple[ClaudeSession, str]]:
    """A fresh mock (no cached prefixes, nothing recorded) and a fresh key: (session, key id)."""
    rig.reset()
    key, key_id = rig.new_key(f"claude-code-{request.node.name}")
    stream = bool(getattr(request, "param", True))
    with anthropic.Anthropic(base_url=rig.url, api_key=key, max_retries=0) as client:
        yield ClaudeSession(client, stream), key_id


def thinking_of(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer's leading thinking block, whose signature must be the mock's own."""
    block: dict[str, Any] = answer["content"][0]
    assert block["type"] == "thinking", answer["content"]
    assert block["signature"] == sign_thinking(block["thinking"])
    assert verify_thinking(block["thinking"], block["signature"])
    return block


def assert_rules_kept(requests: list[Received]) -> None:
    for received in requests:
        assert problems(received.path, received.json()) == [], received.body.decode()


@pytest.mark.parametrize("session", [True, False], ids=["stream", "plain"], indirect=True)
def test_claude_code_session_on_anthropic_keeps_signatures_betas_and_cache(
    rig: Rig, session: tuple[ClaudeSession, str]
) -> None:
    convo, key_id = session
    run(convo)
    answers = [t.answer for t in convo.turns]
    assert [t.headers["x-gateway-deployment"] for t in convo.turns] == ["claude/0"] * 4
    signed = [thinking_of(a) for a in answers]  # every turn thought, with the mock's own signature

    upstream = rig.upstream(UPSTREAM_PATHS["claude"])
    assert len(upstream) == 4, [r.path for r in rig.received]
    for turn, received in zip(convo.turns, upstream, strict=True):
        assert received.headers.get("anthropic-beta") == ",".join(BETAS), "Claude Code's betas reach Anthropic"
        assert received.headers.get("anthropic-version") == turn.sent_headers["anthropic-version"]
        body = received.json()
        assert body["model"] == "mock-claude"
        assert (body["system"], body["tools"], body["thinking"]) == (SYSTEM, TOOLS, THINKING)
        assert body["metadata"] == {"user_id": USER_ID}
        assert body["messages"] == turn.sent["messages"], "the history goes upstream as the client sent it"
    for i, block in enumerate(signed[:-1]):
        for later in upstream[i + 1 :]:  # each signature went back byte for byte in every later request
            assert block["signature"].encode() in later.body
    assert_rules_kept(upstream)

    first, *rest = [a["usage"] for a in answers]
    assert first["cache_creation_input_tokens"] > 0 and first["cache_read_input_tokens"] == 0
    assert all(u["cache_read_input_tokens"] > 0 for u in rest), "the repeated prefix is read from the cache"
    assert rest[-1]["cache_read_input_tokens"] > rest[0]["cache_read_input_tokens"], "the breakpoint moves on"
    rig.assert_spend_is_the_sum(key_id, convo.charges)


@pytest.mark.parametrize("session", [True, False], ids=["stream", "plain"], indirect=True)
@pytest.mark.parametrize("alias", ["chat", "gemini"])
def test_claude_code_session_translated_keeps_the_tool_loop_rules(
    rig: Rig, session: tuple[ClaudeSession, str], alias: str
) -> None:
    convo, key_id = session
    run(convo, (alias,) * 4)
    assert [t.headers["x-gateway-deployment"] for t in convo.turns] == [f"{alias}/0"] * 4
    upstream = rig.upstream(UPSTREAM_PATHS[alias])
    assert len(upstream) == 4, [r.path for r in rig.received]
    assert_rules_kept(upstream)
    for received in upstream:
        assert "anthropic-beta" not in received.headers, "Anthropic's betas mean nothing to another provider"
    if alias == "chat":
        uses = [b["id"] for t in convo.turns for b in t.answer["content"] if b["type"] == "tool_use"]
        last = upstream[-1].json()
        assert [c["id"] for m in last["messages"] for c in m.get("tool_calls") or []] == uses
        assert last["user"] == USER_ID, "metadata.user_id becomes the end-user id"
    rig.assert_spend_is_the_sum(key_id, convo.charges)


@pytest.mark.parametrize("alias", ["chat", "gemini"])
def test_switching_models_mid_session_drops_then_keeps_the_signed_thinking(
    rig: Rig, session: tuple[ClaudeSession, str], alias: str
) -> None:
    """``/model`` mid-session: two turns on Claude, two on ``alias`` with the signed thinking
    blocks in the history (dropped in translation), then Claude again, which verifies them."""
    convo, key_id = session
    run(convo, (CLAUDE_MODEL, CLAUDE_MODEL, alias, alias))
    signatures = [thinking_of(t.answer)["signature"] for t in convo.turns[:2]]
    translated = rig.upstream(UPSTREAM_PATHS[alias])
    assert len(translated) == 2
    assert_rules_kept(translated)
    for received in translated:
        assert not any(s.encode() in received.body for s in signatures), "no signature leaks to another provider"
        assert b"Mock thinking about" not in received.body, "nor the thinking text"
    back = convo.say(user_text("Thanks. Summarise what you found."))
    thinking_of(back)
    tool_use(back)
    last = rig.upstream(UPSTREAM_PATHS["claude"])[-1].json()
    assert last["messages"] == convo.turns[-1].sent["messages"]
    rig.assert_spend_is_the_sum(key_id, convo.charges)


def test_a_tampered_signature_is_refused_by_the_upstream_and_not_charged(
    rig: Rig, session: tuple[ClaudeSession, str]
) -> None:
    convo, key_id = session
    first = tool_use(convo.say(user_text(PROMPTS[0], first=True)))
    thinking = convo.messages[-1]["content"][0]
    thinking["signature"] = sign_thinking(thinking["thinking"] + " (edited)")  # genuine, but for other text
    with pytest.raises(anthropic.BadRequestError) as refused:
        convo.say(tool_result(first["id"], TOOL_OUTPUTS[0]))
    assert "signature" in str(refused.value.message)
    assert len(rig.upstream(UPSTREAM_PATHS["claude"])) == 2, "refused by the upstream, not retried"
    rig.assert_spend_is_the_sum(key_id, convo.charges)  # the first turn only


def test_the_wire_rules_catch_a_tool_result_that_answers_no_call() -> None:
    """The rule checks above are not vacuous: each format's checker finds a mismatched answer."""
    use = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}]}

    def answered(tool_use_id: str) -> dict[str, Any]:
        return {"messages": [use, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use_id}]}]}

    call = {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function"}]}

    def chat(call_id: str) -> dict[str, Any]:
        return {"messages": [call, {"role": "tool", "tool_call_id": call_id, "content": "x"}]}

    def gemini(name: str) -> dict[str, Any]:
        asked = {"role": "model", "parts": [{"functionCall": {"name": "Read", "args": {}}}]}
        return {"contents": [asked, {"role": "user", "parts": [{"functionResponse": {"name": name, "response": {}}}]}]}

    def responses(call_id: str) -> dict[str, Any]:
        return {
            "input": [
                {"type": "function_call", "call_id": "call_1"},
                {"type": "function_call_output", "call_id": call_id},
            ]
        }

    for path, build, good in (
        ("/v1/messages", answered, "toolu_1"),
        ("/v1/chat/completions", chat, "call_1"),
        ("/v1beta/models/m:generateContent", gemini, "Read"),
        ("/v1/responses", responses, "call_1"),
    ):
        assert problems(path, build(good)) == []
        assert problems(path, build("other")), path
