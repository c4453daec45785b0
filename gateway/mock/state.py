"""Everything the mock remembers, held on ``app.state.mock`` (no module state).

:class:`MockState` owns the config, the runtime behaviour overrides, the
``fail_times`` countdowns, the request statistics and the prompt-cache prefix
memory (:class:`gateway.mock.caching.PrefixMemory`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from gateway.mock.behaviour import Behaviour, MockConfig, header_layer, layer, merge
from gateway.mock.caching import PrefixMemory

ALL_MODELS = "*"


class Stats:
    """Counts of requests to the model routes (failed ones included)."""

    __slots__ = ("by_model", "by_route", "total")

    def __init__(self) -> None:
        self.total = 0
        self.by_model: dict[str, int] = {}
        self.by_route: dict[str, int] = {}

    def record(self, route: str, model: str | None) -> None:
        self.total += 1
        self.by_route[route] = self.by_route.get(route, 0) + 1
        if model is not None:
            self.by_model[model] = self.by_model.get(model, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {"total": self.total, "by_model": dict(self.by_model), "by_route": dict(self.by_route)}


class MockState:
    """The mock's mutable state; one per app."""

    def __init__(self, config: MockConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.stats = Stats()
        self.runtime: dict[str, Behaviour] = {}
        self._fails_left: dict[str, int] = {}
        self._rng = rng or random.Random()
        self.prefixes = PrefixMemory()

    def resolve(self, model: str, headers: Iterable[tuple[str, str]]) -> Behaviour:
        """The effective behaviour for ``model`` (see :mod:`gateway.mock.behaviour`).

        Raises ``ValueError`` for bad ``x-mock-*`` headers.
        """
        from_headers = header_layer(headers)
        return merge(
            (
                layer(self.config.default),
                layer(self.config.models.get(model)),
                layer(self.runtime.get(ALL_MODELS)),
                layer(self.runtime.get(model)),
                from_headers or {},
            )
        )

    def set_override(self, model: str, behaviour: Behaviour) -> None:
        """Replace the runtime override for ``model``; restarts its ``fail_times`` countdown."""
        self.runtime[model] = behaviour
        self._forget_fails(model)

    def clear_override(self, model: str) -> bool:
        self._forget_fails(model)
        return self.runtime.pop(model, None) is not None

    def reset(self) -> None:
        """Forget statistics, runtime overrides, countdowns and cached prefixes."""
        self.stats = Stats()
        self.runtime.clear()
        self._fails_left.clear()
        self.prefixes.clear()

    def fault_status(self, model: str, behaviour: Behaviour) -> int | None:
        """The error status this request must get, or ``None`` to answer normally.

        ``fail_times`` counts down per model (status ``error_status`` or 503);
        ``error_rate`` fails at random (``error_status`` or 500); ``error_status``
        alone fails always.
        """
        if behaviour.fail_times is not None and self._take_fail(model, behaviour.fail_times):
            return behaviour.error_status or 503
        if behaviour.error_rate is not None:
            failed = self._rng.random() < behaviour.error_rate
            return (behaviour.error_status or 500) if failed else None
        if behaviour.fail_times is None:
            return behaviour.error_status
        return None

    def _take_fail(self, model: str, fail_times: int) -> bool:
        left = self._fails_left.get(model, fail_times)
        self._fails_left[model] = max(left - 1, 0)
        return left > 0

    def _forget_fails(self, model: str) -> None:
        if model == ALL_MODELS:
            self._fails_left.clear()
        else:
            self._fails_left.pop(model, None)
