"""Prompt-cache engines of the provider simulator (pure Python, no HTTP).

The HTTP layer flattens every request into a list of ``Block`` in prefix order and asks an
engine how much of it was served from cache:

- Anthropic (tools -> system -> each message content block): explicit ``cache_control``
  breakpoints, see ``AnthropicCache``.
- OpenAI (instructions/system -> tools -> each input item): automatic prefix caching, see
  ``OpenAICache``.

A prefix is identified by the *sequence* of block keys up to a block boundary, so a change in
any earlier block (e.g. a tool definition) changes every later prefix.  Time comes from the
injected clock (``clock.now()`` in seconds, e.g. ``tenax.testing.tokens.SimClock``) so tests
can expire entries without sleeping.  Both engines are safe to call from several threads.
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from tenax.testing.tokens import block_key, canonical_json, count_tokens

__all__ = [
    "Block",
    "Clock",
    "AnthropicUsage",
    "AnthropicCache",
    "OpenAICache",
    "ANTHROPIC_TTLS",
    "prefix_hashes",
]

#: Seconds an Anthropic cache entry lives without a hit, by ``cache_control.ttl``.
ANTHROPIC_TTLS: dict[str, float] = {"5m": 300.0, "1h": 3600.0}

_PURGE_EVERY = 64  # processed requests between sweeps of expired entries


class Clock(Protocol):
    def now(self) -> float: ...


@dataclass(frozen=True)
class Block:
    """One prompt block, as the cache engines see it."""

    key: str  # stable content hash of this block (canonical JSON of the block)
    tokens: int  # token count of this block
    breakpoint: str | None = None  # Anthropic only: None, "5m" or "1h" (block carries cache_control)

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError("Block.key must be a non-empty string (use tokens.block_key(content))")
        if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 0:
            raise ValueError(f"Block.tokens must be a non-negative int, got {self.tokens!r}")
        if self.breakpoint is not None and self.breakpoint not in ANTHROPIC_TTLS:
            raise ValueError(f"Block.breakpoint must be None, '5m' or '1h', got {self.breakpoint!r}")

    @classmethod
    def of(cls, content: Any, *, tokens: int | None = None, breakpoint: str | None = None) -> "Block":
        """Build a block from its JSON content.  ``tokens`` defaults to ``count_tokens`` of the
        text if ``content`` is a str, else of its canonical JSON."""
        if tokens is None:
            tokens = count_tokens(content if isinstance(content, str) else canonical_json(content))
        return cls(key=block_key(content), tokens=tokens, breakpoint=breakpoint)


@dataclass(frozen=True)
class AnthropicUsage:
    """Input-side usage of one Anthropic request.

    ``input_tokens + cache_creation_input_tokens + cache_read_input_tokens`` is always the
    request's total token count.  ``ephemeral_5m_input_tokens + ephemeral_1h_input_tokens`` is
    ``cache_creation_input_tokens`` split by the TTL of the entries written (the API's
    ``usage.cache_creation`` object).
    """

    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0

    @property
    def total_input_tokens(self) -> int:
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


def prefix_hashes(blocks: list[Block]) -> list[bytes]:
    """Digest of every prefix: element ``i`` identifies the key sequence ``blocks[0..i]``."""
    out: list[bytes] = []
    h = b""
    for block in blocks:
        h = hashlib.sha256(h + b"\x00" + block.key.encode("utf-8")).digest()
        out.append(h)
    return out


def _cumulative(blocks: list[Block]) -> list[int]:
    """Element ``i`` is the token count of ``blocks[0..i]``."""
    out: list[int] = []
    total = 0
    for block in blocks:
        total += block.tokens
        out.append(total)
    return out


@dataclass
class _Entry:
    tokens: int  # token length of the cached prefix
    ttl_s: float  # lifetime after the last write or hit
    expires_at: float


class AnthropicCache:
    """Anthropic prompt caching with explicit ``cache_control`` breakpoints.

    Rules (the documented behaviour of the Messages API):

    - A breakpoint caches the prefix up to and including its block.  The entry is written only
      when that prefix is at least the model's minimum cacheable length.
    - Read: for each breakpoint, the longest live entry whose whole prefix equals the request's
      prefix at that block boundary or at one of the ``lookback_blocks`` boundaries before it.
      The longest hit over all breakpoints is read.
    - ``cache_read_input_tokens`` = tokens of that hit; ``cache_creation_input_tokens`` = tokens
      from the end of the hit to the last breakpoint (when that prefix is cacheable);
      ``input_tokens`` = the rest.
    - Entries live ``5m`` (default) or ``1h``, refreshed on every hit, and are scoped by model.

    ``min_cacheable_tokens`` is one int for every model, or a dict ``{model: min}``; models not
    in the dict use its ``"*"`` entry, or 1024.
    """

    def __init__(
        self,
        clock: Clock,
        min_cacheable_tokens: int | dict[str, int] = 1024,
        lookback_blocks: int = 20,
        max_breakpoints: int = 4,
    ) -> None:
        if isinstance(min_cacheable_tokens, dict):
            for model, value in min_cacheable_tokens.items():
                _check_nonneg_int(f"min_cacheable_tokens[{model!r}]", value)
            self._min_by_model = dict(min_cacheable_tokens)
            self._min_default = self._min_by_model.pop("*", 1024)
        else:
            _check_nonneg_int("min_cacheable_tokens", min_cacheable_tokens)
            self._min_by_model = {}
            self._min_default = min_cacheable_tokens
        _check_nonneg_int("lookback_blocks", lookback_blocks)
        _check_nonneg_int("max_breakpoints", max_breakpoints)
        self.clock = clock
        self.lookback_blocks = lookback_blocks
        self.max_breakpoints = max_breakpoints
        self._entries: dict[tuple[str, bytes], _Entry] = {}
        self._lock = threading.Lock()
        self._calls = 0

    def min_cacheable(self, model: str) -> int:
        """Minimum prefix length (tokens) that ``model`` will cache."""
        return self._min_by_model.get(model, self._min_default)

    def process(self, model: str, blocks: list[Block]) -> AnthropicUsage:
        """Account one request's input and update the cache."""
        breakpoints = [i for i, b in enumerate(blocks) if b.breakpoint is not None]
        if len(breakpoints) > self.max_breakpoints:
            raise ValueError(
                f"A maximum of {self.max_breakpoints} blocks with cache_control may be provided. "
                f"Found {len(breakpoints)}."
            )
        cum = _cumulative(blocks)
        total = cum[-1] if cum else 0
        if not breakpoints:
            return AnthropicUsage(total, 0, 0)

        hashes = prefix_hashes(blocks)
        minimum = self.min_cacheable(model)
        with self._lock:
            now = self.clock.now()
            self._maybe_purge(now)

            # Read: the longest live entry reachable from any breakpoint.
            read = 0
            hit: _Entry | None = None
            for bp in breakpoints:
                for j in range(bp, max(-1, bp - self.lookback_blocks - 1), -1):
                    entry = self._live((model, hashes[j]), now)
                    if entry is not None:
                        if hit is None or cum[j] > read:
                            read, hit = cum[j], entry
                        break
            if hit is not None:
                hit.expires_at = now + hit.ttl_s

            # Write: every breakpoint whose prefix is cacheable gets (or refreshes) its entry.
            last = cum[breakpoints[-1]]
            if last < minimum:
                return AnthropicUsage(total - read, 0, read)
            written = {"5m": 0, "1h": 0}
            done = read  # tokens already accounted as read or written
            for bp in breakpoints:
                length = cum[bp]
                if length < minimum:
                    continue
                ttl = blocks[bp].breakpoint or "5m"
                ttl_s = ANTHROPIC_TTLS[ttl]
                key = (model, hashes[bp])
                entry = self._live(key, now)
                if entry is None:
                    self._entries[key] = _Entry(tokens=length, ttl_s=ttl_s, expires_at=now + ttl_s)
                else:
                    entry.ttl_s = max(entry.ttl_s, ttl_s)
                    entry.expires_at = max(entry.expires_at, now + ttl_s)
                if length > done:
                    written[ttl] += length - done
                    done = length
            creation = last - read
            assert written["5m"] + written["1h"] == creation
            return AnthropicUsage(
                input_tokens=total - last,
                cache_creation_input_tokens=creation,
                cache_read_input_tokens=read,
                ephemeral_5m_input_tokens=written["5m"],
                ephemeral_1h_input_tokens=written["1h"],
            )

    def __len__(self) -> int:
        """Number of live entries."""
        with self._lock:
            now = self.clock.now()
            return sum(1 for e in self._entries.values() if e.expires_at > now)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _live(self, key: tuple[str, bytes], now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= now:
            del self._entries[key]
            return None
        return entry

    def _maybe_purge(self, now: float) -> None:
        self._calls += 1
        if self._calls % _PURGE_EVERY == 0:
            for key in [k for k, e in self._entries.items() if e.expires_at <= now]:
                del self._entries[key]


class OpenAICache:
    """OpenAI automatic prompt caching.

    ``cached_tokens`` is the longest prefix (at block granularity) equal to the prefix of a
    request seen before for the same model and the same ``prompt_cache_key`` (``None`` is a
    scope of its own), rounded down to ``min_tokens + step*k`` (0 under ``min_tokens``).  Every
    processed request's prefixes become available to later requests; entries expire after
    ``ttl_s`` seconds without use, and a hit refreshes them.
    """

    def __init__(self, clock: Clock, min_tokens: int = 1024, step: int = 128, ttl_s: float = 600) -> None:
        _check_nonneg_int("min_tokens", min_tokens)
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ValueError(f"step must be a positive int, got {step!r}")
        if not (isinstance(ttl_s, (int, float)) and math.isfinite(ttl_s) and ttl_s > 0):
            raise ValueError(f"ttl_s must be a positive number of seconds, got {ttl_s!r}")
        self.clock = clock
        self.min_tokens = min_tokens
        self.step = step
        self.ttl_s = float(ttl_s)
        # (model, cache_key, prefix digest) -> expiry time
        self._expiry: dict[tuple[str, str | None, bytes], float] = {}
        self._lock = threading.Lock()
        self._calls = 0

    def round_down(self, tokens: int) -> int:
        """Snap a matched prefix length onto the ``min_tokens + step*k`` grid (0 below it)."""
        if tokens < self.min_tokens or tokens <= 0:
            return 0
        return self.min_tokens + self.step * ((tokens - self.min_tokens) // self.step)

    def process(self, model: str, cache_key: str | None, blocks: list[Block]) -> int:
        """Return ``cached_tokens`` for one request and remember its prefixes."""
        cum = _cumulative(blocks)
        hashes = prefix_hashes(blocks)
        with self._lock:
            now = self.clock.now()
            self._calls += 1
            if self._calls % _PURGE_EVERY == 0:
                for key in [k for k, t in self._expiry.items() if t <= now]:
                    del self._expiry[key]
            matched = 0
            for j in range(len(blocks) - 1, -1, -1):
                if cum[j] < self.min_tokens:
                    break  # shorter prefixes cannot yield cached tokens
                expires = self._expiry.get((model, cache_key, hashes[j]))
                if expires is not None and expires > now:
                    matched = cum[j]
                    break
            # Remember (or refresh) every prefix long enough to be worth a cache hit later.
            until = now + self.ttl_s
            for j in range(len(blocks)):
                if cum[j] >= self.min_tokens and cum[j] > 0:
                    self._expiry[(model, cache_key, hashes[j])] = until
            return self.round_down(matched)

    def __len__(self) -> int:
        """Number of live prefix entries."""
        with self._lock:
            now = self.clock.now()
            return sum(1 for t in self._expiry.values() if t > now)

    def clear(self) -> None:
        with self._lock:
            self._expiry.clear()


def _check_nonneg_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
