"""Where a running gateway is, for the commands that call its admin API.

One rule, shared with ``examples/``: ``GATEWAY_URL`` is the gateway's base URL, such as
``http://127.0.0.1:8080``; a trailing ``/v1`` (the OpenAI SDK's base URL) or ``/`` is accepted
and ignored. Unset, it is ``http://127.0.0.1:$PORT`` (``PORT`` 8080 unless set), the address
``make run`` serves on.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

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


class Refused(Exception):
    """The gateway answered with an error (``status``), or could not be reached (``status`` 0)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class AdminClient:
    """The admin API of a running gateway, as one credential (the master key or an admin's token)."""

    def __init__(self, url: str, credential: str, timeout_s: float = 30.0) -> None:
        self.url = url
        self._credential = credential
        self._timeout_s = timeout_s

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer of a 2xx; :class:`Refused` with the gateway's own message otherwise."""
        headers = {"authorization": f"Bearer {self._credential}"}
        data = None
        if body is not None:
            data, headers["content-type"] = json.dumps(body).encode(), "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self._timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise Refused(f"HTTP {exc.code}: {error_message(exc.read())}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Refused(f"cannot reach the gateway at {self.url}: {reason}") from None
        except ValueError:
            raise Refused(f"the gateway at {self.url} did not answer JSON") from None


def error_message(raw: bytes) -> str:
    """The message of an error answer (OpenAI's shape), else the start of the body."""
    try:
        return str(json.loads(raw)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return raw[:200].decode("utf-8", "replace")
