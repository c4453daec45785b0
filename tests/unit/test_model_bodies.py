"""gateway.admin.model_bodies: body parsing, secrets rules, masking, merge patch."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.admin.model_bodies import (
    allowed_env,
    check_secrets,
    config_error,
    literal_secrets,
    mask,
    masked,
    merge_patch,
    secret_name,
    split_body,
    unmask,
)
from gateway.errors import InvalidRequest


def dep(**fields: Any) -> dict[str, Any]:
    return {"provider": "openai", "model": "m", **fields}


def test_split_body_keeps_config_fields_and_ignores_read_only_ones() -> None:
    body = split_body(
        {"name": "x", "disabled": True, "source": "api", "active": False, "deployments": [], "kind": "chat"}
    )
    assert (body.name, body.disabled, body.spec) == ("x", True, {"deployments": [], "kind": "chat"})


def test_mask_shows_at_most_the_last_four_characters() -> None:
    assert mask("sk-0123456789abcdef") == "****cdef"
    assert mask("short-secret") == "****"


def test_masked_hides_literals_but_shows_references() -> None:
    spec = {
        "deployments": [
            dep(api_key="sk-0123456789abcdef", headers={"Authorization": "Bearer xyz", "X-Trace": "on"}),
            dep(api_key="${OPENAI_API_KEY}"),
            dep(api_key="secret:openai-prod"),
        ]
    }
    shown = masked(spec)
    assert shown["deployments"][0]["api_key"] == "****cdef"
    assert shown["deployments"][0]["headers"] == {"Authorization": "****", "X-Trace": "on"}
    assert shown["deployments"][1]["api_key"] == "${OPENAI_API_KEY}"
    assert shown["deployments"][2]["api_key"] == "secret:openai-prod"
    assert spec["deployments"][0]["api_key"] == "sk-0123456789abcdef"  # a copy


def test_unmask_puts_back_the_current_value_by_id_then_by_position() -> None:
    current = {"deployments": [dep(id="a", api_key="sk-aaaaaaaaaaaa1111"), dep(id="b", api_key="sk-bbbbbbbbbbbb2222")]}
    sent = {"deployments": [dep(id="a", api_key="****1111"), dep(api_key="****2222")]}
    out = unmask(sent, current)
    assert out["deployments"][0]["api_key"] == "sk-aaaaaaaaaaaa1111"  # matched by id
    assert out["deployments"][1]["api_key"] == "sk-bbbbbbbbbbbb2222"  # matched by position
    reordered = unmask({"deployments": [dep(id="b", api_key="****2222")]}, current)
    assert reordered["deployments"][0]["api_key"] == "sk-bbbbbbbbbbbb2222"
    with pytest.raises(InvalidRequest) as exc:  # position 1 is "b", whose mask is ****2222
        unmask({"deployments": [dep(), dep(api_key="****1111")]}, current)
    assert exc.value.param == "deployments[1].api_key"


def test_unmask_of_a_header() -> None:
    current = {"deployments": [dep(headers={"X-Api-Key": "k-0123456789abcdef"})]}
    out = unmask({"deployments": [dep(headers={"X-Api-Key": "****cdef"})]}, current)
    assert out["deployments"][0]["headers"]["X-Api-Key"] == "k-0123456789abcdef"
    with pytest.raises(InvalidRequest) as exc:
        unmask({"deployments": [dep(headers={"X-Api-Key": "****0000"})]}, current)
    assert exc.value.param == "deployments[0].headers.X-Api-Key"


def test_allowed_env_is_what_the_file_models_reference() -> None:
    file_models = {
        "a": {"deployments": [dep(api_key="${OPENAI_API_KEY}", base_url="${VLLM_URL:-http://x}")]},
        "b": {"requires_env": ["ANTHROPIC_API_KEY"], "deployments": [dep()]},
    }
    assert allowed_env(file_models) == {"OPENAI_API_KEY", "VLLM_URL", "ANTHROPIC_API_KEY"}
    assert allowed_env(None) == set()


def test_check_secrets_allows_listed_variables_and_references() -> None:
    check_secrets({"deployments": [dep(api_key="${OPENAI_API_KEY}"), dep(api_key="secret:x")]}, {"OPENAI_API_KEY"})
    with pytest.raises(InvalidRequest) as exc:
        check_secrets({"description": "${SECRET_THING}", "deployments": [dep()]}, {"OPENAI_API_KEY"})
    assert exc.value.param == "description" and exc.value.code == "env_not_allowed"
    assert "OPENAI_API_KEY" in exc.value.message


def test_literal_secrets_lists_what_must_be_sealed() -> None:
    spec = {"deployments": [dep(api_key="sk-1"), dep(api_key="${A}", headers={"Cookie": "c=1", "Accept": "x"})]}
    assert [(p, v) for p, _, _, v in literal_secrets(spec)] == [
        ("deployments[0].api_key", "sk-1"),
        ("deployments[1].headers.Cookie", "c=1"),
    ]


def test_secret_names_are_valid_store_names() -> None:
    assert secret_name("team/gpt", "deployments[0].api_key") == "model.team_gpt.deployments_0_.api_key"
    long = secret_name("a" * 128, "deployments[0].headers.X-Api-Key")
    assert len(long) == 100 and long != secret_name("a" * 127, "deployments[0].headers.X-Api-Key")


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": 1, "b": 2}, {"b": None, "c": 3}, {"a": 1, "c": 3}),
        ({"a": {"x": 1, "y": 2}}, {"a": {"y": None, "z": 3}}, {"a": {"x": 1, "z": 3}}),
        ({"list": [1, 2]}, {"list": [3]}, {"list": [3]}),
        ({"a": 1}, {"a": {"b": 1}}, {"a": {"b": 1}}),
    ],
)
def test_merge_patch_follows_rfc_7386(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


def test_config_error_names_the_field_inside_the_body() -> None:
    err = config_error("x", ["models.x.deployments[0].weight: Input should be greater than 0"])
    assert (err.http_status, err.param, err.code) == (400, "deployments[0].weight", "invalid_model")
    err = config_error("x", ["models.x: Field required"])
    assert err.param == "body"
    err = config_error("x", ["models.y.fallbacks[0]: unknown model alias 'x'"], conflict=True)
    assert (err.http_status, err.param, err.code) == (409, "models.y.fallbacks[0]", "config_conflict")
