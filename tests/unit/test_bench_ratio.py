"""The interleaved-rounds ratio benchmark's arithmetic and arguments (the
measurement itself needs nginx, wrk and minutes: it is run by hand)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.procs import BenchError, cpu_seconds
from bench.ratio import api_rounds, code_from, cpu_rounds, fresh_processes, parser, run, run_apis, worktree
from bench.rounds import Rounds, order
from bench.scenarios import scenarios


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


def test_today_is_weighed_against_an_earlier_commit_round_by_round() -> None:
    rounds = Rounds(
        {
            "bare": [1000.0, 2000.0, 1000.0],
            "embedded": [900.0, 1800.0, 760.0],
            "redis": [700.0, 1400.0, 800.0],
            "before": [920.0, 1800.0, 800.0],
        }
    )
    assert rounds.ratios("embedded", to="before") == [900 / 920, 1.0, 0.95]
    assert rounds.median_ratio("embedded", to="before") == 900 / 920
    text = "\n".join(rounds.lines())
    assert "before/bare" in text.splitlines()[0]
    assert "embedded now / before: median of the per-round ratios 97.8% (target >= 95%): met" in text
    slower = Rounds({**rounds.rps, "before": [1000.0, 2000.0, 900.0]})
    assert "(target >= 95%): NOT MET" in "\n".join(slower.lines())
    assert rounds.to_json()["median_ratio"]["embedded/before"] == 900 / 920


def test_four_variants_rotate_and_a_missing_revision_is_refused(tmp_path: Path) -> None:
    assert order(1, ["bare", "embedded", "redis", "before"]) == ["embedded", "redis", "before", "bare"]
    with (
        pytest.raises(BenchError, match="--before no-such-rev: git worktree add failed"),
        worktree("no-such-rev", tmp_path / "tree"),
    ):
        pass


def test_before_runs_the_gateway_of_its_tree_even_from_the_repository(tmp_path: Path) -> None:
    """The "before" gateway is ``python -m gateway`` started from the repository root (the
    benchmark's directory): it must import the worktree's gateway, not the repository's."""
    fake = tmp_path / "tree" / "gateway"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text("print('the tree')\n")
    repo = Path(__file__).resolve().parents[2]

    def started(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "gateway", "--version"]
        return subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=60, check=False)

    ran = started({**os.environ, **code_from(tmp_path / "tree")})
    assert ran.stdout.strip() == "the tree", ran.stderr[-500:]
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    ran = started({**plain, "PYTHONPATH": str(tmp_path / "tree")})
    assert ran.stdout.strip() != "the tree"  # what the benchmark did before: the repository's code


# --- --apis: the client APIs against chat completions -----------------------------------


def test_api_rounds_weigh_each_route_against_chat_completions() -> None:
    json_sc, one_conn, sse = scenarios(16)
    names = ["chat", "messages-claude", "messages-gpt", "responses-gpt", "responses-gpt-nostore"]
    throughput = api_rounds(json_sc)
    assert throughput.variants == names and throughput.base == "chat"
    assert throughput.targets == dict.fromkeys(names[1:], 0.90) and not throughput.lower_is_better
    assert api_rounds(sse).targets == throughput.targets
    latency = api_rounds(one_conn)
    assert latency.lower_is_better and latency.targets == dict.fromkeys(names[1:], 1.10)


def test_added_latency_is_met_below_its_ceiling() -> None:
    latency = api_rounds(scenarios(16)[1])
    latency.rps = {
        "chat": [0.40, 0.50, 0.44],
        "messages-claude": [0.42, 0.50, 0.40],
        "messages-gpt": [0.48, 0.60, 0.50],
        "responses-gpt": [0.80, 0.90, 0.60],
        "responses-gpt-nostore": [0.40, 0.55, 0.46],
    }
    assert latency.median_ratio("messages-gpt") == pytest.approx(1.2)
    text = "\n".join(latency.lines())
    assert "messages-claude/chat" in text.splitlines()[0]
    assert "    1      0.400            0.420" in text  # ms with three decimals
    assert "messages-claude: median of the per-round ratios 100.0% (target <= 110%): met" in text
    assert "messages-gpt: median of the per-round ratios 120.0% (target <= 110%): NOT MET" in text
    assert latency.to_json()["median_ratio"]["responses-gpt"] == pytest.approx(1.8)


def test_throughput_below_ninety_percent_is_not_met() -> None:
    rounds = api_rounds(scenarios(16)[0])
    rounds.rps = {"chat": [1000.0, 1200.0], "messages-claude": [950.0, 1100.0]}
    rounds.rps |= {"messages-gpt": [880.0, 1070.0], "responses-gpt": [700.0, 800.0]}
    rounds.rps |= {"responses-gpt-nostore": [990.0, 1150.0]}
    text = "\n".join(rounds.lines())
    assert "messages-claude: median of the per-round ratios 93.3% (target >= 90%): met" in text
    assert "responses-gpt: median of the per-round ratios 68.3% (target >= 90%): NOT MET" in text
    assert "responses-gpt-nostore: median of the per-round ratios 97.4% (target >= 90%): met" in text


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--apis", "--before", "HEAD"], "does not combine with --apis"),
        (["--apis", "--duration", "0"], "at least 1"),
    ],
)
def test_bad_combinations_are_refused_before_anything_starts(argv: list[str], problem: str) -> None:
    with pytest.raises(BenchError, match=problem):
        run_apis(parser().parse_args(argv), out=lambda _: None)
    with pytest.raises(BenchError, match=problem):
        run(parser().parse_args(argv), out=lambda _: None)


def test_only_takes_the_scenario_names() -> None:
    assert parser().parse_args(["--apis", "--only", "sse", "--only", "json-1conn"]).only == ["sse", "json-1conn"]
    with pytest.raises(SystemExit):
        parser().parse_args(["--apis", "--only", "soak"])


def test_cpu_per_request_over_111_percent_of_chat_is_not_met() -> None:
    rounds = cpu_rounds()  # lower is better: 90 % of chat's throughput is 1/0.9 of its CPU
    rounds.rps = {"chat": [400.0, 420.0], "messages-claude": [430.0, 450.0], "messages-gpt": [440.0, 470.0]}
    rounds.rps |= {"responses-gpt": [480.0, 500.0], "responses-gpt-nostore": [410.0, 430.0]}
    text = "\n".join(rounds.lines())
    assert "messages-gpt: median of the per-round ratios 111.0% (target <= 111%): met" in text
    assert "responses-gpt: median of the per-round ratios 119.5% (target <= 111%): NOT MET" in text


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_cpu_seconds_counts_every_thread_of_a_process() -> None:
    """A child that spins two threads for a while: its CPU grows by both (the
    scheduler's count, while the threads live), and a process that is gone reads as None."""
    spin = (
        "import threading, time\n"
        "def spin():\n"
        "    end = time.thread_time() + 0.3\n"
        "    while time.thread_time() < end: pass\n"
        "def spin_then_wait():\n"
        "    spin(); spun.set(); stop.wait()\n"
        "spun, stop = threading.Event(), threading.Event()\n"
        "threading.Thread(target=spin_then_wait).start(); spin(); spun.wait()\n"
        "print('done', flush=True); input(); stop.set()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "done\n"
        used = cpu_seconds(child.pid)
        assert used is not None and used >= 0.6, used  # each thread spun 0.3 s of its own CPU
    finally:
        child.communicate("\n", timeout=30)
    assert cpu_seconds(child.pid) is None
    assert cpu_seconds(os.getpid()) is not None


def test_before_on_a_lower_is_better_table_is_held_to_the_inverse_bound() -> None:
    """CPU per request or latency: today's may be at most 1/0.95 of the earlier commit's."""
    cpu = Rounds({"embedded": [500.0, 520.0], "before": [480.0, 500.0]}, "before", {}, lower_is_better=True)
    assert "embedded now / before: median of the per-round ratios 104.1% (target <= 105%): met" in cpu.lines()
    cpu.rps["embedded"] = [540.0, 560.0]
    assert any(line.endswith("(target <= 105%): NOT MET") for line in cpu.lines())


def test_servers_start_anew_each_round_when_asked_and_always_against_an_earlier_commit() -> None:
    """Two starts of the same code differ by a few per cent: ``--before``, which looks for
    differences that small, never compares one process with another for the whole run."""
    assert not fresh_processes(parser().parse_args([]))
    assert fresh_processes(parser().parse_args(["--fresh"]))
    assert fresh_processes(parser().parse_args(["--before", "HEAD~1"]))
