"""Config problems name the path and the problem, never a value: a value may be a secret that
came from ``${VAR}`` (gateway/config/loader.py), or a key written in the file itself."""

from __future__ import annotations

import pytest
import yaml

from gateway.config.loader import ConfigError, parse_config, redact, yaml_problem
from tests.unit.config_helpers import problems

SECRET = "sk-planted-Zq8W3x9Lr2Vt7Np4"
ODD = "sk-odd\\'quote\"é-Zq8W3x9Lr2"
"""A value whose ``repr`` differs from its text (backslash, quotes, non-ASCII)."""


def model(field_yaml: str) -> str:
    return f"models: {{a: {{deployments: [{{provider: openai, model: m, {field_yaml}}}]}}}}"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (model('base_url: "${K}"'), "models.a.deployments[0]"),  # the reported defect
        (model('base_url: "${K}/v1"'), "models.a.deployments[0]"),  # a part of a value
        (model('base_url: "ftp://${K}"'), "models.a.deployments[0]"),
        ('reports: {prometheus_url: "${K}"}\nmodels: {}', "reports"),
        ('admin: {allow_ips: ["${K}"]}\nmodels: {}', "admin.allow_ips"),
        ('admin: {trusted_proxies: ["10.0.0.1", "${K}"]}\nmodels: {}', "admin.trusted_proxies"),
        ('budgets: {timezone: "${K}"}\nmodels: {}', "budgets"),
        ('state: {backend: redis, url: "${K}"}\nmodels: {}', "state"),
        ('models: {a: {deployments: [{provider: "${K}", model: m}]}}', "models.a.deployments[0].provider"),
        ('models: {a: {fallbacks: ["${K}"], deployments: [{provider: openai, model: m}]}}', "models.a.fallbacks[0]"),
        (
            "models: {a: {deployments: [{provider: openai, model: m, id: '${K}'},"
            " {provider: openai, model: m, id: '${K}'}]}}",
            "models.a.deployments[1].id",
        ),
        ('server: {port: "${K}"}\nmodels: {}', "server.port"),
    ],
)
@pytest.mark.parametrize("secret", [SECRET, ODD, "123456789012"])
def test_a_value_from_the_environment_is_never_in_a_problem(text: str, path: str, secret: str) -> None:
    found = problems(text, {"K": secret})
    assert any(p.startswith(path) for p in found), found
    joined = "\n".join(found)
    assert secret not in joined and repr(secret)[1:-1] not in joined
    for line in str(ConfigError(found)).splitlines():  # what check-config and serve print
        assert secret not in line


def test_the_reported_defect_names_the_field_and_the_problem() -> None:
    assert problems(model('base_url: "${K}"'), {"K": SECRET}) == [
        "models.a.deployments[0]: base_url must be an http(s) URL (http://host... or https://host...)"
    ]


def test_a_value_quoted_by_a_message_is_replaced_by_its_reference() -> None:
    # An alias named by a fallback comes from ${K}: the problem shows ${K}, not its value.
    found = problems('models: {a: {fallbacks: ["${K}"], deployments: [{provider: openai, model: m}]}}', {"K": SECRET})
    assert found == ["models.a.fallbacks[0]: unknown model alias '${K}'"]


def test_redact_replaces_the_longest_value_first_and_leaves_short_ones() -> None:
    used = {"abcdefgh": "LONG", "abcd": "SHORT", "ab": "TINY"}
    assert redact("x abcdefgh y abcd z ab", used) == "x ${LONG} y ${SHORT} z ab"


@pytest.mark.parametrize(
    "text",
    [
        f'models:\n  a:\n    deployments: [{{provider: openai, model: m, api_key: "{SECRET}\n',
        f"auth:\n  master_key: {SECRET}\n\tkeys: []\n",
        f"models: [{SECRET}\n",
    ],
)
def test_a_yaml_error_gives_line_and_column_never_the_text(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    (problem,) = info.value.problems
    assert problem.startswith("<string>: not valid YAML: ")
    assert " at line " in problem and ", column " in problem
    assert SECRET not in str(info.value)


def test_yaml_problem_of_an_unmarked_error_is_its_kind() -> None:
    assert yaml_problem(yaml.YAMLError("text with a secret")) == "YAMLError"


def test_a_config_without_problems_keeps_every_value() -> None:
    loaded = parse_config(model('base_url: "${K}", api_key: "${K}"'), env={"K": "https://h"})
    dep = loaded.settings.models["a"].deployments[0]
    assert (dep.base_url, dep.api_key) == ("https://h", "https://h")
