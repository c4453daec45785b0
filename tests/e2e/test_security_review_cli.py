"""``gateway security review`` beside a real gateway on its embedded state: the failed logins
and the lock-out the gateway records (over real HTTP) show up in the review the command prints,
with the users the admin API made. (The review's every kind, on embedded and Redis:
tests/unit/test_security_review.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, ROOT, GatewayProcess, e2e_config

pytestmark = pytest.mark.timeout(120)
PASSWORD = "review password 0123456789"


@pytest.fixture(scope="module")
def gw(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(e2e_config(mock.url) + "admin: {scrypt_n: 16384}\n", Path(tmp_path_factory.mktemp("review")))
    yield g
    g.stop()


def review(gw: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "security", "review", "--config", str(gw.config_path), *args],
        env={**os.environ, "GATEWAY_MASTER_KEY": MASTER_KEY},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def test_the_review_reads_what_the_running_gateway_recorded(gw: GatewayProcess) -> None:
    for name, role in (("rita", "admin"), ("otto", "operator")):
        made = gw.http.post("/admin/users", json={"username": name, "password": PASSWORD, "role": role})
        assert made.status_code in (200, 201), made.text
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        assert http.post("/admin/login", json={"username": "rita", "password": PASSWORD}).status_code == 200
        for _ in range(2):  # otto mistypes twice: no burst
            wrong = http.post("/admin/login", json={"username": "otto", "password": "not the password 1"})
            assert wrong.status_code == 401
        codes = [
            http.post("/admin/login", json={"username": "mallory", "password": f"guess number {i:04d}"}).status_code
            for i in range(8)
        ]
    assert codes[:4] == [401] * 4 and codes[4:] == [403] * 4, "five failures lock; then refused unchecked"

    done = review(gw, "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    names = {kind: [f["name"] for f in items] for kind, items in data["findings"].items()}
    assert names["failed_login_burst"] == ["mallory"]
    (burst,) = data["findings"]["failed_login_burst"]
    assert (burst["failed"], burst["refused_locked"]) == (5, 3)
    assert names["account_locked"] == ["mallory"]
    assert names["user_without_mfa"] == ["otto", "rita"] and names["admin_without_mfa"] == ["rita"]
    assert names["admin_idle"] == [], "rita logged in just now; the gateway set last_login_at or created_at is new"
    assert data["failed_logins"] == 2 + 8
    text = review(gw)
    assert text.returncode == 0 and "## Failed-login bursts (1)\n\n- `mallory`: 8 failed login(s)" in text.stdout
    assert PASSWORD not in done.stdout + text.stdout
