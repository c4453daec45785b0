"""Fixtures for the mock upstream's tests: one real server per test module.

A module that needs another behaviour config overrides ``mock_config``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway.mock import MockConfig
from gateway.mock.testing import Fmt, MockServer, chat_request


@pytest.fixture(scope="module")
def mock_config() -> MockConfig:
    return MockConfig()


@pytest.fixture(scope="module")
def mock(mock_config: MockConfig) -> Iterator[MockServer]:
    with MockServer(mock_config) as server:
        yield server


@pytest.fixture
def http(mock: MockServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mock.url, trust_env=False, timeout=10) as client:
        client.post("/_mock/reset").raise_for_status()
        yield client


def call(
    http: httpx.Client, fmt: Fmt, headers: dict[str, str] | None = None, model: str = "m", stream: bool = False
) -> httpx.Response:
    """A chat request in ``fmt``'s wire format to the mock."""
    path, body = chat_request(fmt, model, stream)
    return http.post(path, json=body, headers=headers or {})
