"""Product basics of the command line: ``--version``, ``gateway init``, the hint when no config
is found, the development defaults of ``serve --dev`` and the refusal of the published
development master key on a public address, and the one rule for ``GATEWAY_URL``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway import __version__
from gateway.cli import dev
from gateway.cli.connection import default_url, gateway_url
from gateway.cli.init import starter_config
from gateway.cli.main import main
from gateway.config.loader import load_config

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"]
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"gateway {__version__}"


def test_the_packaged_starter_config_is_the_repository_default() -> None:
    assert starter_config() == (ROOT / "config" / "gateway.yaml").read_text()


def test_init_writes_a_config_that_loads_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "conf" / "gateway.yaml"
    assert main(["init", str(target)]) == 0
    assert target.read_text() == starter_config()
    assert "demo-gpt" in load_config(target, env={"GATEWAY_MASTER_KEY": "sk-test-master"}).settings.models
    target.write_text("# mine\n")
    assert main(["init", str(target)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert target.read_text() == "# mine\n"
    assert main(["init", str(target), "--force"]) == 0
    assert target.read_text() == starter_config()


def test_serve_outside_the_repository_says_how_to_get_a_config(tmp_path: Path) -> None:
    done = run_cli("serve", cwd=tmp_path)
    assert done.returncode == 2
    assert "no config file at 'config/gateway.yaml'" in done.stderr
    assert "gateway init" in done.stderr and "--config" in done.stderr


def test_the_development_key_is_refused_on_a_public_address(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text('auth: {master_key: "${GATEWAY_MASTER_KEY}"}\nmodels: {}\n')
    for host in ("0.0.0.0", "::", "192.0.2.10", "gateway.example"):
        done = run_cli(
            "serve",
            "--config",
            str(config),
            "--host",
            host,
            cwd=tmp_path,
            env={"GATEWAY_MASTER_KEY": dev.DEV_MASTER_KEY},
        )
        assert done.returncode == 2, (host, done.stderr)
        assert f"refusing to listen on {host!r} with the development master key" in done.stderr
        assert "GATEWAY_MASTER_KEY=" in done.stderr  # says how to set a real one


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("::1", False),
        ("[::1]", False),
        ("localhost", False),
        ("0.0.0.0", True),
        ("", True),
        ("::", True),
        ("10.0.0.5", True),
        ("my-host", True),
    ],
)
def test_which_addresses_count_as_loopback(host: str, refused: bool) -> None:
    assert (dev.refuse_public_dev_key(host, dev.DEV_MASTER_KEY) is not None) is refused
    assert dev.refuse_public_dev_key(host, "sk-a-real-key-of-my-own") is None
    assert dev.refuse_public_dev_key(host, None) is None


def test_dev_secrets_are_made_once_private_and_reused(tmp_path: Path) -> None:
    folder = tmp_path / ".dev"
    env: dict[str, str] = {}
    said = dev.apply_dev_defaults(env, folder)
    path = folder / dev.SECRETS_FILE
    assert "created in" in said[0] and str(path) in said[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert env["GATEWAY_MASTER_KEY"] == dev.DEV_MASTER_KEY
    assert len(env["GATEWAY_JWT_SECRET"]) >= 32
    first = dict(env)
    again: dict[str, str] = {}
    said = dev.apply_dev_defaults(again, folder)
    assert "read from" in said[0]
    assert again == first  # the same secrets: keys sealed in one run open in the next


def test_dev_defaults_never_override_what_is_set(tmp_path: Path) -> None:
    env = {"GATEWAY_MASTER_KEY": "sk-mine", "GATEWAY_SECRETS_KEY": "given"}
    said = dev.apply_dev_defaults(env, tmp_path)
    assert env["GATEWAY_MASTER_KEY"] == "sk-mine" and env["GATEWAY_SECRETS_KEY"] == "given"
    assert not any("master key" in line for line in said)


def test_a_damaged_dev_secrets_file_is_named(tmp_path: Path) -> None:
    (tmp_path / dev.SECRETS_FILE).write_text("GATEWAY_SECRETS_KEY\n")
    with pytest.raises(ValueError, match=r"secrets.env:1: expected NAME=value"):
        dev.apply_dev_defaults({}, tmp_path)


@pytest.mark.parametrize(
    "given",
    ["http://127.0.0.1:9000", "http://127.0.0.1:9000/", "http://127.0.0.1:9000/v1", " http://127.0.0.1:9000/v1/ "],
)
def test_gateway_url_means_one_thing_with_or_without_v1(given: str) -> None:
    assert gateway_url(given) == "http://127.0.0.1:9000"
    assert default_url({"GATEWAY_URL": given}) == "http://127.0.0.1:9000"


def test_gateway_url_defaults_follow_port() -> None:
    assert default_url({}) == "http://127.0.0.1:8080"
    assert default_url({"PORT": "8123"}) == "http://127.0.0.1:8123"
