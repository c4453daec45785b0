"""gateway.security: JWT (HS256, PyJWT), TOTP (pyotp, RFC 6238 vectors), scrypt passwords, masking."""

from __future__ import annotations

import base64

import jwt as pyjwt
import pyotp
import pytest

from gateway.security import tokens, totp
from gateway.security.masking import is_secret_field, iso_time, mask, mask_fields
from gateway.security.passwords import MIN_N, PasswordHasher, hash_password, verify_password

KEY = b"k" * 32
OTHER_KEY = b"another key that is long enough!!"
NOW = 1_800_000_000.0


def _claims(**over: object) -> dict[str, object]:
    return {"sub": "alice", "role": "admin", "type": "access", "jti": "j1", "iat": NOW, "exp": NOW + 60, **over}


def _without(claim: str) -> dict[str, object]:
    return {k: v for k, v in _claims().items() if k != claim}


def _forge(claims: dict[str, object], algorithm: str = "HS256", key: str | bytes = KEY, **headers: object) -> str:
    """A token made by someone else's PyJWT: any algorithm, any header."""
    return pyjwt.encode(claims, key, algorithm=algorithm, headers=headers or None)


# --- JWT -----------------------------------------------------------------------------------------


def test_jwt_round_trip() -> None:
    token = tokens.encode(_claims(), KEY)
    assert token.count(".") == 2
    assert pyjwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    assert tokens.decode(token, KEY, typ="access", now=NOW) == _claims()
    assert tokens.decode(token.encode(), KEY, typ="access", now=NOW)["sub"] == "alice"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (tokens.encode(_claims(exp=NOW), KEY), "expired"),
        (tokens.encode(_claims(exp=NOW - 1), KEY), "expired"),
        (tokens.encode(_claims(type="refresh"), KEY), "not an access token"),
        (tokens.encode(_without("type"), KEY), "not an access token"),
        (tokens.encode(_claims(), OTHER_KEY), "signature"),
        (_forge(_claims(), "none", ""), "only HS256"),
        (_forge(_claims(), "HS512", KEY * 2), "only HS256"),
        (_forge(_claims(), "HS384", KEY * 2), "only HS256"),
        (_forge(_claims(), kid="x"), "only HS256"),
        (_forge(_claims(), jku="https://evil.example/keys"), "only HS256"),
        (_forge(_without("exp"), typ=None), "iat/exp"),
        (_forge(_without("iat")), "iat/exp"),
        (_forge(_claims(iat="yesterday")), "iat/exp"),
        (_forge(_claims(exp="tomorrow")), "iat/exp"),
        (_forge(_claims(exp=True)), "iat/exp"),
        ("a.b", "malformed"),
        ("a.b.c.d", "malformed"),
        ("!!!.@@@.###", "malformed"),
        ("", "malformed"),
        ("\u00e9.\u00e9.\u00e9", "malformed"),
        ("x" * 5000, "malformed"),
    ],
)
def test_jwt_refusals(token: str, message: str) -> None:
    with pytest.raises(tokens.TokenError, match=message):
        tokens.decode(token, KEY, typ="access", now=NOW)


def test_jwt_size_limit() -> None:
    padded = tokens.encode(_claims(pad="p" * tokens.MAX_TOKEN_BYTES), KEY)
    with pytest.raises(tokens.TokenError, match="malformed"):
        tokens.decode(padded, KEY, typ="access", now=NOW)
    with pytest.raises(tokens.TokenError, match="malformed"):
        tokens.decode(padded.encode(), KEY, typ="access", now=NOW)


def test_jwt_expiry_follows_the_callers_clock() -> None:
    past = 1_000_000_000.0  # 2001: long expired by the wall clock
    token = tokens.encode(_claims(iat=past, exp=past + 60), KEY)
    assert tokens.decode(token, KEY, typ="access", now=past + 59)["exp"] == past + 60
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.decode(token, KEY, typ="access", now=past + 60)
    future = tokens.encode(_claims(iat=4e9, exp=4e9 + 60), KEY)  # 2096: iat in the future is no refusal
    assert tokens.decode(future, KEY, typ="access", now=4e9)["sub"] == "alice"


def test_jwt_refresh_type() -> None:
    refresh = tokens.encode(_claims(type="refresh"), KEY)
    assert tokens.decode(refresh, KEY, typ="refresh", now=NOW)["type"] == "refresh"
    with pytest.raises(tokens.TokenError, match="not a refresh token"):
        tokens.decode(tokens.encode(_claims(), KEY), KEY, typ="refresh", now=NOW)


def test_jwt_tampered_claims_refused() -> None:
    head, _, sig = tokens.encode(_claims(), KEY).split(".")
    _, forged_claims, _ = tokens.encode(_claims(role="admin", sub="mallory"), OTHER_KEY).split(".")
    with pytest.raises(tokens.TokenError, match="signature"):
        tokens.decode(f"{head}.{forged_claims}.{sig}", KEY, typ="access", now=NOW)


def test_jwt_non_object_claims_refused() -> None:
    token = pyjwt.PyJWS().encode(b"[1, 2]", KEY, algorithm="HS256")
    with pytest.raises(tokens.TokenError, match="malformed"):
        tokens.decode(token, KEY, typ="access", now=NOW)


def test_jwt_other_claim_errors_are_token_errors() -> None:
    with pytest.raises(tokens.TokenError, match="invalid token"):
        tokens.decode(tokens.encode(_claims(sub=42), KEY), KEY, typ="access", now=NOW)


def test_signing_key_from_env_or_master_key() -> None:
    assert tokens.signing_key({"GATEWAY_JWT_SECRET": "s" * 32}, "sk-master-1") == b"s" * 32
    derived = tokens.signing_key({}, "sk-master-1")
    assert derived is not None and len(derived) == 32
    assert derived == tokens.signing_key({}, "sk-master-1"), "derivation is deterministic (replicas agree)"
    assert derived != tokens.signing_key({}, "sk-master-2")
    assert b"sk-master-1" not in derived
    assert tokens.signing_key({}, None) is None
    with pytest.raises(ValueError, match="at least 32 bytes"):
        tokens.signing_key({"GATEWAY_JWT_SECRET": "short"}, "sk-master-1")


# --- TOTP (RFC 6238 appendix B) ------------------------------------------------------------------

SEEDS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


def _b32(seed: bytes) -> str:
    return base64.b32encode(seed).decode()


@pytest.mark.parametrize(("t", "sha1", "sha256", "sha512"), VECTORS)
def test_totp_rfc6238_vectors(t: int, sha1: str, sha256: str, sha512: str) -> None:
    for digest, expected in (("sha1", sha1), ("sha256", sha256), ("sha512", sha512)):
        assert totp.code_at(_b32(SEEDS[digest]), t, digits=8, digest=digest) == expected


def test_totp_match_drift_and_bad_codes() -> None:
    secret = _b32(SEEDS["sha1"])
    now = 1111111111.0
    step = int(now // 30)
    code = totp.code_at(secret, now)
    assert len(code) == 6 and code == pyotp.TOTP(secret).at(int(now))
    assert totp.match(secret, code, now) == step
    assert totp.match(secret, code, now + 30) == step, "one step of clock drift is accepted"
    assert totp.match(secret, code, now - 30) == step
    assert totp.match(secret, code, now + 60) is None, "two steps later it is not"
    assert totp.match(secret, code, now - 60) is None
    assert totp.match(secret, code, now + 90, drift_steps=3) == step
    assert totp.match(secret.lower(), code, now) == step, "the secret's case does not matter"
    for bad in ("", "12345", "1234567", "abcdef", "\uff11\uff12\uff13\uff14\uff15\uff16", " " + code[1:]):
        assert totp.match(secret, bad, now) is None


def test_totp_match_says_which_step() -> None:
    secret = totp.new_secret()
    now = 1_800_000_015.0
    for offset in (-1, 0, 1):
        code = totp.code_at(secret, now + 30 * offset)
        assert totp.match(secret, code, now) == int(now // 30) + offset


def test_totp_secrets_and_uri() -> None:
    secret = totp.new_secret()
    assert len(secret) == 32 and secret != totp.new_secret()
    assert len(totp.decode_secret(secret)) == 20
    assert totp.decode_secret(secret.lower()) == totp.decode_secret(secret)
    assert totp.decode_secret(" ".join([secret[:16], secret[16:]])) == totp.decode_secret(secret)
    uri = totp.otpauth_uri(secret, "alice@example")
    assert uri.startswith("otpauth://totp/LLM%20Gateway:alice%40example?secret=" + secret)
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert (parsed.secret, parsed.name, parsed.issuer) == (secret, "alice@example", "LLM Gateway")
    assert (parsed.interval, parsed.digits, parsed.digest().name) == (30, 6, "sha1")


@pytest.mark.parametrize(
    ("secret", "message"),
    [("not base32 !!", "not base32"), ("ABCDEFGH", "at least 112 bits"), ("\u00e9" * 32, "ASCII")],
)
def test_totp_bad_secrets(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        totp.decode_secret(secret)
    with pytest.raises(ValueError, match="the TOTP secret is not"):
        totp.match(secret, "123456", NOW)


def test_totp_defaults_are_six_digit_sha1() -> None:
    assert totp.code_at(_b32(SEEDS["sha1"]), 59) == "287082", "RFC 6238's 94287082, six digits"


# --- passwords (scrypt) --------------------------------------------------------------------------


def test_scrypt_hash_and_verify() -> None:
    stored = hash_password("correct horse battery", MIN_N)
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(MIN_N), "8", "1")
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
    assert "correct horse" not in stored
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert hash_password("correct horse battery", MIN_N) != stored, "a fresh salt each time"


@pytest.mark.parametrize(
    "stored", ["", "bcrypt$1$2$3$4$5", "scrypt$x$8$1$AA==$AA==", "scrypt$16384$8$1$!!$AA==", "a$b"]
)
def test_scrypt_malformed_hash_never_matches(stored: str) -> None:
    assert verify_password("anything", stored) is False


@pytest.mark.parametrize("n", [1024, 3 * 2**14])
def test_scrypt_cost_must_be_a_large_power_of_two(n: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        hash_password("pw", n)


async def test_hasher_off_the_loop_and_unknown_user() -> None:
    hasher = PasswordHasher(MIN_N)
    stored = await hasher.hash("a long password")
    assert await hasher.verify("a long password", stored) is True
    assert await hasher.verify("wrong", stored) is False
    assert await hasher.verify("a long password", None) is False, "no user: a dummy hash, never a match"


# --- masking ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["key", "api_key", "apiKey", "master_key", "password", "new_password", "refresh_token", "access_token", "token",
     "client_secret", "secret", "SECRET_VALUE", "authorization", "totp", "password_hash", "x-api-key"],
)  # fmt: skip
def test_secret_field_names(name: str) -> None:
    assert is_secret_field(name)


@pytest.mark.parametrize("name", ["max_tokens", "key_hint", "keys", "id", "name", "tokens_after", "monkey_business"])
def test_not_secret_field_names(name: str) -> None:
    assert not is_secret_field(name)


def test_mask_values_and_records() -> None:
    assert mask("sk-proj-abcdefghijklmnop") == "sk-p…"
    assert mask("short") == "…"
    record = {
        "name": "svc",
        "key": "sk-gw-abcdefghijklmnopqrstuvwxyz",
        "deployments": [{"api_key": "sk-live-0123456789abcdef", "model": "gpt"}],
        "headers": {"Authorization": "Bearer sk-live-0123456789abcdef"},
        "password": "hunter2hunter2",
        "token": None,
        "secret": {"nested": "x"},
        "max_tokens": 10,
    }
    masked = mask_fields(record)
    assert masked == {
        "name": "svc",
        "key": "sk-g…",
        "deployments": [{"api_key": "sk-l…", "model": "gpt"}],
        "headers": {"Authorization": "Bear…"},
        "password": "hunt…",
        "token": None,
        "secret": "…",
        "max_tokens": 10,
    }
    assert record["key"] == "sk-gw-abcdefghijklmnopqrstuvwxyz", "the original is not changed"


def test_iso_time() -> None:
    assert iso_time(1_800_000_000.4) == "2027-01-15T08:00:00Z"
    assert iso_time(None) is None
