"""Budgets: turns, tokens (uncached input + output), USD and wall time."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from tenax.core.errors import ConfigError


class Budgets(BaseModel):
    max_turns: int | None = Field(default=200)
    max_tokens: int | None = None  # uncached input (incl. cache writes) + output
    max_usd: float | None = None
    max_minutes: float | None = None

    @field_validator("max_turns", "max_tokens", "max_usd", "max_minutes")
    @classmethod
    def _positive(cls, v: Any, info: Any) -> Any:
        if v is not None and v <= 0:
            raise ValueError(f"{info.field_name} must be positive, got {v}")
        return v

    @classmethod
    def parse(cls, **kw: Any) -> "Budgets":
        try:
            return cls(**kw)
        except ValueError as e:  # pydantic.ValidationError is a ValueError
            msgs = "; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())  # type: ignore[attr-defined]
            raise ConfigError(f"bad budget: {msgs}") from None


class Spent(BaseModel):
    turns: int = 0
    tokens: int = 0
    usd: float = 0.0
    minutes: float = 0.0

    @classmethod
    def of_goal(cls, goal: Any, extra_seconds: float = 0.0) -> "Spent":
        return cls(
            turns=goal.turns,
            # uncached input (cache writes were not served from cache either) + output
            tokens=goal.input_tokens + goal.cache_write_tokens + goal.output_tokens,
            usd=goal.cost_usd,
            minutes=(goal.elapsed_s + extra_seconds) / 60.0,
        )


_LIMITS = (("turns", "max_turns"), ("tokens", "max_tokens"), ("usd", "max_usd"), ("minutes", "max_minutes"))


def exhausted(b: Budgets, s: Spent) -> str | None:
    """Name of the first budget that is used up, or None."""
    for spent_name, limit_name in _LIMITS:
        limit = getattr(b, limit_name)
        if limit is not None and getattr(s, spent_name) >= limit:
            return limit_name
    return None


def fraction_used(b: Budgets, s: Spent) -> float:
    fracs = [getattr(s, sn) / getattr(b, ln) for sn, ln in _LIMITS if getattr(b, ln)]
    return max(fracs, default=0.0)


def near_end(b: Budgets, s: Spent, at: float = 0.85) -> bool:
    """Time to tell the model to wrap up: most of a budget is used, or the next turn is the last."""
    last_turn = b.max_turns is not None and s.turns >= b.max_turns - 1
    return last_turn or fraction_used(b, s) >= at


def describe(b: Budgets, s: Spent) -> str:
    parts = []
    fmt = {"turns": "{:.0f}", "tokens": "{:.0f}", "usd": "${:.4f}", "minutes": "{:.1f} min"}
    for sn, ln in _LIMITS:
        limit = getattr(b, ln)
        used = fmt[sn].format(getattr(s, sn))
        if limit is None:
            parts.append(f"{sn}: {used} used (no limit)")
        else:
            left = fmt[sn].format(max(limit - getattr(s, sn), 0))
            parts.append(f"{sn}: {used} used, {left} left")
    return "; ".join(parts)
