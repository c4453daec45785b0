"""A security review (gateway/security/review.py) as Markdown, for people and the mail
that delivers it, and as JSON, for tools: the counts by kind and each finding's name and facts
(never a secret, a hash or a key hint: the findings carry none)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway.security.masking import iso_time

if TYPE_CHECKING:
    from gateway.security.review import Review

TITLES = {
    "secret_rotation_overdue": "Provider secrets overdue rotation",
    "key_rotation_overdue": "Client keys overdue rotation",
    "user_without_mfa": "Users without MFA",
    "admin_without_mfa": "Admins without MFA",
    "admin_idle": "Admins not seen recently",
    "grant_expired": "Temporary grants expired",
    "grant_expiring": "Temporary grants expiring",
    "account_locked": "Accounts locked out now",
    "failed_login_burst": "Failed-login bursts",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def review_json(review: Review) -> dict[str, Any]:
    from gateway.security.review import KINDS, WEEK_DAYS

    findings: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for f in review.findings:
        findings[f.kind].append({"name": f.name, **f.data})
    return {
        "object": "security_review",
        "at": iso_time(review.at),
        "policy": {
            "rotation_days": review.rotation_days,
            "admin_idle_days": review.admin_idle_days,
            "grant_warning_days": review.grant_warning_days,
            "failed_login_days": WEEK_DAYS,
        },
        "total": len(review.findings),
        "counts": review.counts(),
        "failed_logins": review.failed_logins,
        "audit_complete": review.audit_complete,
        "findings": findings,
    }


def code(name: str) -> str:
    """``name`` as Markdown inline code, whatever it holds (control characters dropped)."""
    text = _CONTROL.sub("", name)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def review_markdown(review: Review) -> str:
    from gateway.security.review import KINDS, WEEK_DAYS

    when = datetime.fromtimestamp(review.at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    counts = review.counts()
    lines = [
        f"# Security review, {when}",
        "",
        f"{len(review.findings)} finding(s). Rotation every {review.rotation_days} days; admins seen within"
        f" {review.admin_idle_days} days; grants listed {review.grant_warning_days} days before and after they"
        f" expire; {review.failed_logins} failed login(s) in the last {WEEK_DAYS} days.",
    ]
    if not review.audit_complete:
        lines += ["", "**The audit log of the week was longer than the review reads: failed logins are partial.**"]
    lines += ["", "| finding | count |", "|---|---:|"]
    lines += [f"| {TITLES[kind]} | {counts[kind]} |" for kind in KINDS]
    for kind in KINDS:
        items = review.of(kind)
        if not items:
            continue
        lines += ["", f"## {TITLES[kind]} ({len(items)})", ""]
        for f in items:
            key_id = f.data.get("id") if kind == "key_rotation_overdue" else None
            name = code(f.name) + (f" ({code(str(key_id))})" if key_id else "")
            lines.append(f"- {name}: {_CONTROL.sub('', f.detail)}")
    return "\n".join(lines) + "\n"
