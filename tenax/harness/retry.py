"""Retries for model calls: our own policy, because the SDKs' retries are disabled.

``call_with_retries`` runs one attempt function until it succeeds, hits a non-retryable
error, or runs out of attempts.  Every attempt is recorded as an ``Attempt``.  Errors from
both SDKs (and raw transport errors raised while a stream is being read) are classified
by ``classify_error`` into a ``Failure``.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

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
# A 5xx whose body says the request itself is invalid (llama.cpp answers a malformed message with a
# 500) gets this many attempts at most: another try rarely helps, and it is never waited out.
INVALID_REQUEST_ATTEMPTS = 3
_INVALID_TYPES = ("invalid_request_error", "badrequesterror", "bad_request", "validation_error")
_INVALID_WORDS = re.compile(r"\b(invalid|missing|expected|malformed|unsupported|not supported|must be|required)\b",
                            re.IGNORECASE)
_STATUS_WORDS = {
    400: "invalid request", 401: "unauthorized", 403: "forbidden", 404: "not found", 408: "request timeout",
    409: "conflict", 413: "request too large", 422: "unprocessable request", 429: "rate limited",
    500: "server error", 502: "bad gateway", 503: "unavailable", 504: "gateway timeout", 529: "overloaded",
}


class RetryPolicy(BaseModel):
    """Exponential backoff with jitter. ``max_attempts`` counts the first try."""

    max_attempts: int = Field(default=6, ge=1)
    base_delay: float = Field(default=1.0, ge=0)
    max_delay: float = Field(default=60.0, ge=0)
    jitter: bool = True
    # A server asking to wait longer than this is not retried in place: the error says how long, and
    # the goal decides (wait it out, or park until then when the daemon runs it).
    max_retry_after_s: float = Field(default=900.0, ge=0)
    # Told of each failed attempt that will be retried, and the wait before the next (a live display).
    on_retry: Callable[[Attempt, int, float], None] | None = Field(default=None, exclude=True)

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
    invalid_request: bool = False  # the server says the request itself is wrong: never transient
    connect_failed: bool = False  # no connection was made at all (refused, DNS failure, connect timeout)

    def describe(self) -> str:
        """``HTTP 529 overloaded: <server message>`` (or the transport's own words)."""
        message = self.message.rstrip(". ")
        if self.status is None:
            return message
        words = _STATUS_WORDS.get(self.status, "client error" if self.status < 500 else "server error")
        return f"HTTP {self.status} {words}: {message}"


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


_TOO_LONG_MARKERS = ("prompt is too long", "context_length_exceeded", "maximum context length", "context window",
                     "exceeds the available context size", "context size has been exceeded")
_TOO_LONG_CODES = ("context_length_exceeded", "exceed_context_size_error")


def _is_too_long(status: int | None, code: str | None, message: str | None, etype: str | None = None) -> bool:
    """The provider's own way of saying the prompt is over the context window: OpenAI's and
    Anthropic's 400, vLLM's wording, llama.cpp's exceed_context_size_error (sometimes a 500)."""
    if status not in (400, 413, 500, None):
        return False
    if code in _TOO_LONG_CODES or etype in _TOO_LONG_CODES:
        return True
    text = (message or "").lower()
    return any(m in text for m in _TOO_LONG_MARKERS)


def _names_invalid_request(etype: str | None, message: str | None) -> bool:
    if (etype or "").lower() in _INVALID_TYPES:
        return True
    return bool(_INVALID_WORDS.search(message or ""))


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and its chain of causes (an SDK error wraps the transport's, which wraps the OS's)."""
    chain = [exc]
    while chain[-1].__cause__ is not None and chain[-1].__cause__ not in chain:
        chain.append(chain[-1].__cause__)
    return chain


def _types(name: str, modules: tuple[str, ...] = ("anthropic", "openai")) -> tuple[type, ...]:
    """The SDKs' exception class ``name``, from the SDKs already imported: an SDK's error can only
    come from an SDK in use, so a goal never imports the SDK of a provider it does not call."""
    return tuple(getattr(m, name) for m in map(sys.modules.get, modules) if m is not None)


def classify_error(exc: BaseException) -> Failure | None:
    """Classify an exception from a model call; ``None`` means "not a provider failure"."""
    if isinstance(exc, _types("APIConnectionError") + _types("TransportError", ("httpx2",))):
        chain = _causes(exc)
        connect = any(isinstance(e, _types("ConnectError", ("httpx2",)) + _types("ConnectTimeout", ("httpx2",)))
                      for e in chain)
        detail = next((str(e) for e in chain[1:] if str(e)), str(exc))
        timeout_types = _types("APITimeoutError") + _types("TimeoutException", ("httpx2",))
        if any(isinstance(e, timeout_types) for e in chain) and not connect:
            return Failure(message=f"timed out: {detail}", retryable=True)
        what = "could not connect" if connect else "connection error"
        return Failure(message=f"{what}: {detail}", retryable=True, connect_failed=connect)
    if isinstance(exc, _types("APIStatusError")):
        etype, code, msg = _error_fields(exc.body)
        status = exc.status_code
        if 200 <= status < 300 and etype in _ANTHROPIC_ERROR_TYPES:
            status = _ANTHROPIC_ERROR_TYPES[etype]  # error event inside a streamed 200
        if code is None:
            code = getattr(exc, "code", None) or getattr(exc, "error_code", None)
        message = msg or getattr(exc, "message", None) or str(exc)
        invalid = status < 500 and status not in RETRYABLE_STATUSES or (
            status >= 500 and _names_invalid_request(etype, message))
        return Failure(
            message=message,
            status=status,
            retryable=status in RETRYABLE_STATUSES,
            retry_after=parse_retry_after(exc.response.headers),
            context_too_long=_is_too_long(status, code, message, etype),
            code=code,
            invalid_request=invalid,
        )
    if isinstance(exc, _types("APIError")):
        # An error event in a stream with no HTTP status of its own.
        etype, code, msg = _error_fields(exc.body)
        status = _ANTHROPIC_ERROR_TYPES.get(etype or "")
        message = msg or str(exc)
        too_long = _is_too_long(status, code, message, etype)
        retryable = not too_long and (status is None or status in RETRYABLE_STATUSES)
        invalid = (status is not None and status < 500 and not retryable) or (etype or "") == "invalid_request_error"
        return Failure(message=message, status=status, retryable=retryable, context_too_long=too_long, code=code,
                       invalid_request=invalid)
    if isinstance(exc, StreamFailed):
        return exc.failure
    if isinstance(exc, json.JSONDecodeError):  # the SDK could not decode an event or body the server sent
        return Failure(message=f"malformed answer from the server (not valid JSON: {exc})", retryable=True)
    return None


class StreamFailed(Exception):
    """Raised by a provider when a stream ends in an error event it parsed itself."""

    def __init__(self, failure: Failure):
        super().__init__(failure.message)
        self.failure = failure


@contextmanager
def misshapen(what: str) -> Iterator[None]:
    """An answer read from its JSON that is not shaped as the API documents it (a field of the
    wrong type, an event out of order) is a retryable failure of that answer, said plainly."""
    try:
        yield
    except (AttributeError, TypeError, KeyError, IndexError) as exc:
        raise StreamFailed(Failure(message=f"{what} is not shaped as the API documents it ({exc!r})",
                                   retryable=True)) from exc


_ADVICE = {
    400: "the provider rejected the request as invalid; this is likely a tenax bug or an option the model does not support",
    401: "check the API key in the provider's key environment variable (ANTHROPIC_API_KEY, OPENAI_API_KEY...)",
    403: "the API key has no access to this model or organization; check the key's permissions",
    404: "check the model name and the base URL",
    413: "the request is too large; compact the conversation or shorten tool outputs",
    422: "the provider could not process the request; check the model's supported options",
}


def _final_error(provider: str, model: str, failure: Failure, attempts: int, *, url: str | None,
                 unreachable: bool) -> ProviderError:
    where = f"{provider}:{model}"
    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
    if failure.context_too_long:
        return ContextTooLong(
            f"{where}: the prompt exceeds the model's context window ({failure.message}); "
            "compact the conversation or use a model with a larger context window",
            status=failure.status,
        )
    if unreachable:
        return ProviderError(
            f"{where}: cannot reach {url or 'the provider'}: {failure.describe()}{tries}. Check the base URL "
            "(host and port) and that the server is running",
            status=None, transient=True, unreachable=True,
        )
    if failure.retryable and not failure.invalid_request:
        return ProviderError(
            f"{where}: {failure.describe()}{tries}. The provider is overloaded, rate-limited or unreachable; "
            "try again later, check the base URL and network, or allow more retries",
            status=failure.status,
            transient=True,  # the goal may wait out an outage
            retry_after=failure.retry_after,  # a long one is a usage limit: the goal waits until then
        )
    advice = _ADVICE.get(failure.status or 0, "the server says the request is invalid; see its message")
    return ProviderError(f"{where}: request failed: {failure.describe()}{tries}. {advice}", status=failure.status)


def call_with_retries(
    attempt_fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    provider: str,
    model: str,
    url: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[T, list[Attempt]]:
    """Run ``attempt_fn`` with retries. Returns its result and every ``Attempt``.

    On final failure raises ``ProviderError`` (or ``ContextTooLong``) whose ``attempts``
    attribute holds the recorded attempts; ``url`` (the base URL) is named when it cannot be reached.
    """
    attempts: list[Attempt] = []
    number = 0
    never_connected = True
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
                or (failure.invalid_request and number >= INVALID_REQUEST_ATTEMPTS)
                or (failure.retry_after is not None and failure.retry_after > policy.max_retry_after_s)
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
            never_connected = never_connected and failure.connect_failed
            if give_up:
                err = _final_error(provider, model, failure, number, url=url, unreachable=never_connected)
                err.attempts = attempts
                raise err from exc
            wait = policy.delay(number, failure.retry_after, rng)
            if policy.on_retry is not None:
                policy.on_retry(attempts[-1], policy.max_attempts, wait)
            sleep(wait)
            continue
        attempts.append(Attempt(number=number, ok=True, status=200, duration_s=clock() - started))
        return result, attempts
