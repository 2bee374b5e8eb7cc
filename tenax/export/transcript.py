"""Transcript exports: markdown and jsonl, straight from the journal (no web service)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable

from tenax.core.messages import Message, TextPart, ToolCallPart, ToolResultPart, ReasoningPart


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


def to_jsonl(store: Any, goal_id: str) -> Iterable[str]:
    goal = store.get_goal(goal_id)
    yield json.dumps({"type": "goal", **_dump(goal)}, default=_default)
    for a in store.agents_for_goal(goal.id) if hasattr(store, "agents_for_goal") else []:
        yield json.dumps({"type": "agent", **_dump(a)}, default=_default)
    for depth, s in session_tree(store, goal.id):
        yield json.dumps({"type": "session", "depth": depth, **_dump(s)}, default=_default)
        for st in store.steps(s.id):
            yield json.dumps(
                {"type": "step", "session_id": s.id, "seq": st.seq, "kind": st.kind, "payload": st.payload,
                 "created_at": st.created_at},
                default=_default,
            )


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


def to_markdown(store: Any, goal_id: str) -> str:
    goal = store.get_goal(goal_id)
    lines = [
        f"# tenax goal {goal.id}: {goal.status}",
        "",
        f"- objective: {goal.objective}",
        f"- check: `{goal.check_cmd}`" if goal.check_cmd else "- check: (independent judge)",
        f"- model: {goal.model}",
        f"- workspace: {goal.workspace}",
        f"- turns: {goal.turns}, cost: ${goal.cost_usd:.4f}",
        "",
    ]
    # sub-agents are nested under the call that spawned them (their ledger row names it)
    agents = store.agents_for_goal(goal.id) if hasattr(store, "agents_for_goal") else []
    by_call = {(a.parent_session_id, a.spawn_call_id): a for a in agents if a.spawn_call_id and a.session_id}
    tree = session_tree(store, goal.id)
    sessions = {s.id: s for _, s in tree}

    def render(s: Any, depth: int) -> None:
        h = "#" * min(2 + depth, 6)
        lines.extend([f"{h} session {s.id} ({s.role}, {s.model})", ""])
        for st in store.steps(s.id):
            lines.extend(_step_md(st) + [""])
            a = by_call.get((s.id, st.payload.get("tool_call_id"))) if st.kind == "tool_result" else None
            if a is not None and a.session_id in sessions:
                lines.extend([f"*sub-agent {a.id} ({a.role}, {a.model}): {a.status}, ${a.cost_usd:.4f}*", ""])
                render(sessions[a.session_id], depth + 1)

    nested = {a.session_id for a in by_call.values()}
    for depth, s in tree:
        if s.id not in nested:
            render(s, depth)
    return "\n".join(lines)


def _step_md(st: Any) -> list[str]:
    p = st.payload
    if st.kind == "user":
        return [f"**runtime → model** ({p.get('why', 'user')}):", "", _fence(p["text"])]
    if st.kind == "assistant":
        msg = Message.model_validate(p["message"])
        out = ["**model:**"]
        for part in msg.parts:
            if isinstance(part, TextPart):
                out += ["", part.text]
            elif isinstance(part, ReasoningPart) and part.text:
                out += ["", f"> (reasoning) {part.text}"]
            elif isinstance(part, ToolCallPart):
                out += ["", f"→ `{part.name}` {json.dumps(part.arguments, ensure_ascii=False)[:2000]}"]
        return out
    if st.kind == "tool_result":
        r = ToolResultPart.model_validate(p)
        tag = "tool error" if r.is_error else "tool result"
        return [f"**{tag}** ({r.tool_call_id}):", "", _fence(r.content[:8000])]
    if st.kind == "compaction":
        rng = p.get("archived")
        head = (f"*compaction* ({p.get('mode')}, {p.get('reason')}): ~{p.get('tokens_before')} -> ~{p.get('tokens_after')} "
                f"tokens; archived steps {rng[0]}-{rng[1] if rng else ''}; context continues from step {p.get('kept_from')}"
                if rng else f"*compaction* ({p.get('mode')}, {p.get('reason')}): nothing archived")
        return [head, "", _fence(p.get("ledger", "")), "", _fence(p.get("summary", ""))]
    if st.kind == "event":
        rest = {k: v for k, v in p.items() if k != "type"}
        return [f"*event {p.get('type')}*: `{json.dumps(rest, default=_default)[:1000]}`"]
    return []
