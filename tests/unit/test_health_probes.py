"""gateway.health.probes: each connection test's pass/fail criteria, the score,
and that the mock upstream answers the four probes realistically in every wire
format (through the real translators, over loopback HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from gateway.config.settings import Deployment
from gateway.health.probes import (
    ANALYSIS_KEYS,
    PROBE_NAMES,
    PROBES,
    check_analysis,
    check_basic,
    check_evaluation,
    check_korean,
    hangul_share,
    health_score,
)
from gateway.health.runner import answer_text
from gateway.mock import MockConfig
from gateway.mock.testing import MockServer
from gateway.providers.registry import build_target, presets

# --- basic --------------------------------------------------------------------------


def test_basic_passes_on_any_answer() -> None:
    verdict = check_basic("OK")
    assert verdict.passed and "2 characters" in verdict.reason


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_basic_fails_on_an_empty_answer(text: str) -> None:
    verdict = check_basic(text)
    assert not verdict.passed and verdict.reason == "the answer is empty"


# --- korean -------------------------------------------------------------------------


def test_hangul_share_counts_letters_only() -> None:
    assert hangul_share("안녕하세요") == 1.0
    assert hangul_share("hello") == 0.0
    assert hangul_share("123 !?") == 0.0
    assert hangul_share("AI 게이트웨이") == pytest.approx(5 / 7)


def test_korean_answer_passes() -> None:
    verdict = check_korean("인공지능 게이트웨이는 여러 모델 제공자 앞에서 요청을 전달하고 관리합니다.")
    assert verdict.passed and "Hangul" in verdict.reason


def test_korean_answer_quoting_english_names_passes() -> None:
    assert check_korean("LLM Gateway는 OpenAI와 Anthropic 요청을 하나의 주소로 받아서 전달합니다.").passed


def test_english_answer_fails_the_korean_test() -> None:
    verdict = check_korean("An AI gateway forwards requests to several model providers.")
    assert not verdict.passed
    assert verdict.reason == "the answer is not Korean: 0% of its letters are Hangul (needs 30%)"


def test_mostly_english_answer_with_a_korean_word_fails() -> None:
    verdict = check_korean("An AI gateway (게이트웨이) forwards requests to several providers and models.")
    assert not verdict.passed and "not Korean" in verdict.reason


def test_empty_answer_fails_the_korean_test() -> None:
    assert check_korean("").reason == "the answer is empty"


# --- evaluation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ('{"score": 8}', 8),
        ('{"score": 7.5}', 7.5),
        ('{"score": "9"}', 9),
        ('```json\n{"score": 10}\n```', 10),
        ("8", 8),
        ("I would grade it 6 out of 10.", 6),
        ('{"score": 1}', 1),
    ],
)
def test_evaluation_reads_a_score_in_range(text: str, score: float) -> None:
    verdict = check_evaluation(text)
    assert verdict.passed, verdict.reason
    assert verdict.reason == f"graded {score:g} (range 1-10)"


@pytest.mark.parametrize(("text", "shown"), [('{"score": 42}', "42"), ("0", "0"), ("-3", "-3"), ("11.5", "11.5")])
def test_evaluation_score_out_of_range_fails(text: str, shown: str) -> None:
    verdict = check_evaluation(text)
    assert not verdict.passed
    assert verdict.reason == f"the score {shown} is outside 1-10"


@pytest.mark.parametrize("text", ["", "excellent answer", '{"grade": "good"}', '{"score": true}'])
def test_evaluation_without_a_number_fails(text: str) -> None:
    verdict = check_evaluation(text)
    assert not verdict.passed and verdict.reason.startswith("no score in the answer")


# --- analysis -----------------------------------------------------------------------


def test_analysis_with_every_key_passes() -> None:
    text = orjson.dumps({"summary": "Faster, but setup was slow.", "sentiment": "mixed", "keywords": ["speed"]})
    verdict = check_analysis(text.decode())
    assert verdict.passed and verdict.reason == "a JSON object with summary, sentiment, keywords"


def test_analysis_in_a_code_fence_passes() -> None:
    assert check_analysis('```json\n{"summary": "s", "sentiment": "mixed", "keywords": []}\n```').passed


def test_analysis_missing_keys_fails() -> None:
    verdict = check_analysis('{"summary": "s"}')
    assert not verdict.passed
    assert verdict.reason == "the JSON object lacks the key(s): sentiment, keywords"


@pytest.mark.parametrize("text", ["not json at all", "[1, 2]", '"a string"', ""])
def test_analysis_not_an_object_fails(text: str) -> None:
    verdict = check_analysis(text)
    assert not verdict.passed and verdict.reason.startswith("the answer is not a JSON object")


# --- score and requests ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("passed", "score"),
    [([True] * 4, 100), ([True, True, True, False], 75), ([True, False, False, False], 25), ([False] * 4, 0), ([], 0)],
)
def test_health_score_is_the_share_passed(passed: list[bool], score: int) -> None:
    assert health_score(passed) == score


def test_the_four_probes_in_order() -> None:
    assert PROBE_NAMES == ("basic", "korean", "evaluation", "analysis")
    assert list(PROBES) == list(PROBE_NAMES)


def test_probe_requests_are_fixed_and_bounded() -> None:
    for name in PROBE_NAMES:
        req = PROBES[name].request("some-alias")
        assert req["model"] == "some-alias"
        assert isinstance(req["max_tokens"], int) and req["max_tokens"] <= 300
        assert req is not PROBES[name].request("some-alias"), "each call builds a new request"
        assert set(req) <= {"model", "messages", "max_tokens", "temperature", "response_format"}
    analysis = PROBES["analysis"].request("a")["response_format"]["json_schema"]["schema"]
    assert analysis["required"] == list(ANALYSIS_KEYS)
    assert hangul_share(PROBES["korean"].request("a")["messages"][0]["content"]) == 1.0


def test_answer_text_of_a_completion() -> None:
    assert answer_text({"choices": [{"message": {"content": "hi"}}]}) == "hi"
    assert answer_text({"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"text": "b"}]}}]}) == "ab"
    assert answer_text({"choices": [{"message": {"content": None}}]}) == ""
    assert answer_text({"choices": []}) == ""
    assert answer_text({}) == ""


# --- the mock answers the probes, in each wire format ---------------------------------------


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    with MockServer(MockConfig()) as server:
        yield server


def _deployment(provider: str, model: str, mock: MockServer) -> Deployment:
    base = mock.url + ("/v1beta" if provider == "gemini" else "/v1")
    return Deployment.model_validate({"provider": provider, "model": model, "base_url": base, "api_key": "k"})


@pytest.mark.parametrize(("provider", "model"), [("openai", "m-gpt"), ("anthropic", "m-claude"), ("gemini", "m-gem")])
@pytest.mark.parametrize("name", PROBE_NAMES)
def test_mock_answers_each_probe_so_that_it_passes(mock: MockServer, provider: str, model: str, name: str) -> None:
    preset = presets()[provider]
    target = build_target(_deployment(provider, model, mock), preset)
    probe = PROBES[name]
    wire = preset.provider.chat_request(probe.request("alias"), target, stream=False)
    with httpx.Client(trust_env=False, timeout=10) as http:
        resp = http.request(wire.method, wire.url, headers=wire.headers, content=wire.body)
    assert resp.status_code == 200, resp.text
    answer = preset.provider.chat_response(resp.json(), target)
    verdict = probe.check(answer_text(answer))
    assert verdict.passed, f"{provider} {name}: {verdict.reason} ({answer_text(answer)!r})"


def test_mock_answers_english_to_an_english_prompt(mock: MockServer) -> None:
    """The Korean reply comes from the prompt's language, not from recognising the probe."""
    preset = presets()["openai"]
    target = build_target(_deployment("openai", "m-gpt", mock), preset)
    req = {"model": "a", "messages": [{"role": "user", "content": "Answer in one sentence, please."}]}
    wire = preset.provider.chat_request(req, target, stream=False)
    with httpx.Client(trust_env=False, timeout=10) as http:
        resp = http.request(wire.method, wire.url, headers=wire.headers, content=wire.body)
    text = answer_text(preset.provider.chat_response(resp.json(), target))
    assert not check_korean(text).passed
