"""Settings from the environment (``TENAX_*``). Secrets (API keys) are read from the provider's
own variables at run time and are never written to the store."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tenax.core.errors import ConfigError

DEFAULT_MODEL = "anthropic:claude-sonnet-4-6"
DEFAULT_IMAGE = "tenax-sandbox:default"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TENAX_", extra="ignore")

    db: str | None = None  # any SQLAlchemy URL; default ~/.local/share/tenax/tenax.db
    model: str = DEFAULT_MODEL
    judge_model: str | None = None  # model of the no-check judge; default: the goal's model
    image: str = DEFAULT_IMAGE
    pricing_file: str | None = None  # JSON/TOML/YAML overrides of the pricing table
    exec_timeout: float = 120.0
    check_timeout: float = 900.0


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as e:
        bad = "; ".join(f"TENAX_{'_'.join(map(str, err['loc'])).upper()}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"bad environment setting: {bad}") from None
