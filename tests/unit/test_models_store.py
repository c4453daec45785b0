"""gateway.admin.model_store: the overlay of stored aliases on the config file,
the store and its version polling on the embedded backend, opening secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.admin.model_store import ModelStore, Stored, StoredModel, effective_config, open_secrets
from gateway.config.loader import ConfigError, parse_config
from gateway.errors import NotFound
from gateway.state.base import BackendUnavailable
from gateway.state.embedded import EmbeddedBackend

FILE = """
auth:
  keys: [{name: k, sha256: "%s", models: [a, b]}]
models:
  a: {deployments: [{provider: openai, model: m-a}], fallbacks: [b]}
  b: {deployments: [{provider: openai, model: m-b}]}
""" % ("0" * 64)


def spec(model: str, **extra: Any) -> dict[str, Any]:
    return {"deployments": [{"provider": "openai", "model": model}], **extra}


def test_a_stored_alias_replaces_the_file_one_and_new_ones_are_added() -> None:
    file = parse_config(FILE, env={})
    stored = {"b": StoredModel("b", spec("m-b2")), "c": StoredModel("c", spec("m-c", fallbacks=["a"]))}
    loaded = effective_config(file, stored, {})
    models = loaded.settings.models
    assert set(models) == {"a", "b", "c"}
    assert models["b"].deployments[0].model == "m-b2"
    assert models["c"].fallbacks == ["a"]
    assert file.raw["models"]["b"]["deployments"][0]["model"] == "m-b"  # the file's mapping is untouched


def test_a_disabled_alias_is_left_out_with_every_reference_to_it() -> None:
    file = parse_config(FILE, env={})
    loaded = effective_config(file, {"b": StoredModel("b", None, disabled=True)}, {})
    assert set(loaded.settings.models) == {"a"}
    assert loaded.settings.models["a"].fallbacks == []
    assert loaded.settings.auth.keys[0].models == ["a"]
    assert loaded.disabled_aliases == []  # that list is for requires_env


def test_a_bad_stored_alias_is_reported_like_the_config_loader_does() -> None:
    file = parse_config(FILE, env={})
    bad = spec("m", strategy="fastest")
    bad["deployments"][0]["weight"] = 0
    with pytest.raises(ConfigError) as exc:
        effective_config(file, {"c": StoredModel("c", bad)}, {})
    assert any(p.startswith("models.c.deployments[0].weight: ") for p in exc.value.problems)
    assert any(p.startswith("models.c.strategy: ") for p in exc.value.problems)


def test_stored_aliases_get_env_interpolation_and_requires_env_like_the_file() -> None:
    file = parse_config(FILE, env={})
    stored = {
        "c": StoredModel("c", {"deployments": [{"provider": "openai", "model": "m", "api_key": "${KEY_C}"}]}),
        "d": StoredModel("d", spec("m-d", requires_env=["UNSET_VAR"])),
    }
    loaded = effective_config(file, stored, {"KEY_C": "value-c"})
    assert loaded.settings.models["c"].deployments[0].api_key == "value-c"
    assert "d" not in loaded.settings.models and loaded.disabled_aliases == ["d"]
    with pytest.raises(ConfigError, match=r"models.c.deployments\[0\].api_key: environment variable KEY_C is not set"):
        effective_config(file, stored, {})


async def test_store_round_trip_and_version_polling(tmp_path: Path) -> None:
    backend = EmbeddedBackend(str(tmp_path / "s.db"))
    store = ModelStore(backend, refresh_interval_s=0.05)
    seen: list[tuple[str | None, Stored]] = []

    async def on_change(version: str | None, stored: Stored) -> None:
        seen.append((version, stored))

    try:
        assert await store.poll(on_change) is False  # nothing stored, nothing seen: no change
        model = StoredModel("c", spec("m"), False, "2026-11-26T00:00:00+00:00", "master")
        await store.put(model)
        assert await store.poll(on_change) is True
        assert seen[-1][1] == {"c": model} and seen[-1][0] == await store.version()
        assert await store.poll(on_change) is False  # same version: nothing to do
        assert await store.get("c") == model
        assert await store.delete("c") is True
        assert await store.poll(on_change) is True and seen[-1][1] == {}
        assert await store.delete("c") is False
    finally:
        await backend.aclose()


async def test_a_malformed_record_is_ignored(tmp_path: Path) -> None:
    backend = EmbeddedBackend(str(tmp_path / "s.db"))
    try:
        await backend.put("models", "x", {"name": 5, "spec": "nope"})
        await backend.put("models", "y", {"name": "y", "spec": None, "disabled": True})
        assert set(await ModelStore(backend, refresh_interval_s=1).all()) == {"y"}
    finally:
        await backend.aclose()


async def test_polling_an_unreachable_backend_reports_no_change(tmp_path: Path) -> None:
    backend = EmbeddedBackend(str(tmp_path / "s.db"))
    await backend.aclose()  # every call now raises BackendUnavailable

    async def on_change(version: str | None, stored: Stored) -> None:
        raise AssertionError("must not be called")

    store = ModelStore(backend, refresh_interval_s=1)
    assert await store.poll(on_change) is False
    assert await store.poll(on_change) is False  # logged once, still no change


async def test_open_secrets_replaces_references_and_names_failures() -> None:
    vault = {"secret:good": "sk-opened-value", "secret:dollar": "a${HOME}b"}

    async def opener(ref: str) -> str:
        if ref not in vault:
            raise NotFound(f"no secret named {ref[7:]!r}", code="secret_not_found")
        return vault[ref]

    good = {"deployments": [{"provider": "openai", "model": "m", "api_key": "secret:good"}]}
    stored = {"c": StoredModel("c", good), "d": StoredModel("d", None, disabled=True)}
    opened = await open_secrets(stored, opener)
    assert opened["c"].spec is not None and opened["c"].spec["deployments"][0]["api_key"] == "sk-opened-value"
    assert good["deployments"][0]["api_key"] == "secret:good"  # the stored spec is not changed
    bad = {
        "deployments": [
            {"provider": "openai", "model": "m", "api_key": "secret:gone"},
            {"provider": "openai", "model": "m", "headers": {"Authorization": "secret:dollar"}},
        ]
    }
    with pytest.raises(ConfigError) as exc:
        await open_secrets({"e": StoredModel("e", bad)}, opener)
    assert exc.value.problems[0].startswith("models.e.deployments[0].api_key: secret:gone cannot be opened")
    assert exc.value.problems[1].startswith("models.e.deployments[1].headers.Authorization: secret:dollar holds")


async def test_a_change_that_could_not_be_applied_is_tried_again(tmp_path: Path) -> None:
    backend = EmbeddedBackend(str(tmp_path / "s.db"))
    store = ModelStore(backend, refresh_interval_s=1)
    calls: list[str | None] = []

    async def flaky(version: str | None, stored: Stored) -> None:
        calls.append(version)
        if len(calls) == 1:
            raise BackendUnavailable("a secret could not be read")

    try:
        await store.put(StoredModel("c", spec("m")))
        assert await store.poll(flaky) is False
        assert await store.poll(flaky) is True
        assert await store.poll(flaky) is False
        assert calls == [await store.version()] * 2
    finally:
        await backend.aclose()
