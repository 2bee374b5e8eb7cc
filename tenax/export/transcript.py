"""Transcript exports: markdown and jsonl, straight from the journal (no web service)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Callable, Iterable

from tenax.core.messages import Message, ReasoningPart, TextPart, ToolCallPart, ToolResultPart, Usage
from tenax.export.describe import event_line, plain
from tenax.export.redact import redactor
from tenax.sandbox._incontainer import cut_middle


def _default(o: Any) -> Any:
    if isinstance(o, datetime):
        return o.isoformat()
    return str(o)


def session_tree(store: Any, goal_id: str) -> list[tuple[int, Any]]:
    """Sessions depth-first: the main session, then each child under its parent."""
    sessions = store.sessions_for_goal(goal_id)
    children: dict[str | None, list[Any]] = {}
    for s in sessions:
        children.setdefault(s.parent_session_id, []).append(s)
    out: list[tuple[int, Any]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in children.get(parent, []):
            out.append((depth, s))
            walk(s.id, depth + 1)

    walk(None, 0)
    return out


SCHEMA_VERSION = 1  # of the jsonl lines, documented in transcript.schema.json (shipped in the package)


def spawned_agents(store: Any, goal_id: str) -> dict[tuple[str, str], Any]:
    """Sub-agents by (parent session, spawning call id): each transcript nests under that call."""
    agents = store.agents_for_goal(goal_id) if hasattr(store, "agents_for_goal") else []
    return {(a.parent_session_id, a.spawn_call_id): a for a in agents if a.spawn_call_id and a.session_id}


def jsonl_encoder(goal: Any) -> Callable[[dict[str, Any]], str]:
    """One jsonl line from a record, with the goal's secrets redacted."""
    redact = redactor(goal)
    return lambda obj: redact(json.dumps(obj, default=_default))


def goal_record(goal: Any) -> dict[str, Any]:
    return {"type": "goal", "schema_version": SCHEMA_VERSION, **_dump(goal)}


def agent_record(agent: Any) -> dict[str, Any]:
    return {"type": "agent", **_dump(agent)}


def session_record(depth: int, session: Any) -> dict[str, Any]:
    return {"type": "session", "depth": depth, **_dump(session)}


def step_record(session_id: str, st: Any) -> dict[str, Any]:
    return {"type": "step", "session_id": session_id, "seq": st.seq, "kind": st.kind, "payload": st.payload,
            "created_at": st.created_at}


def to_jsonl(store: Any, goal_id: str) -> Iterable[str]:
    goal = store.get_goal(goal_id)
    line = jsonl_encoder(goal)
    yield line(goal_record(goal))
    for a in store.agents_for_goal(goal.id) if hasattr(store, "agents_for_goal") else []:
        yield line(agent_record(a))
    for depth, s in session_tree(store, goal.id):
        yield line(session_record(depth, s))
        for st in store.steps(s.id):
            yield line(step_record(s.id, st))


def _dump(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(obj)
    return dict(vars(obj))


def _fence(text: str) -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}\n{text}\n{ticks}"


RESULT_CHARS = 6000  # a longer tool result is folded head + tail in the md export


def _when(dt: Any) -> str:
    return f"{dt:%Y-%m-%d %H:%M:%S} UTC" if isinstance(dt, datetime) else str(dt or "")


def to_markdown(store: Any, goal_id: str) -> str:
    goal = store.get_goal(goal_id)
    total_in = goal.input_tokens + goal.cache_read_tokens + goal.cache_write_tokens
    lines = [
        f"# tenax goal {goal.id}: {goal.status}",
        "",
        f"- objective: {goal.objective}",
        f"- check: `{goal.check_cmd}`" if goal.check_cmd else "- check: (independent judge)",
        f"- model: {goal.model}",
        f"- workspace: {goal.workspace}",
        f"- started: {_when(goal.created_at)}" + (f", finished: {_when(goal.finished_at)}" if goal.finished_at else ""),
        f"- turns: {goal.turns}, cost: ${goal.cost_usd:.4f}",
        f"- tokens: {total_in:,} input ({goal.cache_read_tokens:,} cache read, {goal.cache_write_tokens:,} cache write), "
        f"{goal.output_tokens:,} output",
        *([f"- error: {goal.error}"] if goal.error else []),
        *([f"- summary: {goal.summary}"] if goal.summary else []),
        "",
    ]
    usage = {(u.session_id, u.step_seq): u for u in store.usage_for_goal(goal.id)} if hasattr(store, "usage_for_goal") else {}
    fold_note = f"the full result is in `tenax export {goal.id} --format jsonl`"
    by_call = spawned_agents(store, goal.id)
    tree = session_tree(store, goal.id)
    sessions = {s.id: s for _, s in tree}

    def render(s: Any, depth: int) -> None:
        h = "#" * min(2 + depth, 5)
        lines.extend([f"{h} session {s.id} ({s.role}, {s.model})", ""])
        for st in store.steps(s.id):
            lines.extend(_step_md(st, h + "#", usage.get((s.id, st.seq)), fold_note))
            a = by_call.get((s.id, st.payload.get("tool_call_id"))) if st.kind == "tool_result" else None
            if a is not None and a.session_id in sessions:
                lines.extend([f"*sub-agent {a.id} ({a.role}, {a.model}): {a.status}, ${a.cost_usd:.4f}*", ""])
                render(sessions[a.session_id], depth + 1)

    nested = {a.session_id for a in by_call.values()}
    for depth, s in tree:
        if s.id not in nested:
            render(s, depth)
    return redactor(goal)("\n".join(lines))


def _usage_line(u: Any, payload: dict[str, Any]) -> str:
    """One call's tokens, cost, time and attempts (from the usage table, else the step's own usage)."""
    n = Usage.model_validate(payload.get("usage") or {}) if u is None else u.usage
    parts = [f"input {n.input_tokens:,} uncached + {n.cache_read_tokens:,} cache read + "
             f"{n.cache_write_tokens:,} cache write, output {n.output_tokens:,}"]
    if u is not None:
        parts += [f"${u.cost_usd:.4f}", f"{u.duration_s:.1f} s"]
        if u.attempts > 1:
            parts.append(f"{u.attempts} attempts")
        if u.estimated:
            parts.append("estimated")
    return f"*usage: {' · '.join(parts)}*"


def _step_md(st: Any, h: str, u: Any, fold_note: str) -> list[str]:
    p, when = st.payload, _when(st.created_at)
    if st.kind == "request":
        return [f"{h} turn {p.get('turn', '?')} · {when}", ""]
    if st.kind == "user":
        why = p.get("why", "user")
        if why == "steering":
            return [f"**you (steering message)** · {when}:", "", _fence(p.get("verbatim", p.get("text", ""))), ""]
        return [f"**tenax → model** ({why}) · {when}:", "", _fence(p.get("text", "")), ""]
    if st.kind == "assistant":
        msg = Message.model_validate(p["message"])
        out = [f"**model** · {when}:"]
        for part in msg.parts:
            if isinstance(part, TextPart):
                out += ["", part.text]
            elif isinstance(part, ReasoningPart) and part.text:
                out += ["", f"> (reasoning) {part.text}"]
            elif isinstance(part, ToolCallPart):
                out += ["", f"→ `{part.name}` ({part.id})", "", _fence(json.dumps(part.arguments, ensure_ascii=False, indent=1))]
        return out + ["", _usage_line(u, p), ""]
    if st.kind == "tool_result":
        r = ToolResultPart.model_validate(p)
        tag = "tool error" if r.is_error else "tool result"
        return [f"**{tag}** ({r.tool_call_id}) · {when}:", "", _fence(cut_middle(r.content, RESULT_CHARS, fold_note)[0]), ""]
    if st.kind == "compaction":
        rng = p.get("archived")
        head = (f"*compaction* · {when} ({p.get('mode')}, {p.get('reason')}): ~{p.get('tokens_before')} -> "
                f"~{p.get('tokens_after')} tokens; archived steps {rng[0]}-{rng[1]}; context continues from step "
                f"{p.get('kept_from')}" if rng else f"*compaction* · {when} ({p.get('mode')}, {p.get('reason')}): nothing archived")
        return [head, "", "ledger:", "", _fence(p.get("ledger", "")), "", "summary that replaced the archived turns:", "",
                _fence(p.get("summary", "")), ""]
    if st.kind == "event" and (line := event_line(p)):
        out = [f"*{plain(line)}* · {when}", ""]
        if p.get("type") == "check" and p.get("output_tail"):
            out += [_fence(p["output_tail"]), ""]
        return out
    return []
