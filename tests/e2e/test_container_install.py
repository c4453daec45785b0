"""The image, without a container engine: the Dockerfile's instructions played into a scratch
directory that stands for the image's ``/``, then the gateway run from it the way the image runs.

- build stage: its COPYs (the files .dockerignore sends), its ENV, its ``uv sync`` lines run as
  written with the repository's ``.tools/bin/uv`` (the same pinned uv the image pip-installs),
  ``UV_PROJECT_ENVIRONMENT`` under the scratch root and this machine's Python 3.11;
- runtime stage: its COPYs and its ``mkdir``/``chown``/``chmod`` of the data dir, given to the
  runtime user (``nobody`` here, when this runs as root: uid 10001 does not exist on this machine);
- the venv then holds exactly the locked runtime packages plus the ``container`` group, no test
  tool; ENTRYPOINT + CMD (dumb-init, ``gateway serve``) run as that user, with everything but the
  data dir and TMPDIR read-only to it; ``/ready`` answers 200, the HEALTHCHECK command passes,
  nothing is written outside the data dir, and a SIGTERM to dumb-init (a container stop) ends it.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from packaging.markers import Marker

from tests.deploy_files import ROOT, Instruction, Stage, context_files, dockerfile
from tests.e2e.harness import wait_until
from tests.ports import free_port

UV = ROOT / ".tools" / "bin" / "uv"
WAIT_S = 30.0
# An interpreter any user may run (this machine's venv Python may live under /root).
PYTHONS = ("/usr/local/bin/python3.11", "/usr/bin/python3.11")
MARKER_ENV = """
import json, os, platform, sys
v = sys.implementation.version
print(json.dumps({
    "implementation_name": sys.implementation.name,
    "implementation_version": f"{v.major}.{v.minor}.{v.micro}",
    "os_name": os.name, "platform_machine": platform.machine(), "platform_release": platform.release(),
    "platform_system": platform.system(), "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform,
}))
"""
METADATA = {"ARG", "LABEL", "USER", "VOLUME", "EXPOSE", "HEALTHCHECK", "STOPSIGNAL", "ENTRYPOINT", "CMD"}
"""Instructions that change no file: the tests read them from the Dockerfile where they matter."""
DISTRIBUTIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps([[d.metadata['Name'], d.version] for d in m.distributions()]))"
)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def world_usable(path: Path) -> bool:
    """Whether any user can run ``path``: it and every directory above it open to others."""
    real = path.resolve()
    return all(p.stat().st_mode & 0o001 for p in [real, *real.parents])


@dataclass
class Image:
    """A scratch directory standing for the image's ``/``."""

    root: Path
    python: str
    uid: int
    gid: int
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"

    def at(self, path: str) -> Path:
        """The scratch path of an image path (relative ones from the current WORKDIR)."""
        absolute = path if path.startswith("/") else f"{self.cwd.rstrip('/')}/{path}"
        return self.root / absolute.lstrip("/")

    def copy_from_context(self, sources: list[str], dest: str) -> None:
        into_dir = dest.endswith("/") or dest in (".", "./") or len(sources) > 1
        for source in sources:
            for file in context_files(source):
                if (ROOT / source).is_dir():
                    target = self.at(dest) / Path(file).relative_to(source)
                else:
                    target = self.at(dest) / Path(file).name if into_dir else self.at(dest)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / file, target)

    def play(self, stage: Stage) -> None:
        """Each instruction of ``stage`` as the image build does it (see the module docstring)."""
        for instruction in stage.instructions:
            if instruction.keyword == "WORKDIR":
                self.cwd = instruction.args
                self.at(".").mkdir(parents=True, exist_ok=True)
            elif instruction.keyword == "ENV":
                self.env.update(instruction.pairs())
            elif instruction.keyword == "COPY":
                flags, rest = instruction.flags()
                *sources, dest = rest.split()
                if "from" in flags:  # one scratch root serves both stages
                    assert sources == [dest], f"COPY --from with another path: {instruction}"
                    assert self.at(dest).exists(), f"the build stage made no {dest}"
                else:
                    self.copy_from_context(sources, dest)
            elif instruction.keyword == "RUN":
                for command in instruction.args.split("&&"):
                    self.run(shlex.split(command), instruction)
            elif instruction.keyword not in METADATA:
                pytest.fail(f"line {instruction.line}: an instruction this test does not play: {instruction.keyword}")

    def run(self, words: list[str], instruction: Instruction) -> None:
        if words[0] == "pip":  # installs the pinned uv: here .tools/bin/uv, from the same file
            pinned = re.search(r"^uv==(\S+)", (ROOT / "tools" / "uv-requirements.txt").read_text(), re.M)
            version = subprocess.run([str(UV), "--version"], capture_output=True, text=True, check=True).stdout
            assert pinned and version.split()[1] == pinned.group(1), (version, pinned)
        elif words[0] == "uv":
            env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}  # not this test's venv
            env.update(self.env)
            env["UV_PROJECT_ENVIRONMENT"] = str(self.at(self.env["UV_PROJECT_ENVIRONMENT"]))
            env["UV_PYTHON"] = self.python
            proc = subprocess.run(
                [str(UV), *words[1:]],
                cwd=self.at("."),
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert proc.returncode == 0, f"line {instruction.line}: {' '.join(words)}\n{proc.stderr}"
        elif words[0] in ("groupadd", "useradd"):
            pass  # the runtime user is this test's (nobody)
        elif words[0] == "mkdir":
            for path in words[1:]:
                if not path.startswith("-"):
                    self.at(path).mkdir(parents=True, exist_ok=True)
        elif words[0] == "chown":
            assert words[1] == "10001:10001", words
            os.chown(self.at(words[2]), self.uid, self.gid)
        elif words[0] == "chmod":
            os.chmod(self.at(words[2]), int(words[1], 8))
        else:
            pytest.fail(f"line {instruction.line}: a build step this test does not know: {words}")

    def runtime_env(self) -> dict[str, str]:
        """The final stage's ENV with image paths made scratch paths (``$PATH``: the system's)."""
        return {name: self.scratch_paths(value.replace("$PATH", "/usr/bin:/bin")) for name, value in self.env.items()}

    def scratch_paths(self, value: str) -> str:
        """``value`` with each of its ``:``-separated image paths (under /app, /src, /tmp) made a scratch path."""
        inside = ("/app", "/src", "/tmp")
        parts = value.split(":")
        return ":".join(str(self.at(p)) if any(p == d or p.startswith(d + "/") for d in inside) else p for p in parts)

    def as_user(self, command: list[str], env: dict[str, str]) -> list[str]:
        """``command`` with exactly ``env``, as the runtime user."""
        clean = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), *command]
        return ["runuser", "-u", pwd.getpwuid(self.uid).pw_name, "--", *clean] if os.geteuid() == 0 else clean


def files_outside(root: Path, skip: tuple[Path, ...]) -> dict[str, tuple[int, float]]:
    """Every file under ``root`` but ``skip``: size and modification time."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime)
        for p in root.rglob("*")
        if p.is_file() and not any(p.is_relative_to(s) for s in skip)
    }


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    if not UV.exists():
        pytest.skip("uv is installed into .tools/ by make")
    pythons = [p for p in PYTHONS if Path(p).exists() and world_usable(Path(p))]
    if not pythons:
        pytest.skip(f"no Python 3.11 that any user may run at {PYTHONS}")
    user = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    root = Path(tempfile.mkdtemp(prefix="gateway-image-", dir="/tmp"))
    root.chmod(0o755)
    try:
        img = Image(root, pythons[0], user.pw_uid, user.pw_gid)
        img.play(dockerfile().stage("build"))
        img.env, img.cwd = {}, "/"
        img.play(dockerfile().final)
        tmp = img.at("/tmp")  # the tmpfs of a read-only container
        tmp.mkdir(mode=0o1777)
        tmp.chmod(0o1777)
        yield img
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_venv_holds_exactly_the_runtime_and_container_packages(image: Image) -> None:
    venv = image.at("/app/.venv")
    python = str(venv / "bin" / "python")
    marker_env = json.loads(
        subprocess.run([python, "-c", MARKER_ENV], capture_output=True, text=True, check=True).stdout
    )
    exported = subprocess.run(
        [
            str(UV),
            "export",
            "--locked",
            "--no-default-groups",
            "--group",
            "container",
            "--no-hashes",
            "--no-header",
            "--no-annotate",
            "--no-emit-project",
            "--format",
            "requirements-txt",
        ],
        cwd=image.at("/src"),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "UV_PYTHON": image.python, "UV_PYTHON_DOWNLOADS": "never"},
    ).stdout
    expected = {("llm-gateway", "0.1.0")}
    for line in exported.splitlines():
        requirement, _, marker = line.partition(" ; ")
        if line.strip() and (not marker or Marker(marker).evaluate(marker_env)):
            name, _, version = requirement.strip().partition("==")
            expected.add((normalize(name), version))
    listed = json.loads(
        subprocess.run([python, "-c", DISTRIBUTIONS], capture_output=True, text=True, check=True).stdout
    )
    installed = {(normalize(name), version) for name, version in listed}
    assert installed == expected, {"missing": expected - installed, "extra": installed - expected}
    names = {name for name, _ in installed}
    assert "dumb-init" in names and "uvicorn" in names
    for tool in ("pytest", "ruff", "mypy", "openai", "playwright", "pip", "uv"):
        assert tool not in names, f"{tool} is in the image's venv"
    # The gateway package is inside the venv, not a link back to the sources.
    where = subprocess.run(
        [python, "-c", "import gateway; print(gateway.__file__)"], capture_output=True, text=True, check=True, cwd="/"
    ).stdout
    assert Path(where.strip()).is_relative_to(venv), where
    assert (venv / "bin" / "dumb-init").exists()


def test_dumb_init_runs_the_gateway_as_the_runtime_user_on_a_read_only_layout(image: Image) -> None:
    final = dockerfile().final
    port = free_port()
    env = {**image.runtime_env(), "GATEWAY_MASTER_KEY": "sk-container-test-0001", "PORT": str(port)}
    command = [*final.one("ENTRYPOINT").exec_form(), *final.one("CMD").exec_form()]
    command = [image.scratch_paths(w) for w in command]
    command[command.index("--host") + 1] = "127.0.0.1"  # the image listens on 0.0.0.0; tests on loopback only
    data = image.at("/app/data")
    before = files_outside(image.root, (data, image.at("/tmp")))
    log = (image.root / "gateway.log").open("wb")
    proc = subprocess.Popen(image.as_user(command, env), cwd=image.at("/app"), stdout=log, stderr=subprocess.STDOUT)
    healthcheck = image.as_user(final.one("HEALTHCHECK").exec_form(), env)
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return proc.poll() is not None

        assert wait_until(ready, timeout=WAIT_S) and proc.poll() is None, (image.root / "gateway.log").read_text()
        assert subprocess.run(healthcheck, capture_output=True, timeout=WAIT_S, check=False).returncode == 0

        # dumb-init, then the gateway under it, both as the runtime user.
        tree = descendants(proc.pid)
        (init,) = [pid for pid in tree if cmdline(pid)[:1] == [command[0]]]
        children = [pid for pid in descendants(init) if "serve" in cmdline(pid)]
        assert children, tree
        for pid in (init, *children):
            assert owner(pid) == image.uid, (pid, cmdline(pid))

        # The state went to the data dir, owned by the runtime user.
        assert (data / "gateway.db").exists() and (data / "gateway.db").stat().st_uid == image.uid

        os.kill(init, signal.SIGTERM)  # what `docker stop` sends PID 1
        proc.wait(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert files_outside(image.root, (data, image.at("/tmp"), image.root / "gateway.log")) == before
    assert subprocess.run(healthcheck, capture_output=True, timeout=WAIT_S, check=False).returncode == 1


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            for child in map(int, children):
                found.append(child)
                todo.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def owner(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^Uid:\s+(\d+)", status, re.M)
    assert match, status
    return int(match.group(1))
