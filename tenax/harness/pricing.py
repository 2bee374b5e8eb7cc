"""Model prices (USD per million tokens) and cost arithmetic.

Where a price comes from, first match wins:

1. a pricing file (``TENAX_PRICING_FILE``, TOML, JSON or YAML; longest model-name prefix);
2. the maintained table of the ``genai-prices`` package, which ships its data in its wheel (no
   network): input, output, cache-read and cache-write prices, the base tier of tiered prices;
3. tenax's own small table ``BUILTIN``, which also supplies every known model's context window
   and output limit (``genai-prices`` knows prices, not the limits a request is shaped by);
4. for a model in no table, a conservative default with ``known=False`` (``estimated=True``):
   shown as unknown, and a USD budget on it is refused unless its price is given.

``openai-chat`` (OpenAI-compatible servers) looks models up among OpenAI's. The file's format::

    ["anthropic:claude-sonnet-4"]        # provider:model-prefix
    input = 3.0
    output = 15.0
    # cache_read / cache_write_5m / cache_write_1h / context_window / max_output are optional
"""

from __future__ import annotations

import functools
import json
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from tenax.core.errors import ConfigError
from tenax.core.messages import Usage

PER_MILLION = 1_000_000
# The most output tokens tenax asks for in one call when the caller leaves it to the model's limits.
OUTPUT_CAP = 32_000


class Price(BaseModel):
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float = Field(ge=0)
    cache_write_5m: float = Field(ge=0)
    cache_write_1h: float = Field(ge=0)
    context_window: int = Field(default=200_000, gt=0)
    max_output: int | None = Field(default=None, gt=0)  # the model's own output limit, when known
    estimated: bool = False
    known: bool = True  # False: the model is in no table; these are the conservative default prices


def anthropic_price(inp: float, out: float, context_window: int = 200_000, max_output: int | None = None) -> Price:
    return Price(
        input=inp,
        output=out,
        cache_read=round(inp * 0.1, 6),
        cache_write_5m=round(inp * 1.25, 6),
        cache_write_1h=round(inp * 2.0, 6),
        context_window=context_window,
        max_output=max_output,
    )


def openai_price(inp: float, out: float, cached: float, context_window: int, max_output: int | None = None) -> Price:
    # OpenAI charges nothing extra to write its cache.
    return Price(
        input=inp, output=out, cache_read=cached, cache_write_5m=inp, cache_write_1h=inp, context_window=context_window,
        max_output=max_output,
    )


def output_limit(price: Price, requested: int | None) -> int | None:
    """``max_tokens`` for a call: the caller's figure, else the model's output limit (or a quarter of
    its context window) capped at ``OUTPUT_CAP``; ``None`` for a model in no table (the server knows
    its own limits better than a guess)."""
    if requested is not None:
        return requested
    if not price.known:
        return None
    return min(price.max_output or price.context_window // 4, OUTPUT_CAP)


BUILTIN: dict[str, dict[str, Price]] = {
    "anthropic": {
        "claude-opus-4": anthropic_price(5.0, 25.0, max_output=32_000),
        "claude-sonnet-4": anthropic_price(3.0, 15.0, max_output=64_000),
        "claude-haiku-4": anthropic_price(1.0, 5.0, max_output=64_000),
    },
    "openai": {
        "gpt-5": openai_price(1.25, 10.0, 0.125, 400_000, max_output=128_000),
        "gpt-5-mini": openai_price(0.25, 2.0, 0.025, 400_000, max_output=128_000),
        "gpt-4.1": openai_price(2.0, 8.0, 0.5, 1_047_576, max_output=32_768),
    },
}

# Conservative: priced like a frontier model so budgets stop early rather than late.
DEFAULT_PRICE = Price(
    input=5.0,
    output=25.0,
    cache_read=0.5,
    cache_write_5m=6.25,
    cache_write_1h=10.0,
    context_window=128_000,
    estimated=True,
    known=False,
)

_FALLBACK_PROVIDER = {"openai-chat": "openai"}


class PriceTable:
    def __init__(self, entries: dict[str, dict[str, Price]] | None = None):
        self.entries: dict[str, dict[str, Price]] = {
            p: dict(models) for p, models in (entries if entries is not None else BUILTIN).items()
        }

        self.overrides: dict[str, dict[str, Price]] = {}  # a pricing file's entries: they win

    def set(self, provider: str, prefix: str, price: Price) -> None:
        self.overrides.setdefault(provider, {})[prefix] = price

    @staticmethod
    def _match(entries: dict[str, dict[str, Price]], provider: str, model: str) -> Price | None:
        for p in (provider, _FALLBACK_PROVIDER.get(provider)):
            table = entries.get(p or "", {})
            best = max((prefix for prefix in table if model.startswith(prefix)), key=len, default=None)
            if best is not None:
                return table[best]
        return None

    def lookup(self, provider: str, model: str) -> Price:
        override = self._match(self.overrides, provider, model)
        if override is not None:
            return override
        own = self._match(self.entries, provider, model)
        maintained = maintained_prices(_FALLBACK_PROVIDER.get(provider, provider), model)
        if maintained is None:
            return own if own is not None else DEFAULT_PRICE
        limits = own or Price(input=0, output=0, cache_read=0, cache_write_5m=0, cache_write_1h=0)
        return limits.model_copy(update={**maintained, "known": True, "estimated": False})


@functools.lru_cache(maxsize=256)
def maintained_prices(provider: str, model: str) -> dict[str, float] | None:
    """The model's prices in the ``genai-prices`` data shipped with its wheel, or None."""
    try:
        from genai_prices import data_snapshot
    except ImportError:  # pragma: no cover - a dependency; an install without it keeps the own table
        return None
    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider, None)
        mp = info.get_prices(datetime.now(timezone.utc))
    except (LookupError, ValueError):
        return None

    def usd(value: Any) -> float | None:
        value = getattr(value, "base", value)  # tiered: the base tier
        return None if value is None else float(value)

    inp, out = usd(mp.input_mtok), usd(mp.output_mtok)
    if inp is None or out is None:
        return None
    read, write = usd(mp.cache_read_mtok), usd(mp.cache_write_mtok)
    write_1h = usd(getattr(mp, "cache_write_1h_mtok", None))
    return {"input": inp, "output": out, "cache_read": inp if read is None else read,
            "cache_write_5m": inp if write is None else write,
            "cache_write_1h": (write if write is not None else inp) if write_1h is None else write_1h}


def default_pricing() -> PriceTable:
    return PriceTable()


def lookup_price(provider: str, model: str, table: PriceTable | None = None) -> Price:
    return (table or default_pricing()).lookup(provider, model)


def _read_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read pricing file {path}: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
        if suffix in (".yaml", ".yml"):
            return yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"pricing file {path} is not valid {suffix[1:].upper()}: {exc}") from None
    raise ConfigError(f"pricing file {path}: unsupported extension {suffix!r}; use .toml, .json, .yaml or .yml")


def load_pricing(path: str | Path, base: PriceTable | None = None) -> PriceTable:
    """The built-in table (or ``base``) overridden by the entries of a pricing file."""
    path = Path(path)
    data = _read_file(path)
    if not isinstance(data, dict):
        raise ConfigError(f"pricing file {path}: expected a table of 'provider:model-prefix' entries")
    base = base or default_pricing()
    table = PriceTable(base.entries)
    table.overrides = {p: dict(m) for p, m in base.overrides.items()}
    for key, fields in data.items():
        provider, sep, prefix = str(key).partition(":")
        if not sep or not prefix:
            raise ConfigError(
                f"pricing file {path}: bad key {key!r}; write 'provider:model-prefix', e.g. 'anthropic:claude-sonnet-4'"
            )
        if not isinstance(fields, dict) or "input" not in fields or "output" not in fields:
            raise ConfigError(f"pricing file {path}: entry {key!r} needs at least 'input' and 'output' (USD per Mtok)")
        try:
            inp = float(fields["input"])
            if provider == "anthropic":
                defaults = anthropic_price(inp, float(fields["output"])).model_dump()
            else:
                defaults = {"cache_read": inp, "cache_write_5m": inp, "cache_write_1h": inp}
            price = Price(**{**defaults, **fields, "estimated": bool(fields.get("estimated", False)), "known": True})
        except (ValidationError, TypeError, ValueError) as exc:
            raise ConfigError(f"pricing file {path}: entry {key!r} is invalid: {exc}") from None
        table.set(provider, prefix, price)
    return table


def cost_usd(price: Price, usage: Usage, cache_ttl: Literal["5m", "1h"] = "5m") -> float:
    """What a call with ``usage`` costs at ``price``."""
    write = price.cache_write_1h if cache_ttl == "1h" else price.cache_write_5m
    return (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_tokens * write
    ) / PER_MILLION


def uncached_cost_usd(price: Price, usage: Usage) -> float:
    """What the same call would cost with no prompt caching at all."""
    return (usage.total_input * price.input + usage.output_tokens * price.output) / PER_MILLION
