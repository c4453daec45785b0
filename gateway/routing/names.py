"""Model names as clients send them -> the configured alias.

Agent clients send provider model names (Claude Code ``claude-sonnet-4-5-20250929``,
Codex ``gpt-5.1-codex``). ``model_aliases`` in the config maps such names to
aliases: exact names first, then glob patterns (``*``, ``?``, ``[...]``, matched
case-sensitively against the whole name) in the order the config lists them. A
configured alias always means itself, also one switched off by its ``requires_env``
(whose client then learns it is switched off, rather than reaching another model).
An entry may list several aliases; the first one enabled is used (the loader removes
the ones switched off by their ``requires_env``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from fnmatch import translate

GLOB_CHARS = frozenset("*?[")


class ModelNames:
    """Resolves a client's model name (see the module docstring)."""

    __slots__ = ("_aliases", "_exact", "_patterns")

    def __init__(self, aliases: Collection[str], table: Mapping[str, str | list[str]]) -> None:
        self._aliases = frozenset(aliases)
        self._exact: dict[str, str] = {}
        self._patterns: list[tuple[re.Pattern[str], str]] = []
        for name, targets in table.items():
            target = targets if isinstance(targets, str) else next(iter(targets), None)
            if target is None:
                continue
            if GLOB_CHARS.isdisjoint(name):
                self._exact[name] = target
            else:
                self._patterns.append((re.compile(translate(name)), target))

    def resolve(self, name: str) -> str | None:
        """The alias ``name`` means, or None when nothing maps it."""
        if name in self._aliases:
            return name
        exact = self._exact.get(name)
        if exact is not None:
            return exact
        for pattern, target in self._patterns:
            if pattern.match(name):
                return target
        return None
