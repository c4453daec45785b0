"""docs/configuration.md stays true to gateway/config/settings.py.

- Every ```yaml block in the doc is a complete config that loads with
  parse_config (blocks preceded by ``<!-- not-a-complete-config -->`` are skipped).
- Every field of every schema model, and every allowed literal value (provider
  kinds, strategies, alias kinds), is named in the doc in backticks, so adding a
  config key without documenting it fails here.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import pytest
import yaml
from pydantic import BaseModel

from gateway.config.loader import ConfigError, LoadedConfig, parse_config
from gateway.config.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "configuration.md"
SKIP_MARK = "<!-- not-a-complete-config -->"
DUMMY = "sk-test-123456"

_FENCE_RE = re.compile(r"^```yaml[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def _doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def yaml_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, body) of every complete-config ```yaml block."""
    blocks = []
    for m in _FENCE_RE.finditer(text):
        before = text[: m.start()].rstrip()
        if before.endswith(SKIP_MARK):
            continue
        blocks.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
    return blocks


def _required_env(block: str) -> dict[str, str]:
    """Dummy values for every ``${VAR}`` without a default and every name in a
    ``requires_env`` list (so no alias is silently left out). Variables that
    have a ``:-default`` stay unset, so their default is what gets validated."""
    env = {name: DUMMY for name, default in _VAR_RE.findall(block) if not default}
    raw = yaml.safe_load(block)
    models = raw.get("models") if isinstance(raw, dict) else None
    if isinstance(models, dict):
        for spec in models.values():
            needs = spec.get("requires_env") if isinstance(spec, dict) else None
            for name in needs or ():
                env[str(name)] = DUMMY
    return env


BLOCKS = yaml_blocks(_doc_text())


def test_doc_has_the_examples() -> None:
    # the minimal config, one per provider kind, the compatible servers,
    # embeddings and the multi-deployment file
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize(("line", "block"), BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_yaml_example_is_a_valid_complete_config(line: int, block: str) -> None:
    try:
        loaded: LoadedConfig = parse_config(block, env=_required_env(block), source=f"{DOC.name}:{line}")
    except ConfigError as exc:
        pytest.fail(f"the yaml block at {DOC.name} line {line} does not load:\n{exc}")
    assert loaded.disabled_aliases == []
    assert loaded.settings.models, f"the yaml block at line {line} defines no model alias"
    assert loaded.settings.auth.master_key == DUMMY, f"the yaml block at line {line} has no ${{...}} master key"


def test_every_provider_kind_has_an_example() -> None:
    used: set[str] = set()
    for _, block in BLOCKS:
        settings = parse_config(block, env=_required_env(block)).settings
        used.update(dep.provider for alias in settings.models.values() for dep in alias.deployments)
    assert used >= set(_literal_values(_field_type(_deployment_type(), "provider")))


# --- every schema key documented ------------------------------------------------


def _unwrap(tp: Any) -> list[Any]:
    """The types a field annotation can hold: through Annotated, Optional/Union,
    list, dict (values) and the like."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return [t for arg in typing.get_args(tp) for t in _unwrap(arg)]
    if origin is Literal:
        return [tp]
    if origin in (list, dict, tuple, set, frozenset):
        args = typing.get_args(tp)
        inner = args[1:] if origin is dict else args
        return [t for arg in inner for t in _unwrap(arg)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []
    stack: list[type[BaseModel]] = [root]
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.append(cls)
        for info in cls.model_fields.values():
            stack.extend(t for t in _unwrap(info.annotation) if _is_model(t))
    return seen


def _literal_values(types_: list[Any]) -> list[str]:
    return [str(v) for t in types_ if typing.get_origin(t) is Literal for v in typing.get_args(t)]


def _field_type(cls: type[BaseModel], name: str) -> list[Any]:
    return _unwrap(cls.model_fields[name].annotation)


def _deployment_type() -> type[BaseModel]:
    for cls in _models(Settings):
        if "provider" in cls.model_fields:
            return cls
    raise AssertionError("no schema model has a provider field")


def test_schema_walk_reaches_the_nested_models() -> None:
    names = {cls.__name__ for cls in _models(Settings)}
    # through dict values (models), lists (deployments, keys), Optional (price, retry)
    assert {"ModelAlias", "Deployment", "StaticKey", "Price", "RetryPolicy", "TimeoutOverrides", "Params"} <= names


def test_every_schema_field_is_documented() -> None:
    text = _doc_text()
    missing = sorted(
        f"{cls.__name__}.{name}" for cls in _models(Settings) for name in cls.model_fields if f"`{name}`" not in text
    )
    assert not missing, f"config keys not documented in {DOC.name} (as `name`): {missing}"


def test_every_allowed_literal_value_is_documented() -> None:
    text = _doc_text()
    values = {
        v
        for cls in _models(Settings)
        for info in cls.model_fields.values()
        for v in _literal_values(_unwrap(info.annotation))
    }
    assert {"openai", "round_robin", "embedding"} <= values
    missing = sorted(v for v in values if f"`{v}`" not in text)
    assert not missing, f"allowed values not documented in {DOC.name} (as `value`): {missing}"


def test_skip_marker_is_rare() -> None:
    assert _doc_text().count(SKIP_MARK) <= 3
