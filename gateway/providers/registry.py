"""Provider kinds: which translator serves each, and the defaults it brings.

OpenAI, Novita and any OpenAI-compatible server are one translator with
different presets; adding another compatible upstream is configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.settings import Deployment
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import Provider, Target
from gateway.providers.gemini import GeminiProvider
from gateway.providers.openai_compat import OpenAICompatProvider
from gateway.providers.openai_responses import OpenAIResponsesProvider


@dataclass(frozen=True)
class Preset:
    provider: Provider
    base_url: str | None
    auth_header: str
    auth_scheme: str
    responses: Provider | None = None
    """The translator for deployments with ``api: responses`` (OpenAI-format presets only)."""


def presets() -> dict[str, Preset]:
    openai, responses = OpenAICompatProvider(), OpenAIResponsesProvider()
    return {
        "openai": Preset(openai, "https://api.openai.com/v1", "authorization", "Bearer", responses),
        "novita": Preset(openai, "https://api.novita.ai/v3/openai", "authorization", "Bearer", responses),
        "openai_compatible": Preset(openai, None, "authorization", "Bearer", responses),
        "anthropic": Preset(AnthropicProvider(), "https://api.anthropic.com/v1", "x-api-key", ""),
        "gemini": Preset(GeminiProvider(), "https://generativelanguage.googleapis.com/v1beta", "x-goog-api-key", ""),
    }


def build_target(dep: Deployment, preset: Preset) -> Target:
    base_url = dep.base_url or preset.base_url
    if base_url is None:  # the schema requires base_url for openai_compatible
        raise ValueError(f"deployment of provider {dep.provider} has no base_url")
    return Target(
        provider=dep.provider,
        model=dep.model,
        base_url=base_url,
        api_key=dep.api_key or None,
        auth_header=(dep.auth_header or preset.auth_header).lower(),
        auth_scheme=preset.auth_scheme if dep.auth_scheme is None else dep.auth_scheme,
        headers={k.lower(): v for k, v in dep.headers.items()},
        api_version=dep.api_version,
        drop_params=frozenset(dep.drop_params),
        reasoning_style=dep.reasoning_style,
        auto_cache=dep.auto_cache,
    )
