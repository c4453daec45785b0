"""``GET /admin/reports/{period}``: the daily, weekly, monthly or yearly report
(viewer role and above).

Query parameters: ``format`` = ``md`` (default), ``html`` or ``json``;
``date`` = any day of the period (``YYYY-MM-DD``, default today in
``budgets.timezone``). A bad period, format or date is a 400 naming it; an
unreachable state backend a 503.
"""

from __future__ import annotations

from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.keys import AdminHost, guarded, json_response
from gateway.config.settings import Settings
from gateway.errors import InvalidRequest
from gateway.reports.builder import MEDIA_TYPES, Renderer, ReportSources, make_report, parse_format
from gateway.reports.periods import parse_date, parse_kind
from gateway.security.roles import Role

HTML_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
"""The HTML report has an inline stylesheet and inline SVG, and no script."""


class ReportsHost(AdminHost, Protocol):
    def report_context(self) -> tuple[Settings, ReportSources]: ...


class ReportsAPI:
    def __init__(self, host: ReportsHost) -> None:
        self._host = host
        self._renderer = Renderer()

    def routes(self) -> list[Route]:
        return [Route("/admin/reports/{period}", guarded(self._host, self.report, role=Role.viewer), methods=["GET"])]

    async def report(self, request: Request) -> Response:
        try:
            kind = parse_kind(request.path_params["period"])
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="period", code="invalid_value") from None
        try:
            fmt = parse_format(request.query_params.get("format", "md"))
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="format", code="invalid_value") from None
        day = request.query_params.get("date")
        try:
            on = parse_date(day) if day else None
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="date", code="invalid_value") from None
        settings, sources = self._host.report_context()
        report = await make_report(kind, on, settings, sources)
        if fmt == "json":
            return json_response(report.to_json())
        headers = {"x-content-type-options": "nosniff"}
        if fmt == "html":
            headers["content-security-policy"] = HTML_POLICY
        return Response(self._renderer.render(report, fmt), media_type=MEDIA_TYPES[fmt], headers=headers)
