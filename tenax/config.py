"""Settings from the environment (``TENAX_*``). Secrets (API keys) are read from the provider's
own variables at run time and are never written to the store."""

from __future__ import annotations

import os
from pathlib import Path

from typing import Annotated

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tenax.core.errors import ConfigError

DEFAULT_MODEL = "anthropic:claude-sonnet-4-6"
DEFAULT_IMAGE = "tenax-sandbox:default"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TENAX_", extra="ignore")

    db: str | None = None  # any SQLAlchemy URL; default $TENAX_HOME/tenax.db
    model: str = DEFAULT_MODEL
    judge_model: str | None = None  # model of the no-check judge; default: the goal's model
    image: str = DEFAULT_IMAGE
    pricing_file: str | None = None  # JSON/TOML/YAML overrides of the pricing table
    exec_timeout: float = 120.0
    check_timeout: float = 900.0
    # the sandbox's egress allowlist (HOST[:PORT], comma-separated in TENAX_ALLOW_HOSTS); empty: --network decides
    allow_hosts: Annotated[list[str], NoDecode] = []

    @field_validator("allow_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return [h.strip() for h in value.split(",") if h.strip()] if isinstance(value, str) else value
    # the daemon (tenax.daemon)
    concurrency: int = 4  # goals run at once
    notify: str | None = None  # command run when a background goal ends or gets stuck
    worker_retries: int = 3  # a goal whose worker died this many times fails
    worker_backoff_s: float = 10.0  # wait before resuming a goal whose worker died (doubles each time)
    usage_limit_s: float = 120.0  # a provider asking to wait at least this long has hit a usage limit


def tenax_home() -> Path:
    """Where an installation keeps its state (DB, daemon pid file, logs, worktrees): ``$TENAX_HOME``,
    default ``~/.local/share/tenax``. ``TENAX_DB`` moves only the database."""
    env = os.environ.get("TENAX_HOME", "").strip()
    return Path(env).expanduser().resolve() if env else Path.home() / ".local" / "share" / "tenax"


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as e:
        bad = "; ".join(f"TENAX_{'_'.join(map(str, err['loc'])).upper()}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"bad environment setting: {bad}") from None
