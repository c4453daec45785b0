"""The gateway under test: its generated config, its process (pinned to the server
core) and a one-request probe that shows what it answers."""

from __future__ import annotations

import os
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import yaml

from bench.apis import CHAT, Api, request_body, request_headers
from bench.procs import SERVER_CORE, AppServer, MemSample, Pinning, free_port, read_mem

JSON_ALIAS = "bench-json"
SSE_ALIAS = "bench-sse"
CLAUDE_JSON_ALIAS = "bench-claude-json"
CLAUDE_SSE_ALIAS = "bench-claude-sse"
UPSTREAM_MODEL = "gpt-4o-mini"
CLAUDE_UPSTREAM_MODEL = "claude-haiku-4-5"
KEY_ENV = "GATEWAY_MASTER_KEY"


def master_key() -> str:
    """The key clients send: ``$GATEWAY_MASTER_KEY`` when usable, else a fresh random one."""
    key = os.environ.get(KEY_ENV, "")
    return key if len(key) >= 8 else "bench-" + secrets.token_hex(16)


def render_gateway_config(
    *, port: int, json_base_url: str, sse_base_url: str, state_path: str = "gateway-state.db"
) -> dict[str, Any]:
    """The bare gateway: the bench aliases (an OpenAI-format and an Anthropic-format
    upstream, each answering JSON or a stream), traffic control off (no global
    concurrency limit, no cache, no prices: nothing is costed), its state file
    at ``state_path``. The master key comes from the environment."""

    def alias(base_url: str, description: str, provider: str = "openai_compatible") -> dict[str, Any]:
        deployment = {
            "provider": provider,
            "model": CLAUDE_UPSTREAM_MODEL if provider == "anthropic" else UPSTREAM_MODEL,
            "base_url": base_url,
            "api_key": "bench-upstream-key",
        }
        return {"description": description, "deployments": [deployment]}

    return {
        "server": {"host": "127.0.0.1", "port": port},
        "auth": {"master_key": "${" + KEY_ENV + "}"},
        "state": {"backend": "embedded", "path": state_path},
        "limits": {"max_concurrent": None},
        "cache": {"enabled": False},
        "pricing": {"file": None},
        "models": {
            JSON_ALIAS: alias(json_base_url, "bench: canned chat.completion from nginx"),
            SSE_ALIAS: alias(sse_base_url, "bench: canned SSE stream from nginx"),
            CLAUDE_JSON_ALIAS: alias(json_base_url, "bench: canned Anthropic message from nginx", "anthropic"),
            CLAUDE_SSE_ALIAS: alias(sse_base_url, "bench: canned Anthropic stream from nginx", "anthropic"),
        },
    }


@dataclass
class Probe:
    """One request through the gateway, to show what it answers before the load runs."""

    model: str
    stream: bool
    status: int
    content_type: str
    body_sample: str
    ok: bool
    problem: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def chat_body(model: str, *, stream: bool, temperature: int | None = None) -> bytes:
    """The chat-completions body ``wrk_post.lua`` sends."""
    return request_body(CHAT, model, stream=stream, temperature=temperature)


def probe(url: str, *, key: str, model: str, stream: bool, timeout_s: float = 10.0, api: Api = CHAT) -> Probe:
    """One request of ``api`` (the body and headers wrk sends) to ``url``."""
    headers = request_headers(api, key, stream=stream)
    body = request_body(api, model, stream=stream)
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            status, ctype, raw = resp.status, resp.headers.get("content-type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        status, ctype, raw = exc.code, exc.headers.get("content-type", ""), exc.read()
    except OSError as exc:
        return Probe(model, stream, 0, "", "", False, f"no response: {exc}")
    text = raw.decode("utf-8", errors="replace")
    problem = ""
    if not 200 <= status < 300:
        problem = f"HTTP {status}"
    elif stream and ("text/event-stream" not in ctype or api.sse_marker not in text):
        problem = f"not an SSE stream with {api.sse_marker}"
    elif not stream and api.json_marker not in text.replace(" ", ""):
        problem = f"not an answer with {api.json_marker}"
    return Probe(model, stream, status, ctype, text[:600], not problem, problem)


class GatewayServer(AppServer):
    """``python -m gateway serve`` on a free port with the bench config, pinned to the server core.

    ``name`` names its files in ``workdir`` (config, log, state); ``transform``
    turns the bare config into another (traffic control on). ``key`` is what the
    load sends: the master key, unless it is changed once the gateway is up."""

    def __init__(
        self,
        workdir: Path,
        pinning: Pinning,
        *,
        json_base_url: str,
        sse_base_url: str,
        key: str,
        extra_args: Sequence[str] = (),
        startup_timeout_s: float = 60.0,
        name: str = "gateway",
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(workdir / f"{name}.log", free_port())
        self.what = "the gateway"
        self.ready_timeout_s = startup_timeout_s
        self.stop_timeout_s = 15
        self.workdir = workdir
        self.env = dict(env or {})
        """Variables for this gateway on top of the benchmark's environment."""
        self.pinning = pinning
        self.master_key = key
        self.key = key
        self.extra_args = list(extra_args)
        self.config_path = workdir / f"{name}.yaml"
        config = render_gateway_config(
            port=self.port,
            json_base_url=json_base_url,
            sse_base_url=sse_base_url,
            state_path=str(workdir / f"{name}-state.db"),
        )
        self.config = transform(config) if transform is not None else config

    @classmethod
    def behind(
        cls,
        nginx_base: str,
        workdir: Path,
        pinning: Pinning,
        *,
        name: str,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        env: dict[str, str] | None = None,
    ) -> Self:
        """A gateway whose bench aliases are answered by the bench nginx at ``nginx_base``
        (its canned JSON and SSE locations), keyed with :func:`master_key`."""
        return cls(
            workdir,
            pinning,
            json_base_url=f"{nginx_base}/json/v1",
            sse_base_url=f"{nginx_base}/sse/v1",
            key=master_key(),
            name=name,
            transform=transform,
            env=env,
        )

    def mem(self) -> MemSample | None:
        return read_mem(self.pid) if self.proc is not None else None

    def prepare(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def command(self) -> list[str]:
        argv = [*self.pinning.prefix(SERVER_CORE), sys.executable, "-m", "gateway", "serve"]
        return [*argv, "--config", str(self.config_path), "--port", str(self.port), *self.extra_args]

    def child_env(self) -> dict[str, str]:
        return {**os.environ, **self.env, KEY_ENV: self.master_key, "PYTHONUNBUFFERED": "1"}
