"""Token log probabilities: canonical ``logprobs``/``top_logprobs`` <-> Gemini.

Request (:func:`logprobs_config`): ``logprobs: true`` -> ``generationConfig.responseLogprobs``;
``top_logprobs: n`` -> ``generationConfig.logprobs: n``. Gemini takes ``logprobs`` only with
``responseLogprobs`` and only in 0..20 (OpenAI's own range), so ``top_logprobs`` without
``logprobs: true`` or outside 0..20 is refused by name.

Response (:func:`choice_logprobs`): a candidate's ``logprobsResult`` -> the choice's
``{"content": [{token, logprob, bytes: null, top_logprobs: [...]}], "refusal": null}``.
``chosenCandidates[i]`` is the token at step i, ``topCandidates[i].candidates`` its
alternatives. Gemini leaves zero values out of its JSON, so a missing ``logProbability`` is
0.0 and a missing ``token`` "". Gemini gives token text, not bytes: ``bytes`` is null.
``avgLogprobs`` has no OpenAI field and is dropped. A stream event's ``logprobsResult``
(covering that event's tokens) rides on the chunk carrying the event's text.
"""

from __future__ import annotations

from typing import Any

from gateway.canonical import JSON
from gateway.errors import InvalidRequest

MAX_TOP_LOGPROBS = 20


def logprobs_config(params: JSON) -> JSON:
    """The ``generationConfig`` entries for a canonical request's ``logprobs``/``top_logprobs``."""
    wanted = params.get("logprobs")
    if wanted is not None and not isinstance(wanted, bool):
        raise InvalidRequest("logprobs must be a boolean", param="logprobs", code="invalid_type")
    config: JSON = {"responseLogprobs": True} if wanted else {}
    top = params.get("top_logprobs")
    if top is None:
        return config
    if isinstance(top, bool) or not isinstance(top, int):
        raise InvalidRequest("top_logprobs must be an integer", param="top_logprobs", code="invalid_type")
    if not 0 <= top <= MAX_TOP_LOGPROBS:
        raise InvalidRequest(
            f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS} for Gemini",
            param="top_logprobs",
            code="invalid_value",
        )
    if not wanted:
        raise InvalidRequest("top_logprobs needs logprobs: true", param="top_logprobs", code="invalid_value")
    config["logprobs"] = top
    return config


def choice_logprobs(candidate: JSON) -> JSON | None:
    """A candidate's ``logprobsResult`` -> canonical choice ``logprobs`` (None when absent)."""
    result = candidate.get("logprobsResult")
    if not isinstance(result, dict):
        return None
    chosen = _list(result.get("chosenCandidates"))
    tops = _list(result.get("topCandidates"))
    content = []
    for i, token in enumerate(chosen):
        alternatives = _list(tops[i].get("candidates")) if i < len(tops) and isinstance(tops[i], dict) else []
        content.append({**_token(token), "top_logprobs": [_token(alt) for alt in alternatives]})
    return {"content": content, "refusal": None}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _token(candidate: Any) -> JSON:
    entry = candidate if isinstance(candidate, dict) else {}
    token = entry.get("token")
    logprob = entry.get("logProbability")
    return {
        "token": token if isinstance(token, str) else "",
        "logprob": float(logprob) if isinstance(logprob, int | float) and not isinstance(logprob, bool) else 0.0,
        "bytes": None,
    }
