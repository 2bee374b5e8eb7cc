"""The sub-agent policy over the engine (``tenax.core.engine``): the same turn loop as the goal.

A sub-agent has its own session row (system + tools frozen at spawn), its own journal and its
own usage rows. Its context is folded from its own journal only: the task, its role prompt and
its tools, never the parent's history. It ends by calling ``report``; if it stops without one the
runtime asks once, and if it still does not report, the summary is built from its journal.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from tenax.core.budget import Budgets, Spent, exhausted
from tenax.core.engine import Action, Append, CostFn, End, Engine, TurnContext
from tenax.core.errors import ProviderError, SandboxError
from tenax.core.messages import Message, ToolCallPart, ToolResultPart, ToolSpec, Usage
from tenax.core.protocols import Model, Sandbox, Store, ToolOutcome, Toolbox, UsageEntry
from tenax.store.agents import AgentRecord



@dataclass
class LiveAgent:
    """In-process state of one running agent."""

    agent: AgentRecord
    session_id: str
    model: Model
    costs: CostFn
    system: str
    tools: list[ToolSpec]
    toolbox: Toolbox
    first_message: str
    max_turns: int
    with_verdict: bool
    usd_cap: float | None = None
    token_cap: int | None = None
    spent_usd: float = 0.0
    spent_tokens: int = 0
    sandbox: Sandbox | None = None  # a private sandbox (isolation copy), stopped when the agent ends
    copy_path: Path | None = None  # its workspace copy on the host (isolation copy)
    keep_sandbox: bool = False  # halted for a later resume: leave its container running
    done: threading.Event = field(default_factory=threading.Event)

    def add_spent(self, usage: Usage, cost: float) -> None:
        self.spent_usd += cost
        self.spent_tokens += usage.input_tokens + usage.cache_write_tokens + usage.output_tokens


class Lead(Protocol):
    """What a sub-agent needs of its ``AgentManager``: the store, the stop flags and the spawn tools."""

    store: Store
    stopping: threading.Event
    final: bool

    def spawn(self, args: dict[str, Any], *, parent_session_id: str, depth: int, call_id: str | None = None) -> ToolOutcome: ...
    def wait(self, args: dict[str, Any], *, parent_session_id: str) -> ToolOutcome: ...
    def list(self, *, parent_session_id: str, depth: int) -> ToolOutcome: ...

REPORT_NUDGE = (
    "[runtime] You ended without calling the report tool. Call report now with your result "
    "(outcome, findings, files_changed, failed_commands, open_questions). This is the only reminder."
)
WRITE_TOOLS = ("write_file", "edit_file")


def report_spec(with_verdict: bool = False) -> ToolSpec:
    props: dict[str, Any] = {
        "outcome": {"type": "string", "enum": ["success", "partial", "failed"],
                    "description": "How the task went."},
        "findings": {"type": "string", "description": "What you found or did: the facts the lead needs."},
        "files_changed": {"type": "array", "items": {"type": "string"}, "description": "Paths you changed."},
        "failed_commands": {"type": "array", "items": {"type": "string"},
                            "description": "Commands that failed and still matter."},
        "open_questions": {"type": "array", "items": {"type": "string"},
                           "description": "What is still unknown or undecided."},
    }
    required: tuple[str, ...] = ("outcome", "findings")
    if with_verdict:
        props["passed"] = {"type": "boolean", "description": "true only if the objective is fully met."}
        required += ("passed",)
    return ToolSpec.object(
        "report", "Finish your task: hand your structured result to the lead agent. Call it exactly once, last.",
        props, required=required, closed=True,
    )


def _str_list(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v] if v.strip() else []
    if isinstance(v, list):
        return [str(x) for x in v]
    return []


def normalize_report(args: dict[str, Any], *, with_verdict: bool) -> dict[str, Any]:
    """The model's report arguments as the ledger's summary dict (lenient on shapes)."""
    outcome = args.get("outcome")
    summary: dict[str, Any] = {
        "outcome": outcome if outcome in ("success", "partial", "failed") else str(outcome or "partial"),
        "findings": str(args.get("findings", "")),
        "files_changed": _str_list(args.get("files_changed")),
        "failed_commands": _str_list(args.get("failed_commands")),
        "open_questions": _str_list(args.get("open_questions")),
        "reported": True,
    }
    if with_verdict:
        summary["passed"] = args.get("passed") is True
    return summary


def summary_from_journal(steps: list[Any], *, outcome: str, note: str, with_verdict: bool) -> dict[str, Any]:
    """The fallback summary when the agent never reported: last words, changed files, failed commands."""
    calls: dict[str, ToolCallPart] = {}
    last_text = ""
    files: list[str] = []
    failed: list[str] = []
    for s in steps:
        if s.kind == "assistant":
            msg = Message.model_validate(s.payload["message"])
            if msg.text.strip():
                last_text = msg.text.strip()
            for c in msg.tool_calls:
                calls[c.id] = c
        elif s.kind == "tool_result":
            r = ToolResultPart.model_validate(s.payload)
            c = calls.get(r.tool_call_id)
            if c is None:
                continue
            if c.name in WRITE_TOOLS and not r.is_error and isinstance(c.arguments.get("path"), str):
                if c.arguments["path"] not in files:
                    files.append(c.arguments["path"])
            if c.name == "bash" and r.is_error:
                failed.append(str(c.arguments.get("command", ""))[:500])
    summary: dict[str, Any] = {
        "outcome": outcome,
        "findings": last_text[-3000:] or "(the sub-agent produced no text)",
        "files_changed": files,
        "failed_commands": failed,
        "open_questions": [note],
        "reported": False,
    }
    if with_verdict:
        summary["passed"] = False
    return summary


class Halted(Exception):
    """The run stopped (interrupted) with the agent unfinished; resume continues it."""


class SubAgentPolicy:
    """A sub-agent over the engine: its task is its first message, it ends by calling ``report``
    (reminded once if it stops without one), and it stops with the goal's budget or its share."""

    def __init__(self, manager: Lead, live: LiveAgent):
        self.m, self.live = manager, live
        self.store = manager.store
        self.agent = live.agent
        self.with_verdict = live.with_verdict
        self.allowed = {t.name for t in live.tools}
        self.nudged_at: int | None = None  # the turn count when the report reminder was sent
        self.learnt = False

    def _summary(self, ctx: TurnContext, outcome: str, note: str) -> End:
        return End(outcome, summary_from_journal(ctx.journal(), outcome=outcome, note=note,
                                                 with_verdict=self.with_verdict))

    def opening(self, ctx: TurnContext) -> Append:
        return Append("user", {"text": self.live.first_message, "why": "task"})

    def before_turn(self, ctx: TurnContext) -> End | Sequence[Action]:
        if not self.learnt:  # resumed: a report already journaled, the reminder's state
            self.learnt = True
            steps = ctx.journal()
            found = _reported(steps)
            if found is not None:
                return End("done", normalize_report(found, with_verdict=self.with_verdict))
            self.nudged_at = _nudged_at(steps)
        if self.nudged_at is not None and ctx.turn > self.nudged_at:
            return self._summary(ctx, "no_report", "the sub-agent ended without calling report; summary built from its journal")
        if self.m.stopping.is_set():
            if not self.m.final:  # interrupted, not ended: the ledger keeps it unfinished for resume
                raise Halted(self.agent.id)
            return self._summary(ctx, "stopped", "the goal ended before the sub-agent finished")
        why = self._over_budget()
        if why:
            return self._summary(ctx, "budget_exhausted", f"stopped: {why}")
        if ctx.turn >= self.live.max_turns and self.nudged_at is None:
            return [self._nudge(ctx, f" (turn limit {self.live.max_turns} reached)")]
        return ()

    def _nudge(self, ctx: TurnContext, extra: str = "") -> Append:
        self.nudged_at = ctx.turn
        return Append("user", {"text": REPORT_NUDGE + extra, "why": "report_nudge"})

    def idle(self, ctx: TurnContext) -> End | Sequence[Action]:
        if self.nudged_at is not None:
            return self._summary(ctx, "no_report", "the sub-agent ended without calling report; summary built from its journal")
        return [self._nudge(ctx)]

    def _over_budget(self) -> str | None:
        goal = self.store.get_goal(self.agent.goal_id)
        which = exhausted(Budgets(**(goal.budgets or {})), Spent.of_goal(goal))
        if which is not None:
            return f"the goal's {which} budget is used up"
        if self.live.usd_cap is not None and self.live.spent_usd >= self.live.usd_cap:
            return f"this sub-agent's share of the goal's USD budget (${self.live.usd_cap:.4f}) is used up"
        if self.live.token_cap is not None and self.live.spent_tokens >= self.live.token_cap:
            return f"this sub-agent's share of the goal's token budget ({self.live.token_cap}) is used up"
        return None

    def on_model_error(self, error: ProviderError, ctx: TurnContext) -> float | None:
        return None  # the agent fails; its parent reads why in the summary

    def accounted(self, entry: UsageEntry) -> None:
        self.store.add_agent_cost(self.agent.id, entry.cost_usd)
        self.live.add_spent(entry.usage, entry.cost_usd)

    def rerun_interrupted(self, call: ToolCallPart) -> bool:
        return call.name == "report"  # reporting has no effect beyond the journal: safe to redo

    def after_tool(self, call: ToolCallPart, outcome: ToolOutcome, ctx: TurnContext) -> End | None:
        if call.name == "report" and not outcome.is_error:
            return End("done", normalize_report(call.arguments, with_verdict=self.with_verdict))
        return None

    def run_tool(self, call: ToolCallPart, ctx: TurnContext) -> ToolOutcome:
        if call.name not in self.allowed:
            return ToolOutcome(is_error=True, content=f"tool {call.name!r} is not available to this sub-agent "
                                                      f"(role {self.agent.role}); available: {', '.join(sorted(self.allowed))}")
        if call.name == "report":
            return ToolOutcome(content="Report recorded. You are done.")
        sid, depth = self.live.session_id, self.agent.depth
        try:
            if call.name == "spawn_agent":
                return self.m.spawn(call.arguments, parent_session_id=sid, depth=depth, call_id=call.id)
            if call.name == "wait_agents":
                return self.m.wait(call.arguments, parent_session_id=sid)
            if call.name == "list_agents":
                return self.m.list(parent_session_id=sid, depth=depth)
            return self.live.toolbox.call(call.name, call.arguments)
        except SandboxError:
            raise
        except Exception as e:  # noqa: BLE001 - tool errors go back to the model
            return ToolOutcome(is_error=True, content=f"tool failed: {type(e).__name__}: {e}")


def run_subagent(manager: Lead, live: LiveAgent) -> dict[str, Any]:
    """Run (or resume) one ledger agent to its summary on the engine."""
    engine = Engine(manager.store, live.agent.goal_id, live.session_id, live.model, live.system, live.tools,
                    SubAgentPolicy(manager, live), costs=live.costs, main=False)
    return engine.run().detail


def _reported(steps: list[Any]) -> dict[str, Any] | None:
    """The arguments of a ``report`` call that has its result journaled, if any."""
    done = {s.payload.get("tool_call_id") for s in steps if s.kind == "tool_result"}
    for s in steps:
        if s.kind == "assistant":
            for c in Message.model_validate(s.payload["message"]).tool_calls:
                if c.name == "report" and c.id in done:
                    return c.arguments
    return None


def _nudged_at(steps: list[Any]) -> int | None:
    """How many model turns came before the (single) report reminder; None before it."""
    turns = 0
    for s in steps:
        if s.kind == "assistant":
            turns += 1
        elif s.kind == "user" and s.payload.get("why") == "report_nudge":
            return turns
    return None


def render_summary(agent: Any, summary: dict[str, Any] | None) -> str:
    """What the parent sees for one agent: ids and the structured summary, never the transcript."""
    return json.dumps({"agent_id": agent.id, "role": agent.role, "model": agent.model, "status": agent.status,
                       "task": agent.task[:300], "summary": summary}, ensure_ascii=False, indent=1)


__all__ = ["run_subagent", "SubAgentPolicy", "report_spec", "normalize_report", "summary_from_journal", "render_summary", "Usage"]
