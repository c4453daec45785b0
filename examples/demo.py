"""Exercise the four demo aliases with the official openai SDK.

Run the gateway first (`make run`), then: `.venv/bin/python examples/demo.py`.
Uses GATEWAY_URL, the gateway's base URL with or without /v1 (the same rule as the
`gateway` CLI; default http://127.0.0.1:$PORT, PORT 8080 unless set, as `make run`
serves it) and GATEWAY_MASTER_KEY (default: the documented development key that
`make run` uses). Exits non-zero on any failure.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import openai

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def gateway_url() -> str:
    """The gateway's base URL: ``GATEWAY_URL`` less a trailing ``/`` or ``/v1``, else the local one on ``PORT``."""
    url = os.environ.get("GATEWAY_URL") or f"http://127.0.0.1:{os.environ.get('PORT') or 8080}"
    return url.strip().rstrip("/").removesuffix("/v1").rstrip("/")


def main() -> int:
    client = openai.OpenAI(
        base_url=gateway_url() + "/v1",
        api_key=os.environ.get("GATEWAY_MASTER_KEY", "sk-gateway-local-dev"),
        max_retries=0,
    )
    for alias in ("demo-gpt", "demo-claude", "demo-gemini"):
        reply = client.chat.completions.create(model=alias, messages=[{"role": "user", "content": "Hello!"}])
        tokens = reply.usage.total_tokens if reply.usage else "?"
        print(f"{alias:12} chat   : {reply.choices[0].message.content!r} ({tokens} tokens)")

        text, usage = "", None
        for chunk in client.chat.completions.create(
            model=alias,
            messages=[{"role": "user", "content": "Stream, please"}],
            stream=True,
            stream_options={"include_usage": True},
        ):
            text += "".join(c.delta.content or "" for c in chunk.choices)
            usage = chunk.usage or usage
        assert usage is not None, "the last chunk carries usage"
        print(f"{alias:12} stream : {text!r} (usage {usage.prompt_tokens}+{usage.completion_tokens})")

        tool = client.chat.completions.create(
            model=alias,
            messages=[{"role": "user", "content": "Weather in Seoul?"}],
            tools=[WEATHER],
            tool_choice="required",
        )
        calls: Any = tool.choices[0].message.tool_calls
        assert calls, "a tool call was requested"
        call = calls[0]
        print(f"{alias:12} tool   : {call.function.name}({json.loads(call.function.arguments)})")

    emb = client.embeddings.create(model="demo-embed", input=["hello", "world"])
    print(f"{'demo-embed':12} embed  : {len(emb.data)} vectors of {len(emb.data[0].embedding)} floats")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (openai.OpenAIError, AssertionError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        sys.exit(1)
