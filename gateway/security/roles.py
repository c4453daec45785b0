"""The admin roles, ordered: ``viewer`` < ``operator`` < ``admin``."""

from __future__ import annotations

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
