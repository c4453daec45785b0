"""bench/servers.py (the floor app under uvicorn and under granian) and what it stands on:
the granian app factory of ``bench.clients_app``, the CPU time of a process tree, and the
refusals. No load is generated and nothing is timed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from bench import clients_app, servers
from bench.clients_app import AiohttpForwarder, HttpxForwarder, app_from_env
from bench.procs import cpu_seconds, tree_cpu_seconds


def test_the_granian_worker_builds_the_app_main_would_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_FLOOR_CLIENT", "httpx")
    monkeypatch.setenv("BENCH_FLOOR_UPSTREAM", "http://127.0.0.1:9/json")
    monkeypatch.setenv("BENCH_FLOOR_STREAM_UPSTREAM", "http://127.0.0.1:9/sse")
    app = app_from_env()
    assert isinstance(app.forwarder, HttpxForwarder)
    assert app.forwarder.url == "http://127.0.0.1:9/json"
    assert app.stream_url == "http://127.0.0.1:9/sse"
    monkeypatch.setenv("BENCH_FLOOR_CLIENT", "aiohttp")
    monkeypatch.setenv("BENCH_FLOOR_STREAM_UPSTREAM", "")
    app = app_from_env()
    assert isinstance(app.forwarder, AiohttpForwarder)
    assert app.stream_url is None  # no stream upstream: streams are posted like any request
    monkeypatch.setenv("BENCH_FLOOR_CLIENT", "curl")
    with pytest.raises(ValueError, match="unknown client 'curl'"):
        app_from_env()


def test_the_cpu_of_a_process_tree_counts_its_children() -> None:
    """A parent that only waits, its child having burnt 0.3 s of CPU: the tree has the child's time."""
    child = textwrap.dedent(
        """
        import sys, time
        while time.process_time() < 0.3:
            pass
        print("burnt", flush=True)
        time.sleep(60)
        """
    )
    parent = textwrap.dedent(
        f"""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", {child!r}], stdout=sys.stdout)
        child.wait()
        """
    )
    with subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "burnt"
            own, tree = cpu_seconds(proc.pid), tree_cpu_seconds(proc.pid)
            assert own is not None and tree is not None
            assert tree >= own + 0.29
        finally:
            subprocess.run(["pkill", "-P", str(proc.pid)], check=False)
            proc.kill()
    assert tree_cpu_seconds(2**22 + 1) is None  # no such process


def test_a_missing_granian_names_the_group_that_installs_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "granian" else real(name, *a))
    assert servers.main(["--rounds", "1"]) == 2
    assert "granian is not installed: uv sync --locked --group test --group servers" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        clients_app.main(
            ["--client", "aiohttp", "--upstream", "http://127.0.0.1:9", "--port", "1", "--server", "granian"]
        )
    assert exit_.value.code == 2
    assert "--group servers" in capsys.readouterr().err


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert servers.main(["--rounds", "0"]) == 2
    assert "--rounds must be at least 1" in capsys.readouterr().err
    assert servers.main(["--duration", "-1"]) == 2
    assert "--duration must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        clients_app.main(["--client", "aiohttp", "--upstream", "u", "--port", "1", "--server", "hypercorn"])
    assert exit_.value.code == 2
    assert "invalid choice: 'hypercorn'" in capsys.readouterr().err
