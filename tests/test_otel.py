"""A goal run as one OpenTelemetry trace: the rich run (sub-agent, compaction, failed check) through
the real SDK with its in-memory exporter; the span tree and the GenAI attributes are checked
against the store."""

from __future__ import annotations

import pytest
from richrun import rich_run

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed (pip install -e '.[otel]')")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

pytestmark = pytest.mark.docker


def test_goal_trace_span_tree(workspace, store, monkeypatch):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    gid = rich_run(store, workspace, monkeypatch, tracer_provider=provider)
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}

    def parent(s):
        return by_id[s.parent.span_id] if s.parent is not None else None

    def named(prefix):
        return [s for s in spans if s.name.startswith(prefix)]

    assert len({s.context.trace_id for s in spans}) == 1  # one trace
    roots = [s for s in spans if s.parent is None]
    assert [r.name for r in roots] == [f"goal {gid}"]
    root = roots[0]
    goal = store.get_goal(gid)
    assert root.attributes["tenax.goal.status"] == "succeeded" and root.attributes["tenax.goal.turns"] == goal.turns

    main = next(s for s in store.sessions_for_goal(gid) if s.role == "main")
    steps = store.steps(main.id)
    turns = named("turn ")
    assert len(turns) == sum(s.kind == "request" for s in steps) and all(parent(t) is root for t in turns)

    # model calls: one per main turn, under it, with the GenAI attributes and the call's own cost
    kinds = {s.seq: s.kind for s in steps}
    main_calls = [c for c in named("chat ") if parent(c).name.startswith("turn ")]
    rows = [u for u in store.usage_for_goal(gid) if u.session_id == main.id and kinds.get(u.step_seq) == "assistant"]
    assert len(main_calls) == len(rows) == len(turns)
    for c in main_calls:
        a = c.attributes
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.system"] == "anthropic"
        assert a["gen_ai.request.model"] == "claude-sonnet-4-6"
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        assert a["gen_ai.usage.input_tokens"] >= a["gen_ai.usage.cache_read.input_tokens"]
    assert sum(c.attributes["gen_ai.usage.cache_read.input_tokens"] for c in main_calls) > 0  # the cache was read
    assert sorted(round(c.attributes["tenax.cost_usd"], 9) for c in main_calls) == \
        sorted(round(u.cost_usd, 9) for u in rows)

    # tool calls under their turn; each check inside the complete_goal call that ran it
    tools = named("execute_tool ")
    assert len(tools) == sum(s.kind == "tool_started" for s in steps)
    assert all(parent(t).name.startswith("turn ") for t in tools)
    checks = named("check")
    assert [c.attributes["tenax.check.passed"] for c in sorted(checks, key=lambda s: s.start_time)] == [False, True]
    assert all(parent(c).name == "execute_tool complete_goal" for c in checks)

    assert len(named("compaction")) == sum(s.kind == "compaction" for s in steps) >= 1
    assert all(parent(c) is root for c in named("compaction"))

    # the sub-agent under the call that spawned it, with its own model calls
    [agent] = store.agents_for_goal(gid)
    [span] = named("invoke_agent ")
    assert parent(span).name == "execute_tool spawn_agent" and span.attributes["gen_ai.agent.id"] == agent.id
    sub_calls = [c for c in named("chat ") if parent(c) is span]
    assert len(sub_calls) == sum(u.session_id == agent.session_id for u in store.usage_for_goal(gid)) == 2
    assert all(c.attributes["gen_ai.usage.output_tokens"] > 0 and "tenax.cost_usd" in c.attributes for c in sub_calls)
    assert all(span.start_time <= c.start_time <= c.end_time <= span.end_time + 10**9 for c in sub_calls)
    assert all(s.end_time >= s.start_time for s in spans)


def test_otlp_endpoint_env_exports_the_goal_trace(workspace, tmp_path):
    """`tenax goal` with OTEL_EXPORTER_OTLP_ENDPOINT set sends its trace over OTLP/HTTP to a real receiver."""
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from goalproc import CHECK, OBJECTIVE, goal_env
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from tenax.testing import Reply, Script, Simulator, ToolCall

    received: list[ExportTraceServiceRequest] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                received.append(ExportTraceServiceRequest.FromString(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = Script([
        Reply(tool_calls=[ToolCall(name="write_file", arguments={"path": "status.txt", "content": "fixed\n"})]),
        Reply(tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "fixed"})]),
    ])
    try:
        with Simulator(script) as sim:
            env = goal_env(tmp_path / "t.db", OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.server_port}",
                           OTEL_SERVICE_NAME="tenax-test")
            env.pop("OTEL_EXPORTER_OTLP_PROTOCOL", None)
            r = subprocess.run([sys.executable, "-m", "tenax.cli", "goal", OBJECTIVE, "--workspace", str(workspace),
                                "--check", CHECK, "--model", "anthropic:claude-sonnet-4-6", "--base-url", sim.url],
                               env=env, capture_output=True, text=True, timeout=300)
    finally:
        server.shutdown()
    assert r.returncode == 0, r.stdout + r.stderr
    spans = [(rs, s) for req in received for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    names = sorted(s.name for _, s in spans)
    assert names.count("chat claude-sonnet-4-6") == 2 and names.count("check") == 1
    assert [n for n in names if n.startswith("goal ")] and len({s.trace_id for _, s in spans}) == 1
    service = {a.value.string_value for rs, _ in spans for a in rs.resource.attributes if a.key == "service.name"}
    assert service == {"tenax-test"}
    call = next(s for _, s in spans if s.name.startswith("chat "))
    attrs = {a.key: a.value for a in call.attributes}
    assert attrs["gen_ai.request.model"].string_value == "claude-sonnet-4-6"
    assert attrs["gen_ai.usage.output_tokens"].int_value > 0 and attrs["tenax.cost_usd"].double_value > 0


def test_endpoint_without_the_extra_says_so_and_the_goal_runs(workspace, tmp_path):
    """The extra's modules made unimportable (None in sys.modules): one note on stderr, the goal still runs."""
    import subprocess
    import sys

    from goalproc import CHECK, OBJECTIVE, goal_env

    from tenax.testing import Reply, Script, Simulator, ToolCall

    script = Script([
        Reply(tool_calls=[ToolCall(name="write_file", arguments={"path": "status.txt", "content": "fixed\n"})]),
        Reply(tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "fixed"})]),
    ])
    boot = ("import sys; sys.modules['opentelemetry.sdk'] = None; sys.modules['opentelemetry.exporter.otlp'] = None; "
            "sys.argv[0] = 'tenax'; from tenax.cli import main; main()")
    with Simulator(script) as sim:
        r = subprocess.run([sys.executable, "-c", boot, "goal", OBJECTIVE, "--workspace", str(workspace), "--check",
                            CHECK, "--model", "anthropic:claude-sonnet-4-6", "--base-url", sim.url],
                           env=goal_env(tmp_path / "t.db", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9"),
                           capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "note: OTEL_EXPORTER_OTLP_ENDPOINT is set but tracing is off" in r.stderr and "tenax[otel]" in r.stderr
    assert "Traceback" not in r.stderr
