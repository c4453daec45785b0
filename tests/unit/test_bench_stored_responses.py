"""``python -m bench.stored_responses`` on small conversations: the real store, its numbers
consistent with each other."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.stored_responses import converse, main


def test_a_conversation_keeps_far_less_than_every_turn_with_its_history(tmp_path: Path) -> None:
    kept = asyncio.run(converse(64, 500, tmp_path / "gw.db"))
    assert kept.conversation > 64 * 500
    # the sum of the prefixes: about 64 / 2 times the conversation
    assert 30 * kept.conversation < kept.whole_each_turn < 34 * kept.conversation
    assert kept.conversation < kept.kept < 8 * kept.conversation
    assert 1 <= kept.longest_chain <= 8
    assert kept.save_ms > 0 and kept.load_ms > 0
    assert "64 turns of 500 bytes" in kept.line() and "longest chain" in kept.line()


def test_the_command_prints_a_line_per_case(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--turns", "20", "--size", "100"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("20 turns of 100 bytes")


def test_turns_without_a_size_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--turns", "20"])
    assert exit_.value.code == 2 and "--turns and --size go together" in capsys.readouterr().err
