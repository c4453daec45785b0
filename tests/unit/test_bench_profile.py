"""bench/profile.py: the own-time summary drawn from py-spy's collapsed stacks, and its refusals."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from bench import profile
from bench.procs import BenchError

COLLAPSED = [
    "thread (1): MainThread;run (uvicorn/server.py:86);chat (/work/main/gateway/server/handlers.py:101) 6",
    "thread (1): MainThread;run (uvicorn/server.py:86);chat (/work/main/gateway/server/handlers.py:117) 2",
    "thread (1): MainThread;dumps (/usr/lib/python3.11/site-packages/orjson/__init__.py:3) 2",
    "not a stack line",
    "",
]


def test_own_time_counts_the_last_frame_of_each_stack_without_line_numbers() -> None:
    rows = profile.own_time(COLLAPSED)
    assert rows == [("chat (gateway/server/handlers.py)", 0.8), ("dumps (orjson/__init__.py)", 0.2)]


def test_own_time_of_nothing_is_empty() -> None:
    assert profile.own_time(["garbage", ""]) == []


def test_the_cases_cover_each_backend_whole_and_streamed() -> None:
    names = [case.name for case in profile.CASES]
    assert names == ["bare-json", "bare-stream", "embedded-json", "embedded-stream", "redis-json", "redis-stream"]


def test_a_missing_py_spy_names_the_group_that_installs_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(BenchError, match="--group profile"):
        profile.py_spy()
    assert profile.main(["--duration", "1", "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()  # refused before anything was started or written


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert profile.main(["--duration", "0"]) == 2
    assert "--duration must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        profile.main(["--only", "nonsense"])
    assert exit_.value.code == 2
