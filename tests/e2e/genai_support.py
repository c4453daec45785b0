"""Shared pieces of the google-genai SDK conformance tests (test_sdk_gemini*.py):
google-genai clients pointed at the gateway, the aliases under test and what the
mock upstream answers them with."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from google import genai
from google.genai import errors, types

from gateway.mock.content import reply_words
from tests.e2e.harness import MASTER_KEY, GatewayProcess

CHAT_ALIASES = ("gemini", "chat", "claude", "gemini-2.5-flash")
"""Gemini upstream (same-format pass-through), OpenAI chat upstream, Anthropic upstream,
and a provider model name that ``model_aliases`` ("gemini-*") maps to ``gemini``."""
UPSTREAM = MappingProxyType(
    {"gemini": "mock-gemini", "chat": "mock-gpt", "claude": "mock-claude", "gemini-2.5-flash": "mock-gemini"}
)
TARGET = MappingProxyType({"gemini": "gemini", "chat": "chat", "claude": "claude", "gemini-2.5-flash": "gemini"})
API_VERSIONS = (None, "v1beta")
"""``None``: the SDK's default with ``base_url`` set (``/v1/models/...``); ``v1beta``: ``/v1beta/models/...``."""
HELLO = "Hello there, gateway"


def weather_tool() -> types.Tool:
    """get_weather(city: string, days: integer), both required, declared with a ``types.Schema``."""
    return types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather",
                description="Weather for a city",
                parameters=types.Schema(
                    type=types.Type.OBJECT,
                    properties={
                        "city": types.Schema(type=types.Type.STRING),
                        "days": types.Schema(type=types.Type.INTEGER),
                    },
                    required=["city", "days"],
                ),
            )
        ]
    )


WEATHER_ARGS = MappingProxyType({"city": "mock", "days": 1})
"""The arguments the mock fills in for weather_tool()'s required properties."""


def mock_reply(alias: str, user_text: str, words: int = 12) -> str:
    """The text the mock upstream of ``alias`` answers ``user_text`` with (12 words by default)."""
    return " ".join(reply_words(UPSTREAM[alias], user_text, words))


def error_reason(err: errors.APIError) -> str:
    """The ``google.rpc.ErrorInfo`` reason in the gateway's error envelope."""
    details: Any = err.details["error"]["details"]
    return str(next(d["reason"] for d in details if d["@type"].endswith("ErrorInfo")))


def field_violations(err: errors.APIError) -> list[str]:
    """The fields named by the ``google.rpc.BadRequest`` detail (none without one)."""
    details: Any = err.details["error"]["details"]
    return [v["field"] for d in details if d["@type"].endswith("BadRequest") for v in d["fieldViolations"]]


class Clients:
    """google-genai clients for one test, unchanged but for ``base_url``, no SDK-side
    retries (the gateway's own retries stay visible in the mock's call counts) and a timeout."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self._url = gateway.url
        self._made: list[genai.Client] = []

    def make(self, key: str = MASTER_KEY, api_version: str | None = None) -> genai.Client:
        options = types.HttpOptions(
            base_url=self._url,
            api_version=api_version,
            timeout=30_000,
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        client = genai.Client(api_key=key, http_options=options)
        self._made.append(client)
        return client

    def close(self) -> None:
        for client in self._made:
            client.close()
