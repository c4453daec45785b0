"""gateway.security.accounts and sessions on a real embedded backend, with a
controlled clock: lock-out, TOTP replay, refresh-token rotation and reuse."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config.operations import LockoutSettings
from gateway.errors import AuthenticationFailed, InvalidRequest, NotFound
from gateway.security import totp
from gateway.security.accounts import UserStore, check_password, check_role, check_username, public, rotate_totp
from gateway.security.secrets import SecretBox, SecretsNotConfigured
from gateway.security.sessions import Sessions
from gateway.state.embedded import EmbeddedBackend

POLICY = LockoutSettings(max_failures=3, window_s=60, duration_s=300)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[EmbeddedBackend]:
    b = EmbeddedBackend(str(tmp_path / "gw.db"))
    yield b
    await b.aclose()


# --- validation ----------------------------------------------------------------------------------


def test_field_checks() -> None:
    assert check_username("alice.b@corp-1") == "alice.b@corp-1"
    for bad in ("", "-x", "a b", "x" * 65, 5, None):
        with pytest.raises(InvalidRequest, match="username"):
            check_username(bad)
    assert check_password("x" * 12, 12) == "x" * 12
    for bad_pw in ("x" * 11, "x" * 1025, None, 123):
        with pytest.raises(InvalidRequest, match="password must be a string of 12"):
            check_password(bad_pw, 12)
    assert check_role("operator").name == "operator"
    for bad_role in ("root", "", 3, None):
        with pytest.raises(InvalidRequest, match="unknown role"):
            check_role(bad_role)


# --- lock-out ------------------------------------------------------------------------------------


async def fail(users: UserStore, username: str, policy: LockoutSettings = POLICY) -> float | None:
    """One wrong guess: it gets a place, then fails; when the account locks, until when."""
    guess = await users.reserve_guess(username, policy)
    assert guess.refused_until is None, "the guess got a place"
    return await users.guess_failed(guess, policy)


async def test_lockout_locks_and_stays_locked(backend: EmbeddedBackend) -> None:
    clock = Clock()
    users = UserStore(backend, None, clock=clock)
    assert await fail(users, "alice") is None
    assert await fail(users, "alice") is None
    until = await fail(users, "alice")
    assert until == clock.now + 300
    clock.now += 299
    assert await users.locked_until("alice") == until, "locked for the whole duration"
    other = UserStore(backend, None, clock=clock)  # another replica on the same backend
    assert await other.locked_until("alice") == until
    refused = await other.reserve_guess("alice", POLICY)
    assert refused.refused_until == until, "a guess while locked gets no place"
    clock.now += 2
    assert await users.locked_until("alice") is None, "and unlocked after it"
    assert await fail(users, "alice") is None, "an expired lock starts a fresh count"
    assert await fail(users, "alice") is None


async def test_lockout_window_and_clear(backend: EmbeddedBackend) -> None:
    clock = Clock()
    users = UserStore(backend, None, clock=clock)
    await fail(users, "bob")
    await fail(users, "bob")
    await users.clear_failures("bob")  # an admin's unlock: fresh windows
    assert await fail(users, "bob") is None
    assert await fail(users, "bob") is None
    assert await fail(users, "bob") is not None, "three failures since the unlock lock it"
    assert await users.locked_until("nobody") is None
    short = LockoutSettings(max_failures=3, window_s=0.05, duration_s=300)
    await fail(users, "carol", short)
    await fail(users, "carol", short)
    await asyncio.sleep(0.1)  # the window passed: the count starts over
    assert await fail(users, "carol", short) is None
    assert await fail(users, "carol", short) is None


# --- users and TOTP -------------------------------------------------------------------------------


async def test_user_records_and_totp_replay(backend: EmbeddedBackend) -> None:
    clock = Clock()
    box = SecretBox(b"\x01" * 32)
    users = UserStore(backend, box, clock=clock)
    secret = totp.new_secret()
    user = await users.put({"username": "carol", "role": "viewer", "password_hash": "h", "disabled": False})
    assert user["created_at"] == user["updated_at"] == clock.now
    user = await users.put({**user, "totp": users.seal_totp("carol", secret), "totp_enabled": True})
    stored = await backend.get("users", "carol")
    assert stored is not None and secret not in str(stored), "the TOTP secret is sealed at rest"
    assert users.totp_secret(user) == secret
    code = totp.code_at(secret, clock.now)
    step = users.totp_step(user, code)
    assert step == int(clock.now // 30)
    used = await users.put({**user, "totp_last_step": step})
    assert users.totp_step(used, code) is None, "a code is accepted once"
    assert users.totp_step(user, "000000" if code != "000000" else "111111") is None
    assert set(public(used)) == {"username", "role", "disabled", "totp_enabled", "created_at", "updated_at",
                                 "locked_until", "effective_role", "active_grants", "last_login_at"}  # fmt: skip
    assert [u["username"] for u in await users.all()] == ["carol"]
    with pytest.raises(NotFound):
        await users.require("dave")
    assert await users.delete("carol") is True


async def test_totp_is_never_stored_without_a_secrets_key(backend: EmbeddedBackend) -> None:
    users = UserStore(backend, None)
    with pytest.raises(SecretsNotConfigured, match="GATEWAY_SECRETS_KEY") as refused:
        users.seal_totp("eve", totp.new_secret())
    assert refused.value.http_status == 503 and refused.value.code == "secrets_not_configured"
    sealed_elsewhere = SecretBox(b"\x02" * 32).seal("totp:eve", "ABC")
    with pytest.raises(SecretsNotConfigured, match="GATEWAY_SECRETS_KEY"):
        users.totp_secret({"username": "eve", "totp": sealed_elsewhere})
    other_key = UserStore(backend, SecretBox(b"\x03" * 32))
    with pytest.raises(SecretsNotConfigured, match="cannot check the TOTP code") as info:
        other_key.totp_secret({"username": "eve", "totp": sealed_elsewhere})
    assert info.value.http_status == 503


async def test_a_legacy_plaintext_secret_is_sealed_on_use(backend: EmbeddedBackend) -> None:
    clock = Clock()
    secret = totp.new_secret()
    legacy = {"username": "old", "role": "viewer", "totp": {"plain": secret}, "totp_enabled": True}
    step = UserStore(backend, None, clock=clock).totp_step(legacy, totp.code_at(secret, clock.now))
    assert step == int(clock.now // 30), "a record from before sealing still logs in"
    assert UserStore(backend, None, clock=clock).totp_used(legacy, step)["totp"] == {"plain": secret}
    box = SecretBox(b"\x04" * 32)
    users = UserStore(backend, box, clock=clock)
    used = await users.put(users.totp_used(legacy, step))
    raw = await backend.get("users", "old")
    assert raw is not None and secret not in str(raw) and "plain" not in raw["totp"]
    assert used["totp_last_step"] == step and box.open("totp:old", raw["totp"]) == secret
    sealed = {**legacy, "totp": box.seal("totp:old", secret)}
    assert users.totp_used(sealed, step)["totp"] == sealed["totp"], "a sealed secret is kept as it is"


async def test_rotate_totp_reseals_old_keys_and_legacy_plaintext(backend: EmbeddedBackend) -> None:
    old, new = SecretBox(b"\x05" * 32), SecretBox(b"\x06" * 32)
    secrets = {name: totp.new_secret() for name in ("a", "b", "c")}
    await backend.put("users", "a", {"username": "a", "totp": old.seal("totp:a", secrets["a"])})
    await backend.put("users", "b", {"username": "b", "totp": {"plain": secrets["b"]}})
    await backend.put("users", "c", {"username": "c", "totp": new.seal("totp:c", secrets["c"])})
    await backend.put("users", "d", {"username": "d", "totp": None})
    reading_both = SecretBox(b"\x06" * 32, b"\x05" * 32)  # as `gateway secrets rotate` opens them
    assert await rotate_totp(backend, reading_both, new) == 2
    for name, secret in secrets.items():
        raw = await backend.get("users", name)
        assert raw is not None and secret not in str(raw) and raw["totp"]["kid"] == new.kid
        assert new.open(f"totp:{name}", raw["totp"]) == secret
    assert await rotate_totp(backend, new, new) == 0, "a second run has nothing left to do"


# --- sessions ------------------------------------------------------------------------------------


def _sessions(backend: EmbeddedBackend, clock: Clock) -> Sessions:
    return Sessions(backend, b"s" * 32, access_ttl_s=3600, refresh_ttl_s=7 * 86400, clock=clock)


async def _role(username: str) -> str | None:
    return "admin" if username == "alice" else None


async def test_login_refresh_rotation_and_reuse(backend: EmbeddedBackend) -> None:
    clock = Clock()
    sessions = _sessions(backend, clock)
    first = await sessions.start("alice", "admin")
    assert first.expires_in == 3600
    claims = sessions.access_claims(first.access_token)
    assert (claims["sub"], claims["role"], claims["exp"] - claims["iat"]) == ("alice", "admin", 3600)
    stored = await backend.scan("refresh_tokens")
    assert len(stored) == 1 and first.refresh_token not in str(stored), "only a hash of the refresh token is kept"
    clock.now += 10
    user, second = await sessions.refresh(first.refresh_token, _role)
    assert user == "alice" and second.refresh_token != first.refresh_token
    with pytest.raises(AuthenticationFailed) as reused:
        await sessions.refresh(first.refresh_token, _role)
    assert reused.value.code == "refresh_token_reused"
    with pytest.raises(AuthenticationFailed) as ended:
        await sessions.refresh(second.refresh_token, _role)
    assert ended.value.code == "session_revoked", "reuse revoked the whole session"
    assert sessions.subject(second.refresh_token) == "alice"
    assert sessions.subject("garbage") == ""


async def test_refresh_token_checks(backend: EmbeddedBackend) -> None:
    clock = Clock()
    sessions = _sessions(backend, clock)
    pair = await sessions.start("alice", "admin")
    with pytest.raises(AuthenticationFailed) as wrong_type:
        await sessions.refresh(pair.access_token, _role)
    assert wrong_type.value.code == "invalid_refresh_token"
    with pytest.raises(AuthenticationFailed) as not_access:
        sessions.access_claims(pair.refresh_token)
    assert not_access.value.code == "invalid_token"
    clock.now += 3601
    with pytest.raises(AuthenticationFailed, match="expired"):
        sessions.access_claims(pair.access_token)
    clock.now += 7 * 86400
    with pytest.raises(AuthenticationFailed, match="expired"):
        await sessions.refresh(pair.refresh_token, _role)


async def test_logout_end_all_and_gone_user(backend: EmbeddedBackend) -> None:
    clock = Clock()
    sessions = _sessions(backend, clock)
    a, b = await sessions.start("alice", "admin"), await sessions.start("alice", "admin")
    other = await sessions.start("bob", "viewer")
    assert await sessions.logout(a.refresh_token) == "alice"
    with pytest.raises(AuthenticationFailed) as after_logout:
        await sessions.refresh(a.refresh_token, _role)
    assert after_logout.value.code == "session_revoked"
    assert await sessions.end_all("alice") == 1
    with pytest.raises(AuthenticationFailed):
        await sessions.refresh(b.refresh_token, _role)
    with pytest.raises(AuthenticationFailed, match="no longer exists"):
        await sessions.refresh(other.refresh_token, _role)  # bob is gone (_role says None)


async def test_tokens_from_another_key_are_refused(backend: EmbeddedBackend) -> None:
    clock = Clock()
    pair = await _sessions(backend, clock).start("alice", "admin")
    stranger = Sessions(backend, b"t" * 32, access_ttl_s=60, refresh_ttl_s=60, clock=clock)
    with pytest.raises(AuthenticationFailed, match="signature"):
        stranger.access_claims(pair.access_token)
