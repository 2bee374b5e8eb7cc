"""Model-maintained memory tools: ``update_plan``, ``note`` and ``recall``.

They are ``GoalRunner`` extra tools (frozen into the main session's tool list at creation)."""

from __future__ import annotations

from typing import Any, Callable

from tenax.core.errors import TenaxError
from tenax.core.messages import ToolSpec
from tenax.core.protocols import Store, ToolOutcome
from tenax.store import memory

Handler = Callable[[dict[str, Any]], ToolOutcome]

UPDATE_PLAN = ToolSpec.object(
    "update_plan",
    (
        "Record your plan as a list of items with a status (pending, in_progress, done, blocked, dropped). "
        "Send the whole current plan each time. The plan is kept by the runtime and shown to you again "
        "after the context is compacted, so keep it current."
    ),
    {
        "items": {
            "type": "array",
            "description": "The plan, in order.",
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "What to do."},
                    "status": {"type": "string", "enum": list(memory.PLAN_STATUSES)},
                },
                "required": ["text", "status"],
            },
        }
    },
    required=("items",),
)

NOTE = ToolSpec.object(
    "note",
    (
        "Write down something that must survive context compaction: a pitfall (an approach that failed "
        "and why), a decision you made instead of asking, or a fact you will need later."
    ),
    {
        "kind": {"type": "string", "enum": list(memory.NOTE_KINDS)},
        "text": {"type": "string", "description": "The note, self-contained."},
    },
    required=("kind", "text"),
)

RECALL = ToolSpec.object(
    "recall",
    (
        "Full-text search over the archived (compacted) transcript and your notes. Returns snippets "
        "with the journal step ids they come from. Use it for exact details that are no longer in view."
    ),
    {
        "query": {"type": "string", "description": "Keywords to look for."},
        "limit": {"type": "integer", "minimum": 1, "maximum": 20, "description": "Max results (default 8)."},
    },
    required=("query",),
)


def memory_tools(store: Store, goal_id: str) -> dict[str, tuple[ToolSpec, Handler]]:
    def update_plan(args: dict[str, Any]) -> ToolOutcome:
        try:
            items = store.set_plan(goal_id, memory.parse_plan_items(args.get("items")))
        except TenaxError as e:
            return ToolOutcome(is_error=True, content=f"update_plan: {e}")
        lines = [f"{i + 1}. [{p.status}] {p.text}" for i, p in enumerate(items)]
        return ToolOutcome(content="Plan recorded:\n" + "\n".join(lines))

    def note(args: dict[str, Any]) -> ToolOutcome:
        try:
            n = store.add_note(goal_id, str(args.get("kind", "")), args.get("text"))  # type: ignore[arg-type]
        except TenaxError as e:
            return ToolOutcome(is_error=True, content=f"note: {e}")
        return ToolOutcome(content=f"Noted ({n.kind} #{n.id}). It stays in the ledger across compactions.")

    def recall(args: dict[str, Any]) -> ToolOutcome:
        query = args.get("query")
        if not isinstance(query, str) or not query.strip():
            return ToolOutcome(is_error=True, content="recall needs a non-empty 'query' string")
        limit = args.get("limit", 8)
        limit = limit if isinstance(limit, int) and not isinstance(limit, bool) else 8
        hits = store.recall(goal_id, query, limit=limit)
        if not hits:
            return ToolOutcome(content=f"No archived step or note matches {query!r}.")
        lines = []
        for h in hits:
            where = f"step {h.step_seq}" if h.step_seq is not None else "note"
            lines.append(f"- {where} ({h.kind}): {h.snippet}")
        return ToolOutcome(content=f"{len(hits)} match(es) for {query!r}:\n" + "\n".join(lines))

    return {
        UPDATE_PLAN.name: (UPDATE_PLAN, update_plan),
        NOTE.name: (NOTE, note),
        RECALL.name: (RECALL, recall),
    }
