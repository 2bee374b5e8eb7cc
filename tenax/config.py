"""Settings from the environment (``TENAX_*``). Secrets (API keys) are read from the provider's
own variables at run time and are never written to the store."""

from __future__ import annotations

import os
import tomllib
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
    # a new goal's budgets when its command line names none (None: no limit; max_turns defaults to 200)
    max_turns: int | None = None
    max_usd: float | None = None
    max_tokens: int | None = None
    max_minutes: float | None = None
    # the sandbox's resource limits
    mem_limit: str = "2g"
    pids_limit: int = 512
    cpus: float = 1.0
    tmp_mb: int = 512
    home_mb: int = 256
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


def config_files(cwd: Path | None = None) -> list[Path]:
    """The config files, lowest precedence first: the user's, then the project's (``.tenax/`` in
    the working directory or the nearest parent that has one). The environment beats both."""
    xdg = os.environ.get("XDG_CONFIG_HOME", "").strip()
    user = (Path(xdg) if xdg else Path.home() / ".config") / "tenax" / "config.toml"
    here = (cwd or Path.cwd()).resolve()
    project = next((d / ".tenax" / "config.toml" for d in (here, *here.parents) if (d / ".tenax" / "config.toml").is_file()),
                   here / ".tenax" / "config.toml")
    return [user, project]


def _read_file(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}; fix or remove it") from None
    unknown = sorted(set(data) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"config file {path}: unknown key {unknown[0]!r}; known keys: "
                          f"{', '.join(sorted(Settings.model_fields))}")
    return data


def load_settings_with_origins(cwd: Path | None = None) -> tuple[Settings, dict[str, str]]:
    """The effective settings and where each value came from (a file, a TENAX_ variable, or default)."""
    values: dict[str, object] = {}
    origins: dict[str, str] = {}
    for path in config_files(cwd):
        for key, value in _read_file(path).items():
            values[key], origins[key] = value, str(path)
    env = {k for k in Settings.model_fields if f"TENAX_{k.upper()}" in os.environ}
    for key in env:  # the environment beats the files: BaseSettings reads it for every key not passed in
        values.pop(key, None)
        origins[key] = f"env TENAX_{key.upper()}"
    try:
        settings = Settings(**values)  # type: ignore[arg-type]
    except ValidationError as e:
        err = e.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "?"
        where = origins.get(key, "the environment")
        where = f"config file {where}" if not where.startswith("env ") else where.removeprefix("env ")
        raise ConfigError(f"bad setting {key!r} in {where}: {err['msg']}") from None
    return settings, {k: origins.get(k, "default") for k in Settings.model_fields}


def load_settings() -> Settings:
    return load_settings_with_origins()[0]
