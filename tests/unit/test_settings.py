"""gateway.config.settings: the strict schema, its checks between aliases, every error naming its path
(the configs go through the loader, as they do in the gateway)."""

from __future__ import annotations

import hashlib

import pytest

from gateway.config.loader import parse_config
from gateway.config.settings import deployment_id
from tests.unit.config_helpers import MINIMAL, parse, problems, settings

# --- basics ---------------------------------------------------------------------


def test_empty_document_gives_defaults() -> None:
    loaded = parse("")
    s = loaded.settings
    assert s.models == {}
    assert s.server.port == 8080
    assert s.server.host == "127.0.0.1"
    assert s.router.retry.max_retries == 1
    assert s.router.breaker.consecutive_failures == 5
    assert loaded.disabled_aliases == []
    assert loaded.source == "<string>"


def test_minimal_alias_defaults() -> None:
    alias = settings(MINIMAL).models["a"]
    assert alias.kind == "chat"
    assert alias.strategy == "priority"
    assert alias.fallbacks == []
    dep = alias.deployments[0]
    assert dep.provider == "openai"
    assert dep.model == "m"
    assert dep.weight == 1.0
    assert dep.priority == 0
    assert deployment_id("a", 0, dep) == "a/0"


def test_deployment_id_prefers_explicit_id() -> None:
    alias = settings(
        """
        models:
          a:
            deployments:
              - {provider: openai, model: m, id: primary}
              - {provider: openai, model: m}
        """
    ).models["a"]
    assert deployment_id("a", 0, alias.deployments[0]) == "primary"
    assert deployment_id("a", 1, alias.deployments[1]) == "a/1"


def test_source_is_recorded() -> None:
    assert parse_config("", env={}, source="x.yaml").source == "x.yaml"


# --- schema errors ----------------------------------------------------------------


def test_unknown_key_names_full_path() -> None:
    errs = problems(
        """
        models:
          a:
            deployments:
              - {provider: openai, model: m}
              - {provider: openai, model: m, bogus: 1}
        """
    )
    assert errs == ["models.a.deployments[1].bogus: unknown key"]


def test_unknown_top_level_key() -> None:
    assert problems("servre: {}") == ["servre: unknown key"]


def test_strict_types_reject_string_for_int() -> None:
    assert problems('server: {port: "5"}') == ["server.port: Input should be a valid integer"]


def test_strict_types_reject_list_for_string() -> None:
    errs = problems(
        """
        models:
          a:
            deployments:
              - {provider: openai, model: [gpt]}
        """
    )
    assert errs == ["models.a.deployments[0].model: Input should be a valid string"]


def test_text_fields_take_numbers_as_text() -> None:
    # An all-digit ${SECRET} or model name becomes a number once substituted.
    cfg = parse_config(
        'auth: {master_key: "${K}"}\nmodels: {a: {deployments: [{provider: openai, model: 5, api_key: "${K}"}]}}',
        env={"K": "12345678"},
    )
    assert cfg.settings.auth.master_key == "12345678"
    dep = cfg.settings.models["a"].deployments[0]
    assert (dep.model, dep.api_key) == ("5", "12345678")


def test_weight_must_be_positive_names_path() -> None:
    errs = problems(
        """
        models:
          gpt-4o:
            deployments:
              - {provider: openai, model: m}
              - {provider: openai, model: m, weight: 0}
        """
    )
    assert errs == ["models.gpt-4o.deployments[1].weight: Input should be greater than 0"]


def test_negative_weight_rejected() -> None:
    errs = problems(
        """
        models:
          gpt-4o:
            deployments:
              - {provider: openai, model: m, weight: -1.5}
        """
    )
    assert errs == ["models.gpt-4o.deployments[0].weight: Input should be greater than 0"]


def test_out_of_range_port_and_retries() -> None:
    errs = problems(
        """
        server: {port: 70000}
        router: {retry: {max_retries: 11}}
        """
    )
    assert errs == [
        "server.port: Input should be less than or equal to 65535",
        "router.retry.max_retries: Input should be less than or equal to 10",
    ]


def test_unknown_provider() -> None:
    errs = problems(
        """
        models:
          a:
            deployments:
              - {provider: azure, model: m}
        """
    )
    assert len(errs) == 1
    assert errs[0].startswith("models.a.deployments[0].provider: Input should be ")


def test_unknown_strategy() -> None:
    errs = problems(
        """
        models:
          a:
            strategy: fastest
            deployments:
              - {provider: openai, model: m}
        """
    )
    assert len(errs) == 1
    assert errs[0].startswith("models.a.strategy: Input should be ")


def test_empty_deployments() -> None:
    errs = problems("models: {a: {deployments: []}}")
    assert len(errs) == 1
    assert errs[0].startswith("models.a.deployments: List should have at least 1 item")


def test_missing_required_field() -> None:
    errs = problems("models: {a: {deployments: [{provider: openai}]}}")
    assert errs == ["models.a.deployments[0].model: Field required"]


# --- references between aliases ---------------------------------------------------


def test_dangling_fallback() -> None:
    errs = problems(
        """
        models:
          a:
            deployments: [{provider: openai, model: m}]
            fallbacks: [ghost]
        """
    )
    assert errs == ["models.a.fallbacks[0]: unknown model alias 'ghost'"]


def test_dangling_context_window_fallback() -> None:
    errs = problems(
        """
        models:
          a:
            deployments: [{provider: openai, model: m}]
          b:
            deployments: [{provider: openai, model: m}]
            context_window_fallbacks: [a, ghost]
        """
    )
    assert errs == ["models.b.context_window_fallbacks[1]: unknown model alias 'ghost'"]


def test_self_fallback() -> None:
    errs = problems(
        """
        models:
          a:
            deployments: [{provider: openai, model: m}]
            fallbacks: [a]
        """
    )
    assert errs == ["models.a.fallbacks[0]: an alias cannot fall back to itself"]


def test_self_context_window_fallback() -> None:
    errs = problems(
        """
        models:
          a:
            deployments: [{provider: openai, model: m}]
            context_window_fallbacks: [a]
        """
    )
    assert errs == ["models.a.context_window_fallbacks[0]: an alias cannot fall back to itself"]


def test_chat_alias_cannot_fall_back_to_embedding_alias() -> None:
    errs = problems(
        """
        models:
          chat:
            deployments: [{provider: openai, model: m}]
            fallbacks: [emb]
          emb:
            kind: embedding
            deployments: [{provider: openai, model: e}]
        """
    )
    assert errs == ["models.chat.fallbacks[0]: 'emb' is a embedding model, not chat"]


def test_anthropic_in_embedding_alias() -> None:
    errs = problems(
        """
        models:
          emb:
            kind: embedding
            deployments:
              - {provider: openai, model: e}
              - {provider: anthropic, model: c}
        """
    )
    assert errs == ["models.emb.deployments[1].provider: anthropic has no embeddings"]


def test_duplicate_deployment_ids() -> None:
    errs = problems(
        """
        models:
          a:
            deployments:
              - {provider: openai, model: m, id: same}
              - {provider: openai, model: n, id: same}
        """
    )
    assert errs == ["models.a.deployments[1].id: duplicate deployment id 'same' (also in models.a)"]


def test_explicit_id_colliding_with_generated_id() -> None:
    errs = problems(
        """
        models:
          a:
            deployments:
              - {provider: openai, model: m}
              - {provider: openai, model: n, id: a/0}
        """
    )
    assert errs == ["models.a.deployments[1].id: duplicate deployment id 'a/0' (also in models.a)"]


def test_several_reference_problems_reported_together() -> None:
    errs = problems(
        """
        models:
          a:
            fallbacks: [a, b]
            deployments:
              - {provider: openai, model: m, id: x}
              - {provider: openai, model: m, id: x}
        """
    )
    assert errs == [
        "models.a.fallbacks[0]: an alias cannot fall back to itself",
        "models.a.fallbacks[1]: unknown model alias 'b'",
        "models.a.deployments[1].id: duplicate deployment id 'x' (also in models.a)",
    ]


# --- deployments -------------------------------------------------------------------


def test_openai_compatible_requires_base_url() -> None:
    errs = problems("models: {a: {deployments: [{provider: openai_compatible, model: m}]}}")
    assert errs == ["models.a.deployments[0]: base_url is required for provider openai_compatible"]


def test_openai_compatible_with_base_url_is_fine() -> None:
    s = settings("models: {a: {deployments: [{provider: openai_compatible, model: m, base_url: 'http://h:1/v1'}]}}")
    assert s.models["a"].deployments[0].base_url == "http://h:1/v1"


@pytest.mark.parametrize("url", ["ftp://example.com", "not a url", "http://", "//host/v1"])
def test_bad_base_url(url: str) -> None:
    errs = problems(f"models: {{a: {{deployments: [{{provider: openai, model: m, base_url: '{url}'}}]}}}}")
    # The message names the field, never the value: a base_url may come from ${VAR}.
    assert errs == ["models.a.deployments[0]: base_url must be an http(s) URL (http://host... or https://host...)"]


def test_empty_range_rejected() -> None:
    errs = problems(
        """
        models:
          a:
            deployments:
              - provider: openai
                model: m
                params: {ranges: {temperature: [1, 0]}}
        """
    )
    assert errs == [
        "models.a.deployments[0].params: range of 'temperature' is empty: its low bound is above its high bound"
    ]


def test_range_must_have_two_bounds() -> None:
    errs = problems(
        """
        models:
          a:
            deployments:
              - provider: openai
                model: m
                params: {ranges: {temperature: [0, 1, 2]}}
        """
    )
    assert len(errs) == 1
    assert errs[0].startswith("models.a.deployments[0].params.ranges.temperature: List should have at most 2 items")


def test_degenerate_range_allowed() -> None:
    s = settings(
        """
        models:
          a:
            deployments:
              - provider: openai
                model: m
                params: {ranges: {temperature: [0.5, 0.5]}, max_tokens_cap: 100, defaults: {max_tokens: 10}}
        """
    )
    params = s.models["a"].deployments[0].params
    assert params.ranges == {"temperature": [0.5, 0.5]}
    assert params.max_tokens_cap == 100
    assert params.defaults == {"max_tokens": 10}


def test_timeout_overrides_apply_over_router_defaults() -> None:
    s = settings(
        """
        router: {timeouts: {connect_s: 2, total_s: 60}}
        models:
          a:
            deployments:
              - {provider: openai, model: m, timeouts: {total_s: 5}}
        """
    )
    t = s.models["a"].deployments[0].timeouts.over(s.router.timeouts)
    assert (t.connect_s, t.first_byte_s, t.idle_s, t.total_s) == (2.0, 30.0, 30.0, 5.0)


# --- auth ------------------------------------------------------------------------------


def test_auth_key_sha256_pattern() -> None:
    errs = problems("auth: {keys: [{name: k, sha256: ABC}]}")
    assert errs == ["auth.keys[0].sha256: String should match pattern '^[0-9a-f]{64}$'"]


def test_auth_key_sha256_uppercase_rejected() -> None:
    digest = hashlib.sha256(b"sk-client").hexdigest().upper()
    errs = problems(f"auth: {{keys: [{{name: k, sha256: '{digest}'}}]}}")
    assert errs == ["auth.keys[0].sha256: String should match pattern '^[0-9a-f]{64}$'"]


def test_auth_key_valid() -> None:
    digest = hashlib.sha256(b"sk-client").hexdigest()
    s = settings(
        f"""
        auth:
          keys:
            - {{name: team-a, sha256: '{digest}', models: [a]}}
            - {{name: team-b, sha256: '{digest}'}}
        models:
          a:
            deployments: [{{provider: openai, model: m}}]
        """
    )
    assert s.auth.keys[0].models == ["a"]
    assert s.auth.keys[1].models is None


def test_auth_key_unknown_model_reference() -> None:
    digest = hashlib.sha256(b"sk-client").hexdigest()
    errs = problems(
        f"""
        auth:
          keys:
            - {{name: k, sha256: '{digest}', models: [a, nope]}}
        models:
          a:
            deployments: [{{provider: openai, model: m}}]
        """
    )
    assert errs == ["auth.keys[0].models[1]: unknown model alias 'nope'"]


def test_master_key_too_short() -> None:
    assert problems("auth: {master_key: short}") == ["auth: master_key must be at least 8 characters"]


def test_master_key_of_eight_characters_is_enough() -> None:
    assert settings("auth: {master_key: abcdefgh}").auth.master_key == "abcdefgh"


def test_deployment_ids_are_unique_across_aliases() -> None:
    errs = problems(
        """
        models:
          a: {deployments: [{provider: openai, model: x, id: shared}]}
          b: {deployments: [{provider: openai, model: y, id: shared}]}
        """
    )
    assert errs == ["models.b.deployments[0].id: duplicate deployment id 'shared' (also in models.a)"]


def test_deployment_limits_refuse_max_concurrent() -> None:
    errs = problems(
        """
        models:
          a:
            deployments:
              - {provider: openai, model: m, limits: {rpm: 5, max_concurrent: 2}}
        """
    )
    assert errs == [
        "models.a.deployments[0]: limits.max_concurrent is not used on a deployment: set max_concurrency instead"
    ]


def test_a_static_keys_priority_is_one_of_the_queues_classes() -> None:
    digest = hashlib.sha256(b"sk-client").hexdigest()
    errs = problems(
        f"""
        queue: {{classes: [gold, bronze], default_class: bronze}}
        auth:
          keys:
            - {{name: k, sha256: '{digest}', priority: gold}}
            - {{name: j, sha256: '{digest[::-1]}', priority: silver}}
        """
    )
    assert errs == ["auth.keys[1].priority: 'silver' is not one of queue.classes"]
