"""``POST /v1/feedback``: a user's satisfaction score for one of the key's own requests.

Body: ``{"request_id": "<the x-request-id of the answer>", "score": 1..5, "comment": "..."}``
(``comment`` optional). The key must be the one that made the request, within
``feedback.accept_days`` of it (gateway/server/feedback_owners.py keeps that record), and
each request is scored once: a second score is refused with 409 ``feedback_exists`` (a
score is a verdict on one answer, not a running vote; the first one stands). The comment
is kept only with ``logging.log_payloads`` on (then redacted as logged payloads are); else
it is dropped and the answer says so (``comment_stored: false``).

A score is stored as a record of the table ``feedback:<day>`` (the day it was given, in
``budgets.timezone``), read by the reports (gateway/reports/satisfaction.py) and deleted by
the retention job with the day; it is counted in ``gateway_feedback_score`` by the alias that
served the request. Errors are OpenAI's envelope, each naming its field (``param``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

import orjson

from gateway.canonical import JSON
from gateway.config.feedback import FeedbackSettings, table_of
from gateway.config.settings import Settings
from gateway.dialects.checks import bad, expect
from gateway.dialects.openai import parse_json_body
from gateway.errors import (
    AuthenticationFailed,
    BackendDegraded,
    ClientDisconnected,
    GatewayError,
    NotFound,
    Starting,
)
from gateway.observability.logs import Redactor
from gateway.observability.metrics import Metrics
from gateway.policies.auth import Principal
from gateway.server.asgi import Receive, Scope, Send, read_body, request_id, send_bytes, send_error
from gateway.server.feedback_owners import Owner, OwnerRecords
from gateway.server.records import RecordBatch
from gateway.server.service import Service
from gateway.state.base import BackendUnavailable, StateBackend

log = logging.getLogger("gateway.feedback")

FIELDS = ("request_id", "score", "comment")
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
"""What an ``x-request-id`` can be (gateway/server/asgi.py, ``request_id``)."""
RETRY = {"retry-after": "5"}
CLAIM_TTL_S = 60.0
"""How long a claim on scoring one request can outlive a replica that died holding it."""


class FeedbackExists(GatewayError):
    status = 409
    type = "invalid_request_error"
    default_code = "feedback_exists"


class FeedbackHost(Protocol):
    """What the handler needs of the app."""

    @property
    def service(self) -> Service | None: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def backend(self) -> StateBackend | None: ...

    @property
    def records(self) -> RecordBatch: ...

    async def authenticate(self, scope: Scope) -> Principal: ...


def parse_feedback(body: JSON, comment_max_chars: int) -> tuple[str, int, str | None]:
    """(request id, score, comment) of a feedback body, or the 400 naming the field at fault."""
    for name in body:
        if name not in FIELDS:
            raise bad(f"unknown field {name!r}; a feedback body has {', '.join(FIELDS)}", name, "unknown_parameter")
    rid = body.get("request_id")
    if rid is None:
        raise bad(
            "request_id is required: the x-request-id of the answer you score",
            "request_id",
            "missing_required_parameter",
        )
    expect(rid, str, "request_id", "a string")
    if not REQUEST_ID.fullmatch(rid):
        raise bad("request_id must be 1-128 letters, digits, '-' or '_' (an x-request-id)", "request_id")
    score = body.get("score")
    if score is None:
        raise bad("score is required: an integer from 1 to 5", "score", "missing_required_parameter")
    expect(score, int, "score", "an integer from 1 to 5")
    if not 1 <= score <= 5:
        raise bad(f"score must be an integer from 1 to 5, got {score}", "score")
    comment = body.get("comment")
    if comment is not None:
        expect(comment, str, "comment", "a string")
        if len(comment) > comment_max_chars:
            raise bad(f"comment is {len(comment)} characters; the limit is {comment_max_chars}", "comment")
    return rid, score, comment or None


def refusal_of(err: GatewayError) -> str:
    """The ``gateway_feedback_refused_total`` reason of an error."""
    if isinstance(err, AuthenticationFailed):
        return "unauthenticated"
    if isinstance(err, FeedbackExists):
        return "already_scored"
    if isinstance(err, NotFound):
        return "disabled" if err.code == "feedback_disabled" else "unknown_request"
    if isinstance(err, BackendDegraded | Starting):
        return "unavailable"
    return "invalid"


class FeedbackAPI:
    """The route's handler (:meth:`post`) and the request sink that feeds it (``owners.record``)."""

    def __init__(self, app: FeedbackHost) -> None:
        self._app = app
        self.owners = OwnerRecords(lambda: app.backend, self._settings, app.metrics.feedback)
        self._redactor: tuple[tuple[str, ...], Redactor] | None = None

    def _record_wait_s(self) -> float:
        """How long a request that ended on another worker or replica may wait to be recorded
        (``server.record_batch_ms``, gateway/server/records.py) before its owner is written."""
        service = self._app.service
        return service.settings.server.record_batch_ms / 1000 if service is not None else 0.0

    def _settings(self) -> FeedbackSettings | None:
        service = self._app.service
        return service.settings.feedback if service is not None else None

    def _redact(self, settings: Settings, text: str) -> str:
        patterns = tuple(settings.logging.redact_patterns)
        if self._redactor is None or self._redactor[0] != patterns:
            self._redactor = (patterns, Redactor(patterns))
        return self._redactor[1](text)

    async def post(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"x-request-id", request_id(scope).encode())]
        metrics = self._app.metrics.feedback
        try:
            answer = await self._post(scope, receive)
        except ClientDisconnected:
            return
        except BackendUnavailable:
            metrics.refusal("unavailable")
            err = BackendDegraded(
                "cannot record feedback: the state backend is unreachable", headers={"retry-after": "5"}
            )
            await send_error(send, err, headers)
            return
        except GatewayError as err:
            metrics.refusal(refusal_of(err))
            await send_error(send, err, headers)
            return
        except Exception:
            log.exception("unexpected error recording feedback (request %s)", headers[0][1].decode())
            await send_error(send, GatewayError("internal error; see the gateway log"), headers)
            return
        await send_bytes(send, 200, orjson.dumps(answer), headers)

    async def _post(self, scope: Scope, receive: Receive) -> JSON:
        principal = await self._app.authenticate(scope)
        service, backend = self._app.service, self._app.backend
        if service is None or backend is None:
            raise Starting()
        settings = service.settings
        cfg = settings.feedback
        if not cfg.enabled:
            raise NotFound("feedback is off on this gateway (feedback.enabled)", code="feedback_disabled")
        server = settings.server
        body = parse_json_body(await read_body(scope, receive, server.max_body_bytes), server.max_json_depth)
        rid, score, comment = parse_feedback(body, cfg.comment_max_chars)
        owner = await self._owner(principal.key_id, rid, 2 * cfg.flush_interval_s + self._record_wait_s())
        if await self.owners.scored_on(owner.key_id, rid) is not None:
            raise _exists(rid)
        claim = f"feedback-claim:{owner.key_id}:{rid}"
        if not await backend.acquire_slot(claim, 1, CLAIM_TTL_S):
            raise _exists(rid)
        try:
            if await self.owners.scored_on(owner.key_id, rid) is not None:  # scored while we looked
                raise _exists(rid)
            now = time.time()
            table = table_of(f"{datetime.fromtimestamp(now, ZoneInfo(settings.budgets.timezone)):%Y-%m-%d}")
            kept = self._redact(settings, comment) if comment is not None and settings.logging.log_payloads else None
            record: JSON = {
                "request_id": rid,
                "key_id": owner.key_id,
                "team": principal.team,
                "alias": owner.alias,
                "score": score,
                "ts": now,
                "request_ts": owner.ts,
            }
            if kept is not None:
                record["comment"] = kept
            await backend.put(table, f"{owner.key_id}:{rid}", record)
            await self.owners.mark_scored(owner, table, cfg.accept_days)
        finally:
            await backend.release_slot(claim)
        state = "none" if comment is None else ("kept" if kept is not None else "dropped")
        self._app.metrics.feedback.accepted(owner.alias, score, state)
        answer: JSON = {"object": "feedback", "request_id": rid, "model": owner.alias, "score": score}
        answer["comment_stored"] = kept is not None
        if state == "dropped":
            answer["comment_note"] = "the comment was not stored: payload logging (logging.log_payloads) is off"
        return answer

    async def _owner(self, key_id: str, rid: str, wait_s: float) -> Owner:
        """The key's request ``rid``; one that finished on another replica a moment ago may
        not be written yet: looked up again once after ``wait_s`` (two write intervals, so
        that the other replica's next write is surely done)."""
        self._app.records.drain()  # a request of this process that has just ended: its owner record first
        owner = await self.owners.find(key_id, rid)
        if owner is None:
            await asyncio.sleep(wait_s)
            owner = await self.owners.find(key_id, rid)
        if owner is None:
            raise NotFound(
                f"no request {rid!r} made by this key is open to feedback: its id is unknown, it was made "
                "by another key, or it is older than feedback.accept_days",
                code="request_not_found",
                param="request_id",
            )
        return owner


def _exists(rid: str) -> FeedbackExists:
    return FeedbackExists(f"request {rid!r} was scored already; a request takes one score", param="request_id")
