"""Governance settings (docs/security.md, "Governance"): the password policy
(``admin.password_policy``, beside ``admin.password_min_length``) and the data retention
job (``retention``: how long request records, logs and feedback are kept in the state
backend)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from gateway.config.fields import Flag
from gateway.config.fields import Strict as _Strict


class PasswordPolicy(_Strict):
    """What a new password must be, besides ``admin.password_min_length`` characters long
    (gateway/security/password_policy.py); checked at user creation and every password change."""

    min_classes: Annotated[int, Field(ge=1, le=4)] = 3
    """How many of the four character classes (lower case, upper case, digit, symbol) it uses."""
    reject_username: Flag = True
    """Refuse a password that contains the username (case-insensitive)."""
    reject_common: Flag = True
    """Refuse a password in the bundled list of common passwords (case-insensitive)."""


class DataRetention(_Strict):
    """The ``retention`` job (gateway/security/retention.py): what it deletes, and after how long."""

    days: Annotated[int, Field(ge=1, le=3650)] = 30
    """Whole days (UTC) of request records and feedback kept; older days are deleted."""
    lookback_days: Annotated[int, Field(ge=1, le=3650)] = 400
    """The first run (and a run after a long stop) looks this many days before the cutoff."""
