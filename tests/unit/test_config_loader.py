"""gateway.config.loader: YAML, requires_env, ${ENV} interpolation, reading the file, and the
repository's default config; every error naming its path."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from gateway.config.loader import ConfigError, load_config, parse_config
from tests.unit.config_helpers import MINIMAL, parse, problems, settings

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "config" / "gateway.yaml"
REAL_ALIASES = {"gpt-4o-mini", "claude-haiku", "gemini-flash", "novita-llama", "text-embedding-3-small"}
DEMO_ALIASES = {"demo-gpt", "demo-claude", "demo-gemini", "demo-embed"}


# --- interpolation ----------------------------------------------------------------


def test_env_var_is_substituted() -> None:
    s = settings('server: {host: "${HOST}"}', {"HOST": "0.0.0.0"})
    assert s.server.host == "0.0.0.0"


def test_default_used_when_unset() -> None:
    s = settings('server: {host: "${HOST:-10.1.2.3}"}')
    assert s.server.host == "10.1.2.3"


def test_env_value_wins_over_default() -> None:
    s = settings('server: {host: "${HOST:-10.1.2.3}"}', {"HOST": "example.internal"})
    assert s.server.host == "example.internal"


def test_empty_default_is_allowed() -> None:
    s = settings(
        """
        models:
          a:
            deployments:
              - {provider: openai, model: m, api_key: "${KEY:-}"}
        """
    )
    assert s.models["a"].deployments[0].api_key == ""


def test_whole_scalar_is_reread_as_yaml_so_port_is_int() -> None:
    s = settings('server: {port: "${PORT:-8081}"}')
    assert s.server.port == 8081
    assert isinstance(s.server.port, int)
    s = settings('server: {port: "${PORT}"}', {"PORT": "9000"})
    assert s.server.port == 9000
    s = settings("router: {timeouts: {connect_s: '${T}'}}", {"T": "2.5"})
    assert s.router.timeouts.connect_s == 2.5


def test_partial_interpolation_stays_a_string() -> None:
    s = settings(
        """
        models:
          a:
            deployments:
              - {provider: openai, model: m, base_url: "http://${HOST:-localhost}:${PORT:-8090}/v1"}
        """,
        {"PORT": "1234"},
    )
    assert s.models["a"].deployments[0].base_url == "http://localhost:1234/v1"


def test_partial_interpolation_of_int_field_is_a_type_error() -> None:
    # "${P}0" is not a whole-scalar reference, so it stays the string "80", and strict ints refuse strings.
    assert problems('server: {port: "${P}0"}', {"P": "8"}) == ["server.port: Input should be a valid integer"]


def test_unset_variable_names_the_path() -> None:
    errs = problems(
        """
        models:
          a:
            deployments:
              - {provider: openai, model: m}
              - {provider: openai, model: m, api_key: "${MISSING_KEY}"}
        """
    )
    assert errs == ["models.a.deployments[1].api_key: environment variable MISSING_KEY is not set"]


def test_every_unset_variable_is_reported() -> None:
    errs = problems('server: {host: "${H1}", port: "${P1}"}')
    assert errs == [
        "server.host: environment variable H1 is not set",
        "server.port: environment variable P1 is not set",
    ]


def test_env_value_is_kept_verbatim_for_string_fields() -> None:
    # BUG (see report): a whole-scalar ${VAR} is re-parsed as YAML, so " #..." in a
    # secret is read as a YAML comment and silently cut off.
    s = settings('auth: {master_key: "${K}"}', {"K": "correct-horse #battery"})
    assert s.auth.master_key == "correct-horse #battery"


# --- requires_env -------------------------------------------------------------------


REQUIRES = """
models:
  main:
    deployments:
      - {provider: openai, model: m}
    fallbacks: [real, other]
    context_window: 1000
    context_window_fallbacks: [real]
  other:
    deployments:
      - {provider: openai, model: m}
  real:
    requires_env: [REAL_KEY]
    deployments:
      - {provider: openai, model: m, api_key: "${REAL_KEY}"}
"""


def test_requires_env_unset_leaves_alias_out_and_drops_references() -> None:
    loaded = parse(REQUIRES)
    assert loaded.disabled_aliases == ["real"]
    assert set(loaded.settings.models) == {"main", "other"}
    main = loaded.settings.models["main"]
    assert main.fallbacks == ["other"]
    assert main.context_window_fallbacks == []


def test_requires_env_empty_value_counts_as_unset() -> None:
    loaded = parse(REQUIRES, {"REAL_KEY": ""})
    assert loaded.disabled_aliases == ["real"]


def test_requires_env_set_keeps_alias() -> None:
    loaded = parse(REQUIRES, {"REAL_KEY": "sk-real"})
    assert loaded.disabled_aliases == []
    assert set(loaded.settings.models) == {"main", "other", "real"}
    assert loaded.settings.models["real"].deployments[0].api_key == "sk-real"
    assert loaded.settings.models["main"].fallbacks == ["real", "other"]
    assert loaded.settings.models["main"].context_window_fallbacks == ["real"]


def test_requires_env_all_variables_needed() -> None:
    text = """
    models:
      x:
        requires_env: [A, B]
        deployments:
          - {provider: openai, model: m}
    """
    assert parse(text, {"A": "1"}).disabled_aliases == ["x"]
    assert parse(text, {"A": "1", "B": "2"}).disabled_aliases == []


def test_requires_env_disabled_alias_dropped_from_auth_key_models() -> None:
    # BUG (see report): references from auth.keys[].models to an alias left out by
    # requires_env are not dropped (fallbacks' are), so the file fails to load
    # with "unknown model alias" for an alias it does define.
    digest = hashlib.sha256(b"sk-client").hexdigest()
    loaded = parse(
        f"""
        auth:
          keys:
            - {{name: k, sha256: '{digest}', models: [main, real]}}
        {textwrap.indent(textwrap.dedent(REQUIRES).strip(), " " * 8).lstrip()}
        """
    )
    assert loaded.disabled_aliases == ["real"]
    assert loaded.settings.auth.keys[0].models == ["main"]


def test_empty_env_value_takes_the_default() -> None:
    cfg = parse_config('server: {port: "${PORT:-8099}"}', env={"PORT": ""})
    assert cfg.settings.server.port == 8099


@pytest.mark.parametrize("secret", ["0123", "+7", "1.50", "1e5", "true", "null", "a #b"])
def test_secrets_from_env_keep_every_character(secret: str) -> None:
    text = 'models: {a: {deployments: [{provider: openai, model: m, api_key: "${K}"}]}}'
    cfg = parse_config(text, env={"K": secret})
    assert cfg.settings.models["a"].deployments[0].api_key == secret


def test_number_fields_take_numbers_from_env() -> None:
    cfg = parse_config('server: {port: "${P}", max_body_bytes: "${B}"}', env={"P": "0081", "B": "2048"})
    assert (cfg.settings.server.port, cfg.settings.server.max_body_bytes) == (81, 2048)


# --- YAML level -------------------------------------------------------------------------


def test_invalid_yaml() -> None:
    errs = problems("models: [")
    assert len(errs) == 1
    assert errs[0].startswith("<string>: not valid YAML: ")


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b", "list"), ("just a string", "str"), ("42", "int")])
def test_top_level_not_a_mapping(text: str, kind: str) -> None:
    assert problems(text) == [f"<string>: the top level must be a mapping, got {kind}"]


def test_parse_config_uses_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_HOST_X", "192.0.2.1")
    loaded = parse_config('server: {host: "${GW_TEST_HOST_X}"}')
    assert loaded.settings.server.host == "192.0.2.1"


# --- load_config -------------------------------------------------------------------------


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{path}: cannot read: ")
    assert "No such file" in info.value.problems[0]


def test_load_config_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"server: {host: \xff\xfe}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems == [f"{path}: not UTF-8 text"]


def test_load_config_names_file_in_yaml_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("- 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems == [f"{path}: the top level must be a mapping, got list"]


def test_load_config_reads_file(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(textwrap.dedent(MINIMAL), encoding="utf-8")
    loaded = load_config(path, env={})
    assert loaded.source == str(path)
    assert list(loaded.settings.models) == ["a"]


# --- the repository's default config -----------------------------------------------------


def test_default_config_loads_with_only_master_key() -> None:
    loaded = load_config(DEFAULT_CONFIG, env={"GATEWAY_MASTER_KEY": "sk-test-12345"})
    s = loaded.settings
    assert set(s.models) == DEMO_ALIASES
    assert set(loaded.disabled_aliases) == REAL_ALIASES
    assert s.auth.master_key == "sk-test-12345"
    assert s.server.port == 8080
    assert s.server.host == "127.0.0.1"
    assert s.models["demo-embed"].kind == "embedding"
    assert s.models["demo-gpt"].fallbacks == ["demo-claude"]
    gpt = s.models["demo-gpt"].deployments[0]
    assert (gpt.provider, gpt.model, gpt.base_url) == ("openai", "mock-gpt", "http://127.0.0.1:8090/v1")
    assert s.models["demo-claude"].deployments[0].provider == "anthropic"
    assert s.models["demo-gemini"].deployments[0].base_url == "http://127.0.0.1:8090/v1beta"


def test_default_config_needs_master_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(DEFAULT_CONFIG, env={})
    assert info.value.problems == ["auth.master_key: environment variable GATEWAY_MASTER_KEY is not set"]


def test_default_config_mock_base_url_override() -> None:
    loaded = load_config(
        DEFAULT_CONFIG, env={"GATEWAY_MASTER_KEY": "sk-test-12345", "MOCK_BASE_URL": "http://mock:9999"}
    )
    assert loaded.settings.models["demo-gpt"].deployments[0].base_url == "http://mock:9999/v1"


def test_default_config_enables_openai_aliases_with_key() -> None:
    loaded = load_config(DEFAULT_CONFIG, env={"GATEWAY_MASTER_KEY": "sk-test-12345", "OPENAI_API_KEY": "sk-openai"})
    s = loaded.settings
    assert set(s.models) == DEMO_ALIASES | {"gpt-4o-mini", "text-embedding-3-small"}
    assert set(loaded.disabled_aliases) == {"claude-haiku", "gemini-flash", "novita-llama"}
    assert s.models["gpt-4o-mini"].deployments[0].api_key == "sk-openai"
    # its fallbacks point at disabled aliases, which are dropped rather than failing validation
    assert s.models["gpt-4o-mini"].fallbacks == []
    assert s.models["text-embedding-3-small"].kind == "embedding"


def test_default_config_all_keys() -> None:
    env = {
        "GATEWAY_MASTER_KEY": "sk-test-12345",
        "OPENAI_API_KEY": "o",
        "ANTHROPIC_API_KEY": "a",
        "GEMINI_API_KEY": "g",
        "NOVITA_API_KEY": "n",
    }
    loaded = load_config(DEFAULT_CONFIG, env=env)
    assert loaded.disabled_aliases == []
    assert set(loaded.settings.models) == DEMO_ALIASES | REAL_ALIASES
    assert loaded.settings.models["gpt-4o-mini"].fallbacks == ["claude-haiku", "gemini-flash"]
    assert loaded.settings.models["claude-haiku"].fallbacks == ["gemini-flash"]


# --- state: spend replicas and the journal ---------------------------------------------------------


def test_spend_replicas_needs_a_redis() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("state: {backend: embedded, spend_replicas: 1}", env={})
    assert "spend_replicas needs a Redis" in str(info.value)


def test_spend_replica_wait_stays_under_the_socket_timeout() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("state: {backend: redis, url: 'redis://r:6379/0', spend_replica_wait_s: 0.5}", env={})
    assert "spend_replica_wait_s" in str(info.value) and "0.4" in str(info.value)


def test_the_spend_journal_defaults_by_backend() -> None:
    redis = "url: 'redis://r:6379/0'"
    assert settings("state: {backend: embedded}").state.journaled
    assert not settings(f"state: {{backend: redis, {redis}}}").state.journaled
    assert settings(f"state: {{backend: redis, {redis}, spend_journal: true}}").state.journaled
    assert not settings("state: {backend: embedded, spend_journal: false}").state.journaled
