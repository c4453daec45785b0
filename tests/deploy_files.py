"""Reading the deployment files without a container engine: the Dockerfile (stages and their
instructions), .dockerignore (Docker's own matching rules) and the paths the gateway and the mock
really serve, so that health checks can be held to them. Used by tests/unit/test_dockerfile.py,
tests/unit/test_compose.py and tests/e2e/test_container_install.py."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Instruction:
    keyword: str
    """Upper case: ``RUN``, ``COPY`` ..."""
    args: str
    """Everything after the keyword, continuation lines joined with a space."""
    line: int

    def flags(self) -> tuple[dict[str, str], str]:
        """Leading ``--name=value`` flags (``COPY --from=build``, ``HEALTHCHECK --interval=5s``) and the rest."""
        found: dict[str, str] = {}
        rest = self.args
        while match := re.match(r"--([\w-]+)(?:=(\S*))?\s*", rest):
            found[match.group(1)] = match.group(2) or ""
            rest = rest[match.end() :]
        return found, rest

    def exec_form(self) -> list[str]:
        """The JSON array of ``CMD``/``ENTRYPOINT`` (or what follows ``HEALTHCHECK``'s ``CMD``)."""
        rest = self.flags()[1]
        if self.keyword == "HEALTHCHECK":
            rest = rest.removeprefix("CMD").strip()
        value = json.loads(rest)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value

    def pairs(self) -> dict[str, str]:
        """``ENV``/``LABEL``/``ARG`` as name -> value (``ARG NAME`` without a default: "")."""
        out: dict[str, str] = {}
        for token in shlex.split(self.args):
            name, _, value = token.partition("=")
            out[name] = value
        return out


@dataclass
class Stage:
    base: str
    """The ``FROM`` image as written (``${PYTHON_IMAGE}``)."""
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"stage {self.name}: {len(found)} {keyword} instructions"
        return found[0]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for instruction in self.all("ENV"):
            out.update(instruction.pairs())
        return out

    def workdir(self) -> str:
        workdirs = self.all("WORKDIR")
        return workdirs[-1].args if workdirs else "/"


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    """``ARG``s before the first ``FROM`` with their defaults (what ``FROM`` lines may use)."""
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        (found,) = [s for s in self.stages if s.name == name]
        return found

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def base_image(self, stage: Stage) -> str:
        """The stage's ``FROM`` with the global ``ARG`` defaults substituted."""
        return substitute(stage.base, self.global_args)


def substitute(text: str, values: dict[str, str]) -> str:
    """``${NAME}`` and ``$NAME`` replaced by their values (an unknown name fails)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], text)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction text): comments dropped, continuations joined."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops comment lines, inside a continuation too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        out.append((start, " ".join(pending)))
        pending = []
    assert not pending, "the Dockerfile ends inside a continuation"
    return out


def parse_dockerfile(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip(), number)
        if instruction.keyword == "FROM":
            words = instruction.flags()[1].split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert len(words) in (1, 3), f"line {number}: FROM {args}"
            stages.append(Stage(words[0], name))
        elif not stages:
            assert instruction.keyword == "ARG", f"line {number}: only ARG may come before FROM"
            global_args.update(instruction.pairs())
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(global_args, stages)


@cache
def dockerfile() -> Dockerfile:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


# --- .dockerignore ------------------------------------------------------------------------


@dataclass(frozen=True)
class IgnoreRule:
    pattern: re.Pattern[str]
    exclude: bool
    """False for a ``!`` exception (the path is sent after all)."""


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: ``*`` and ``?`` within one path element, ``[...]`` classes,
    ``**`` any number of elements (none included)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def ignore_rules(text: str) -> list[IgnoreRule]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        # Docker cleans each pattern like a path: no leading "/" or "./", no trailing "/".
        cleaned = line.lstrip("!").strip().lstrip("/").removeprefix("./").rstrip("/")
        rules.append(IgnoreRule(_pattern_regex(cleaned), exclude))
    return rules


def is_ignored(path: str, rules: list[IgnoreRule]) -> bool:
    """Whether the context path (relative, "/"-separated) is left out of the build context: the
    last rule that matches it or one of its parent directories decides (moby's patternmatcher)."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for rule in rules:
        if any(rule.pattern.match(p) for p in prefixes):
            ignored = rule.exclude
    return ignored


@cache
def dockerignore() -> list[IgnoreRule]:
    return ignore_rules((ROOT / ".dockerignore").read_text())


def context_files(source: str) -> list[str]:
    """Every file under the context path ``source`` that the build context sends."""
    base = ROOT / source
    files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
    relative = [p.relative_to(ROOT).as_posix() for p in files]
    return [p for p in relative if not is_ignored(p, dockerignore())]


# --- what the apps serve ----------------------------------------------------------------------


def gateway_paths() -> set[str]:
    """The paths the gateway routes outside the client API (/health, /ready, /admin/...)."""
    from starlette.routing import Route

    from gateway.app.gateway_app import create_app
    from gateway.config.loader import parse_config

    loaded = parse_config(
        "auth: {master_key: sk-paths-only}\nmodels: {a: {deployments: [{provider: openai, model: m, api_key: k}]}}\n"
    )
    app = create_app(loaded)
    return {r.path for r in app._other.routes if isinstance(r, Route)}


def mock_paths() -> set[str]:
    from starlette.routing import Route

    from gateway.mock.app import create_mock_app

    return {r.path for r in create_mock_app().routes if isinstance(r, Route)}
