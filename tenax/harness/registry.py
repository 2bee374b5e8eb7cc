"""Model specs (``provider:name[@base_url]``) and the factory that builds a ``Model``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel

from tenax.core.errors import ConfigError, ModelSwitchRefused
from tenax.harness.retry import RetryPolicy
from tenax.core.protocols import Model

PROVIDERS = ("anthropic", "openai", "openai-chat")
API_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY", "openai-chat": "OPENAI_API_KEY"}
BASE_URL_ENV = {"anthropic": "ANTHROPIC_BASE_URL", "openai": "OPENAI_BASE_URL", "openai-chat": "OPENAI_BASE_URL"}
DEFAULT_BASE_URL = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com/v1",
    "openai-chat": "https://api.openai.com/v1",
}
NO_KEY = "not-needed"


class ModelSpec(BaseModel):
    provider: str
    name: str
    base_url: str | None = None

    def __str__(self) -> str:
        s = f"{self.provider}:{self.name}"
        return f"{s}@{self.base_url}" if self.base_url else s


def validate_base_url(url: str, *, spec: str = "") -> str:
    parsed = urlparse(url)
    where = f" in {spec!r}" if spec else ""
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            f"bad base URL {url!r}{where}: expected http(s)://host[:port][/path], e.g. http://localhost:8000/v1"
        )
    try:
        parsed.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise ConfigError(f"bad base URL {url!r}{where}: the port is not a number") from None
    return url.rstrip("/")


def parse_model_spec(spec: str) -> ModelSpec:
    """Parse ``anthropic:claude-sonnet-4-6``, ``openai:gpt-5.5`` or
    ``openai-chat:qwen3@http://localhost:8000/v1`` (model names may contain ``:``)."""
    text = (spec or "").strip()
    if ":" not in text:
        raise ConfigError(
            f"bad model spec {spec!r}: expected provider:model, e.g. anthropic:claude-sonnet-4-6, "
            "openai:gpt-5.5 or openai-chat:qwen3@http://localhost:8000/v1"
        )
    provider, rest = text.split(":", 1)
    provider = provider.strip().lower()
    if provider not in PROVIDERS:
        raise ConfigError(
            f"unknown model provider {provider!r} in {spec!r}; use anthropic:, openai: or openai-chat:"
        )
    base_url = None
    for marker in ("@http://", "@https://"):
        if marker in rest:
            idx = rest.index(marker)
            rest, base_url = rest[:idx], rest[idx + 1 :]
            break
    else:
        if "@" in rest and "://" in rest.split("@", 1)[1]:
            raise ConfigError(f"bad base URL in {spec!r}: only http:// and https:// URLs are supported")
    name = rest.strip()
    if not name:
        raise ConfigError(f"missing model name in {spec!r}: write {provider}:<model-name>")
    if base_url is not None:
        base_url = validate_base_url(base_url, spec=spec)
    return ModelSpec(provider=provider, name=name, base_url=base_url)


def make_model(
    spec: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    env: Mapping[str, str] = os.environ,
    timeout: float = 600,
    retry: RetryPolicy | None = None,
    **options: Any,
) -> Model:
    """Build the provider for ``spec``. ``base_url``/``api_key`` override the spec and env.

    Extra ``options`` go to the provider (e.g. ``sleep=``, ``cache_ttl=``, ``reasoning=``).
    """
    ms = parse_model_spec(spec)
    explicit_url = base_url or ms.base_url or env.get(BASE_URL_ENV[ms.provider]) or None
    # Always pass a URL so the SDKs never fall back to os.environ behind ``env``'s back.
    url = validate_base_url(explicit_url or DEFAULT_BASE_URL[ms.provider], spec=spec)
    key = api_key or env.get(API_KEY_ENV[ms.provider]) or None
    if not key:
        if ms.provider == "openai-chat" and explicit_url is not None:
            key = NO_KEY  # local OpenAI-compatible servers usually need none
        else:
            raise ConfigError(
                f"no API key for provider {ms.provider}: set {API_KEY_ENV[ms.provider]} (or pass --api-key)"
            )
    if timeout <= 0:
        raise ConfigError(f"bad timeout {timeout!r}: must be a positive number of seconds")
    common: dict[str, Any] = {"api_key": key, "base_url": url, "timeout": timeout, "retry": retry, **options}
    if ms.provider == "anthropic":
        from tenax.harness.anthropic_model import AnthropicModel

        return AnthropicModel(ms.name, **common)
    if ms.provider == "openai":
        from tenax.harness.openai_models import OpenAIResponsesModel

        return OpenAIResponsesModel(ms.name, **common)
    from tenax.harness.openai_models import OpenAIChatModel

    return OpenAIChatModel(ms.name, **common)


def _identity(spec: str) -> tuple[str, str]:
    try:
        ms = parse_model_spec(spec)
        return ms.provider, ms.name
    except ConfigError:
        return "", spec.strip()


def check_model_switch(session_model: str, requested: str) -> None:
    """Refuse to change the main session's model (specs compared by provider and name)."""
    if _identity(session_model) != _identity(requested):
        raise ModelSwitchRefused(
            f"refusing to switch this session from {session_model} to {requested}: switching the main "
            "session's model mid-goal discards its prompt cache; spawn a sub-agent on the other model instead"
        )
