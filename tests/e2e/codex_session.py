"""A Codex-shaped agent session over ``POST /v1/responses`` with the official openai SDK, as
the Codex CLI drives it: ``instructions``, function tools (``shell``, ``apply_patch``,
``update_plan``), ``reasoning`` with a summary, ``parallel_tool_calls: false``, a
``prompt_cache_key``, the AGENTS.md and environment context as user messages, and either

- stateless (``store: false``, ``include: ["reasoning.encrypted_content"]``): every turn
  replays the whole item history in ``input``, the output items (reasoning items with
  their ``encrypted_content``, function calls, messages) exactly as received; or
- stored (``store: true``): every turn sends only its new items and chains
  ``previous_response_id``.

As with the Claude Code session, the mock answers a tool result with text, so the session
is prompt -> function_call -> output -> message -> prompt -> function_call -> output -> message.
Output items are taken from the ``response.output_item.done`` events, as Codex takes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

from tests.e2e.replay_rig import Charge, header_cost, responses_usage_cost

INSTRUCTIONS = (
    "You are Codex, based on GPT-5. You are running as a coding agent in the Codex CLI on a user's computer.\n\n"
    "## General\n\n- The arguments to `shell` will be passed to execvp(). Most terminal commands should be "
    'prefixed with ["bash", "-lc"].\n- Always set the `workdir` param when using the shell function.'
)
REASONING = {"effort": "medium", "summary": "auto"}
ENCRYPTED = "reasoning.encrypted_content"
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "shell",
        "description": "Runs a shell command and returns its output.",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "array", "items": {"type": "string"}, "description": "The command to execute"},
                "workdir": {"type": "string", "description": "The working directory to execute the command in"},
                "timeout_ms": {"type": "number", "description": "The timeout for the command in milliseconds"},
            },
            "required": ["command"],
            "additionalProperties": False,
        },
    },
    {
        "type": "function",
        "name": "apply_patch",
        "description": "Use the `apply_patch` tool to edit files.",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": {
                "input": {"type": "string", "description": "The entire contents of the apply_patch command"}
            },
            "required": ["input"],
            "additionalProperties": False,
        },
    },
    {
        "type": "function",
        "name": "update_plan",
        "description": "Updates the task plan.",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": {
                "explanation": {"type": "string"},
                "plan": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "step": {"type": "string"},
                            "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]},
                        },
                        "required": ["step", "status"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["plan"],
            "additionalProperties": False,
        },
    },
]
CONTEXT = (
    "<user_instructions>\n\n# AGENTS.md\n\nRun `pytest -q` before you finish.\n\n</user_instructions>",
    "<environment_context>\n  <cwd>/home/dev/project</cwd>\n  <approval_policy>on-request</approval_policy>\n"
    "  <sandbox_mode>workspace-write</sandbox_mode>\n  <network_access>restricted</network_access>\n"
    "  <shell>bash</shell>\n</environment_context>",
)
PROMPTS = ("Run the test suite and tell me what fails.", "Now show me the failing test's source.")
TOOL_OUTPUTS = (
    "Exit code: 1\nWall time: 0.8 seconds\nOutput:\nFAILED tests/test_app.py::test_total - assert 3 == 4\n1 failed",
    "Exit code: 0\nWall time: 0.1 seconds\nOutput:\ndef test_total():\n    assert total([1, 2]) == 4\n",
)


def user_message(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def call_output(call_id: str, output: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


@dataclass
class CodexTurn:
    """One request: what was sent, the response and output items as received, the answer's headers."""

    sent: dict[str, Any]
    history: list[dict[str, Any]]
    """The whole conversation up to this turn's request (what a stateless client sends)."""
    response: dict[str, Any]
    output: list[dict[str, Any]]
    headers: httpx.Headers
    charge: Charge


@dataclass
class CodexSession:
    """The conversation so far; :meth:`send` sends the next items (module docstring)."""

    client: openai.OpenAI
    model: str
    stream: bool
    store: bool = False
    cache_key: str = "0199a213-81c0-7800-8aa1-bbab2a035a53"
    history: list[dict[str, Any]] = field(default_factory=list)
    turns: list[CodexTurn] = field(default_factory=list)

    def send(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send ``items`` (the whole history when stateless); returns the output items."""
        self.history += items
        body = self.body(items)
        response, output, headers = self._streamed(body) if self.stream else self._plain(body)
        assert response["status"] == "completed", response
        charge = Charge(headers["x-request-id"], header_cost(headers), responses_usage_cost(response["usage"]))
        self.turns.append(CodexTurn(body, list(self.history), response, output, headers, charge))
        self.history += output
        return output

    def body(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "instructions": INSTRUCTIONS,
            "input": list(items) if self.store else list(self.history),
            "tools": TOOLS,
            "tool_choice": "auto",
            "parallel_tool_calls": False,
            "reasoning": REASONING,
            "store": self.store,
            "prompt_cache_key": self.cache_key,
        }
        if self.store:
            if self.turns:
                body["previous_response_id"] = self.turns[-1].response["id"]
        else:
            body["include"] = [ENCRYPTED]
        return body

    def _streamed(self, body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], httpx.Headers]:
        done: dict[int, dict[str, Any]] = {}
        completed: dict[str, Any] = {}
        with self.client.responses.create(**body, stream=True) as stream:
            headers = httpx.Headers(stream.response.headers)
            for event in stream:
                if event.type == "response.output_item.done":
                    done[event.output_index] = event.item.to_dict()
                elif event.type == "response.completed":
                    completed = event.response.to_dict()
        assert completed, "the stream ended without response.completed"
        return completed, [done[i] for i in sorted(done)], headers

    def _plain(self, body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], httpx.Headers]:
        raw = self.client.responses.with_raw_response.create(**body)
        response = raw.http_response.json()
        return response, response["output"], httpx.Headers(raw.headers)

    @property
    def charges(self) -> list[Charge]:
        return [t.charge for t in self.turns]


def function_call(output: list[dict[str, Any]]) -> dict[str, Any]:
    (call,) = [item for item in output if item["type"] == "function_call"]
    assert call["name"] == "shell" and call["call_id"], call
    assert output[-1] is call and not any(i["type"] == "message" for i in output), output
    return call


def message_text(output: list[dict[str, Any]]) -> str:
    (message,) = [item for item in output if item["type"] == "message"]
    assert message["role"] == "assistant" and output[-1] is message, output
    text = "".join(part["text"] for part in message["content"] if part["type"] == "output_text")
    assert text, message
    return text


def opening(session: CodexSession) -> dict[str, Any]:
    """The first turn (the context and the first prompt); returns its function call."""
    return function_call(session.send([*(user_message(c) for c in CONTEXT), user_message(PROMPTS[0])]))


def run(session: CodexSession) -> None:
    """The scripted session (module docstring)."""
    first = opening(session)
    message_text(session.send([call_output(first["call_id"], TOOL_OUTPUTS[0])]))
    second = function_call(session.send([user_message(PROMPTS[1])]))
    message_text(session.send([call_output(second["call_id"], TOOL_OUTPUTS[1])]))
