"""The password policy (``admin.password_min_length`` and ``admin.password_policy``),
checked at user creation and at every password change (an admin's ``PATCH``, the user's
own ``POST /admin/me/password``).

A password must:

1. be ``password_min_length`` (12) to :data:`MAX_PASSWORD` characters long (``length``);
2. use at least ``min_classes`` (3) of four classes: lower case, upper case, digit, symbol
   (anything else: punctuation, a space, a letter of no case) (``classes``);
3. not contain the username, whatever the case (``username``);
4. not be one of the common passwords of :data:`COMMON_FILE`, whatever the case, and with
   spaces removed ("Correct Horse Battery Staple" is ``correcthorsebatterystaple``) (``common``).

A refusal is ``400 weak_password`` whose ``param`` is the field and whose message names the
rule that failed; it never repeats the password.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from gateway.config.governance import PasswordPolicy
from gateway.errors import InvalidRequest

MAX_PASSWORD = 1024
COMMON_FILE = Path(__file__).with_name("common_passwords.txt")


@cache
def common_passwords() -> frozenset[str]:
    """The bundled list, lower case (read once)."""
    lines = COMMON_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def classes_of(password: str) -> set[str]:
    """Which of ``lower``, ``upper``, ``digit``, ``symbol`` the password uses."""
    found: set[str] = set()
    for char in password:
        if char.islower():
            found.add("lower")
        elif char.isupper():
            found.add("upper")
        elif char.isdigit():
            found.add("digit")
        else:
            found.add("symbol")
    return found


def is_common(password: str) -> bool:
    lowered = password.lower()
    return lowered in common_passwords() or "".join(lowered.split()) in common_passwords()


def _weak(param: str, rule: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"{param} is refused by the password policy (rule {rule}): {why}", param=param, code="weak_password"
    )


def check_password(
    password: Any, min_length: int, policy: PasswordPolicy, *, username: str, param: str = "password"
) -> str:
    """``password`` if the policy accepts it for ``username``; else 400 ``weak_password``."""
    if not isinstance(password, str) or not min_length <= len(password) <= MAX_PASSWORD:
        raise _weak(param, "length", f"it must be a string of {min_length} to {MAX_PASSWORD} characters")
    used = classes_of(password)
    if len(used) < policy.min_classes:
        raise _weak(
            param,
            "classes",
            f"it must use at least {policy.min_classes} of: lower case, upper case, digit, symbol"
            f" (it uses {len(used)})",
        )
    if policy.reject_username and username.lower() in password.lower():
        raise _weak(param, "username", "it must not contain the username")
    if policy.reject_common and is_common(password):
        raise _weak(param, "common", "it is one of the most common passwords")
    return password
