"""The cyclic garbage collector of a serving process (``gateway.server.collector.tune_collector``,
``server.gc_threshold``). Each check runs in a fresh interpreter: the collector is
process-wide, and the test process's own must stay as it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.clients_app import GC_THRESHOLD
from gateway.config.loader import ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[2]
MASTER_KEY = "sk-collector-test-0001"


def in_fresh_python(code: str, env: dict[str, str] | None = None) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_tuning_freezes_what_exists_and_raises_only_the_first_threshold() -> None:
    got = in_fresh_python(
        "import gc, json\n"
        "import gateway.cli.serve  # what a serving process has imported\n"
        "from gateway.server.collector import tune_collector\n"
        "before = gc.get_threshold()\n"
        "tune_collector(23456)\n"
        "print(json.dumps({'before': before, 'after': gc.get_threshold(), 'frozen': gc.get_freeze_count()}))"
    )
    before, after = got["before"], got["after"]
    assert isinstance(before, list) and isinstance(after, list)
    assert after == [23456, *before[1:]]
    frozen = got["frozen"]
    assert isinstance(frozen, int) and frozen > 10_000  # the imported modules, at least


def test_each_worker_tunes_its_collector_from_the_config(tmp_path: Path) -> None:
    """``app_from_env`` is what every worker of ``--workers N`` runs (gateway/cli/serve.py)."""
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"server: {{gc_threshold: 34567}}\nstate: {{path: '{tmp_path / 'state.db'}'}}\n"
        'auth: {master_key: "${GATEWAY_MASTER_KEY}"}\n'
        "models: {}\n"
    )
    env = {"GATEWAY_CONFIG": str(config), "GATEWAY_MASTER_KEY": MASTER_KEY, "PATH": "/usr/bin:/bin"}
    got = in_fresh_python(
        "import gc, json\n"
        "from gateway.cli.serve import app_from_env\n"
        "app_from_env()\n"
        "print(json.dumps({'threshold': gc.get_threshold()[0], 'frozen': gc.get_freeze_count()}))",
        env=env,
    )
    assert got["threshold"] == 34567
    frozen = got["frozen"]
    assert isinstance(frozen, int) and frozen > 10_000


def test_the_default_threshold_and_its_bounds() -> None:
    assert parse_config("{}", env={}).settings.server.gc_threshold == 100_000
    assert GC_THRESHOLD == 100_000  # the benchmarks' floor app sets up its collector as the gateway's default
    for bad in (0, 699, 10_000_001, "many"):
        with pytest.raises(ConfigError) as info:
            parse_config(f"server: {{gc_threshold: {bad}}}", env={})
        assert any("server.gc_threshold" in problem for problem in info.value.problems), info.value.problems
