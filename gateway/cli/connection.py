"""Where a running gateway is, for the commands that call its admin API.

One rule, shared with ``examples/``: ``GATEWAY_URL`` is the gateway's base URL, such as
``http://127.0.0.1:8080``; a trailing ``/v1`` (the OpenAI SDK's base URL) or ``/`` is accepted
and ignored. Unset, it is ``http://127.0.0.1:$PORT`` (``PORT`` 8080 unless set), the address
``make run`` serves on.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

URL_ENV = "GATEWAY_URL"


def gateway_url(text: str) -> str:
    """``text`` as the gateway's base URL: no trailing ``/`` or ``/v1``."""
    url = text.strip().rstrip("/")
    return url.removesuffix("/v1").rstrip("/")


def default_url(env: Mapping[str, str]) -> str:
    if env.get(URL_ENV):
        return gateway_url(env[URL_ENV])
    return f"http://127.0.0.1:{env.get('PORT') or 8080}"


def add_url_argument(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    parser.add_argument(
        "--url",
        type=gateway_url,
        default=default_url(env),
        help=f"the gateway's base URL, with or without /v1 (default ${URL_ENV}, else http://127.0.0.1:$PORT)",
    )
