"""Building and running the mock upstream."""

from __future__ import annotations

import uvicorn
from starlette.applications import Starlette

from gateway.mock import anthropic, control, gemini, openai, responses
from gateway.mock.behaviour import MockConfig, load_mock_config
from gateway.mock.state import MockState


def create_mock_app(config: MockConfig | None = None) -> Starlette:
    """A fresh mock app; all its state lives on ``app.state.mock`` (a :class:`MockState`)."""
    app = Starlette(
        routes=[*openai.routes(), *responses.routes(), *anthropic.routes(), *gemini.routes(), *control.routes()]
    )
    app.state.mock = MockState(config or MockConfig())
    return app


def run_mock(host: str, port: int, config_path: str | None) -> None:
    """Serve the mock with uvicorn until interrupted (log level warning, no access log)."""
    app = create_mock_app(load_mock_config(config_path))
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
