"""``GET /admin/openapi.json``: the admin API's OpenAPI document.

The document is written by hand in ``gateway/admin/openapi.yaml`` (shipped
with the package) and served as JSON; a test checks that it lists exactly the
``/admin`` routes the app serves.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import __version__
from gateway.admin.keys import AdminHost, guarded, json_response
from gateway.security.roles import Role

DOCUMENT = "openapi.yaml"


def load_document() -> dict[str, Any]:
    """The document, its ``info.version`` the gateway's own version."""
    doc = yaml.safe_load(files("gateway.admin").joinpath(DOCUMENT).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("info"), dict):
        raise ValueError(f"gateway/admin/{DOCUMENT} is not a mapping with an info section")
    doc["info"]["version"] = __version__
    return doc


class OpenAPIDoc:
    def __init__(self, host: AdminHost) -> None:
        self._host = host
        self._doc: dict[str, Any] | None = None

    def routes(self) -> list[Route]:
        return [Route("/admin/openapi.json", guarded(self._host, self.serve, role=Role.viewer), methods=["GET"])]

    async def serve(self, request: Request) -> Response:
        if self._doc is None:
            self._doc = load_document()
        return json_response(self._doc)
