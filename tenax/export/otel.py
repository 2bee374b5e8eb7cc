"""Each goal run as one OpenTelemetry trace (the optional ``otel`` extra; on when the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set).

An ``on_event`` consumer: the journal's steps open and close spans. Under the goal's root span:
one span per turn (from its ``request`` to the next), holding the model call ("chat MODEL", with
the GenAI semantic-convention attributes) and each tool call ("execute_tool NAME"), a check inside
the tool call that ran it; compactions; and one span per sub-agent ("invoke_agent ROLE") from its
creation to its end, holding its model calls, read from the usage table when it ends (sub-agents
journal without calling on_event). Only ids, names, numbers and statuses become attributes: no
model or tool text leaves the machine.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Iterator

from tenax.core.messages import Usage

SPAN_NAME_LIMIT = 60


def _ns(dt: datetime | None) -> int | None:
    return int(dt.timestamp() * 1e9) if dt is not None else None


def genai_attributes(provider: str, model: str, usage: dict[str, Any], cost_usd: float | None) -> dict[str, Any]:
    """A model call's GenAI attributes; ``gen_ai.usage.input_tokens`` includes the cached ones."""
    cached, written = usage.get("cache_read_tokens", 0), usage.get("cache_write_tokens", 0)
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.system": provider, "gen_ai.provider.name": provider,
             "gen_ai.request.model": model,
             "gen_ai.usage.input_tokens": usage.get("input_tokens", 0) + cached + written,
             "gen_ai.usage.output_tokens": usage.get("output_tokens", 0),
             "gen_ai.usage.cache_read.input_tokens": cached, "gen_ai.usage.cache_creation.input_tokens": written}
    if cost_usd is not None:
        attrs["tenax.cost_usd"] = cost_usd
    return attrs


class GoalTrace:
    """The trace of one goal run. ``costs(usage) -> (usd, uncached usd)`` prices the main session's
    calls (the app sets it once the model is built); ``finish`` ends every open span and flushes."""

    def __init__(self, store: Any, goal_id: str, provider: Any, costs: Callable[[Any], tuple[float, float]] | None = None):
        from opentelemetry import trace

        self.trace, self.provider, self.store, self.costs = trace, provider, store, costs
        self.tracer = provider.get_tracer("tenax")
        goal = store.get_goal(goal_id)
        self.goal_id, self.model = goal.id, goal.model
        self.root = self.tracer.start_span(f"goal {goal.id}", attributes={
            "tenax.goal.id": goal.id, "tenax.goal.model": goal.model, "tenax.goal.strategy": goal.strategy,
            "tenax.goal.turns_before": goal.turns})
        self.turn = self.call = self.tool = None
        self.tools: dict[str, Any] = {}  # tool call id -> its span (a sub-agent nests under its spawn call)
        self.agents: dict[str, Any] = {}  # agent id -> its open span
        self.ended_agents: set[str] = set()
        self.last_ns = self.tool_ns = time.time_ns()

    def _under(self, parent: Any) -> Any:
        return self.trace.set_span_in_context(parent)

    def _span(self, name: str, parent: Any, start: int | None = None, **attrs: Any) -> Any:
        return self.tracer.start_span(name[:SPAN_NAME_LIMIT], context=self._under(parent), start_time=start,
                                      attributes=attrs)

    def __call__(self, kind: str, p: dict[str, Any]) -> None:
        now = time.time_ns()
        if kind in ("tool_started", "tool_result"):  # sub-agents start in spawn_agent, end by wait_agents or so
            self._agents()
        if kind == "request":
            self._end("call", "turn")
            self.turn = self._span(f"turn {p.get('turn')}", self.root, **{"tenax.turn": p.get("turn", 0)})
            provider, _, name = self.model.partition(":")
            self.call = self._span(f"chat {name}", self.turn, **{
                "gen_ai.operation.name": "chat", "gen_ai.system": provider, "gen_ai.provider.name": provider,
                "gen_ai.request.model": name.split("@")[0]})
        elif kind == "assistant" and self.call is not None:
            usage = p.get("usage") or {}
            cost = self.costs(Usage.model_validate(usage))[0] if self.costs else None
            provider, _, name = self.model.partition(":")
            self.call.set_attributes(genai_attributes(provider, name.split("@")[0], usage, cost))
            self._end("call")
        elif kind == "tool_started":
            self.tool = self.tools[p.get("id", "")] = self._span(
                f"execute_tool {p.get('name')}", self.turn or self.root,
                **{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": str(p.get("name")),
                   "gen_ai.tool.call.id": str(p.get("id"))})
            self.tool_ns = now
        elif kind == "tool_result":
            span = self.tools.pop(p.get("tool_call_id", ""), None)
            if span is not None:
                span.set_attribute("tenax.tool.is_error", bool(p.get("is_error")))
                span.end()
            self.tool = None
        elif kind == "compaction":
            span = self._span("compaction", self.root, self.last_ns, **{
                "tenax.compaction.mode": str(p.get("mode")), "tenax.compaction.reason": str(p.get("reason")),
                "tenax.compaction.tokens_before": p.get("tokens_before") or 0,
                "tenax.compaction.tokens_after": p.get("tokens_after") or 0})
            span.end(now)
        elif kind == "event" and p.get("type") in ("check", "judge"):
            parent = self.tool or self.turn or self.root
            start = self.tool_ns if self.tool is not None else self.last_ns
            span = self._span(str(p["type"]), parent, start, **{
                "tenax.check.passed": bool(p.get("passed")), "tenax.check.exit_code": p.get("exit_code") or 0})
            span.end(now)
        elif kind == "event" and p.get("type") in ("provider_retry", "provider_outage") and self.call is not None:
            self.call.add_event(str(p["type"]), {"wait_s": float(p.get("wait_s") or 0), "status": str(p.get("status"))})
        elif kind == "event" and p.get("type") == "status":
            self.root.set_attribute("tenax.goal.status", str(p.get("status")))
        self.last_ns = now

    def _end(self, *names: str) -> None:
        for name in names:
            span = getattr(self, name)
            if span is not None:
                span.end()
                setattr(self, name, None)

    def _agents(self) -> None:
        """Open a span for each new sub-agent; close (with its model calls) each one that ended."""
        for a in self.store.agents_for_goal(self.goal_id):
            if a.id in self.ended_agents:
                continue
            if a.id not in self.agents:
                parent = self.tools.get(a.spawn_call_id or "") or self.turn or self.root
                self.agents[a.id] = self._span(f"invoke_agent {a.role}", parent, _ns(a.created_at), **{
                    "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.id": a.id, "gen_ai.agent.name": a.role,
                    "gen_ai.request.model": a.model, "tenax.agent.task_chars": len(a.task)})
            if a.finished:
                self._end_agent(a)

    def _end_agent(self, a: Any) -> None:
        span = self.agents.pop(a.id)
        self.ended_agents.add(a.id)
        provider = a.model.partition(":")[0]
        for u in self.store.usage_for_goal(self.goal_id):
            if a.session_id and u.session_id == a.session_id:
                end = _ns(u.created_at) or time.time_ns()
                call = self._span(f"chat {u.model}", span, end - int(u.duration_s * 1e9))
                call.set_attributes(genai_attributes(provider, u.model, u.usage.model_dump(), u.cost_usd))
                call.end(end)
        span.set_attributes({"tenax.agent.status": a.status, "tenax.cost_usd": a.cost_usd})
        span.end(_ns(a.finished_at))

    def finish(self) -> None:
        """End what is still open (the run ended or crashed mid-step), record the goal's totals, flush."""
        try:
            self._agents()
            for a in self.store.agents_for_goal(self.goal_id):
                if a.id in self.agents:
                    self._end_agent(a)
            goal = self.store.get_goal(self.goal_id)
            self.root.set_attributes({"tenax.goal.status": goal.status, "tenax.goal.turns": goal.turns,
                                      "tenax.cost_usd": goal.cost_usd})
        finally:
            for span in list(self.tools.values()):
                span.end()
            self._end("call", "turn")
            self.root.end()
            self.provider.force_flush()


def missing_extra() -> str | None:
    """What to do when OTEL_EXPORTER_OTLP_ENDPOINT asks for traces that cannot be sent; else None."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    try:
        import opentelemetry.exporter.otlp  # noqa: F401
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as e:
        return (f"OTEL_EXPORTER_OTLP_ENDPOINT is set but tracing is off: {e}. "
                "Install the extra (pip install 'tenax[otel]') or unset the variable.")
    return None


def provider_from_env() -> Any:
    """An SDK TracerProvider exporting over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set and the
    ``otel`` extra is installed; else None (tracing off). The exporter reads the standard OTEL_*
    variables; OTEL_EXPORTER_OTLP_PROTOCOL=grpc picks gRPC, else http/protobuf."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").startswith("grpc"):
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "tenax")}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


@contextmanager
def traced(store: Any, goal_id: str, provider: Any = None) -> Iterator[GoalTrace | None]:
    """The goal run's trace (None when tracing is off), finished however the run ends."""
    provider = provider or provider_from_env()
    trace = GoalTrace(store, goal_id, provider) if provider is not None else None
    try:
        yield trace
    finally:
        if trace is not None:
            trace.finish()
