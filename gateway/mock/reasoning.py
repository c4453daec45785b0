"""Generated reasoning text and the mock's verifiable signatures.

The mock signs what a client must send back unchanged, so a gateway that alters it is
caught the way the real APIs catch it:

- Anthropic ``thinking`` blocks: ``signature`` = base64(HMAC-SHA256(secret, thinking text));
- OpenAI Responses ``reasoning`` items: ``encrypted_content`` = ``"gAAAAAB"`` +
  urlsafe-base64(HMAC-SHA256(secret, item id)) (the real ones are Fernet tokens, ``gAAAAAB...``);
- Gemini ``thoughtSignature`` of a part: base64(HMAC-SHA256(secret, the part's text, or its
  function call's name and JSON args)). The mock only checks that a signature is present
  (see :mod:`gateway.mock.gemini_thinking`); tests compare it with :func:`sign_thought`.

The secret is a fixed constant of the mock (it is not a secret: tests may sign with it too).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from itertools import cycle, islice

MOCK_SECRET = b"gateway-mock-signing-key-v1"
ENCRYPTED_PREFIX = "gAAAAAB"
_HEAD = ("Mock", "thinking", "about:")
_FILLER = ("considering", "the", "question", "step", "by", "step")


def thinking_words(last_user: str, count: int) -> list[str]:
    """``Mock thinking about:`` + the user's words, padded with filler, exactly ``count`` words."""
    words = [*_HEAD, *last_user.split()]
    if len(words) < count:
        words += islice(cycle(_FILLER), count - len(words))
    return words[: max(count, 0)]


def thinking_budget(wanted: int, budget: int | None, max_tokens: int | None) -> int:
    """Words of thinking: ``wanted``, at most ``budget``, and leaving one token of ``max_tokens``."""
    count = wanted if budget is None else min(wanted, budget)
    return count if max_tokens is None else max(min(count, max_tokens - 1), 0)


def _mac(kind: bytes, data: str) -> bytes:
    return hmac.new(MOCK_SECRET, kind + b"\x00" + data.encode(), hashlib.sha256).digest()


def sign_thinking(text: str) -> str:
    """The ``signature`` of a thinking block with ``text``."""
    return base64.b64encode(_mac(b"thinking", text)).decode()


def verify_thinking(text: str, signature: str) -> bool:
    return hmac.compare_digest(sign_thinking(text).encode(), signature.encode())


def encrypted_content(item_id: str) -> str:
    """The ``encrypted_content`` of the reasoning item ``item_id``."""
    return ENCRYPTED_PREFIX + base64.urlsafe_b64encode(_mac(b"reasoning", item_id)).decode()


def verify_encrypted_content(item_id: str, value: str) -> bool:
    return hmac.compare_digest(encrypted_content(item_id).encode(), value.encode())


def sign_thought(data: str) -> str:
    """The ``thoughtSignature`` the mock puts on a Gemini part whose content is ``data``."""
    return base64.b64encode(_mac(b"thought", data)).decode()


def abbreviate(value: str) -> str:
    """``gAAA...DQ==``: how OpenAI quotes an encrypted content in its errors."""
    return f"{value[:4]}...{value[-4:]}" if len(value) > 8 else value
