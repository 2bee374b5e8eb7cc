"""What every provider shares: the constructor, the retried call and the ``ModelResponse`` it returns.

A provider subclasses ``Provider`` and supplies ``client_class`` (its SDK client), ``_body`` (the SDK
call's keyword arguments for one ``Call``), ``_attempt`` (one call of the API) and ``_reply`` (its
answer as neutral parts). ``build_request`` and ``complete`` are written once, here; ``complete``
runs the attempts with our own retries (the SDK's are switched off).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from tenax.core.messages import Message, ModelResponse, ToolSpec, Usage
from tenax.harness.pricing import lookup_price, output_limit
from tenax.harness.retry import RetryPolicy, call_with_retries


class Call(NamedTuple):
    """One model call as a provider builds it: ``max_tokens`` is already the output limit to send
    (None: the model's limit is not known)."""

    system: str
    tools: list[ToolSpec]
    messages: list[Message]
    session_id: str
    max_tokens: int | None


class Reply(NamedTuple):
    """A provider's answer in neutral form (``model``: as the server named it, if it did)."""

    message: Message
    usage: Usage
    stop_reason: str
    model: str | None
    request_id: str | None
    estimated: bool = False


class Provider:
    """Base of the ``tenax.core.protocols.Model`` implementations over the provider SDKs."""

    provider: str
    client_class: Callable[..., Any]

    def __init__(
        self,
        name: str,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 600,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self.name = name
        self.base_url = base_url
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.rng = rng
        self.client = self.client_class(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)

    def output_limit(self, requested: int | None) -> int | None:
        """``max_tokens`` as asked, else derived from the model's limits (``None``: not known)."""
        return output_limit(lookup_price(self.provider, self.name), requested)

    def build_request(self, system: str, tools: list[ToolSpec], messages: list[Message], *, session_id: str = "",
                      max_tokens: int | None = None) -> dict[str, Any]:
        """The SDK call's keyword arguments (``max_tokens`` None: derived from the model's limits)."""
        return self._body(Call(system, tools, messages, session_id, self.output_limit(max_tokens)))

    def _body(self, call: Call) -> dict[str, Any]:
        """The SDK call's keyword arguments for ``call``."""
        raise NotImplementedError

    def _attempt(self, kwargs: dict[str, Any]) -> Any:
        """One call of the API with ``kwargs``; raises what ``classify_error`` classifies to retry."""
        raise NotImplementedError

    def _reply(self, answer: Any, kwargs: dict[str, Any]) -> Reply:
        """The answer of the successful attempt, in neutral form."""
        raise NotImplementedError

    def complete(
        self,
        system: str,
        tools: list[ToolSpec],
        messages: list[Message],
        *,
        session_id: str,
        max_tokens: int | None = None,
    ) -> ModelResponse:
        kwargs = self.build_request(system, tools, messages, session_id=session_id, max_tokens=max_tokens)
        answer, attempts = call_with_retries(
            lambda: self._attempt(kwargs), self.retry, provider=self.provider, model=self.name, url=self.base_url,
            sleep=self.sleep, rng=self.rng,
        )
        reply = self._reply(answer, kwargs)
        return ModelResponse(
            message=reply.message,
            usage=reply.usage,
            stop_reason=reply.stop_reason,
            model=reply.model or self.name,
            attempts=attempts,
            request_id=reply.request_id,
            estimated=reply.estimated,
        )
