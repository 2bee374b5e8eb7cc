"""The sub-agent loop: short, journaled, resumable. Deliberately not the GoalRunner.

A sub-agent has its own session row (system + tools frozen at spawn), its own journal and its
own usage rows. Its context is folded from its own journal only: the task, its role prompt and
its tools, never the parent's history. It ends by calling ``report``; if it stops without one the
runtime asks once, and if it still does not report, the summary is built from its journal.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from tenax.core.errors import SandboxError
from tenax.goal import prompts
from tenax.core.budget import Budgets, Spent, exhausted
from tenax.core.journal import fold, pending_tool_calls
from tenax.core.messages import Message, TextPart, ToolCallPart, ToolResultPart, ToolSpec, Usage
from tenax.core.protocols import ToolOutcome

if TYPE_CHECKING:
    from tenax.subagents.manager import AgentManager, _Live

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
    required = ["outcome", "findings"]
    if with_verdict:
        props["passed"] = {"type": "boolean", "description": "true only if the objective is fully met."}
        required.append("passed")
    return ToolSpec(
        name="report",
        description="Finish your task: hand your structured result to the lead agent. Call it exactly once, last.",
        parameters={"type": "object", "properties": props, "required": required, "additionalProperties": False},
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


class SubAgentRun:
    """Runs (or resumes) one ledger agent to its summary. ``live`` carries the model, tools and
    sandbox the manager prepared for it."""

    def __init__(self, manager: "AgentManager", live: "_Live"):
        self.m = manager
        self.live = live
        self.store = manager.store
        self.agent = live.agent
        self.sid = live.session_id
        self.with_verdict = live.with_verdict

    def _journal(self, kind: str, payload: dict[str, Any]) -> int:
        return self.store.append_step(self.sid, kind, payload)

    def run(self) -> dict[str, Any]:
        steps = self.store.steps(self.sid)
        if not any(s.kind == "user" for s in steps):
            self._journal("user", {"text": self.live.first_message, "why": "task"})
        else:
            self._settle(steps)
        max_turns = self.live.max_turns
        while True:
            steps = self.store.steps(self.sid)
            found = _reported(steps)
            if found is not None:
                return normalize_report(found, with_verdict=self.with_verdict)
            turns = sum(1 for s in steps if s.kind == "assistant")
            nudged = any(s.kind == "user" and s.payload.get("why") == "report_nudge" for s in steps)
            last_kind = next((s.kind for s in reversed(steps) if s.kind in ("user", "assistant", "tool_result")), "")
            if nudged and last_kind != "user" and _after_nudge(steps):
                return summary_from_journal(steps, outcome="no_report", with_verdict=self.with_verdict,
                                            note="the sub-agent ended without calling report; summary built from its journal")
            if turns >= max_turns and not nudged:
                self._journal("user", {"text": REPORT_NUDGE + f" (turn limit {max_turns} reached)", "why": "report_nudge"})
                continue
            if self.m.stopping.is_set():
                if not self.m.final:  # interrupted, not ended: the ledger keeps it unfinished for resume
                    raise Halted(self.agent.id)
                return summary_from_journal(steps, outcome="stopped", with_verdict=self.with_verdict,
                                            note="the goal ended before the sub-agent finished")
            why = self._over_budget()
            if why:
                return summary_from_journal(steps, outcome="budget_exhausted", with_verdict=self.with_verdict,
                                            note=f"stopped: {why}")
            self._turn(steps, nudged)

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

    def _turn(self, steps: list[Any], nudged: bool) -> None:
        messages = fold(steps)
        model = self.live.model
        started = time.monotonic()
        resp = model.complete(self.live.system, self.live.tools, messages, session_id=self.sid)
        msg = resp.message if resp.message.parts else Message(role="assistant", parts=[TextPart(text="(empty response)")])
        seq = self._journal("assistant", {"message": msg.model_dump(), "stop_reason": resp.stop_reason,
                                          "usage": resp.usage.model_dump()})
        cost, uncached = self.live.costs(resp.usage)
        self.store.record_usage(self.sid, step_seq=seq, provider=model.provider, model=model.name, usage=resp.usage,
                                cost_usd=cost, uncached_cost_usd=uncached, attempts=resp.attempts,
                                duration_s=time.monotonic() - started, add_to_totals=True)
        self.store.add_agent_cost(self.agent.id, cost)
        self.live.add_spent(resp.usage, cost)
        for call in msg.tool_calls:
            self._run_tool(call)
        if not msg.tool_calls and not nudged:
            self._journal("user", {"text": REPORT_NUDGE, "why": "report_nudge"})

    def _settle(self, steps: list[Any]) -> None:
        """On resume: interrupted tool calls get an "interrupted" result and are never re-run."""
        pending, started = pending_tool_calls(steps)
        for call in pending:
            if call.id in started and call.name != "report":
                part = ToolResultPart(tool_call_id=call.id, content=prompts.interrupted_result(call.name), is_error=True)
                self._journal("tool_result", part.model_dump())
            else:
                self._run_tool(call)

    def _run_tool(self, call: ToolCallPart) -> None:
        self._journal("tool_started", {"id": call.id, "name": call.name})
        outcome = self._dispatch(call)
        self._journal("tool_result", ToolResultPart(tool_call_id=call.id, content=outcome.content,
                                                    is_error=outcome.is_error).model_dump())

    def _dispatch(self, call: ToolCallPart) -> ToolOutcome:
        allowed = {t.name for t in self.live.tools}
        if call.name not in allowed:
            return ToolOutcome(is_error=True, content=f"tool {call.name!r} is not available to this sub-agent "
                                                      f"(role {self.agent.role}); available: {', '.join(sorted(allowed))}")
        if call.name == "report":
            return ToolOutcome(content="Report recorded. You are done.")
        try:
            if call.name == "spawn_agent":
                return self.m.spawn(call.arguments, parent_session_id=self.sid, depth=self.agent.depth, call_id=call.id)
            if call.name == "wait_agents":
                return self.m.wait(call.arguments, parent_session_id=self.sid)
            if call.name == "list_agents":
                return self.m.list(parent_session_id=self.sid, depth=self.agent.depth)
            return self.live.toolbox.call(call.name, call.arguments)
        except SandboxError:
            raise
        except Exception as e:  # noqa: BLE001 - tool errors go back to the model
            return ToolOutcome(is_error=True, content=f"tool failed: {type(e).__name__}: {e}")


def _reported(steps: list[Any]) -> dict[str, Any] | None:
    """The arguments of a ``report`` call that has its result journaled, if any."""
    done = {s.payload.get("tool_call_id") for s in steps if s.kind == "tool_result"}
    for s in steps:
        if s.kind == "assistant":
            for c in Message.model_validate(s.payload["message"]).tool_calls:
                if c.name == "report" and c.id in done:
                    return c.arguments
    return None


def _after_nudge(steps: list[Any]) -> bool:
    """True once the model has answered after the (single) report reminder."""
    seen = False
    for s in steps:
        if s.kind == "user" and s.payload.get("why") == "report_nudge":
            seen = True
        elif seen and s.kind == "assistant":
            return True
    return False


def render_summary(agent: Any, summary: dict[str, Any] | None) -> str:
    """What the parent sees for one agent: ids and the structured summary, never the transcript."""
    return json.dumps({"agent_id": agent.id, "role": agent.role, "model": agent.model, "status": agent.status,
                       "task": agent.task[:300], "summary": summary}, ensure_ascii=False, indent=1)


__all__ = ["SubAgentRun", "report_spec", "normalize_report", "summary_from_journal", "render_summary", "Usage"]
