"""The Dockerfile, checked without a container engine (none runs here, and no base image can be
fetched): two stages from one base pinned to a patch release, the lock installed with hashes and
never re-resolved, a final stage that copies only the venv and the config, runs as a numeric
non-root user under dumb-init, probes a route the app serves, and carries the OCI labels; every
COPY source exists and is sent by .dockerignore, which keeps out what must never be in an image.
tests/e2e/test_container_install.py runs the uv lines themselves."""

from __future__ import annotations

import re
import shlex
import tomllib

import yaml

from gateway.config.loader import load_config
from gateway.config.state import RetentionSettings
from tests.deploy_files import ROOT, Instruction, context_files, dockerfile, dockerignore, gateway_paths, is_ignored

VENV = "/app/.venv"


def run_commands(runs: list[Instruction]) -> list[list[str]]:
    """Each shell command of the RUN instructions, split on ``&&``, as words."""
    commands = []
    for instruction in runs:
        for part in instruction.args.split("&&"):
            commands.append(shlex.split(part))
    return commands


def test_two_stages_on_one_base_pinned_to_a_patch_release() -> None:
    df = dockerfile()
    assert [s.name for s in df.stages] == ["build", "runtime"]
    images = {df.base_image(s) for s in df.stages}
    assert len(images) == 1, f"both stages must share the base (the venv's interpreter): {images}"
    (image,) = images
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim(-\w+)?", image)
    assert match, f"{image}: not pinned to an exact patch release of the slim image"
    python = (ROOT / ".python-version").read_text().strip()
    assert f"{match.group(1)}.{match.group(2)}" == python, f"{image} is not the project's Python {python}"
    assert "digest" in (ROOT / "Dockerfile").read_text(), "say that the release pipeline pins the digest"


def test_the_lock_is_installed_with_hashes_and_never_resolved() -> None:
    df = dockerfile()
    commands = [c for stage in df.stages for c in run_commands(stage.all("RUN"))]
    pips = [c for c in commands if "pip" in c[:3] and "install" in c]
    uvs = [c for c in commands if c[0] == "uv"]
    assert pips and uvs
    for command in pips:
        assert "--require-hashes" in command and "--no-deps" in command, command
        assert command[command.index("-r") + 1] == "tools/uv-requirements.txt", command
    for command in uvs:
        assert command[1] == "sync", f"uv {command[1]}: only `uv sync` from the lock belongs in the image"
        assert {"--locked", "--frozen"} & set(command), command
        # runtime + the container group; no test tools, the package itself not editable
        assert {"--no-default-groups", "--no-editable"} <= set(command), command
        groups = [command[i + 1] for i, word in enumerate(command) if word == "--group"]
        assert groups == ["container"], command
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    assert [re.split(r"[<>=;]", d)[0] for d in groups["container"]] == ["dumb-init"]
    assert df.stage("build").env()["UV_PROJECT_ENVIRONMENT"] == VENV


def test_the_final_stage_copies_only_the_venv_and_the_config() -> None:
    final = dockerfile().final
    copies = [c.flags() for c in final.all("COPY")]
    assert [(flags, rest.split()) for flags, rest in copies] == [
        ({"from": "build"}, [VENV, VENV]),
        ({}, ["config", "./config"]),
    ]
    assert final.workdir() == "/app"
    for command in run_commands(final.all("RUN")):
        assert not {"pip", "uv", "apt-get"} & set(command), f"the final stage installs nothing: {command}"


def test_the_runtime_user_is_numeric_non_root_without_a_login() -> None:
    final = dockerfile().final
    user = final.one("USER").args
    assert re.fullmatch(r"10001:10001", user), f"USER {user}: numeric uid:gid 10001"
    assert final.instructions.index(final.one("USER")) > max(final.instructions.index(i) for i in final.all("RUN")), (
        "USER comes after the last RUN"
    )
    commands = run_commands(final.all("RUN"))
    (useradd,) = [c for c in commands if c[0] == "useradd"]
    for flag, value in (("--uid", "10001"), ("--gid", "10001"), ("--shell", "/usr/sbin/nologin")):
        assert useradd[useradd.index(flag) + 1] == value, useradd
    assert "--no-create-home" in useradd
    (groupadd,) = [c for c in commands if c[0] == "groupadd"]
    assert groupadd[groupadd.index("--gid") + 1] == "10001"


def test_only_the_data_dir_is_writable_by_the_runtime_user() -> None:
    final = dockerfile().final
    commands = run_commands(final.all("RUN"))
    chowns = [c for c in commands if c[0] == "chown"]
    assert chowns == [["chown", "10001:10001", "/app/data"]], chowns
    assert not any("--chown" in c.flags()[0] for c in final.all("COPY")), "copied files stay root's"
    assert final.one("VOLUME").exec_form() == ["/app/data"]
    env = final.env()
    assert env["TMPDIR"] == "/tmp" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    # The shipped config's state, spend journal, backups and request archives are relative to
    # the working directory /app: all under /app/data (docs/deployment.md, "Read-only root").
    settings = load_config(ROOT / "config" / "gateway.yaml", env={"GATEWAY_MASTER_KEY": "sk-dockerfile"}).settings
    writes = [settings.state.path, settings.backup.dir, RetentionSettings().archive_dir]
    assert all(p.startswith("data/") for p in writes), writes


def test_entrypoint_is_dumb_init_from_the_venv_and_sigterm_stops() -> None:
    final = dockerfile().final
    assert final.one("ENTRYPOINT").exec_form() == [f"{VENV}/bin/dumb-init", "--"]
    assert final.one("STOPSIGNAL").args == "SIGTERM"
    cmd = final.one("CMD").exec_form()
    assert cmd[:2] == ["gateway", "serve"] and cmd[cmd.index("--config") + 1] == "/app/config/gateway.yaml"
    assert (ROOT / "config" / "gateway.yaml").exists()
    assert final.env()["PATH"].startswith(f"{VENV}/bin:")


def test_healthcheck_probes_a_route_the_app_serves_with_python() -> None:
    healthcheck = dockerfile().final.one("HEALTHCHECK")
    flags, _ = healthcheck.flags()
    assert {"interval", "timeout", "retries"} <= set(flags)
    command = healthcheck.exec_form()
    assert command[:2] == ["python", "-c"], "slim has no curl: the probe is Python"
    (url,) = re.findall(r"http://127\.0\.0\.1:[^/']+(/[\w/-]*)", command[2])
    assert url == "/ready" and url in gateway_paths()


def test_ports_match_the_server_and_the_compose_metrics_port() -> None:
    exposed = set(dockerfile().final.one("EXPOSE").args.split())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    metrics_port = compose["services"]["gateway-1"]["environment"]["METRICS_PORT"]
    assert exposed == {"8080", metrics_port}


def test_oci_labels_come_from_build_args() -> None:
    final = dockerfile().final
    labels: dict[str, str] = {}
    for label in final.all("LABEL"):
        labels.update(label.pairs())
    args: dict[str, str] = {}
    for instruction in final.all("ARG"):
        args.update(instruction.pairs())
    for key, name in (("version", "VERSION"), ("revision", "REVISION"), ("source", "SOURCE")):
        assert labels[f"org.opencontainers.image.{key}"] == f"${{{name}}}", key
        assert name in args, f"ARG {name} is not declared in the final stage"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert args["VERSION"] == project["version"], "the default VERSION is the package's"
    assert labels["org.opencontainers.image.licenses"] == project["license"]


def test_every_copy_source_exists_and_is_sent_by_dockerignore() -> None:
    for stage in dockerfile().stages:
        for copy in stage.all("COPY"):
            flags, rest = copy.flags()
            if "from" in flags:
                continue
            *sources, _ = rest.split()
            for source in sources:
                path = ROOT / source
                assert path.exists(), f"line {copy.line}: COPY {source}: no such path"
                if path.is_file():
                    wanted = [source]
                else:  # every file but bytecode caches
                    found = (p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
                    wanted = sorted(p.relative_to(ROOT).as_posix() for p in found if p.suffix != ".pyc")
                assert wanted, f"line {copy.line}: COPY {source}: nothing to copy"
                assert context_files(source) == wanted, f"line {copy.line}: .dockerignore leaves out {source}"


def test_dockerignore_keeps_out_secrets_state_and_caches() -> None:
    rules = dockerignore()
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        ".tools/bin/uv",
        ".dev/secrets.env",
        ".env",
        "data/gateway.db",
        "data/backups/gateway-1.gwbak",
        "test-artifacts/report.xml",
        "tests/unit/test_dockerfile.py",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/x",
        ".pytest_cache/v",
        "gateway/__pycache__/canonical.cpython-311.pyc",
        "gateway/app/__pycache__/x.pyc",
        "bench/results/run.json",
        "deploy/helm/llm-gateway/values.yaml",
    ):
        assert is_ignored(path, rules), f"{path} would be sent to the builder"
    for path in ("gateway/app/gateway_app.py", "gateway/console/static/index.html", "uv.lock", "config/prices.yaml"):
        assert not is_ignored(path, rules), path
