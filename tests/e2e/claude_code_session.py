"""A Claude-Code-shaped agent session over ``POST /v1/messages`` with the official anthropic
SDK, as Claude Code drives it (see Anthropic's LLM-gateway protocol page for Claude Code):
``system`` as text blocks with ``cache_control`` breakpoints (the first with a 1 h ttl),
custom tools with JSON schemas, extended thinking, ``metadata.user_id``, ``anthropic-beta``
betas, a moving cache breakpoint on the last user block, and every assistant turn (thinking
blocks and their signatures included) sent back exactly as received.

The mock upstream answers a conversation that ends in a tool result with text (``auto``
tool choice), and extended thinking refuses a forced tool choice, so the session is
prompt -> tool_use -> tool_result -> text -> prompt -> tool_use -> tool_result -> text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import orjson

from tests.e2e.replay_rig import Charge, header_cost, messages_usage_cost

CLAUDE_MODEL = "claude-sonnet-4-5-20250929"
BETAS = ["claude-code-20250219", "interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14"]
THINKING = {"type": "enabled", "budget_tokens": 2048}
MAX_TOKENS = 32000
USER_ID = "user_7f3c2b9e41d0a6_account_4d1e9a22-5c7b-4f0e-9b8a-1a2b3c4d5e6f_session_0b9e6f14-28c1-4d5a-a3f7"
SYSTEM: list[dict[str, Any]] = [
    {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.0.14; cc_entrypoint=cli;"},
    {
        "type": "text",
        "text": "You are Claude Code, Anthropic's official CLI for Claude.",
        "cache_control": {"type": "ephemeral", "ttl": "1h"},
    },
    {
        "type": "text",
        "text": (
            "You are an interactive CLI tool that helps users with software engineering tasks. Use the "
            "instructions below and the tools available to you to assist the user. Be concise. Read files "
            "before you edit them. Never guess file contents.\n\n<env>\nWorking directory: /home/dev/project\n"
            "Is directory a git repo: Yes\nPlatform: linux\n</env>"
        ),
        "cache_control": {"type": "ephemeral"},
    },
]
_SCHEMA = "http://json-schema.org/draft-07/schema#"
TOOLS: list[dict[str, Any]] = [
    {
        "name": "Read",
        "description": "Reads a file from the local filesystem. The file_path parameter must be an absolute path.",
        "input_schema": {
            "type": "object",
            "properties": {
                "file_path": {"type": "string", "description": "The absolute path to the file to read"},
                "offset": {"type": "number", "description": "The line number to start reading from"},
                "limit": {"type": "number", "description": "The number of lines to read"},
            },
            "required": ["file_path"],
            "additionalProperties": False,
            "$schema": _SCHEMA,
        },
    },
    {
        "name": "Bash",
        "description": "Executes a given bash command in a persistent shell session with optional timeout.",
        "input_schema": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The command to execute"},
                "timeout": {"type": "number", "description": "Optional timeout in milliseconds (max 600000)"},
                "description": {"type": "string", "description": "Clear, concise description of what it does"},
            },
            "required": ["command"],
            "additionalProperties": False,
            "$schema": _SCHEMA,
        },
    },
    {
        "name": "Edit",
        "description": "Performs exact string replacements in files.",
        "input_schema": {
            "type": "object",
            "properties": {
                "file_path": {"type": "string", "description": "The absolute path to the file to modify"},
                "old_string": {"type": "string", "description": "The text to replace"},
                "new_string": {"type": "string", "description": "The text to replace it with"},
                "replace_all": {"type": "boolean", "default": False, "description": "Replace every occurrence"},
            },
            "required": ["file_path", "old_string", "new_string"],
            "additionalProperties": False,
            "$schema": _SCHEMA,
        },
    },
]
REMINDER = (
    "<system-reminder>\nAs you answer the user's questions, you can use the following context:\n# claudeMd\n"
    "Codebase and user instructions are shown below.\n</system-reminder>"
)
PROMPTS = ("Read README.md and tell me how to run the tests.", "Now check pyproject.toml for the pytest options.")
TOOL_OUTPUTS = (
    "     1\t# project\n     2\t\n     3\tRun the tests with `pytest -q`.\n",
    '     1\t[tool.pytest.ini_options]\n     2\taddopts = "-q"\n     3\ttestpaths = ["tests"]\n',
)

Exchanged = tuple[httpx.Headers, dict[str, Any], httpx.Headers]
"""The headers a request went with, the answer as received, the answer's headers."""


def user_text(text: str, *, first: bool = False) -> list[dict[str, Any]]:
    """A user turn as Claude Code writes it (the first one carries the context reminder)."""
    blocks = [{"type": "text", "text": REMINDER}] if first else []
    return [*blocks, {"type": "text", "text": text}]


def tool_result(tool_use_id: str, output: str) -> list[dict[str, Any]]:
    return [{"type": "tool_result", "tool_use_id": tool_use_id, "content": output}]


@dataclass
class Turn:
    """One request of the session: what was sent, what came back (as received) and its headers."""

    sent: dict[str, Any]
    sent_headers: httpx.Headers
    answer: dict[str, Any]
    headers: httpx.Headers
    charge: Charge


@dataclass
class ClaudeSession:
    """The conversation so far; :meth:`say` sends the next user turn to ``model``."""

    client: anthropic.Anthropic
    stream: bool
    messages: list[dict[str, Any]] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)

    def say(self, content: list[dict[str, Any]], model: str = CLAUDE_MODEL) -> dict[str, Any]:
        """Send the next user turn; the assistant's answer is appended as received and returned."""
        self.messages.append({"role": "user", "content": content})
        body = self.body(model)
        sent, answer, headers = self._streamed(body) if self.stream else self._plain(body)
        charge = Charge(headers["x-request-id"], header_cost(headers), messages_usage_cost(answer["usage"]))
        self.turns.append(Turn(body, sent, answer, headers, charge))
        self.messages.append({"role": "assistant", "content": answer["content"]})
        return answer

    def body(self, model: str) -> dict[str, Any]:
        """The request: the history, with the moving cache breakpoint on the last user block only."""
        messages: list[dict[str, Any]] = orjson.loads(orjson.dumps(self.messages))
        messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
        return {
            "model": model,
            "max_tokens": MAX_TOKENS,
            "system": SYSTEM,
            "tools": TOOLS,
            "thinking": THINKING,
            "metadata": {"user_id": USER_ID},
            "messages": messages,
        }

    def _streamed(self, body: dict[str, Any]) -> Exchanged:
        with self.client.beta.messages.stream(**body, betas=BETAS) as stream:
            message = stream.get_final_message()
            response = stream.response
        return httpx.Headers(response.request.headers), message.to_dict(), httpx.Headers(response.headers)

    def _plain(self, body: dict[str, Any]) -> Exchanged:
        # An explicit timeout: the SDK refuses a plain request that may run for over 10 minutes otherwise.
        raw = self.client.beta.messages.with_raw_response.create(**body, betas=BETAS, timeout=60)
        response = raw.http_response
        return httpx.Headers(response.request.headers), response.json(), httpx.Headers(response.headers)

    @property
    def charges(self) -> list[Charge]:
        return [t.charge for t in self.turns]


def tool_use(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer's one tool_use block (the answer must have stopped for it)."""
    assert answer["stop_reason"] == "tool_use", answer
    blocks: list[dict[str, Any]] = [b for b in answer["content"] if b["type"] == "tool_use"]
    (block,) = blocks
    assert block["name"] == "Read" and block["input"].get("file_path"), block
    return block


def final_text(answer: dict[str, Any]) -> str:
    assert answer["stop_reason"] == "end_turn", answer
    text = "".join(b["text"] for b in answer["content"] if b["type"] == "text")
    assert text, answer
    return text


def run(session: ClaudeSession, models: tuple[str, str, str, str] = (CLAUDE_MODEL,) * 4) -> None:
    """The scripted session (module docstring), turn ``i`` on ``models[i]``."""
    first = tool_use(session.say(user_text(PROMPTS[0], first=True), models[0]))
    final_text(session.say(tool_result(first["id"], TOOL_OUTPUTS[0]), models[1]))
    second = tool_use(session.say(user_text(PROMPTS[1]), models[2]))
    final_text(session.say(tool_result(second["id"], TOOL_OUTPUTS[1]), models[3]))
