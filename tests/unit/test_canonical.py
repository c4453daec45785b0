"""The canonical model's shared reasoning table: efforts and thinking budgets."""

from __future__ import annotations

from gateway.canonical import EFFORT_BUDGETS, REASONING_EFFORTS, budget_to_effort, effort_to_budget


def test_efforts_and_budgets_map_both_ways_by_the_documented_table() -> None:
    assert effort_to_budget("none") == 0
    assert [effort_to_budget(e) for e in REASONING_EFFORTS[1:]] == [1024, 2048, 8192, 16384, 32768]
    assert effort_to_budget("unheard-of") == EFFORT_BUDGETS["medium"]
    assert effort_to_budget("max") == EFFORT_BUDGETS["xhigh"]
    for effort, budget in EFFORT_BUDGETS.items():
        assert budget_to_effort(budget) == effort  # each budget maps back to its effort
        assert budget_to_effort(budget + 1) == effort  # and so does anything up to the next one
    assert budget_to_effort(0) == "none" and budget_to_effort(-1) == "none"
    assert budget_to_effort(500) == "minimal"
    assert budget_to_effort(8191) == "low" and budget_to_effort(10**9) == "xhigh"
