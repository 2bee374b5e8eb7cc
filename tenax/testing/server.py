"""The provider simulator: a real HTTP server on 127.0.0.1 speaking the Anthropic Messages API and
the OpenAI Responses and Chat Completions APIs, so the real SDKs can be pointed at it.

    with Simulator(Script([Reply(text="hi")])) as sim:
        anthropic.Anthropic(base_url=sim.url, api_key="x")
        openai.OpenAI(base_url=sim.url + "/v1", api_key="x")

Each request is validated as strictly as the real API (rejections use the provider's own error
shape and status 400), accounted by the providers' prompt-cache rules (``tenax.testing.cache``),
answered by the policy, and recorded in ``Simulator.requests``.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import BaseModel

from tenax.testing import anthropic_wire as aw
from tenax.testing import compat as cm
from tenax.testing import openai_wire as ow
from tenax.testing._common import Counter, InvalidRequest, Parsed, build_turn
from tenax.testing.cache import AnthropicCache, OpenAICache
from tenax.testing.script import Policy, Reply, Script
from tenax.testing.tokens import SimClock

__all__ = ["Simulator", "RecordedRequest"]

ROUTES = {"/v1/messages": aw.API, "/v1/responses": ow.RESPONSES, "/v1/chat/completions": ow.CHAT}
DEFAULT_THINKING = "Let me think about this step by step."


class RecordedRequest(BaseModel):
    api: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    status: int
    error: str | None = None
    usage: dict[str, Any] | None = None  # the usage object sent back, in the provider's own shape


@dataclass
class _Outcome:
    status: int
    body: dict[str, Any] | None = None  # JSON answer
    events: list[tuple[str | None, Any]] | None = None  # SSE answer: (event name or None, data)
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    usage: dict[str, Any] | None = None
    fault: str | None = None  # Reply.fault: how the transport misbehaves while sending this answer
    stall_s: float = 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # a client hung up, or stop() closed its connection
            return
        super().handle_error(request, client_address)


def _per_model(value: int | dict[str, int], model: str, default: int) -> int:
    if isinstance(value, dict):
        return value.get(model, value.get("*", default))
    return value


class Simulator:
    """See the module docstring. ``min_cacheable_tokens`` and ``context_window`` are one int or a
    ``{model: int}`` dict (``"*"`` is the default entry). ``compat`` (a ``Compat`` or a preset name
    such as ``"llama.cpp"``) makes ``/v1/chat/completions`` behave like an OpenAI-compatible server
    with that server's quirks (see ``tenax.testing.compat``)."""

    def __init__(
        self,
        policy: Policy | Script | None = None,
        *,
        clock: SimClock | None = None,
        min_cacheable_tokens: int | dict[str, int] = 1024,
        context_window: int | dict[str, int] = 200_000,
        host: str = "127.0.0.1",
        port: int = 0,
        compat: cm.Compat | str | None = None,
        stream_at_once: bool = False,
    ):
        """``stream_at_once``: write each streamed answer in one piece (the same events and chunks)
        instead of one write per event; a bench uses it so that the time a client spends after the
        headers is its own parsing, not the wait for this server's next event."""
        self.compat = cm.resolve(compat)
        self.stream_at_once = stream_at_once
        self.policy: Policy = policy if policy is not None else Script([])
        self.clock = clock or SimClock()
        self.context_window = context_window
        self.min_cacheable_tokens = min_cacheable_tokens
        self.anthropic_cache = AnthropicCache(self.clock, min_cacheable_tokens)
        openai_min = _per_model(min_cacheable_tokens, "*", 1024)
        self.openai_cache = OpenAICache(self.clock, min_tokens=openai_min)
        self.host, self.port = host, port
        self.requests: list[RecordedRequest] = []
        self.policy_errors: list[BaseException] = []
        self._ids = Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()  # open client connections, closed on stop()

    # ------------------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("Simulator is not started: call start() or use it as a context manager")
        return f"http://{self.host}:{self.port}"

    def start(self) -> "Simulator":
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _make_handler(self))
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"tenax-simulator:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:  # keep-alive connections would otherwise still be answered after stop()
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "Simulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ handling

    def _record(self, api: str, path: str, body: Any, headers: dict[str, str], out: _Outcome) -> None:
        rec = RecordedRequest(api=api, path=path, body=body if isinstance(body, dict) else {"_raw": body},
                              headers=headers, status=out.status, error=out.error, usage=out.usage)
        with self._lock:
            self.requests.append(rec)

    def _error(self, api: str, status: int, message: str, *, param: str | None = None, code: str | None = None,
               kind: str | None = None, retry_after: float | None = None) -> _Outcome:
        if api == aw.API:
            body = aw.error_body(status, message, kind)
        else:
            body = ow.error_body(status, message, param=param, code=code, kind=kind)
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
            headers["retry-after-ms"] = str(int(round(retry_after * 1000)))
        return _Outcome(status=status, body=body, headers=headers, error=message)

    def handle(self, api: str, body: Any) -> _Outcome:
        """Answer one request body (already JSON-decoded) for ``api``."""
        try:
            if not isinstance(body, dict):
                raise InvalidRequest("The request body must be a JSON object.")
            quirks = self.compat if api == ow.CHAT else None
            if quirks and quirks.reject_null_content and cm.null_content_index(body.get("messages") or []) is not None:
                return _Outcome(500, body=cm.llama_error(500, cm.LLAMA_CPP_CONTENT_ERROR, "server_error"),
                                error=cm.LLAMA_CPP_CONTENT_ERROR)
            if api == aw.API:
                parsed = aw.parse(body)
            elif api == ow.RESPONSES:
                parsed = ow.parse_responses(body)
            else:
                parsed = ow.parse_chat(body)
            model = parsed.req.model
            window = _per_model(self.context_window, model, 200_000)
            if parsed.input_tokens > window:
                if quirks and quirks.context_overflow != "openai":
                    return self._compat_overflow(quirks, parsed, window)
                raise (aw.context_error(parsed.input_tokens, window) if api == aw.API
                       else ow.context_error(api, parsed.input_tokens, window))
        except InvalidRequest as exc:
            return self._error(api, exc.status, exc.message, param=exc.param, code=exc.code)
        if quirks and quirks.refuse_streamed_tool_choice and parsed.stream and parsed.req.tool_names \
                and "tool_choice" in body:
            return _Outcome(200, events=[(None, "[DONE]")], error=cm.STREAMED_TOOL_CHOICE_ERROR)
        tools_dropped = bool(quirks and quirks.tools_need_tool_choice and "tool_choice" not in body)
        if tools_dropped:
            parsed.req.tool_names = []  # the model never sees them

        try:
            reply = self.policy(parsed.req)
            if isinstance(reply, dict):
                reply = Reply.model_validate(reply)
            if not isinstance(reply, Reply):
                raise TypeError(f"policy returned {type(reply).__name__}, expected tenax.testing.Reply")
        except Exception as exc:  # a broken policy is the test's bug: say so in the answer
            self.policy_errors.append(exc)
            traceback.print_exc(file=sys.stderr)
            return self._error(api, 500, f"simulator policy raised {type(exc).__name__}: {exc}")

        if reply.error is not None:
            err = reply.error
            if err.kind == "context_too_long":
                window = _per_model(self.context_window, parsed.req.model, 200_000)
                if quirks and quirks.context_overflow != "openai":
                    return self._compat_overflow(quirks, parsed, window)
                exc = (aw.context_error(max(parsed.input_tokens, window + 1), window) if api == aw.API
                       else ow.context_error(api, max(parsed.input_tokens, window + 1), window))
                return self._error(api, err.status, exc.message, param=exc.param, code=exc.code,
                                   retry_after=err.retry_after)
            return self._error(api, err.status, err.message, retry_after=err.retry_after)
        if tools_dropped:
            reply = reply.model_copy(update={"tool_calls": []})
        out = self._answer(api, parsed, reply)
        out.fault, out.stall_s = reply.fault, reply.stall_s
        if reply.fault:
            out.error = f"fault: {reply.fault}"
        return out

    def _compat_overflow(self, quirks: cm.Compat, parsed: Parsed, window: int) -> _Outcome:
        if quirks.context_overflow == "empty":  # a well-formed 200 that says nothing at all
            return self._answer(ow.CHAT, parsed, Reply())
        body = cm.context_overflow_body(quirks.context_overflow, parsed.input_tokens, window, parsed.max_output)
        message = body.get("message") or body["error"]["message"]
        return _Outcome(400, body=body, error=message)

    def _answer(self, api: str, parsed: Parsed, reply: Reply) -> _Outcome:
        req = parsed.req
        if api == aw.API:
            reasoning = (reply.reasoning or DEFAULT_THINKING) if parsed.extra.get("thinking") else None
            turn = build_turn(reply.text, reply.tool_calls, reasoning, reply.output_tokens, parsed.max_output,
                              lambda: self._ids.next("toolu_sim_"))
            cache_use = self.anthropic_cache.process(req.model, parsed.blocks)
            use = aw.usage(cache_use, turn.output_tokens)
            msg = aw.message(self._ids.next("msg_sim_"), req.model, turn, use)
            headers = {"request-id": self._ids.next("req_sim_")}
            if parsed.stream:
                return _Outcome(200, events=list(aw.stream_events(msg, {c.id: c.cut for c in turn.calls if c.cut is not None})), headers=headers, usage=use)
            return _Outcome(200, body=msg, headers=headers, usage=use)

        turn = build_turn(reply.text, reply.tool_calls, reply.reasoning, reply.output_tokens, parsed.max_output,
                          lambda: self._ids.next("call_sim_"))
        cached = self.openai_cache.process(req.model, parsed.extra.get("cache_key"), parsed.blocks)
        headers = {"x-request-id": self._ids.next("req_sim_")}
        if api == ow.RESPONSES:
            use = ow.responses_usage(parsed.input_tokens, cached, turn)
            resp = ow.responses_object(self._ids.next("resp_sim_"), req.body, turn, use, self._ids,
                                       status="incomplete" if turn.truncated else "completed")
            if parsed.stream:
                return _Outcome(200, events=list(ow.responses_events(resp)), headers=headers, usage=use)
            return _Outcome(200, body=resp, headers=headers, usage=use)

        quirks = self.compat or cm.Compat()
        use = ow.chat_usage(parsed.input_tokens, cached, turn)
        completion = ow.chat_completion(self._ids.next("chatcmpl-sim-"), req.model, turn, use)
        if not quirks.report_usage:
            del completion["usage"]
            use = None
        if parsed.stream:
            include_usage = parsed.extra.get("include_usage", False) and quirks.report_usage
            events: list[tuple[str | None, Any]] = [
                (None, c) for c in ow.chat_chunks(completion, include_usage, repeat_name=quirks.repeat_tool_name)]
            events.append((None, "[DONE]"))
            return _Outcome(200, events=events, headers=headers, usage=use)
        return _Outcome(200, body=completion, headers=headers, usage=use)


SECRET_HEADERS = {"authorization", "x-api-key", "api-key"}


def _redact(name: str, value: str) -> str:
    """Keep recorded credentials recognisable but never whole."""
    if name not in SECRET_HEADERS:
        return value
    return value[: min(12, len(value) // 2)] + "...(redacted)"


def _make_handler(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "tenax-simulator"
        # TCP_NODELAY on each accepted socket: headers and body go out in separate writes, and with
        # Nagle on, the second write waits for the client's delayed ACK (~40 ms per call).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def setup(self) -> None:
            super().setup()
            with sim._lock:
                sim._conns.add(self.connection)

        def finish(self) -> None:
            with sim._lock:
                sim._conns.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _misbehave(self, out: _Outcome) -> None:
            """Half the answer, then a reset connection or silence (Reply.fault)."""
            if out.fault == "stall":
                time.sleep(out.stall_s)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()  # with linger 0: an RST, not a clean end

        def _send_faulty_json(self, out: _Outcome) -> None:
            data = b"" if out.fault == "empty_body" else json.dumps(out.body).encode("utf-8")
            if out.fault == "malformed":
                data = data[: len(data) // 2]
            self.send_response(out.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if out.fault in ("reset", "stall"):
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                return self._misbehave(out)
            self.wfile.write(data)

        def _send_events(self, out: _Outcome) -> None:
            events = list(out.events or [])
            if out.fault == "empty_body":
                events = []
            elif out.fault == "malformed" and events:
                events[len(events) // 2] = (events[len(events) // 2][0], '{"type": "content_block_delta", "delta": {')
            self.send_response(out.status)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            for k, v in out.headers.items():
                self.send_header(k, v)
            self.end_headers()
            held: list[bytes] = []
            try:
                for i, (name, data) in enumerate(events):
                    if out.fault in ("reset", "stall") and i == len(events) // 2:
                        return self._misbehave(out)
                    payload = data if isinstance(data, str) else json.dumps(data)
                    text = (f"event: {name}\n" if name else "") + f"data: {payload}\n\n"
                    raw = text.encode("utf-8")
                    held.append(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
                    if not sim.stream_at_once:
                        self.wfile.write(held.pop())
                        self.wfile.flush()
                self.wfile.write(b"".join(held) + b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/health":
                self._send_json(200, {"status": "ok", "requests": len(sim.requests)})
            else:
                self._send_json(404, ow.error_body(404, f"Unknown request URL: GET {self.path}.",
                                                   code="unknown_url"))

        def do_POST(self) -> None:
            path = self.path.split("?")[0]
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): _redact(k.lower(), v) for k, v in self.headers.items()}
            api = ROUTES.get(path)
            if api is None:
                msg = f"Unknown request URL: POST {path}."
                self._send_json(404, aw.error_body(404, msg) if "messages" in path else
                                ow.error_body(404, msg, code="unknown_url"))
                return
            try:
                body = json.loads(raw) if raw else None
            except ValueError as exc:
                out = sim._error(api, 400, f"The request body is not valid JSON: {exc}")
                sim._record(api, path, raw.decode("utf-8", "replace"), headers, out)
                self._send_json(out.status, out.body or {}, out.headers)
                return
            if body is None:
                out = sim._error(api, 400, "The request body is empty: send a JSON object.")
            else:
                out = sim.handle(api, body)
            sim._record(api, path, body, headers, out)
            try:
                if out.events is not None:
                    self._send_events(out)
                elif out.fault:
                    self._send_faulty_json(out)
                else:
                    self._send_json(out.status, out.body or {}, out.headers)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    return Handler
