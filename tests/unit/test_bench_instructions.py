"""bench.instructions' parts that need no gateway under callgrind (the measurement takes
minutes and is run by hand): reading a real callgrind dump, the table, the arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.instructions import dump_total, main, table
from bench.procs import BenchError


def test_the_total_of_a_real_callgrind_dump_is_read(tmp_path: Path) -> None:
    out = tmp_path / "cg.out"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-S", "-c", "pass"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    reported = next(line for line in run.stderr.splitlines() if "Collected :" in line)
    assert dump_total(out) == int(reported.rsplit(":", 1)[1].strip()) > 1_000_000


def test_a_file_that_is_no_dump_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-a-dump"
    path.write_text("events: Ir\n")
    with pytest.raises(BenchError, match="not a callgrind dump"):
        dump_total(path)


def test_the_table_gives_each_route_its_ratio_to_chat_completions() -> None:
    counts = {("chat", False): 1000.0, ("chat", True): 2000.0, ("messages-gpt", False): 1100.0}
    counts["messages-gpt", True] = 2050.0
    text = table(counts, ["chat", "messages-gpt"], [False, True])
    assert text.splitlines()[0] == "| route | kIr/request | kIr/stream |"
    assert "| chat | 1,000.0 | 2,000.0 |" in text
    assert "| messages-gpt | 1,100.0 (110.0 %) | 2,050.0 (102.5 %) |" in text


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--only", "chat,nope"], "unknown route(s) nope"),
        (["--only", ","], "unknown route(s) (none given)"),
        (["--requests", "0"], "--requests must be at least 1"),
        (["--json", "--stream"], "not allowed with argument"),
    ],
)
def test_bad_arguments_are_named(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert says in capsys.readouterr().err
