"""The security review: what in the state backend needs a person's attention this week.

:func:`security_review` reads the state backend (never writes it) and finds:

- ``secret_rotation_overdue``: provider secrets (table ``secrets``) whose value was set longer
  ago than ``security_review.rotation_days`` (``updated_at``, else ``created_at``);
- ``key_rotation_overdue``: client keys still usable (not revoked, disabled or expired) created
  or last rotated longer ago than that (``rotated_at``, else ``created_at``);
- ``user_without_mfa``: users not disabled without TOTP enrolled; ``admin_without_mfa``: those of
  them who are admins (so an admin is counted in both);
- ``admin_idle``: admins not disabled not logged in for ``admin_idle_days`` (``last_login_at``;
  one who never logged in counts from ``created_at``). An admin is a user whose role is
  ``admin`` or who holds an admin grant not yet expired;
- ``grant_expiring`` / ``grant_expired``: temporary grants (a user's ``grants``) that expire
  within ``grant_warning_days``, or expired within as many days;
- ``account_locked``: names locked out now (gateway/security/lockout.py). The lock record
  does not carry its name, so the names looked at are every user and every name of the week's
  failed logins; a lock on any other name is counted under ``(other names)``;
- ``failed_login_burst``: names with at least ``admin.lockout.max_failures`` failed logins
  within one ``admin.lockout.window_s`` in the last 7 days. Failed logins are read from the
  audit log, where the admin API records each one (``auth.login_failed``: a wrong password or
  TOTP code, checked; ``auth.login_refused`` with reason ``account_locked``: refused unchecked
  while locked); both count.

A finding names what it is about (a secret's name, a key's name and id, a username) and never
carries a secret, a hash or a key hint. :class:`Review` renders as Markdown and as JSON
(gateway/security/review_render.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.config.settings import Settings
from gateway.security.masking import iso_time
from gateway.state.base import Record, StateBackend

DAY_S = 86400.0
WEEK_DAYS = 7
"""The review looks back this many days at failed logins (it runs weekly)."""
AUDIT_STREAM = "audit"
AUDIT_PAGE = 500
AUDIT_MAX_PAGES = 200
"""The most audit records read for a week of failed logins: 100,000 (then the review says so)."""
FAILED = "auth.login_failed"
REFUSED = "auth.login_refused"
KINDS = (
    "secret_rotation_overdue",
    "key_rotation_overdue",
    "user_without_mfa",
    "admin_without_mfa",
    "admin_idle",
    "grant_expired",
    "grant_expiring",
    "account_locked",
    "failed_login_burst",
)
"""Every kind of finding, in the order a review lists them (the metric's ``kind`` label)."""
OTHER_NAMES = "(other names)"


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    name: str
    """What it is about: a secret's name, a key's name, a username (never a secret)."""
    detail: str
    """One line for people (Markdown-safe text with no name in it)."""
    data: dict[str, Any] = field(default_factory=dict)
    """The same facts for JSON (times as ISO 8601 UTC)."""


@dataclass(frozen=True, slots=True)
class Review:
    at: float
    rotation_days: int
    admin_idle_days: int
    grant_warning_days: int
    findings: tuple[Finding, ...]
    failed_logins: int
    """Failed logins (checked and refused) of the last :data:`WEEK_DAYS` days."""
    audit_complete: bool = True
    """False when the week's audit log was longer than the review reads (see AUDIT_MAX_PAGES)."""

    def counts(self) -> dict[str, int]:
        """Findings by kind, every kind present (0 when none)."""
        out = dict.fromkeys(KINDS, 0)
        for f in self.findings:
            out[f.kind] += 1
        return out

    def of(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def summary(self) -> str:
        """One line: the number of findings and the kinds that have some."""
        counts = self.counts()
        some = ", ".join(f"{kind} {n}" for kind, n in counts.items() if n)
        return f"security review: {len(self.findings)} finding(s)" + (f" ({some})" if some else "")

    def to_json(self) -> dict[str, Any]:
        from gateway.security.review_render import review_json

        return review_json(self)

    def to_markdown(self) -> str:
        from gateway.security.review_render import review_markdown

        return review_markdown(self)


def epoch(value: Any) -> float | None:
    """Epoch seconds from a record's time: a number, or an ISO 8601 text (``Z`` or an offset;
    none read as UTC); None when absent or unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


def _age(now: float, ts: float) -> int:
    return int((now - ts) // DAY_S)


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _overdue(
    kind: str, name: str, set_at: float | None, now: float, days: int, extra: dict[str, Any]
) -> Finding | None:
    if set_at is not None and now - set_at <= days * DAY_S:
        return None
    if set_at is None:
        return Finding(kind, name, "no record of when it was set", {**extra, "set_at": None, "age_days": None})
    age = _age(now, set_at)
    detail = f"last set {_day(set_at)}, {age} days ago (rotation every {days} days)"
    return Finding(kind, name, detail, {**extra, "set_at": iso_time(set_at), "age_days": age})


def secret_findings(secrets: Iterable[Record], now: float, days: int) -> list[Finding]:
    out = []
    for r in secrets:
        found = _overdue(
            "secret_rotation_overdue",
            str(r.get("name")),
            epoch(r.get("updated_at") or r.get("created_at")),
            now,
            days,
            {},
        )
        if found:
            out.append(found)
    return out


def _usable(key: Record, now: float) -> bool:
    expires = epoch(key.get("expires_at"))
    return not key.get("revoked_at") and key.get("enabled", True) is not False and (expires is None or expires > now)


def key_findings(keys: Iterable[Record], now: float, days: int) -> list[Finding]:
    out = []
    for k in keys:
        if not _usable(k, now):
            continue
        set_at = epoch(k.get("rotated_at") or k.get("created_at"))
        found = _overdue("key_rotation_overdue", str(k.get("name")), set_at, now, days, {"id": k.get("id")})
        if found:
            out.append(found)
    return out


def _grants(user: Record) -> list[Record]:
    grants = user.get("grants")
    return [g for g in grants if isinstance(g, dict)] if isinstance(grants, list) else []


def is_admin(user: Record, now: float) -> bool:
    """Role ``admin``, or an admin grant not yet expired."""
    if user.get("role") == "admin":
        return True
    return any(g.get("role") == "admin" and (epoch(g.get("expires_at")) or 0.0) > now for g in _grants(user))


def user_findings(users: Iterable[Record], now: float, idle_days: int, warn_days: int) -> list[Finding]:
    out: list[Finding] = []
    for u in users:
        name = str(u.get("username"))
        admin = is_admin(u, now)
        if not u.get("disabled"):
            if not u.get("totp_enabled"):
                role = "admin" if admin else str(u.get("role"))
                out.append(Finding("user_without_mfa", name, f"{role}, no TOTP enrolled", {"role": role}))
                if admin:
                    out.append(Finding("admin_without_mfa", name, "admin, no TOTP enrolled", {}))
            if admin:
                out.extend(_idle(u, name, now, idle_days))
        out.extend(_grant_findings(u, name, now, warn_days))
    return out


def _idle(user: Record, name: str, now: float, idle_days: int) -> list[Finding]:
    last = epoch(user.get("last_login_at"))
    seen = last if last is not None else epoch(user.get("created_at"))
    if seen is not None and now - seen <= idle_days * DAY_S:
        return []
    data = {"last_login_at": iso_time(last), "created_at": iso_time(epoch(user.get("created_at")))}
    if seen is None:
        return [Finding("admin_idle", name, "never logged in, no creation time on record", {**data, "idle_days": None})]
    age = _age(now, seen)
    what = f"last login {_day(seen)}" if last is not None else f"never logged in, created {_day(seen)}"
    return [Finding("admin_idle", name, f"{what}, {age} days ago", {**data, "idle_days": age})]


def _grant_findings(user: Record, name: str, now: float, warn_days: int) -> list[Finding]:
    out = []
    for g in _grants(user):
        expires = epoch(g.get("expires_at"))
        if expires is None:
            continue
        data = {"role": g.get("role"), "expires_at": iso_time(expires), "granted_by": g.get("granted_by")}
        who = f"{g.get('role')} grant by {g.get('granted_by')}"
        if now < expires <= now + warn_days * DAY_S:
            out.append(Finding("grant_expiring", name, f"{who} expires {iso_time(expires)}", data))
        elif now - warn_days * DAY_S <= expires <= now:
            out.append(Finding("grant_expired", name, f"{who} expired {iso_time(expires)}", data))
    return out


@dataclass
class Attempts:
    failed: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)


async def week_of_failed_logins(backend: StateBackend, since: float) -> tuple[dict[str, Attempts], bool]:
    """Failed logins by name since ``since`` from the audit log (newest first, paged back), and
    whether the whole week was read (False after :data:`AUDIT_MAX_PAGES` pages)."""
    by_name: dict[str, Attempts] = defaultdict(Attempts)
    before: int | None = None
    for _ in range(AUDIT_MAX_PAGES):
        rows = await backend.read_log(AUDIT_STREAM, AUDIT_PAGE, before)
        for row in rows:
            ts = epoch(row.get("ts"))
            if ts is None or ts < since:
                continue
            action, after = row.get("action"), row.get("after")
            reason = after.get("reason") if isinstance(after, dict) else None
            if action == FAILED:
                by_name[str(row.get("actor"))].failed.append(ts)
            elif action == REFUSED and reason == "account_locked":
                by_name[str(row.get("actor"))].refused.append(ts)
        if len(rows) < AUDIT_PAGE or (epoch(rows[-1].get("ts")) or 0.0) < since:
            return dict(by_name), True  # the log's start, or a record older than the week
        before = int(rows[-1]["seq"])
    return dict(by_name), False


def peak(times: list[float], window_s: float) -> int:
    """The most of ``times`` within any span of ``window_s``."""
    ordered, best, start = sorted(times), 0, 0
    for end, ts in enumerate(ordered):
        while ts - ordered[start] > window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def burst_findings(attempts: dict[str, Attempts], max_failures: int, window_s: float) -> list[Finding]:
    out = []
    for name, seen in sorted(attempts.items()):
        top = peak(seen.failed + seen.refused, window_s)
        if top < max_failures:
            continue
        every = seen.failed + seen.refused
        data = {
            "failed": len(seen.failed),
            "refused_locked": len(seen.refused),
            "peak": top,
            "first": iso_time(min(every)),
            "last": iso_time(max(every)),
        }
        detail = (
            f"{len(every)} failed login(s) in the week ({len(seen.failed)} checked, {len(seen.refused)} refused"
            f" while locked), up to {top} within {window_s:g} s"
        )
        out.append(Finding("failed_login_burst", name, detail, data))
    return out


async def lock_findings(backend: StateBackend, names: Iterable[str], now: float) -> list[Finding]:
    out = []
    for name in sorted(set(names)):
        until = epoch((await backend.get("login_failures", name) or {}).get("locked_until"))
        if until is not None and until > now:
            out.append(Finding("account_locked", name, f"locked until {iso_time(until)}", {"until": iso_time(until)}))
    locked = sum(1 for r in await backend.scan("login_failures") if (epoch(r.get("locked_until")) or 0.0) > now)
    if locked > len(out):
        detail = f"{locked - len(out)} more name(s) locked, not users and not in the week's audit log"
        out.append(Finding("account_locked", OTHER_NAMES, detail, {"count": locked - len(out)}))
    return out


async def security_review(settings: Settings, backend: StateBackend, now: float) -> Review:
    """The review of ``backend``'s state at ``now`` (epoch seconds) under ``settings``'
    ``security_review`` thresholds and ``admin.lockout`` policy. Reads only."""
    policy, lockout = settings.security_review, settings.admin.lockout
    users = sorted(await backend.scan("users"), key=lambda u: str(u.get("username")))
    secrets = sorted(await backend.scan("secrets"), key=lambda r: str(r.get("name")))
    keys = sorted(await backend.scan("keys"), key=lambda k: (str(k.get("name")), str(k.get("id"))))
    attempts, complete = await week_of_failed_logins(backend, now - WEEK_DAYS * DAY_S)
    names = [str(u.get("username")) for u in users] + list(attempts)
    findings = [
        *secret_findings(secrets, now, policy.rotation_days),
        *key_findings(keys, now, policy.rotation_days),
        *user_findings(users, now, policy.admin_idle_days, policy.grant_warning_days),
        *await lock_findings(backend, names, now),
        *burst_findings(attempts, lockout.max_failures, lockout.window_s),
    ]
    findings.sort(key=lambda f: KINDS.index(f.kind))
    return Review(
        at=now,
        rotation_days=policy.rotation_days,
        admin_idle_days=policy.admin_idle_days,
        grant_warning_days=policy.grant_warning_days,
        findings=tuple(findings),
        failed_logins=sum(len(a.failed) + len(a.refused) for a in attempts.values()),
        audit_complete=complete,
    )
