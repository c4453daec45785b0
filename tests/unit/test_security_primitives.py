"""gateway.security: JWT (HS256), TOTP (RFC 6238 vectors), scrypt passwords, masking."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest

from gateway.security import jwt, totp
from gateway.security.masking import is_secret_field, iso_time, mask, mask_fields
from gateway.security.passwords import MIN_N, PasswordHasher, hash_password, verify_password

KEY = b"k" * 32
NOW = 1_800_000_000.0


def _claims(**over: object) -> dict[str, object]:
    return {"sub": "alice", "role": "admin", "type": "access", "jti": "j1", "iat": NOW, "exp": NOW + 60, **over}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _forge(header: dict[str, object], claims: dict[str, object], key: bytes = KEY, sig: bytes | None = None) -> str:
    signing = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(claims))}"
    mac = sig if sig is not None else hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64(mac)}"


# --- JWT -----------------------------------------------------------------------------------------


def test_jwt_round_trip() -> None:
    token = jwt.encode(_claims(), KEY)
    assert token.count(".") == 2
    assert jwt.decode(token, KEY, typ="access", now=NOW) == _claims()
    assert jwt.decode(token.encode(), KEY, typ="access", now=NOW)["sub"] == "alice"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (jwt.encode(_claims(exp=NOW), KEY), "expired"),
        (jwt.encode(_claims(exp=NOW - 1), KEY), "expired"),
        (jwt.encode(_claims(type="refresh"), KEY), "not an access token"),
        (jwt.encode(_claims(), b"another key that is long enough!!"), "signature"),
        (_forge({"alg": "none", "typ": "JWT"}, _claims(), sig=b""), "only HS256"),
        (_forge({"alg": "HS512", "typ": "JWT"}, _claims()), "only HS256"),
        (_forge({"alg": "HS256", "typ": "JWT", "kid": "x"}, _claims()), "only HS256"),
        (_forge({"alg": "HS256"}, {k: v for k, v in _claims().items() if k != "exp"}), "iat/exp"),
        (_forge({"alg": "HS256"}, _claims(iat="yesterday")), "iat/exp"),
        (_forge({"alg": "HS256"}, _claims(exp=True)), "iat/exp"),
        ("a.b", "malformed"),
        ("a.b.c.d", "malformed"),
        ("!!!.@@@.###", "malformed"),
        ("x" * 5000, "malformed"),
    ],
)
def test_jwt_refusals(token: str, message: str) -> None:
    with pytest.raises(jwt.TokenError, match=message):
        jwt.decode(token, KEY, typ="access", now=NOW)


def test_jwt_tampered_claims_refused() -> None:
    head, _, sig = jwt.encode(_claims(), KEY).split(".")
    tampered = f"{head}.{_b64(orjson.dumps(_claims(role='admin', sub='mallory')))}.{sig}"
    with pytest.raises(jwt.TokenError, match="signature"):
        jwt.decode(tampered, KEY, typ="access", now=NOW)


def test_jwt_non_object_claims_refused() -> None:
    signing = f"{_b64(orjson.dumps({'alg': 'HS256'}))}.{_b64(b'[1, 2]')}"
    token = f"{signing}.{_b64(hmac.new(KEY, signing.encode(), hashlib.sha256).digest())}"
    with pytest.raises(jwt.TokenError, match="malformed"):
        jwt.decode(token, KEY, typ="access", now=NOW)


def test_signing_key_from_env_or_master_key() -> None:
    assert jwt.signing_key({"GATEWAY_JWT_SECRET": "s" * 32}, "sk-master-1") == b"s" * 32
    derived = jwt.signing_key({}, "sk-master-1")
    assert derived is not None and len(derived) == 32
    assert derived == jwt.signing_key({}, "sk-master-1"), "derivation is deterministic (replicas agree)"
    assert derived != jwt.signing_key({}, "sk-master-2")
    assert b"sk-master-1" not in derived
    assert jwt.signing_key({}, None) is None
    with pytest.raises(ValueError, match="at least 32 bytes"):
        jwt.signing_key({"GATEWAY_JWT_SECRET": "short"}, "sk-master-1")


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


@pytest.mark.parametrize(("t", "sha1", "sha256", "sha512"), VECTORS)
def test_totp_rfc6238_vectors(t: int, sha1: str, sha256: str, sha512: str) -> None:
    for digest, expected in (("sha1", sha1), ("sha256", sha256), ("sha512", sha512)):
        assert totp.totp(SEEDS[digest], t, digits=8, digest=digest) == expected


def test_totp_match_drift_and_bad_codes() -> None:
    secret = base64.b32encode(SEEDS["sha1"]).decode()
    now = 1111111111.0
    step = int(now // 30)
    code = totp.totp(SEEDS["sha1"], now)
    assert len(code) == 6
    assert totp.match(secret, code, now) == step
    assert totp.match(secret, code, now + 30) == step, "one step of clock drift is accepted"
    assert totp.match(secret, code, now - 30) == step
    assert totp.match(secret, code, now + 90) is None, "three steps later it is not"
    for bad in ("", "12345", "1234567", "abcdef", "\uff11\uff12\uff13\uff14\uff15\uff16"):
        assert totp.match(secret, bad, now) is None


def test_totp_secrets_and_uri() -> None:
    secret = totp.new_secret()
    assert len(totp.decode_secret(secret)) == 20
    assert totp.decode_secret(secret.lower()) == totp.decode_secret(secret)
    with pytest.raises(ValueError, match="base32"):
        totp.decode_secret("not base32 !!")
    uri = totp.otpauth_uri(secret, "alice@example")
    assert uri.startswith("otpauth://totp/LLM%20Gateway:alice%40example?secret=" + secret)
    assert "period=30" in uri and "digits=6" in uri


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
