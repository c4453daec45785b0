"""gateway.security.secrets: AES-256-GCM sealing, tamper detection, the store on a
real embedded backend, and rotation under a new master key."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.errors import InvalidRequest, NotFound
from gateway.security.secrets import (
    SecretBox,
    SecretError,
    SecretsNotConfigured,
    SecretStore,
    key_id,
    parse_key,
    rotate_all,
)
from gateway.state.embedded import EmbeddedBackend

PROVIDER_KEY = "sk-proj-UNIT-provider-key-0123456789"
OLD, NEW = os.urandom(32), os.urandom(32)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def files_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.iterdir() if p.is_file())


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[EmbeddedBackend]:
    b = EmbeddedBackend(str(tmp_path / "gw.db"))
    yield b
    await b.aclose()


def test_parse_key() -> None:
    assert parse_key(b64(OLD)) == OLD
    assert parse_key(base64.urlsafe_b64encode(OLD).decode()) == OLD
    with pytest.raises(ValueError, match="GATEWAY_SECRETS_KEY must be 32 bytes"):
        parse_key(b64(b"x" * 16))
    with pytest.raises(ValueError, match="NEW_KEY is not valid base64"):
        parse_key("not base64 at all!", "NEW_KEY")


def test_box_from_env() -> None:
    assert SecretBox.from_env({}) is None
    box = SecretBox.from_env({"GATEWAY_SECRETS_KEY": b64(OLD)})
    assert box is not None and box.kid == key_id(OLD)
    with pytest.raises(ValueError, match="GATEWAY_SECRETS_KEY"):
        SecretBox.from_env({"GATEWAY_SECRETS_KEY": "short"})


def test_seal_and_open() -> None:
    box = SecretBox(OLD)
    sealed = box.seal("openai", PROVIDER_KEY)
    assert set(sealed) == {"v", "kid", "nonce", "ct"} and sealed["kid"] == key_id(OLD)
    assert PROVIDER_KEY not in str(sealed)
    assert box.open("openai", sealed) == PROVIDER_KEY
    assert box.seal("openai", PROVIDER_KEY)["nonce"] != sealed["nonce"], "a fresh nonce per seal"


def test_tampering_is_detected() -> None:
    box = SecretBox(OLD)
    sealed = box.seal("openai", PROVIDER_KEY)
    ct = bytearray(base64.b64decode(sealed["ct"]))
    ct[0] ^= 1
    for bad in (
        {**sealed, "ct": b64(bytes(ct))},
        {**sealed, "nonce": b64(os.urandom(12))},
        {**sealed, "ct": "!!!"},
        {k: v for k, v in sealed.items() if k != "nonce"},
    ):
        with pytest.raises(SecretError, match="altered"):
            box.open("openai", bad)
    with pytest.raises(SecretError, match="another name"):
        box.open("anthropic", sealed)  # the name is the associated data
    with pytest.raises(SecretError, match="not configured"):
        SecretBox(NEW).open("openai", sealed)


def test_box_with_old_keys_opens_both() -> None:
    old_sealed = SecretBox(OLD).seal("a", "one")
    both = SecretBox(NEW, OLD)
    assert both.kid == key_id(NEW)
    assert both.open("a", old_sealed) == "one"
    assert both.seal("b", "two")["kid"] == key_id(NEW)


async def test_store_round_trip_never_stores_plaintext(backend: EmbeddedBackend, tmp_path: Path) -> None:
    store = SecretStore(backend, SecretBox(OLD))
    ref = await store.put_secret("openai-prod", PROVIDER_KEY)
    assert ref == "secret:openai-prod"
    assert await store.get_secret(ref) == PROVIDER_KEY
    shown = await store.describe("openai-prod")
    assert shown["hint"] == "sk-p…" and shown["ref"] == ref and "ct" not in shown
    assert [s["name"] for s in await store.all()] == ["openai-prod"]
    assert await store.exists("openai-prod") and not await store.exists("other")
    await store.put_secret("openai-prod", PROVIDER_KEY + "-v2")
    assert await store.get_secret(ref) == PROVIDER_KEY + "-v2"
    assert (await store.describe("openai-prod"))["created_at"] == shown["created_at"]
    assert PROVIDER_KEY.encode() not in files_bytes(tmp_path), "the database file never holds the secret"
    assert await store.delete("openai-prod") is True
    with pytest.raises(NotFound):
        await store.get_secret(ref)


async def test_store_refusals(backend: EmbeddedBackend) -> None:
    store = SecretStore(backend, SecretBox(OLD))
    for name in ("", "has space", "a/b", "x" * 101, "-lead"):
        with pytest.raises(InvalidRequest, match="secret name"):
            await store.put_secret(name, "v")
    with pytest.raises(InvalidRequest, match="1 to"):
        await store.put_secret("ok", "")
    with pytest.raises(InvalidRequest, match="1 to"):
        await store.put_secret("ok", "x" * 20000)
    for ref in ("openai", "secret:", "secret:a b"):
        with pytest.raises(InvalidRequest, match="not a secret reference"):
            await store.get_secret(ref)
    with pytest.raises(NotFound):
        await store.describe("missing")
    unconfigured = SecretStore(backend, None)
    with pytest.raises(SecretsNotConfigured, match="GATEWAY_SECRETS_KEY") as info:
        await unconfigured.put_secret("ok", "v")
    assert info.value.http_status == 503


async def test_rotation(backend: EmbeddedBackend) -> None:
    old_store = SecretStore(backend, SecretBox(OLD))
    for i in range(3):
        await old_store.put_secret(f"s{i}", f"{PROVIDER_KEY}-{i}")
    assert await rotate_all(backend, SecretBox(OLD), SecretBox(NEW)) == 3
    new_store = SecretStore(backend, SecretBox(NEW))
    assert [await new_store.get_secret(f"secret:s{i}") for i in range(3)] == [f"{PROVIDER_KEY}-{i}" for i in range(3)]
    assert {s["kid"] for s in await new_store.all()} == {key_id(NEW)}
    with pytest.raises(SecretError, match="not configured"):
        await old_store.get_secret("secret:s0")
    assert await rotate_all(backend, SecretBox(OLD), SecretBox(NEW)) == 0, "running it again changes nothing"


async def test_rotation_with_the_wrong_old_key_writes_nothing(backend: EmbeddedBackend) -> None:
    store = SecretStore(backend, SecretBox(OLD))
    await store.put_secret("a", "one")
    before = await backend.get("secrets", "a")
    with pytest.raises(SecretError):
        await rotate_all(backend, SecretBox(os.urandom(32)), SecretBox(NEW))
    assert await backend.get("secrets", "a") == before
    assert await store.get_secret("secret:a") == "one"
