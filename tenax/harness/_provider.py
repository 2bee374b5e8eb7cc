"""What every provider shares: the constructor, the retried call and the ``ModelResponse`` it returns.

A provider subclasses ``Provider`` and supplies ``client_class`` (its SDK client), ``_body`` (the
request body for one ``Call``), ``convert`` (one message as the items of the body's ``wire_key``
list) and ``_attempt`` (one call of the API with the encoded body, its answer read into a
``Reply``: reading it is part of the attempt, so a misshapen answer is retried like a failed one). ``build_request``, the encoding and ``complete`` are written once, here;
``complete`` runs the attempts with our own retries (the SDK's are switched off).

The body is encoded incrementally (``_serialize.Wire``): each message is converted and encoded
once, the rest of the body (model, system, tools...) is small, and the SDK is handed the bytes
through its own ``post``, so it neither copies nor re-encodes the conversation every turn.
"""

from __future__ import annotations

import functools
import random
import ssl
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from tenax.core.messages import Message, ModelResponse, ToolSpec, Usage
from tenax.harness._serialize import Wire, dumps, splice
from tenax.harness.pricing import lookup_price, output_limit
from tenax.harness.retry import RetryPolicy, call_with_retries


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS context every provider client shares, made as the SDKs' HTTP client makes its own
    (CA bundle, SSL_CERT_FILE / SSL_CERT_DIR): loading the bundle costs 30-130 ms, once per client
    before; now once per process (and not at all in a daemon's workers, forked after it)."""
    import httpx2

    return httpx2.create_ssl_context()


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
    http_client_class: Callable[..., Any]  # the SDK's DefaultHttpxClient
    wire_key = "messages"  # the body's conversation list

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
        self.client = self.client_class(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0,
                                        http_client=self.http_client_class(verify=tls_context(), timeout=timeout))
        self._wire = Wire(self.convert)
        self._head: tuple[Any, list[str], str] | None = None

    def output_limit(self, requested: int | None) -> int | None:
        """``max_tokens`` as asked, else derived from the model's limits (``None``: not known)."""
        return output_limit(lookup_price(self.provider, self.name), requested)

    def build_request(self, system: str, tools: list[ToolSpec], messages: list[Message], *, session_id: str = "",
                      max_tokens: int | None = None) -> dict[str, Any]:
        """The SDK call's keyword arguments (``max_tokens`` None: derived from the model's limits)."""
        return self._body(Call(system, tools, messages, session_id, self.output_limit(max_tokens)))

    def _body(self, call: Call) -> dict[str, Any]:
        """The request body for ``call``, as a dict."""
        raise NotImplementedError

    def convert(self, message: Message) -> list[dict[str, Any]]:
        """``message`` as the items of the body's ``wire_key`` list."""
        raise NotImplementedError

    def _marked(self, call: Call) -> dict[int, list[dict[str, Any]]]:
        """Messages the body carries changed (e.g. with a cache mark), as their items by index; none by default."""
        return {}

    def encode(self, call: Call) -> bytes:
        """``_body(call)`` as JSON bytes: the conversation from the incremental wire, the rest of the
        body (frozen for a session: model, system, tools...) encoded once per session."""
        key = (call.system, tuple(call.tools), call.session_id, call.max_tokens)
        if self._head is None or self._head[0] != key:
            head = self._body(call._replace(messages=[]))  # what leads the conversation (a system message) stays
            lead = [dumps(item) for item in head.pop(self.wire_key, [])]
            self._head = (key, lead, dumps(head))
        _, lead, rest = self._head
        marked = {i: ",".join(map(dumps, items)) for i, items in self._marked(call).items()}
        return splice(self.wire_key, self._wire.sync(call.messages).joined(lead, marked), rest)

    def _attempt(self, body: bytes) -> Reply:
        """One call of the API with ``body`` and its answer in neutral form; raises what
        ``classify_error`` classifies to retry."""
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
        body = self.encode(Call(system, tools, messages, session_id, self.output_limit(max_tokens)))
        reply, attempts = call_with_retries(
            lambda: self._attempt(body), self.retry, provider=self.provider, model=self.name, url=self.base_url,
            sleep=self.sleep, rng=self.rng,
        )
        return ModelResponse(
            message=reply.message,
            usage=reply.usage,
            stop_reason=reply.stop_reason,
            model=reply.model or self.name,
            attempts=attempts,
            request_id=reply.request_id,
            estimated=reply.estimated,
        )
