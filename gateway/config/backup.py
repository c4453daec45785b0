"""The ``backup`` section: where ``gateway backup`` and the daily ``backup`` job write their
encrypted archives, and how many stay (gateway/state/backup.py; docs/operations.md "Backups")."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from gateway.config.fields import Strict as _Strict

BACKUP_KEY_ENV = "GATEWAY_BACKUP_KEY"
"""32 random bytes in base64; unset, the archives are encrypted with ``GATEWAY_SECRETS_KEY``."""


class BackupSettings(_Strict):
    dir: Annotated[str, Field(min_length=1)] = "data/backups"
    """The directory of the archives (relative to the working directory), created on first use."""
    keep: Annotated[int, Field(ge=1, le=10_000)] = 14
    """How many archives stay: after each backup, all but the newest ``keep`` are deleted."""
