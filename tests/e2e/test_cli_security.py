"""``gateway users create`` and ``gateway secrets rotate`` as real subprocesses
against a real gateway and its state file."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.security import totp
from gateway.security.secrets import SecretBox, SecretError, SecretStore
from gateway.state.embedded import EmbeddedBackend
from tests.e2e.conftest import Mock
from tests.e2e.harness import MASTER_KEY, ROOT, GatewayProcess, clear_of_a_step_boundary, e2e_config
from tests.ports import free_port

PASSWORD = "cli password 0123456789"
PROVIDER_KEY = "sk-ant-CLI-provider-key-abcdef0123456789"
ADMIN = "admin: {scrypt_n: 16384}\n"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def gateway_cli(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        input=stdin,
        env={k: v for k, v in {**os.environ, "GATEWAY_MASTER_KEY": MASTER_KEY, **env}.items() if v},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


@pytest.fixture(scope="module")
def gw(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(e2e_config(mock.url) + ADMIN, Path(tmp_path_factory.mktemp("cli-sec")))
    yield g
    g.stop()


def test_users_create(gw: GatewayProcess) -> None:
    env = {"GATEWAY_URL": gw.url, "GATEWAY_MASTER_KEY": MASTER_KEY}
    done = gateway_cli("users", "create", "--username", "cli-op", "--role", "operator", "--password-stdin",
                       env=env, stdin=PASSWORD + "\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "created user cli-op (operator)"
    assert PASSWORD not in done.stdout + done.stderr
    login = httpx.post(f"{gw.url}/admin/login", json={"username": "cli-op", "password": PASSWORD})
    assert login.status_code == 200
    again = gateway_cli("users", "create", "--username", "cli-op", "--role", "viewer", "--password-stdin",
                        env=env, stdin=PASSWORD)  # fmt: skip
    assert again.returncode == 1 and "HTTP 409" in again.stderr and "exists" in again.stderr


@pytest.mark.parametrize(
    ("args", "env", "stdin", "message"),
    [
        (["--password-stdin"], {"GATEWAY_MASTER_KEY": ""}, PASSWORD, "set GATEWAY_MASTER_KEY"),
        (["--password-stdin"], {}, "", "no password on standard input"),
        ([], {}, PASSWORD, "use --password-stdin"),
        (["--password-stdin"], {}, "short", "HTTP 400: password is refused by the password policy (rule length)"),
    ],
)
def test_users_create_usage_errors(
    gw: GatewayProcess, args: list[str], env: dict[str, str], stdin: str, message: str
) -> None:
    env = {"GATEWAY_URL": gw.url, "GATEWAY_MASTER_KEY": MASTER_KEY, **env}
    done = gateway_cli("users", "create", "--username", "cli-bad", "--role", "viewer", *args, env=env, stdin=stdin)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_users_create_unreachable_gateway() -> None:
    env = {"GATEWAY_URL": f"http://127.0.0.1:{free_port()}", "GATEWAY_MASTER_KEY": MASTER_KEY}
    done = gateway_cli("users", "create", "--username", "x", "--role", "viewer", "--password-stdin",
                       env=env, stdin=PASSWORD)  # fmt: skip
    assert done.returncode == 1 and "cannot reach the gateway" in done.stderr


def read_secret(db: Path, box: SecretBox) -> str:
    async def read() -> str:
        backend = EmbeddedBackend(str(db))
        try:
            return await SecretStore(backend, box).get_secret("secret:anthropic")
        finally:
            await backend.aclose()

    return asyncio.run(read())


def test_secrets_rotate(mock: Mock, tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    config = e2e_config(mock.url) + ADMIN
    gw = GatewayProcess(config, tmp_path, extra_env={"GATEWAY_SECRETS_KEY": old})
    try:
        assert gw.http.put("/admin/secrets/anthropic", json={"value": PROVIDER_KEY}).status_code == 201
        assert gw.http.post("/admin/users", json={"username": "otp", "password": PASSWORD, "role": "viewer"}).is_success
        access = httpx.post(f"{gw.url}/admin/login", json={"username": "otp", "password": PASSWORD}).json()
        auth = {"authorization": f"Bearer {access['access_token']}"}
        secret = httpx.post(f"{gw.url}/admin/me/totp", headers=auth).json()["secret"]
        # The previous step's code (the current step stays free for the login below), away from a
        # step boundary, which would age it out of the accepted window between here and the server.
        code = totp.code_at(secret, clear_of_a_step_boundary() - 30)
        assert httpx.post(f"{gw.url}/admin/me/totp/confirm", json={"code": code}, headers=auth).is_success
    finally:
        gw.stop()
    db = tmp_path / "state.db"
    env = {"GATEWAY_SECRETS_KEY": old, "NEW_KEY": new}
    done = gateway_cli("secrets", "rotate", "--config", str(gw.config_path), "--new-key-env", "NEW_KEY", env=env)
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 1 secret(s) and 1 TOTP secret(s)" in done.stdout
    assert PROVIDER_KEY not in done.stdout + done.stderr and new not in done.stdout + done.stderr
    assert read_secret(db, SecretBox(base64.b64decode(new))) == PROVIDER_KEY
    with pytest.raises(SecretError):
        read_secret(db, SecretBox(base64.b64decode(old)))
    twice = gateway_cli("secrets", "rotate", "--config", str(gw.config_path), "--new-key-env", "NEW_KEY",
                        env={"GATEWAY_SECRETS_KEY": old, "NEW_KEY": new})  # fmt: skip
    assert twice.returncode == 0 and "re-encrypted 0 secret(s) and 0 TOTP secret(s)" in twice.stdout
    restarted = GatewayProcess(config, tmp_path, extra_env={"GATEWAY_SECRETS_KEY": new})
    try:
        assert restarted.http.get("/admin/secrets/anthropic").json()["kid"] == SecretBox(base64.b64decode(new)).kid
        now_code = totp.code_at(secret, time.time())
        login = httpx.post(f"{restarted.url}/admin/login", json={"username": "otp", "password": PASSWORD,
                                                                "totp": now_code})  # fmt: skip
        assert login.status_code == 200, "the TOTP secret opens under the new key"
    finally:
        restarted.stop()


def test_secrets_rotate_refusals(mock: Mock, tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    gw = GatewayProcess(e2e_config(mock.url), tmp_path, extra_env={"GATEWAY_SECRETS_KEY": old})
    try:
        assert gw.http.put("/admin/secrets/anthropic", json={"value": PROVIDER_KEY}).status_code == 201
    finally:
        gw.stop()
    config = str(gw.config_path)
    cases = [
        ({"GATEWAY_SECRETS_KEY": old}, config, 2, "NEW_KEY is not set"),
        ({"GATEWAY_SECRETS_KEY": old, "NEW_KEY": "c2hvcnQ="}, config, 2, "NEW_KEY must be 32 bytes"),
        ({"GATEWAY_SECRETS_KEY": "", "NEW_KEY": new}, config, 2, "GATEWAY_SECRETS_KEY is not set"),
        ({"GATEWAY_SECRETS_KEY": old, "NEW_KEY": old}, config, 2, "hold the same key"),
        ({"GATEWAY_SECRETS_KEY": old, "NEW_KEY": new}, str(tmp_path / "missing.yaml"), 2, "cannot read"),
        ({"GATEWAY_SECRETS_KEY": new_key(), "NEW_KEY": new}, config, 1, "not configured"),
    ]
    for env, path, code, message in cases:
        done = gateway_cli("secrets", "rotate", "--config", path, "--new-key-env", "NEW_KEY", env=env)
        assert (done.returncode, message in done.stderr) == (code, True), (env.keys(), done.stderr)
    assert read_secret(tmp_path / "state.db", SecretBox(base64.b64decode(old))) == PROVIDER_KEY, "nothing changed"
