"""The jobs run by hand, with real processes: ``gateway jobs list|run`` on the embedded state,
and ``POST /admin/jobs/{name}/run`` in a running gateway (its record in ``/admin/status`` and
its metrics); a backup run this way writes its archive; unknown jobs are refused by name."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, ROOT, GatewayProcess, e2e_config

SECRETS_KEY = base64.b64encode(bytes(range(32))).decode()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "GATEWAY_MASTER_KEY": MASTER_KEY, **(env or {})},
        check=False,
    )


def test_jobs_list_and_run_from_the_command_line(mock: Mock, tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"state: {{path: '{tmp_path / 'state.db'}'}}\n"
        f"backup: {{dir: '{tmp_path / 'backups'}'}}\n"
        "jobs: {timezone: Asia/Seoul, schedule: {security_review: {enabled: false}}}\n" + e2e_config(mock.url)
    )
    listed = cli("jobs", "list", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "jobs in Asia/Seoul"
    assert any(line.startswith("backup") and "0 2 * * *" in line and "last never run" in line for line in lines)
    assert any(line.startswith("security_review") and line.endswith("off") for line in lines)

    backup = cli("jobs", "run", "backup", "--config", str(config), env={"GATEWAY_SECRETS_KEY": SECRETS_KEY})
    assert backup.returncode == 0, backup.stderr
    assert backup.stdout.startswith("backup: ok in ") and "wrote " in backup.stdout
    assert len(list((tmp_path / "backups").glob("*.gwbak"))) == 1
    report = cli("jobs", "run", "weekly_report", "--config", str(config))
    assert report.returncode == 0, report.stderr
    assert "names no receiver" in report.stdout  # no receivers configured: nothing sent, not a failure
    failed = cli("jobs", "run", "backup", "--config", str(config), env={"GATEWAY_SECRETS_KEY": ""})
    assert failed.returncode == 1 and "backup: failed:" in failed.stderr
    listed = cli("jobs", "list", "--config", str(config))
    backup_line = next(line for line in listed.stdout.splitlines() if line.startswith("backup"))
    assert "last failed at " in backup_line, "the last run is the recorded one"
    unknown = cli("jobs", "run", "backups", "--config", str(config))
    assert unknown.returncode == 2 and "unknown job 'backups'" in unknown.stderr


def test_a_job_run_through_the_admin_api_is_recorded_and_measured(mock: Mock, tmp_path: Path) -> None:
    gw = GatewayProcess(e2e_config(mock.url), tmp_path)
    try:
        ran = gw.http.post("/admin/jobs/retention/run")
        assert ran.status_code == 200, ran.text
        body = ran.json()
        assert (body["name"], body["last_outcome"]) == ("retention", "ok")
        assert body["last_summary"].startswith("kept 30 d")
        jobs = {j["name"]: j for j in gw.http.get("/admin/status").json()["jobs"]}
        assert jobs["retention"]["last_success"] == body["last_success"]
        assert jobs["backup"]["last_outcome"] is None
        text = gw.http.get("/metrics").text
        assert 'gateway_job_runs_total{name="retention",outcome="ok"} 1.0' in text
        assert 'gateway_job_last_success_timestamp_seconds{name="backup"} 0.0' in text
        unknown = gw.http.post("/admin/jobs/nightly/run")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "job_not_found"
    finally:
        gw.stop()
