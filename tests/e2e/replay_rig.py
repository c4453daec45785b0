"""The rig for agent session replays (tests/e2e/test_agent_replay*.py): the project's
mock upstream behind a recorder that keeps every request it receives (path, headers,
body), and a gateway whose four chat aliases (``claude``, ``chat``, ``gemini``,
``resp-api``) are priced deployments on that mock. The mock cannot show the headers it
received, so the recorder does: the tests check what reached the upstream (the
``anthropic-beta`` header, thinking signatures, the replayed history) on the wire.

A turn's cost is what the gateway says it charged: the ``x-gateway-cost-usd`` header of
a plain answer, or, for a stream (whose headers go out before its usage is known), the
``cost_usd`` of the request's access-log line. Both are checked against the cost of the
usage the client saw at the configured price."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.mock import MockConfig
from gateway.mock.testing import MockServer
from tests.e2e.harness import GatewayProcess, wait_until

INPUT_PER_1M = Decimal("3")
OUTPUT_PER_1M = Decimal("15")
CACHED_PER_1M = Decimal("0.3")
NANO = Decimal("1e-9")
PRICE = f"{{input_per_1m: {INPUT_PER_1M}, output_per_1m: {OUTPUT_PER_1M}, cached_input_per_1m: {CACHED_PER_1M}}}"


PREAMBLE = """
auth: {master_key: "${GATEWAY_MASTER_KEY}"}
router:
  timeouts: {connect_s: 2, first_byte_s: 10, idle_s: 10, total_s: 30}
  retry: {max_retries: 0}
"""
"""The master key from the environment, and no retries (a refused replay is not retried)."""


def config(mock_url: str) -> str:
    """Every alias on the recorded mock, priced (after :data:`PREAMBLE`)."""
    v1, v1beta = f"{mock_url}/v1", f"{mock_url}/v1beta"
    return (
        PREAMBLE
        + f"""models:
  claude: {{deployments: [{{provider: anthropic, model: mock-claude, base_url: '{v1}', api_key: k, price: {PRICE}}}]}}
  chat: {{deployments: [{{provider: openai, model: mock-gpt, base_url: '{v1}', api_key: k, price: {PRICE}}}]}}
  gemini: {{deployments: [{{provider: gemini, model: mock-gemini, base_url: '{v1beta}', api_key: k, price: {PRICE}}}]}}
  resp-api:
    deployments: [{{provider: openai, model: mock-gpt, base_url: '{v1}', api_key: k, api: responses, price: {PRICE}}}]
model_aliases:
  "claude-*": claude
"""
    )


@dataclass(frozen=True)
class Received:
    """One request the mock upstream received."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Recorder:
    """ASGI middleware in front of the mock: appends each model request to ``log`` once its body is read."""

    def __init__(self, app: ASGIApp, log: list[Received]) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path.startswith("/_mock/"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        parts: list[bytes] = []

        async def recorded() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                parts.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self.log.append(Received(path, headers, b"".join(parts)))
            return message

        await self.app(scope, recorded, send)


@dataclass(frozen=True)
class Charge:
    """What one turn cost: the gateway's word (header or access log) and the client's usage priced."""

    request_id: str
    header: Decimal | None
    """``x-gateway-cost-usd``, None when the answer carried none (a stream)."""
    from_usage: Decimal


def priced(uncached_input: int, cached_input: int, output: int) -> Decimal:
    """USD of one request at the rig's price, rounded to a nano-dollar."""
    micro = uncached_input * INPUT_PER_1M + cached_input * CACHED_PER_1M + output * OUTPUT_PER_1M
    return (micro / 1_000_000).quantize(NANO)


def messages_usage_cost(usage: dict[str, Any]) -> Decimal:
    """An Anthropic ``usage`` priced (cache writes at the input rate, reads at the cached rate)."""
    uncached = int(usage.get("input_tokens") or 0) + int(usage.get("cache_creation_input_tokens") or 0)
    return priced(uncached, int(usage.get("cache_read_input_tokens") or 0), int(usage.get("output_tokens") or 0))


def responses_usage_cost(usage: dict[str, Any]) -> Decimal:
    """A Responses ``usage`` priced (``input_tokens`` includes the cached ones)."""
    details = usage.get("input_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0)
    return priced(int(usage["input_tokens"]) - cached, cached, int(usage["output_tokens"]))


def header_cost(headers: httpx.Headers) -> Decimal | None:
    value = headers.get("x-gateway-cost-usd")
    return Decimal(value) if value is not None else None


def rig_fixture(name: str, make_config: Callable[[str], str] | None = None) -> Any:
    """A module-scoped pytest fixture: a :class:`Rig` in a fresh folder named ``name``."""

    @pytest.fixture(scope="module")
    def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
        started = Rig(tmp_path_factory.mktemp(name), make_config)
        try:
            yield started
        finally:
            started.close()

    return rig


class Rig:
    """The recorded mock and the priced gateway (module docstring); :meth:`close` stops both."""

    def __init__(self, workdir: Path, make_config: Callable[[str], str] | None = None) -> None:
        """``make_config``: the mock's URL -> the gateway's config (:func:`config` by default)."""
        self.received: list[Received] = []
        self.mock = MockServer(MockConfig())
        self.mock.app.add_middleware(Recorder, self.received)
        self.mock.start()
        self.control = httpx.Client(base_url=self.mock.url, timeout=10)
        try:
            self.gateway = GatewayProcess((make_config or config)(self.mock.url), workdir)
        except BaseException:
            self.close_mock()
            raise

    @property
    def url(self) -> str:
        return self.gateway.url

    def close_mock(self) -> None:
        self.control.close()
        self.mock.stop()

    def close(self) -> None:
        self.gateway.stop()
        self.close_mock()

    def reset(self) -> None:
        """Forget the recorded requests and the mock's prompt-cache prefixes."""
        self.control.post("/_mock/reset").raise_for_status()
        self.received.clear()

    def upstream(self, marker: str) -> list[Received]:
        """The recorded requests whose path contains ``marker``, in order."""
        return [r for r in list(self.received) if marker in r.path]

    def new_key(self, name: str) -> tuple[str, str]:
        """A fresh client key (its secret, its id): its spend is this test's alone."""
        created = self.gateway.http.post("/admin/keys", json={"name": name})
        assert created.status_code == 201, created.text
        return created.json()["key"], created.json()["id"]

    def usage_row(self, key_id: str) -> dict[str, Any]:
        """Today's ``/admin/usage`` row of ``key_id`` (zeros when it has none)."""
        answer = self.gateway.http.get("/admin/usage", params={"group_by": "key", "id": key_id})
        assert answer.status_code == 200, answer.text
        rows = [r for r in answer.json()["data"] if r["key"] == key_id]
        return rows[0] if rows else {"spend_usd": 0.0, "requests": 0}

    def recorded_spend(self, key_id: str, expected: Decimal, requests: int) -> Decimal:
        """The key's recorded spend once ``requests`` requests are counted (waited for: a
        stream is charged as it ends) and it reached ``expected`` (or 5 s passed)."""

        def settled() -> bool:
            row = self.usage_row(key_id)
            return row["requests"] >= requests and abs(Decimal(repr(row["spend_usd"])) - expected) < NANO

        wait_until(settled, timeout=5)
        return Decimal(repr(self.usage_row(key_id)["spend_usd"]))

    def logged_cost(self, request_id: str) -> Decimal | None:
        """The ``cost_usd`` of the access-log line of ``request_id`` (waited for: written after the answer)."""
        found: list[dict[str, Any]] = []

        def look() -> bool:
            found[:] = [line for line in self._access_lines() if line.get("request_id") == request_id]
            return bool(found)

        assert wait_until(look, timeout=10), f"no access line for {request_id}:\n{self.gateway.log()[-3000:]}"
        cost = found[0].get("cost_usd")
        return Decimal(repr(cost)) if cost is not None else None

    def _access_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.gateway.log().splitlines():
            if line.startswith("{"):
                parsed = orjson.loads(line)
                if parsed.get("logger") == "gateway.access":
                    out.append(parsed)
        return out

    def turn_cost(self, charge: Charge) -> Decimal:
        """The gateway's cost of one turn: its header, else its access-log line; it must be
        the cost of the usage the client saw."""
        cost = charge.header if charge.header is not None else self.logged_cost(charge.request_id)
        assert cost is not None, f"request {charge.request_id}: no cost in the header nor in the access log"
        assert abs(cost - charge.from_usage) < NANO, (charge, cost)
        return cost

    def assert_spend_is_the_sum(self, key_id: str, charges: list[Charge]) -> None:
        """The spend recorded for ``key_id`` equals the sum of its turns' costs (to a nano-dollar)."""
        total = sum((self.turn_cost(c) for c in charges), Decimal(0))
        spent = self.recorded_spend(key_id, total, len(charges))
        assert total > 0
        assert abs(spent - total) < NANO, f"recorded {spent} USD, the turns cost {total} USD ({charges})"
        assert self.usage_row(key_id)["requests"] == len(charges)
