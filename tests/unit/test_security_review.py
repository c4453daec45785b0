"""The security review (gateway/security/review.py) against real state: the embedded backend
(SQLite) and Redis (a real redis-server). Time cannot pass in a test, so the setup writes the
records' timestamps straight through the backend (an old secret, an old key, an admin last
seen 100 days ago...), and the failed logins through the real lock-out and audit log. Each
case must be found, and nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.admin.audit import AuditLog
from gateway.config.loader import ConfigError, parse_config
from gateway.config.settings import Settings
from gateway.observability.metrics import Metrics
from gateway.policies.keys import KeyStore
from gateway.security import review as review_mod
from gateway.security.accounts import UserStore
from gateway.security.lockout import Lockout
from gateway.security.review import KINDS, Review, security_review
from gateway.security.review_job import LastReview, security_review_job
from gateway.security.secrets import SecretBox, SecretStore
from gateway.state.base import StateBackend
from gateway.state.embedded import EmbeddedBackend
from gateway.state.redis import RedisBackend
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0
PROVIDER_SECRET = "sk-provider-VERY-secret-0123456789abcdef"
SETTINGS = Settings()


def at(ts: float) -> Callable[[], float]:
    return lambda: ts


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(params=["embedded", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateBackend]:
    b: StateBackend
    if request.param == "embedded":
        b = EmbeddedBackend(str(tmp_path / "state.db"))
    else:
        server: RedisServer = request.getfixturevalue("redis")
        server.restart()  # an empty Redis for each test
        b = RedisBackend(server.url)
    yield b
    await b.aclose()


class Made:
    """What the setup made that must never appear in a review."""

    def __init__(self) -> None:
        self.secrets: list[str] = [PROVIDER_SECRET]


async def populate(backend: StateBackend, now: float) -> Made:
    made = Made()
    # Provider secrets: one set 40 days ago, one set today.
    store = SecretStore(backend, SecretBox(os.urandom(32)))
    for name in ("old-provider", "fresh-provider"):
        await store.put_secret(name, PROVIDER_SECRET)
    old = await backend.get("secrets", "old-provider")
    assert old is not None
    await backend.put("secrets", "old-provider", {**old, "created_at": now - 90 * DAY, "updated_at": now - 40 * DAY})
    made.secrets += [str(old["ct"]), str(old["nonce"])]

    # Client keys: old; old but rotated 2 days ago; old but revoked; fresh.
    keys = KeyStore(backend)
    for name, created, extra in (
        ("old-key", now - 45 * DAY, {}),
        ("rotated-key", now - 60 * DAY, {"rotated_at": iso(now - 2 * DAY)}),
        ("revoked-key", now - 60 * DAY, {"revoked_at": iso(now - 1 * DAY), "enabled": False}),
        ("fresh-key", now - DAY / 2, {}),
    ):
        record, token = await keys.create({"name": name, "enabled": True})
        await backend.put("keys", record["hash"], {**record, "created_at": iso(created), **extra})
        made.secrets += [token, str(record["hash"]), str(record["key_hint"])]

    # Users.
    users = UserStore(backend, None)
    week = now + 3 * DAY
    specs: list[dict[str, Any]] = [
        {"username": "alice", "role": "admin", "totp_enabled": True, "last_login_at": now - DAY},
        {"username": "bob", "role": "operator", "totp_enabled": False, "last_login_at": now - DAY},
        {"username": "carol", "role": "admin", "totp_enabled": True, "last_login_at": now - 100 * DAY},
        {"username": "dave", "role": "admin", "totp_enabled": False, "created_at": now - 5 * DAY},
        {
            "username": "erin",
            "role": "viewer",
            "totp_enabled": True,
            "grants": [
                {"role": "operator", "expires_at": week, "granted_by": "alice", "reason": "incident 42"},
                {"role": "admin", "expires_at": now - 2 * DAY, "granted_by": "alice", "reason": "migration"},
                {"role": "admin", "expires_at": now - 29 * DAY, "granted_by": "alice", "reason": "long ago"},
            ],
        },
        {"username": "frank", "role": "admin", "disabled": True, "last_login_at": now - 200 * DAY},
        {
            "username": "gina",
            "role": "viewer",
            "totp_enabled": True,
            "last_login_at": now - 2 * DAY,
            "grants": [{"role": "admin", "expires_at": now + 20 * DAY, "granted_by": "alice", "reason": "audit"}],
        },
        {"username": "hank", "role": "viewer", "totp_enabled": True, "created_at": now - 400 * DAY},
    ]
    for spec in specs:
        hashed = f"scrypt$fake-hash-of-{spec['username']}"
        await users.put({"created_at": now - 200 * DAY, "password_hash": hashed, **spec})
        made.secrets.append(hashed)

    # Failed logins, through the real lock-out and audit log.
    policy = SETTINGS.admin.lockout
    lockout, audit = Lockout(backend), AuditLog(backend)
    for _ in range(policy.max_failures):  # a burst against a name that is no user: locks it
        guess = await lockout.reserve("mallory", policy)
        assert guess.refused_until is None
        until = await lockout.failed(guess, policy)
        await audit.write_login("mallory", "127.0.0.1", "auth.login_failed", after={"locked": until is not None})
    assert await lockout.locked_until("mallory") is not None
    for _ in range(3):
        await audit.write_login("mallory", "127.0.0.1", "auth.login_refused", after={"reason": "account_locked"})
    for _ in range(2):  # bob mistypes twice: no burst
        await audit.write_login("bob", "127.0.0.1", "auth.login_failed", after={"locked": False})
    await audit.write_login("frank", "127.0.0.1", "auth.login_refused", after={"reason": "account_disabled"})
    for i in range(6):  # a burst 8 days ago: last week's
        old_audit = AuditLog(backend, clock=at(now - 8 * DAY + i))
        await old_audit.write_login("oldtimer", "127.0.0.1", "auth.login_failed", after={"locked": False})
    for i in range(6):  # six failures an hour apart this week: no burst (window 900 s)
        slow = AuditLog(backend, clock=at(now - 3 * DAY + i * 3600))
        await slow.write_login("slowpoke", "127.0.0.1", "auth.login_failed", after={"locked": False})
    return made


EXPECTED = {
    ("secret_rotation_overdue", "old-provider"),
    ("key_rotation_overdue", "old-key"),
    ("user_without_mfa", "bob"),
    ("user_without_mfa", "dave"),
    ("admin_without_mfa", "dave"),
    ("admin_idle", "carol"),
    ("grant_expiring", "erin"),
    ("grant_expired", "erin"),
    ("account_locked", "mallory"),
    ("failed_login_burst", "mallory"),
}


def found(review: Review) -> set[tuple[str, str]]:
    return {(f.kind, f.name) for f in review.findings}


async def test_the_review_finds_each_case_and_nothing_more(backend: StateBackend) -> None:
    now = time.time()
    await populate(backend, now)
    review = await security_review(SETTINGS, backend, now)
    assert found(review) == EXPECTED
    assert len(review.findings) == len(EXPECTED), "no finding twice"
    assert review.failed_logins == 5 + 3 + 2 + 6, "the week's failed logins: mallory's, bob's and slowpoke's"
    assert review.audit_complete
    (burst,) = review.of("failed_login_burst")
    assert (burst.data["failed"], burst.data["refused_locked"], burst.data["peak"]) == (5, 3, 8)
    (idle,) = review.of("admin_idle")
    assert idle.data["idle_days"] == 100 and "last login" in idle.detail
    (key,) = review.of("key_rotation_overdue")
    assert key.data["age_days"] == 45 and str(key.data["id"]).startswith("key_")
    (secret,) = review.of("secret_rotation_overdue")
    assert secret.data["age_days"] == 40
    assert {f.data["role"] for f in review.of("grant_expiring") + review.of("grant_expired")} == {"operator", "admin"}
    assert [f.name for f in review.findings] == [
        f.name for f in sorted(review.findings, key=lambda f: KINDS.index(f.kind))
    ]


async def test_thresholds_come_from_the_config(backend: StateBackend) -> None:
    now = time.time()
    await populate(backend, now)
    strict = parse_config(
        "security_review: {rotation_days: 1, admin_idle_days: 1, grant_warning_days: 30}\n", env={}
    ).settings
    review = await security_review(strict, backend, now)
    more = found(review) - EXPECTED
    assert ("key_rotation_overdue", "rotated-key") in more, "rotated 2 days ago: overdue at 1 day"
    assert ("key_rotation_overdue", "fresh-key") not in more, "created half a day ago"
    assert ("admin_idle", "gina") in more, "her unexpired admin grant makes her an admin"
    assert ("admin_idle", "hank") not in more and ("admin_idle", "frank") not in more, "a viewer; a disabled admin"
    assert ("grant_expired", "erin") in found(review) and len(review.of("grant_expired")) == 2, "30 days back"
    assert ("key_rotation_overdue", "revoked-key") not in more, "a revoked key needs no rotation"


async def test_an_empty_state_has_no_findings(backend: StateBackend) -> None:
    review = await security_review(SETTINGS, backend, time.time())
    assert review.findings == () and review.counts() == dict.fromkeys(KINDS, 0)
    assert review.summary() == "security review: 0 finding(s)"
    assert "0 finding(s)" in review.to_markdown() and "## " not in review.to_markdown()


async def test_renderings_name_names_and_never_secrets(backend: StateBackend) -> None:
    now = time.time()
    made = await populate(backend, now)
    review = await security_review(SETTINGS, backend, now)
    text = review.to_markdown()
    data = review.to_json()
    dumped = json.dumps(data)
    for secret in made.secrets:
        assert secret not in text and secret not in dumped, "a secret, hash or key hint in the review"
    assert "incident 42" not in text + dumped, "a grant's reason is not carried"
    assert data["counts"] == {kind: sum(1 for k, _ in EXPECTED if k == kind) for kind in KINDS}
    assert data["total"] == len(EXPECTED) and data["failed_logins"] == 16
    assert [f["name"] for f in data["findings"]["user_without_mfa"]] == ["bob", "dave"]
    assert data["policy"] == {
        "rotation_days": 30,
        "admin_idle_days": 90,
        "grant_warning_days": 7,
        "failed_login_days": 7,
    }
    assert text.startswith("# Security review, ")
    assert "| Client keys overdue rotation | 1 |" in text and "| Failed-login bursts | 1 |" in text
    assert "## Admins not seen recently (1)\n\n- `carol`: last login " in text
    assert "- `old-key` (`key_" in text


async def test_the_job_sends_the_review_and_the_metrics_show_its_counts(backend: StateBackend) -> None:
    now = time.time()
    await populate(backend, now)
    sent: list[tuple[str, str]] = []

    async def send(subject: str, text: str) -> None:
        sent.append((subject, text))

    summary = await security_review_job(SETTINGS, backend, send, clock=lambda: now)
    assert summary.startswith("security review: 10 finding(s) (secret_rotation_overdue 1, key_rotation_overdue 1,")
    assert "\n" not in summary
    ((subject, text),) = sent
    day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    assert subject == f"Security review {day}: 10 finding(s), 3 need action (rotation overdue, admins without MFA)"
    assert text.startswith("# Security review, ") and "`mallory`" in text
    samples = {
        (s.name, s.labels.get("kind")): s.value
        for family in text_string_to_metric_families(Metrics().render()[0].decode())
        for s in family.samples
        if s.name.startswith("gateway_security_")
    }
    expected = {("gateway_security_findings", k): float(sum(1 for kk, _ in EXPECTED if kk == k)) for k in KINDS}
    assert {k: v for k, v in samples.items() if k[0] == "gateway_security_findings"} == expected
    assert samples[("gateway_security_review_timestamp_seconds", None)] == pytest.approx(now)


async def test_a_failed_delivery_fails_the_job_and_keeps_the_counts(backend: StateBackend) -> None:
    now = time.time()
    await populate(backend, now)
    last = LastReview()

    async def refuse(subject: str, text: str) -> None:
        raise ConnectionError("the SMTP server is down")

    with pytest.raises(ConnectionError):
        await security_review_job(SETTINGS, backend, refuse, clock=lambda: now, last=last)
    facts = last.read()
    assert facts is not None and facts.counts["account_locked"] == 1 and facts.at == now


async def test_the_audit_log_is_read_back_over_many_pages(
    backend: StateBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    audit = AuditLog(backend)
    for _ in range(5):
        await audit.write_login("mallory", "127.0.0.1", "auth.login_failed", after={"locked": False})
    for _ in range(25):  # later admin actions push the failures back by more than a page
        await audit.write_login("alice", "127.0.0.1", "auth.login")
    monkeypatch.setattr(review_mod, "AUDIT_PAGE", 10)
    review = await security_review(SETTINGS, backend, now + 1)
    assert found(review) == {("failed_login_burst", "mallory")} and review.audit_complete
    monkeypatch.setattr(review_mod, "AUDIT_MAX_PAGES", 2)
    partial = await security_review(SETTINGS, backend, now + 1)
    assert partial.findings == () and not partial.audit_complete
    assert "failed logins are partial" in partial.to_markdown() and partial.to_json()["audit_complete"] is False


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("security_review: {rotation_days: 0}", "security_review.rotation_days"),
        ("security_review: {admin_idle_days: 'ninety'}", "security_review.admin_idle_days"),
        ("security_review: {grant_warning_days: 5000}", "security_review.grant_warning_days"),
        ("security_review: {rotation_weeks: 4}", "security_review.rotation_weeks"),
    ],
)
def test_bad_thresholds_are_refused_by_name(text: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text + "\n", env={})
    assert field in str(caught.value)


def test_the_defaults_are_the_manuals() -> None:
    policy = Settings().security_review
    assert (policy.rotation_days, policy.admin_idle_days, policy.grant_warning_days) == (30, 90, 7)


# --- gateway security review ---------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "security", "review", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.parametrize("shape", ["embedded", "redis"])
async def test_the_command_prints_the_review(shape: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    now = time.time()
    if shape == "embedded":
        state = f"state: {{backend: embedded, path: '{tmp_path / 'state.db'}'}}\n"
        b: StateBackend = EmbeddedBackend(str(tmp_path / "state.db"))
    else:
        server: RedisServer = request.getfixturevalue("redis")
        server.restart()
        state = f"state: {{backend: redis, url: '{server.url}'}}\n"
        b = RedisBackend(server.url)
    made = await populate(b, now)
    await b.aclose()
    config = tmp_path / "gateway.yaml"
    config.write_text(state)
    done = cli("--config", str(config), "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert {(kind, f["name"]) for kind, items in data["findings"].items() for f in items} == EXPECTED
    md = cli("--config", str(config))
    assert md.returncode == 0, md.stderr
    assert (
        md.stdout.startswith("# Security review, ")
        and "## Failed-login bursts (1)\n\n- `mallory`: 8 failed" in md.stdout
    )
    for secret in made.secrets:
        assert secret not in done.stdout + md.stdout + done.stderr + md.stderr


def test_the_command_refuses_a_bad_config_and_an_unreachable_backend(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("security_review: {rotation_days: -1}\n")
    done = cli("--config", str(bad))
    assert done.returncode == 2 and "security_review.rotation_days" in done.stderr and done.stdout == ""
    with __import__("socket").socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = tmp_path / "down.yaml"
    down.write_text(f"state: {{backend: redis, url: 'redis://127.0.0.1:{port}/0'}}\n")
    done = cli("--config", str(down))
    assert done.returncode == 1 and "error: the state backend (redis) failed" in done.stderr, done.stderr
    wrong = cli("--config", str(down), "--format", "html")
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr
