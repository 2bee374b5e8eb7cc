"""Model specs (``provider:name[@base_url]``), the provider registration table and the factory
that builds a ``Model``.

Adding a provider is one ``register_provider(...)`` call: its name, the environment variables
for its key and base URL, its default URL, whether a key is needed once a base URL is given,
and a factory (``lazy("module:Class")`` imports the class only when a model is built).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel

from tenax.core.errors import ConfigError, ModelSwitchRefused
from tenax.core.protocols import Model
from tenax.harness.retry import RetryPolicy

NO_KEY = "not-needed"


@dataclass(frozen=True)
class ProviderEntry:
    name: str
    key_env: str  # environment variable holding the API key
    base_url_env: str  # environment variable holding the base URL
    default_url: str
    factory: Callable[..., Model]  # called as factory(model_name, api_key=, base_url=, timeout=, retry=, **options)
    key_needed_with_url: bool = True  # False: a server at an explicit URL (e.g. a local one) needs no key


PROVIDERS: dict[str, ProviderEntry] = {}


def register_provider(name: str, *, key_env: str, base_url_env: str, default_url: str,
                      factory: Callable[..., Model], key_needed_with_url: bool = True) -> ProviderEntry:
    """Add (or replace) the provider ``name``; model specs ``name:model`` then build it."""
    entry = ProviderEntry(name, key_env, base_url_env, default_url, factory, key_needed_with_url)
    PROVIDERS[name] = entry
    return entry


def lazy(target: str) -> Callable[..., Model]:
    """A factory for ``"package.module:ClassName"`` that imports the module on first use."""
    module, _, attr = target.partition(":")

    def build(*args: Any, **kwargs: Any) -> Model:
        return getattr(importlib.import_module(module), attr)(*args, **kwargs)

    build.__qualname__ = f"lazy({target!r})"
    return build


register_provider("anthropic", key_env="ANTHROPIC_API_KEY", base_url_env="ANTHROPIC_BASE_URL",
                  default_url="https://api.anthropic.com",
                  factory=lazy("tenax.harness.anthropic_model:AnthropicModel"))
register_provider("openai", key_env="OPENAI_API_KEY", base_url_env="OPENAI_BASE_URL",
                  default_url="https://api.openai.com/v1",
                  factory=lazy("tenax.harness.openai_models:OpenAIResponsesModel"))
register_provider("openai-chat", key_env="OPENAI_API_KEY", base_url_env="OPENAI_BASE_URL",
                  default_url="https://api.openai.com/v1",
                  factory=lazy("tenax.harness.openai_models:OpenAIChatModel"), key_needed_with_url=False)


def provider_entry(name: str, *, spec: str = "") -> ProviderEntry:
    entry = PROVIDERS.get(name)
    if entry is None:
        names = [f"{p}:" for p in PROVIDERS]
        choices = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
        raise ConfigError(f"unknown model provider {name!r} in {spec!r}; use {choices}")
    return entry


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
    provider_entry(provider, spec=spec)
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
    entry = PROVIDERS[ms.provider]
    explicit_url = base_url or ms.base_url or env.get(entry.base_url_env) or None
    # Always pass a URL so the SDKs never fall back to os.environ behind ``env``'s back.
    url = validate_base_url(explicit_url or entry.default_url, spec=spec)
    key = api_key or env.get(entry.key_env) or None
    if not key:
        if explicit_url is not None and not entry.key_needed_with_url:
            key = NO_KEY  # local OpenAI-compatible servers usually need none
        else:
            hint = "" if entry.key_needed_with_url else (
                f", or point {ms.provider}: at a server that needs none ({ms.provider}:MODEL@http://localhost:8000/v1)")
            raise ConfigError(
                f"no API key for provider {ms.provider}: set the {entry.key_env} environment variable{hint}"
            )
    if timeout <= 0:
        raise ConfigError(f"bad timeout {timeout!r}: must be a positive number of seconds")
    return entry.factory(ms.name, api_key=key, base_url=url, timeout=timeout, retry=retry, **options)


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
