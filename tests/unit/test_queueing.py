"""gateway.server.queueing: the client's x-gateway-max-wait, who shares fairly, and the
place a request takes in the admission queue."""

from __future__ import annotations

import pytest

from gateway.config.queue import QueueSettings
from gateway.errors import InvalidRequest
from gateway.policies.admission import wait_limit
from gateway.policies.auth import Principal
from gateway.server.queueing import asked_wait, team_of


@pytest.mark.parametrize(("raw", "seconds"), [(None, None), ("0", 0.0), ("2.5", 2.5), ("30", 30.0)])
def test_the_wait_a_client_asks_for(raw: str | None, seconds: float | None) -> None:
    assert asked_wait({} if raw is None else {"x-gateway-max-wait": raw}) == seconds


@pytest.mark.parametrize("raw", ["soon", "-1", "nan", "inf", "", "1e999"])
def test_a_wait_that_is_not_seconds_is_a_400_naming_the_header(raw: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        asked_wait({"x-gateway-max-wait": raw})
    assert err.value.param == "x-gateway-max-wait" and err.value.code == "invalid_header"
    assert repr(raw[:40]) in err.value.message


def test_the_wait_is_the_configured_limit_or_less() -> None:
    on = QueueSettings(max_wait_s=10)
    assert wait_limit(on, None) == 10 and wait_limit(on, 2.0) == 2.0 and wait_limit(on, 60.0) == 10
    off = QueueSettings(enabled=False)
    assert wait_limit(off, None) == 0 and wait_limit(off, 5.0) == 0


def test_keys_share_by_team_or_alone() -> None:
    assert team_of(Principal("key", "key_1", team="search")) == "search"
    assert team_of(Principal("key", "key_1")) == "key:key_1" != team_of(Principal("key", "key_2"))
