"""Secrets never in messages: a known secret is planted in every place a value can come from
(an environment variable the config file and runtime models reference, a secret stored through
/admin/secrets, a literal key and a credential header in a model body, request headers, a login
password), validation errors are provoked everywhere those values travel (the admin API, config
reload by API and by SIGHUP, `gateway check-config`, `gateway serve`), and then every HTTP answer,
every line the gateway process wrote and every audit record is searched: the secrets are in none."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, ROOT, GatewayProcess, e2e_config, wait_until


def planted(label: str) -> str:
    return f"sk-planted-{label}-{secrets.token_hex(12)}"


ENV_SECRET = planted("env")
STORED_SECRET = planted("stored")
LITERAL_SECRET = planted("literal")
HEADER_SECRET = planted("header")
CLIENT_SECRET = planted("client")
PASSWORD_SECRET = planted("password")
ALL = (ENV_SECRET, STORED_SECRET, LITERAL_SECRET, HEADER_SECRET, CLIENT_SECRET, PASSWORD_SECRET)
ENV = {
    "PLANTED_KEY": ENV_SECRET,
    "GATEWAY_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode(),
}


class Recorder:
    """Every answer the test got, as text: status line, headers and body."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, resp: httpx.Response) -> httpx.Response:
        headers = "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
        self.seen.append(f"{resp.request.method} {resp.request.url} -> {resp.status_code}\n{headers}\n{resp.text}")
        return resp


@pytest.fixture(scope="module")
def gw(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = (
        "admin: {scrypt_n: 16384}\n"
        + e2e_config(mock.url)  # its models come last: a test appends aliases to them
        + f"  planted: {{deployments: [{{provider: openai, model: m, base_url: '{mock.url}/v1', "
        + 'api_key: "${PLANTED_KEY}"}]}\n'
    )
    g = GatewayProcess(config, Path(tmp_path_factory.mktemp("secrets")), extra_env=ENV)
    yield g
    g.stop()


def model(mock: Mock, name: str, **dep: Any) -> dict[str, Any]:
    return {"name": name, "deployments": [{"provider": "openai", "model": "m", "base_url": f"{mock.url}/v1", **dep}]}


def provoke(gw: GatewayProcess, mock: Mock, seen: Recorder) -> None:
    admin = gw.http
    models = "/admin/models"

    def refused(resp: httpx.Response, status: int = 400) -> None:
        seen(resp)
        assert resp.status_code == status, resp.text

    # An environment variable the file's models use, where a runtime model puts it.
    for base_url in ("${PLANTED_KEY}", "${PLANTED_KEY}/v1", "ftp://${PLANTED_KEY}"):
        refused(admin.post(models, json=model(mock, "env-url", base_url=base_url)))
    refused(admin.post(models, json=model(mock, "env-id", api_key="${PLANTED_KEY}", weight=-1)))
    refused(
        admin.post(models, json={**model(mock, "env-fb", api_key="${PLANTED_KEY}"), "fallbacks": ["${PLANTED_KEY}"]})
    )

    # A secret stored through /admin/secrets, opened when the config is built.
    seen(admin.put("/admin/secrets/planted", json={"value": STORED_SECRET}))
    refused(admin.post(models, json=model(mock, "stored", api_key="secret:planted", base_url="ftp://x")))
    refused(admin.post(models, json=model(mock, "stored-h", headers={"authorization": "secret:planted"}, weight=0)))
    created = seen(admin.post(models, json=model(mock, "stored-ok", api_key="secret:planted")))
    assert created.status_code == 201, created.text
    refused(
        admin.patch(
            f"{models}/stored-ok",
            json={
                "deployments": [{"provider": "openai", "model": "m", "api_key": "secret:planted", "base_url": "nope"}]
            },
        )
    )

    # A literal key and a credential header in a model body (sealed only once the body is valid).
    refused(admin.post(models, json=model(mock, "lit", api_key=LITERAL_SECRET, base_url="${PLANTED_KEY}")))
    refused(admin.post(models, json=model(mock, "lit-h", headers={"x-api-key": HEADER_SECRET}, priority="high")))
    refused(admin.post(models, json=model(mock, "lit-mix", api_key=LITERAL_SECRET + "${PLANTED_KEY}")))
    sealed = seen(
        admin.post(models, json=model(mock, "lit-ok", api_key=LITERAL_SECRET, headers={"x-api-key": HEADER_SECRET}))
    )
    assert sealed.status_code == 201, sealed.text
    masked = "****" + "abcd"  # a masked value that masks nothing current
    refused(admin.put(f"{models}/lit-ok", json=model(mock, "lit-ok", api_key=masked)))
    seen(admin.get(f"{models}/lit-ok"))
    seen(admin.get(models))

    # Request headers and a login password.
    for headers in ({"authorization": f"Bearer {CLIENT_SECRET}"}, {"x-api-key": CLIENT_SECRET}):
        refused(httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "chat"}, headers=headers), 401)
        refused(httpx.get(f"{gw.url}/admin/keys", headers=headers), 401)
    refused(admin.post("/v1/chat/completions", content=b"{nope", headers={"x-custom-token": CLIENT_SECRET}))
    refused(httpx.post(f"{gw.url}/admin/login", json={"username": "nobody", "password": PASSWORD_SECRET}), 401)

    # The config file itself: a reload through the API and by SIGHUP, with ${PLANTED_KEY} misplaced.
    good = gw.config_path.read_text()
    bad = good + '  broken: {deployments: [{provider: openai, model: m, base_url: "${PLANTED_KEY}"}]}\n'
    gw.config_path.write_text(bad)
    try:
        refused(admin.post("/admin/reload"), 409)
        gw.sighup()
        assert wait_until(lambda: gw.log().count("config reload rejected") >= 2, timeout=10)
    finally:
        gw.config_path.write_text(good)
    seen(admin.post("/admin/reload"))


def test_a_planted_secret_is_in_no_answer_log_line_or_audit_record(gw: GatewayProcess, mock: Mock) -> None:
    seen = Recorder()
    provoke(gw, mock, seen)
    audit = seen(gw.http.get("/admin/audit", params={"limit": 1000}))
    assert audit.status_code == 200 and len(audit.json()["data"]) >= 4  # the writes above were audited
    log = gw.log()
    assert "config reload rejected" in log and "base_url must be an http(s) URL" in log  # the problems were logged
    for secret in ALL:
        for text in seen.seen:
            assert secret not in text, f"{secret} in an answer:\n{text[:2000]}"
        assert secret not in log, f"{secret} in the gateway's log"
    # The defect that was reported: the answer names the field and the problem.
    env_url = next(t for t in seen.seen if "/admin/models -> 400" in t)
    assert "base_url must be an http(s) URL" in env_url and "deployments[0]" in env_url


def test_the_command_line_prints_no_secret(tmp_path: Path, mock: Mock) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"state: {{path: '{tmp_path / 'state.db'}'}}\n"
        'auth: {master_key: "${GATEWAY_MASTER_KEY}"}\n'
        "models:\n"
        '  a: {deployments: [{provider: openai, model: m, base_url: "${PLANTED_KEY}", api_key: "${PLANTED_KEY}"}]}\n'
        f"  b: {{deployments: [{{provider: openai, model: m, base_url: '{mock.url}/v1'}}],"
        ' fallbacks: ["${PLANTED_KEY}"]}\n'
    )
    env = {**os.environ, **ENV, "GATEWAY_MASTER_KEY": MASTER_KEY}
    for argv in (["check-config", str(bad)], ["serve", "--config", str(bad), "--port", "0"]):
        run = subprocess.run(
            [sys.executable, "-m", "gateway", *argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 2, run.stderr
        assert "models.a.deployments[0]" in run.stderr or "models.b.fallbacks[0]" in run.stderr, run.stderr
        assert ENV_SECRET not in run.stdout + run.stderr
