"""Configuration loading: YAML with ``${ENV}`` interpolation, into the schema of
:mod:`gateway.config.settings`.

Loading is four steps, each of which can only fail with a :class:`ConfigError`
that names the path of the bad value (``models.gpt-4o.deployments[1].weight: ...``):

1. parse the YAML;
2. leave out every model alias listing ``requires_env`` with one of those
   variables unset or empty (not an error: that is how the real providers'
   aliases sit in the default config without keys), and drop references to it;
3. interpolate ``${VAR}`` / ``${VAR:-default}`` (the default also when VAR is
   empty, as in the shell) in string values. A scalar that is exactly one
   ``${...}`` and looks like a number becomes a number that remembers its text,
   so ``port: ${PORT:-8080}`` is an int while ``api_key: ${KEY}`` keeps every
   character of ``KEY`` (leading zeros included); all other text stays text;
4. validate against the schema (unknown keys and wrong types rejected), then
   check references between aliases.

Problems name the path and the problem, never a value: a value may be a secret
that came from ``${VAR}``. The schema's own messages are written that way, and as a
second line of defence every text a ``${VAR}`` put into the config is replaced by
the reference itself (``${VAR}``) wherever a problem would quote it. A YAML error
gives its line and column, not the file's text around it.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.config.fields import EnvFloat, EnvInt
from gateway.config.rules import without_rules_naming
from gateway.config.settings import Settings

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NUMBER_RE = re.compile(r"[-+]?(\d+|\d*\.\d+([eE][-+]?\d+)?|\d+[eE][-+]?\d+)")


class ConfigError(Exception):
    """A configuration problem; ``str()`` names the path of each bad value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


def format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(root)"


Substituted = dict[str, str]
"""Each text an environment variable put into the config -> the variable's name."""

_MIN_REDACTED = 4
"""Shorter substitutions are not redacted from messages (they would garble them, and
three characters are no secret)."""


def _interpolate(value: Any, path: str, env: Mapping[str, str], problems: list[str], used: Substituted) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), env, problems, used) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env, problems, used) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value:  # like the shell's ${VAR:-default}: empty counts as unset
            used[value] = name
            return value
        if default is not None:
            return default
        if value is not None:
            return value
        problems.append(f"{path}: environment variable {name} is not set")
        return ""

    result = _ENV_RE.sub(sub, value)
    if _ENV_RE.fullmatch(value):
        return _typed(result)
    return result


def _typed(text: str) -> Any:
    """A whole-scalar substitution: a number-like value becomes a number that
    remembers its text (number fields take the number, text fields the exact
    text); anything else stays the exact text, so a secret is never cut at
    ``#``, turned into null, or stripped of leading zeros."""
    if not _NUMBER_RE.fullmatch(text):
        return text
    number: EnvInt | EnvFloat = EnvFloat(text) if any(c in text for c in ".eE") else EnvInt(text)
    number.text = text
    return number


def _drop_disabled_aliases(
    raw: dict[str, Any], env: Mapping[str, str], hidden: Collection[str] = ()
) -> dict[str, list[str]]:
    """Remove aliases whose ``requires_env`` is not met, and references to them
    (also the ``hidden`` ones: aliases disabled through the admin API, which
    are left out of the returned mapping: alias -> the variables it lacks).
    A routing rule naming one of them is removed whole."""
    models = raw.get("models")
    if not isinstance(models, dict):
        return {}
    disabled: dict[str, list[str]] = {}
    for alias, spec in list(models.items()):
        needs = spec.get("requires_env", []) if isinstance(spec, dict) else []
        missing = [str(n) for n in needs if not env.get(str(n))] if isinstance(needs, list) else []
        if missing:
            disabled[str(alias)] = missing
            del models[alias]
    gone = [*disabled, *(a for a in hidden if models.pop(a, None) is not None)]
    if "routing_rules" in raw:
        raw["routing_rules"] = without_rules_naming(raw["routing_rules"], gone)
    for spec in models.values():
        if isinstance(spec, dict):
            for field in ("fallbacks", "context_window_fallbacks"):
                refs = spec.get(field)
                if isinstance(refs, list):
                    spec[field] = [r for r in refs if r not in gone]
    names = raw.get("model_aliases")
    if isinstance(names, dict):
        for name, targets in list(names.items()):
            if isinstance(targets, list):
                names[name] = [t for t in targets if t not in gone]
            if targets in gone if isinstance(targets, str) else targets and not names[name]:
                del names[name]  # every alias it names is switched off
    auth = raw.get("auth")
    keys = auth.get("keys") if isinstance(auth, dict) else None
    for key in keys if isinstance(keys, list) else ():
        if isinstance(key, dict) and isinstance(key.get("models"), list):
            key["models"] = [m for m in key["models"] if m not in gone]
    return disabled


def env_references(value: Any) -> set[str]:
    """The names of every ``${VAR}`` in the strings of ``value`` (nested)."""
    if isinstance(value, dict):
        return set().union(*(env_references(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(env_references(v) for v in value))
    return {m.group(1) for m in _ENV_RE.finditer(value)} if isinstance(value, str) else set()


class LoadedConfig(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    settings: Settings
    disabled_aliases: list[str]
    source: str
    missing_env: dict[str, list[str]] = Field(default_factory=dict)
    """Each alias left out for its ``requires_env``: the variables that are not set."""
    raw: dict[str, Any] = Field(default_factory=dict)
    """The file's mapping as parsed, before any alias was left out or ``${VAR}``
    replaced: what runtime models are overlaid on (:func:`parse_raw`)."""


def parse_config(text: str, *, env: Mapping[str, str] | None = None, source: str = "<string>") -> LoadedConfig:
    env = os.environ if env is None else env
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: not valid YAML: {yaml_problem(exc)}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping, got {type(raw).__name__}"])
    return parse_raw(raw, env=env, source=source)


def parse_raw(
    raw: dict[str, Any], *, env: Mapping[str, str], source: str, hidden: Collection[str] = ()
) -> LoadedConfig:
    """Steps 2 to 4 over a parsed mapping (not modified); ``hidden`` aliases
    are left out like those whose ``requires_env`` is unset."""
    original = raw
    raw = copy.deepcopy(raw)
    disabled = _drop_disabled_aliases(raw, env, hidden)
    problems: list[str] = []
    used: Substituted = {}
    raw = _interpolate(raw, "", env, problems, used)
    if problems:
        raise ConfigError(problems)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([redact(p, used) for p in _validation_problems(exc)]) from None
    return LoadedConfig(
        settings=settings, disabled_aliases=list(disabled), missing_env=disabled, source=source, raw=original
    )


def _validation_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = format_loc(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        if loc == "(root)":
            problems.extend(msg.split("; "))
        else:
            problems.append(f"{loc}: {msg}")
    return problems


def redact(text: str, used: Substituted) -> str:
    """``text`` with every substituted value (as is, and as ``repr`` would quote it)
    replaced by its ``${VAR}`` reference, longest first."""
    for value in sorted(used, key=len, reverse=True):
        if len(value) >= _MIN_REDACTED:
            for form in {value, repr(value)[1:-1]}:
                text = text.replace(form, "${" + used[value] + "}")
    return text


def yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, without the excerpt of the file PyYAML adds (the text around
    a mistake may be a key written in the file)."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return type(exc).__name__
    out = exc.problem or "syntax error"
    if exc.problem_mark is not None:
        out += f" at line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}"
    if exc.context:
        mark = exc.context_mark
        where = f" from line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        out += f" ({exc.context}{where})"
    return out


def read_config_file(path: str | Path, cannot: str = "cannot read") -> str:
    """A config file's text; a missing, unreadable or non-UTF-8 file is a
    :class:`ConfigError` (``cannot`` begins its message)."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}: {cannot}: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{p}: not UTF-8 text"]) from None


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> LoadedConfig:
    return parse_config(read_config_file(path), env=env, source=str(path))
