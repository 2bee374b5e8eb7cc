"""Token counting, block hashing and the simulated clock of tenax's provider simulator.

Token counting
--------------
``count_tokens`` is THE one place the simulator counts tokens.  It is a deterministic
approximation, not a real tokenizer: ``ceil(len(text) / 4)`` characters-per-token, with a
minimum of 1 for any non-empty text and 0 for the empty string.  Every figure the simulator
reports (input tokens, cache reads and writes, output tokens) is derived from it, so tests
and benches can compute exact expected numbers from the text they send.  Real providers use
real tokenizers and will report different counts for the same text.

Block keys
----------
``block_key`` hashes one prompt block (a tool definition, a system block, a message content
block, ...) into a stable hex digest: sha256 of its canonical JSON (sorted keys, compact
separators, UTF-8).  Two blocks get the same key exactly when their JSON content is equal,
whatever the key order of the dicts they were built from.

Clock
-----
``SimClock`` is the time source of the cache engines.  It follows ``time.monotonic()`` plus
an offset that ``advance()`` grows, so tests can jump past a cache TTL without sleeping.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from typing import Any

__all__ = ["count_tokens", "canonical_json", "block_key", "SimClock"]


def count_tokens(text: str) -> int:
    """Simulated token count of ``text``: ``ceil(len(text)/4)``; 0 for ``""``, else at least 1."""
    if not isinstance(text, str):
        raise TypeError(f"count_tokens expects str, got {type(text).__name__}")
    if not text:
        return 0
    return max(1, math.ceil(len(text) / 4))


def canonical_json(obj: Any) -> str:
    """Deterministic JSON for ``obj``: sorted keys, compact separators, non-ASCII kept as is."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"block content is not plain JSON data: {exc}") from exc


def block_key(obj: Any) -> str:
    """Stable content hash of one prompt block: sha256 hex of its canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


class SimClock:
    """A monotonic clock that tests can move forward.

    ``now()`` returns ``time.monotonic()`` plus the total of all ``advance()`` calls, in seconds.
    It never goes backwards.  Safe to share between threads (e.g. the simulator's HTTP handlers
    and the test that drives it).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0

    def now(self) -> float:
        with self._lock:
            return time.monotonic() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (>= 0); returns the new ``now()``."""
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"SimClock.advance needs a finite, non-negative number of seconds, got {seconds!r}")
        with self._lock:
            self._offset += seconds
            return time.monotonic() + self._offset

    @property
    def offset(self) -> float:
        """Total seconds added by ``advance()`` so far."""
        with self._lock:
            return self._offset

    def __repr__(self) -> str:
        return f"SimClock(offset={self.offset:.3f}s)"
