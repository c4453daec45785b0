"""The four connection tests of the operations manual, as data plus a pure check each.

A :class:`Probe` is a fixed canonical chat request (nothing in it comes from a
caller) and a function judging the answer's text:

- ``basic``: connectivity. Passes on any non-empty answer.
- ``korean``: a Korean prompt. Passes when at least ``MIN_HANGUL_SHARE`` (30 %) of
  the answer's letters are Hangul: an English answer fails, a Korean answer
  quoting a product name passes.
- ``evaluation``: grade a given sample from 1 to 10. Passes when a number can be
  read (the ``score`` of a JSON answer, else the first number in the text) and
  lies in 1-10.
- ``analysis``: analyse a short text into a JSON object (``response_format``
  ``json_schema``). Passes when the answer is a JSON object with every key of
  ``ANALYSIS_KEYS``.

:func:`health_score` is the share of passed tests, 0-100, each test weighing the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import orjson

from gateway.canonical import JSON

ProbeName = Literal["basic", "korean", "evaluation", "analysis"]
PROBE_NAMES: tuple[ProbeName, ...] = ("basic", "korean", "evaluation", "analysis")

MIN_HANGUL_SHARE = 0.3
SCORE_RANGE = (1.0, 10.0)
ANALYSIS_KEYS = ("summary", "sentiment", "keywords")

_HANGUL = re.compile("[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Probe:
    name: ProbeName
    request: Callable[[str], JSON]
    """alias -> the canonical chat request (a new dict each time)."""
    check: Callable[[str], Verdict]
    """The answer's text -> pass or fail, with the reason."""


def hangul_share(text: str) -> float:
    """Hangul characters among the letters of ``text`` (0.0 when it has no letters)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for c in letters if _HANGUL.match(c)) / len(letters)


def check_basic(text: str) -> Verdict:
    if not text.strip():
        return Verdict(False, "the answer is empty")
    return Verdict(True, f"answered {len(text.strip())} characters")


def check_korean(text: str) -> Verdict:
    if not text.strip():
        return Verdict(False, "the answer is empty")
    share = hangul_share(text)
    if share < MIN_HANGUL_SHARE:
        return Verdict(False, f"the answer is not Korean: {share:.0%} of its letters are Hangul (needs 30%)")
    return Verdict(True, f"{share:.0%} of the answer's letters are Hangul")


def check_evaluation(text: str) -> Verdict:
    score = _score_of(text)
    if score is None:
        return Verdict(False, f"no score in the answer: {_excerpt(text)}")
    low, high = SCORE_RANGE
    if not low <= score <= high:
        return Verdict(False, f"the score {score:g} is outside {low:g}-{high:g}")
    return Verdict(True, f"graded {score:g} (range {low:g}-{high:g})")


def check_analysis(text: str) -> Verdict:
    value = _json_of(text)
    if not isinstance(value, dict):
        return Verdict(False, f"the answer is not a JSON object: {_excerpt(text)}")
    missing = [k for k in ANALYSIS_KEYS if k not in value]
    if missing:
        return Verdict(False, f"the JSON object lacks the key(s): {', '.join(missing)}")
    return Verdict(True, f"a JSON object with {', '.join(ANALYSIS_KEYS)}")


def _score_of(text: str) -> float | None:
    value = _json_of(text)
    if isinstance(value, dict):
        value = value.get("score")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value
    match = _NUMBER.search(text)
    return float(match.group()) if match else None


def _json_of(text: str) -> Any:
    """The JSON value of an answer (a fenced ```json block too), or None."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    try:
        return orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return None


def _excerpt(text: str, limit: int = 80) -> str:
    one_line = " ".join(text.split())
    if not one_line:
        return "(empty)"
    return repr(one_line if len(one_line) <= limit else one_line[: limit - 1] + "…")


# --- the requests ---------------------------------------------------------------

_EVALUATION_SAMPLE = (
    "Question: Why is the sky blue?\n"
    "Answer: Sunlight is scattered by the molecules of the air, and blue light is scattered "
    "much more than red light because of its shorter wavelength (Rayleigh scattering)."
)
_ANALYSIS_TEXT = (
    "The new release cut our response times in half and the support team answered every "
    "question within an hour. Setup took longer than expected."
)


def _chat(alias: str, prompt: str, max_tokens: int, response_format: JSON | None = None) -> JSON:
    req: JSON = {
        "model": alias,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    if response_format is not None:
        req["response_format"] = response_format
    return req


def _schema(name: str, properties: JSON) -> JSON:
    return {
        "type": "json_schema",
        "json_schema": {
            "name": name,
            "schema": {
                "type": "object",
                "properties": properties,
                "required": list(properties),
                "additionalProperties": False,
            },
        },
    }


def basic_request(alias: str) -> JSON:
    return _chat(alias, "Reply with the single word OK.", 16)


def korean_request(alias: str) -> JSON:
    return _chat(alias, "한국어로 한두 문장으로 답해 주세요. 인공지능 게이트웨이는 어떤 일을 하나요?", 200)


def evaluation_request(alias: str) -> JSON:
    prompt = (
        "Grade the following answer for correctness and clarity on a scale from 1 to 10 "
        'and reply with a JSON object {"score": <integer from 1 to 10>}.\n\n' + _EVALUATION_SAMPLE
    )
    return _chat(alias, prompt, 50, _schema("grade", {"score": {"type": "integer"}}))


def analysis_request(alias: str) -> JSON:
    prompt = (
        "Analyse the customer feedback below. Reply with a JSON object with the keys summary "
        "(one sentence), sentiment (positive, negative or mixed) and keywords (a list of words).\n\n" + _ANALYSIS_TEXT
    )
    properties: JSON = {
        "summary": {"type": "string"},
        "sentiment": {"type": "string", "enum": ["positive", "negative", "mixed"]},
        "keywords": {"type": "array", "items": {"type": "string"}},
    }
    return _chat(alias, prompt, 300, _schema("analysis", properties))


PROBES = MappingProxyType(
    {
        "basic": Probe("basic", basic_request, check_basic),
        "korean": Probe("korean", korean_request, check_korean),
        "evaluation": Probe("evaluation", evaluation_request, check_evaluation),
        "analysis": Probe("analysis", analysis_request, check_analysis),
    }
)


def health_score(passed: Sequence[bool]) -> int:
    """0-100: the share of passed tests, each weighing the same (0 for no tests)."""
    if not passed:
        return 0
    return round(100 * sum(passed) / len(passed))
