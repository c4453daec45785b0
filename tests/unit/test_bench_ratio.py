"""The interleaved-rounds ratio benchmark's arithmetic and arguments (the
measurement itself needs nginx, wrk and minutes: it is run by hand)."""

from __future__ import annotations

import pytest

from bench.procs import BenchError
from bench.ratio import Rounds, order, parser, run


def test_each_round_starts_with_the_next_variant() -> None:
    assert [order(i) for i in range(4)] == [
        ["bare", "embedded", "redis"],
        ["embedded", "redis", "bare"],
        ["redis", "bare", "embedded"],
        ["bare", "embedded", "redis"],
    ]


def test_ratios_are_per_round_and_the_verdict_is_their_median() -> None:
    rounds = Rounds({"bare": [1000.0, 2000.0, 1000.0], "embedded": [900.0, 1000.0, 810.0], "redis": [700, 1200, 500]})
    assert rounds.ratios("embedded") == [0.9, 0.5, 0.81]
    assert rounds.median_ratio("embedded") == 0.81  # not 2710 / 4000 = 0.68, the ratio of the sums
    assert rounds.median_ratio("redis") == 0.6
    text = "\n".join(rounds.lines())
    assert "embedded: median of the per-round ratios 81.0% (target >= 80%): met" in text
    assert "redis: median of the per-round ratios 60.0% (target >= 65%): NOT MET" in text
    assert rounds.to_json()["median_ratio"] == {"embedded": 0.81, "redis": 0.6}


def test_no_rounds_yet_is_just_the_header() -> None:
    assert len(Rounds().lines()) == 1


@pytest.mark.parametrize("flag", ["--rounds", "--duration", "--connections"])
def test_counts_below_one_are_refused_before_anything_starts(flag: str) -> None:
    with pytest.raises(BenchError, match="at least 1"):
        run(parser().parse_args([flag, "0"]), out=lambda _: None)
