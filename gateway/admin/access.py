"""Who may do what on the admin API: roles, the acting identity, and the
audit hook every admin route calls.

Roles are ordered: ``viewer`` < ``operator`` < ``admin``. A route names the
least role it needs; :meth:`AdminHost.require_admin` answers 401 for no or a bad
credential and 403 (``insufficient_role``) for a role below the one required.
The master key acts as an ``admin`` named ``master``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Role(IntEnum):
    viewer = 1
    operator = 2
    admin = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text]
        except KeyError:
            raise ValueError(f"unknown role {text!r}; use one of: viewer, operator, admin") from None


@dataclass(frozen=True, slots=True)
class Actor:
    """The identity behind an admin request."""

    name: str
    role: Role
    via: str  # "master_key" or "token"
    client: str = ""  # the caller's address, for the audit log


MASTER_ACTOR = Actor("master", Role.admin, "master_key")
