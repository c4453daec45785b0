"""gateway.admin.audit.AuditLog on a real embedded backend: masking, sign-in
records, newest first, and a backend that cannot take the record."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.admin.access import Actor
from gateway.admin.audit import AuditLog
from gateway.security.roles import Role
from gateway.state.base import BackendUnavailable
from gateway.state.embedded import EmbeddedBackend


async def test_records_are_masked_and_newest_first(tmp_path: Path) -> None:
    backend = EmbeddedBackend(str(tmp_path / "gw.db"))
    log = AuditLog(backend, clock=lambda: 1_800_000_000.25)
    actor = Actor("alice", Role.operator, "token", "10.0.0.7")
    after = {"id": "m1", "deployments": [{"api_key": "sk-live-0123456789abcdef"}], "headers": {"x-api-key": "abc"}}
    first = await log.write(actor, "models.create", "models/m1", after=after, request_id="req_1")
    second = await log.write_login("bob", "10.0.0.8", "auth.login_failed", after={"locked": False})
    assert second > first
    newest, oldest = await log.read(10)
    assert (newest["actor"], newest["role"], newest["via"], newest["action"]) == (
        "bob", None, "password", "auth.login_failed"
    )  # fmt: skip
    assert oldest == {
        "seq": first,
        "at": "2027-01-15T08:00:00.250Z",
        "ts": 1_800_000_000.25,
        "actor": "alice",
        "role": "operator",
        "via": "token",
        "client": "10.0.0.7",
        "action": "models.create",
        "target": "models/m1",
        "before": None,
        "after": {"id": "m1", "deployments": [{"api_key": "sk-l…"}], "headers": {"x-api-key": "…"}},
        "request_id": "req_1",
    }
    assert await log.read(10, before=second) == [oldest]
    await backend.aclose()


async def test_a_record_the_backend_cannot_take_is_logged_and_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = EmbeddedBackend(str(tmp_path / "gw.db"))
    await backend.aclose()
    log = AuditLog(backend)
    with caplog.at_level(logging.ERROR, logger="gateway"), pytest.raises(BackendUnavailable):
        await log.write(Actor("master", Role.admin, "master_key"), "keys.revoke", "keys/k1")
    assert "audit record not written" in caplog.text and "keys.revoke keys/k1 by master" in caplog.text
