"""Every official SDK against the gateway: the anthropic SDK (Messages), the openai
SDK's Responses API, google-genai and LangChain's Responses mode, each against the
three demo chat aliases and a provider model name as agent clients send it.

Run the gateway first (`make run`), then: `.venv/bin/python examples/agents_demo.py`
(the SDKs are the test group's: `make test` installs them, or `.tools/bin/uv sync
--locked --group test`). GATEWAY_URL and GATEWAY_MASTER_KEY as for examples/demo.py.
Exits non-zero on any failure.
"""

from __future__ import annotations

import os
import sys

import anthropic
import openai
from google import genai
from google.genai import types
from langchain_openai import ChatOpenAI

sys.path.insert(0, os.path.dirname(__file__))
from demo import gateway_url

ALIASES = ("demo-gpt", "demo-claude", "demo-gemini")
"""Each is one upstream wire format (OpenAI, Anthropic, Gemini) answered by the mock."""


def main() -> int:
    url, key = gateway_url(), os.environ.get("GATEWAY_MASTER_KEY", "sk-gateway-local-dev")
    claude = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
    oai = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    google = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=url))
    # Claude Code, Codex and google-genai send provider names: model_aliases maps them.
    for alias in (*ALIASES, "claude-sonnet-4-5-20250929", "gpt-5.1-codex", "gemini-2.5-flash"):
        message = claude.messages.create(
            model=alias, max_tokens=256, messages=[{"role": "user", "content": "Hello from Claude's SDK"}]
        )
        print(f"{alias:27} messages  : {message.content[0].text!r}")  # type: ignore[union-attr]
        with claude.messages.stream(
            model=alias, max_tokens=256, messages=[{"role": "user", "content": "Stream it"}]
        ) as stream:
            print(f"{alias:27} m.stream  : {''.join(stream.text_stream)!r}")
        count = claude.messages.count_tokens(model=alias, messages=[{"role": "user", "content": "How many?"}])
        print(f"{alias:27} count     : {count.input_tokens} tokens")

        first = oai.responses.create(model=alias, input="Hello from the Responses API")
        second = oai.responses.create(model=alias, input="And again", previous_response_id=first.id)
        print(f"{alias:27} responses : {first.output_text!r} then {second.output_text!r}")

        reply = google.models.generate_content(model=alias, contents="Hello from google-genai")
        print(f"{alias:27} genai     : {reply.text!r}")

        chat = ChatOpenAI(model=alias, base_url=url + "/v1", api_key=key, use_responses_api=True)  # type: ignore[arg-type]
        print(f"{alias:27} langchain : {chat.invoke('Hello from LangChain').text!r}")
    vectors = google.models.embed_content(model="demo-embed", contents=["one", "two"])
    print(f"{'demo-embed':27} genai     : {len(vectors.embeddings or [])} vectors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
