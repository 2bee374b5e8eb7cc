"""Retries for model calls: our own policy, because the SDKs' retries are disabled.

``call_with_retries`` runs one attempt function until it succeeds, hits a non-retryable
error, or runs out of attempts.  Every attempt is recorded as an ``Attempt``.  Errors from
both SDKs (and raw transport errors raised while a stream is being read) are classified
by ``classify_error`` into a ``Failure``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import anthropic
import httpx2
import openai
from pydantic import BaseModel, Field

from tenax.core.errors import ContextTooLong, ProviderError
from tenax.core.messages import Attempt

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})
# Anthropic sends some errors inside a 200 stream; map their type to the matching status.
_ANTHROPIC_ERROR_TYPES = {
    "overloaded_error": 529,
    "api_error": 500,
    "rate_limit_error": 429,
    "timeout_error": 504,
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
}
# Longest wait we accept from a retry-after header; beyond this we treat it as a failure.
MAX_RETRY_AFTER_S = 900.0


class RetryPolicy(BaseModel):
    """Exponential backoff with jitter. ``max_attempts`` counts the first try."""

    max_attempts: int = Field(default=6, ge=1)
    base_delay: float = Field(default=1.0, ge=0)
    max_delay: float = Field(default=60.0, ge=0)
    jitter: bool = True

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay after failed attempt number ``attempt`` (1-based) with no retry-after hint."""
        delay = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        if self.jitter:
            delay *= 0.5 + 0.5 * (rng or random).random()
        return delay

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random | None = None) -> float:
        """The server's retry-after wins when given (never less than it asks for)."""
        if retry_after is not None:
            return max(0.0, retry_after)
        return self.backoff(attempt, rng)


@dataclass
class Failure:
    """One failed attempt, classified."""

    message: str
    status: int | None = None
    retryable: bool = False
    retry_after: float | None = None
    context_too_long: bool = False
    code: str | None = None


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _error_fields(body: Any) -> tuple[str | None, str | None, str | None]:
    """(type, code, message) from either SDK's error body shape."""
    if not isinstance(body, dict):
        return None, None, (body if isinstance(body, str) and body else None)
    err = body.get("error", body)
    if not isinstance(err, dict):
        return None, None, str(err)
    code = err.get("code")
    etype = err.get("type")
    msg = err.get("message")
    return (
        str(etype) if etype is not None else None,
        str(code) if code is not None else None,
        str(msg) if msg is not None else None,
    )


_TOO_LONG_MARKERS = ("prompt is too long", "context_length_exceeded", "maximum context length", "context window")


def _is_too_long(status: int | None, code: str | None, message: str | None) -> bool:
    if status not in (400, 413, None):
        return False
    if code == "context_length_exceeded":
        return True
    text = (message or "").lower()
    return any(m in text for m in _TOO_LONG_MARKERS)


def classify_error(exc: BaseException) -> Failure | None:
    """Classify an exception from a model call; ``None`` means "not a provider failure"."""
    if isinstance(exc, (anthropic.APITimeoutError, openai.APITimeoutError, httpx2.TimeoutException)):
        return Failure(message=f"timed out: {exc}", retryable=True)
    if isinstance(exc, (anthropic.APIConnectionError, openai.APIConnectionError, httpx2.TransportError)):
        return Failure(message=f"connection error: {exc}", retryable=True)
    if isinstance(exc, (anthropic.APIStatusError, openai.APIStatusError)):
        etype, code, msg = _error_fields(exc.body)
        status = exc.status_code
        if 200 <= status < 300 and etype in _ANTHROPIC_ERROR_TYPES:
            status = _ANTHROPIC_ERROR_TYPES[etype]  # error event inside a streamed 200
        if code is None:
            code = getattr(exc, "code", None) or getattr(exc, "error_code", None)
        message = msg or getattr(exc, "message", None) or str(exc)
        return Failure(
            message=message,
            status=status,
            retryable=status in RETRYABLE_STATUSES,
            retry_after=parse_retry_after(exc.response.headers),
            context_too_long=_is_too_long(status, code, message),
            code=code,
        )
    if isinstance(exc, (anthropic.APIError, openai.APIError)):
        # An error event in a stream with no HTTP status of its own.
        etype, code, msg = _error_fields(exc.body)
        status = _ANTHROPIC_ERROR_TYPES.get(etype or "")
        message = msg or str(exc)
        too_long = _is_too_long(status, code, message)
        retryable = not too_long and (status is None or status in RETRYABLE_STATUSES)
        return Failure(message=message, status=status, retryable=retryable, context_too_long=too_long, code=code)
    if isinstance(exc, StreamFailed):
        return exc.failure
    return None


class StreamFailed(Exception):
    """Raised by a provider when a stream ends in an error event it parsed itself."""

    def __init__(self, failure: Failure):
        super().__init__(failure.message)
        self.failure = failure


_ADVICE = {
    400: "the provider rejected the request as invalid; this is likely a tenax bug or an option the model does not support",
    401: "check the API key in the provider's key environment variable (ANTHROPIC_API_KEY, OPENAI_API_KEY...)",
    403: "the API key has no access to this model or organization; check the key's permissions",
    404: "check the model name and the base URL",
    413: "the request is too large; compact the conversation or shorten tool outputs",
    422: "the provider could not process the request; check the model's supported options",
}


def _final_error(provider: str, model: str, failure: Failure, attempts: int) -> ProviderError:
    where = f"{provider}:{model}"
    status_txt = f"HTTP {failure.status}" if failure.status is not None else "no HTTP status"
    if failure.context_too_long:
        err: ProviderError = ContextTooLong(
            f"{where}: the prompt exceeds the model's context window ({failure.message}); "
            "compact the conversation or use a model with a larger context window",
            status=failure.status,
        )
    elif failure.retryable:
        err = ProviderError(
            f"{where}: call failed after {attempts} attempt(s); last error {status_txt}: {failure.message}. "
            "The provider is overloaded, rate-limited or unreachable; try again later, check the base URL "
            "and network, or allow more retries",
            status=failure.status,
            retryable=False,
            transient=True,  # the goal loop may wait out an outage
        )
    else:
        advice = _ADVICE.get(failure.status or 0, "see the provider's message")
        err = ProviderError(
            f"{where}: request failed ({status_txt}): {failure.message}. {advice}",
            status=failure.status,
        )
    return err


def call_with_retries(
    attempt_fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    provider: str,
    model: str,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[T, list[Attempt]]:
    """Run ``attempt_fn`` with retries. Returns its result and every ``Attempt``.

    On final failure raises ``ProviderError`` (or ``ContextTooLong``) whose ``attempts``
    attribute holds the recorded attempts.
    """
    attempts: list[Attempt] = []
    number = 0
    while True:
        number += 1
        started = clock()
        try:
            result = attempt_fn()
        except Exception as exc:  # classified below; anything unknown propagates unchanged
            failure = classify_error(exc)
            if failure is None:
                raise
            duration = clock() - started
            give_up = (
                not failure.retryable
                or failure.context_too_long
                or number >= policy.max_attempts
                or (failure.retry_after is not None and failure.retry_after > MAX_RETRY_AFTER_S)
            )
            attempts.append(
                Attempt(
                    number=number,
                    ok=False,
                    status=failure.status,
                    error=failure.message[:500],
                    duration_s=duration,
                    retry_after_s=failure.retry_after,
                )
            )
            if give_up:
                err = _final_error(provider, model, failure, number)
                err.attempts = attempts
                raise err from exc
            sleep(policy.delay(number, failure.retry_after, rng))
            continue
        attempts.append(Attempt(number=number, ok=True, status=200, duration_s=clock() - started))
        return result, attempts
