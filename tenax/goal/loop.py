"""The goal loop. The runtime owns the state machine; the model may only *claim* completion.

    while budget left:
        messages = fold(journal)            # the journal is the conversation
        response = model.complete(...)      # journaled, usage recorded
        no tool call  -> append a continuation message
        tool calls    -> journal started, run, journal result
        complete_goal -> verify (check in the sandbox, or a judge); pass => succeeded

Every step is journaled before the next acts on it, so a kill -9 anywhere loses nothing:
``resume`` folds the journal again, settles interrupted tool calls without repeating them,
and carries on.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from tenax.core.errors import ProviderError, SandboxError
from tenax.goal import instructions, prompts
from tenax.core.budget import Budgets, Spent, describe, exhausted, near_end
from tenax.core.journal import fold, pending_tool_calls
from tenax.core.messages import Message, ModelResponse, TextPart, ToolCallPart, ToolResultPart, ToolSpec
from tenax.core.protocols import Model, Sandbox, ToolOutcome

FINAL_STATUSES = ("succeeded", "budget_exhausted", "failed", "stopped")
WRAP_UP_AT = 0.85
OUTAGE_BACKOFF_S = (30.0, 60.0, 120.0, 300.0)  # between model calls that exhausted their retries
OUTAGE_GIVE_UP_S = 3600.0  # a continuous provider outage this long fails the goal
CHECK_TIMEOUT_S = 900.0
OUTPUT_TAIL = 4000

EventHook = Callable[[str, dict[str, Any]], None]
Verifier = Callable[[str, str], tuple[bool, str]]  # (summary, session_id) -> (passed, report)


class Verdict(ToolOutcome):
    passed: bool = False


class GoalRunner:
    def __init__(
        self,
        store: Any,
        goal_id: str,
        model: Model,
        sandbox: Sandbox,
        toolbox: Any,
        *,
        costs: Callable[[Any], tuple[float, float]] | None = None,
        judge: Verifier | None = None,
        extra_tools: dict[str, tuple[ToolSpec, Callable[[dict[str, Any]], ToolOutcome]]] | None = None,
        on_event: EventHook | None = None,
        check_timeout: float = CHECK_TIMEOUT_S,
        compactor: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.store = store
        self.model = model
        self.sandbox = sandbox
        self.toolbox = toolbox
        self.costs = costs or (lambda usage: (0.0, 0.0))
        self.judge = judge
        self.extra_tools = extra_tools or {}
        self.on_event = on_event or (lambda kind, payload: None)
        self.check_timeout = check_timeout
        self.sleep = sleep
        self._outage: list[float] = []  # waits of the current provider outage
        self.compactor = compactor  # tenax.compaction.Compactor: steering, thresholds, Ralph, too-long retry
        goal = store.get_goal(goal_id)
        self.goal_id = goal.id  # a unique prefix resolves to the full id
        self.budgets = Budgets(**(goal.budgets or {}))
        self.session_id, self.system, self.tools = self._main_session(goal)
        self._clock_mark = time.monotonic()

    # -- session ----------------------------------------------------------------------------
    def _main_session(self, goal: Any) -> tuple[str, str, list[ToolSpec]]:
        for s in self.store.sessions_for_goal(goal.id):
            if s.role == "main":  # frozen at creation: reuse verbatim so the prefix never moves
                return s.id, s.system, [ToolSpec.model_validate(t) for t in s.tools]
        tools = list(self.toolbox.specs()) + [spec for spec, _ in self.extra_tools.values()] + [prompts.COMPLETE_GOAL]
        system = instructions.system_prompt(prompts.SYSTEM_PROMPT, goal.workspace)
        sid = self.store.create_session(
            goal.id, role="main", model=goal.model, system=system, tools=[t.model_dump() for t in tools]
        )
        return sid, system, tools

    def _journal(self, kind: str, payload: dict[str, Any]) -> int:
        seq = self.store.append_step(self.session_id, kind, payload)
        self.on_event(kind, payload)
        return seq

    def _event(self, type_: str, **data: Any) -> None:
        self._journal("event", {"type": type_, **data})

    # -- budget -----------------------------------------------------------------------------
    def _flush_time(self) -> None:
        now = time.monotonic()
        self.store.add_to_goal_totals(self.goal_id, elapsed_s=now - self._clock_mark)
        self._clock_mark = now

    def _spent(self) -> Spent:
        self._flush_time()
        return Spent.of_goal(self.store.get_goal(self.goal_id))

    def _budget_text(self) -> str:
        return describe(self.budgets, self._spent())

    # -- run --------------------------------------------------------------------------------
    def run(self) -> str:
        self.store.update_goal(self.goal_id, status="running", error=None)
        self._event("status", status="running")
        try:
            steps = self.store.steps(self.session_id)
            if not any(s.kind == "user" for s in steps):
                goal = self.store.get_goal(self.goal_id)
                text = prompts.objective_message(goal.objective, goal.check_cmd, self._budget_text())
                self._journal("user", {"text": text, "why": "objective"})
            elif self._settle(steps):
                return self._finish("succeeded")
            while True:
                status = self._turn()
                if status:
                    return self._finish(status)
        except KeyboardInterrupt:
            return self._finish("stopped", error="interrupted by the user")
        except ProviderError as e:
            return self._finish("failed", error=f"model call failed: {e}")
        except SandboxError as e:
            return self._finish("failed", error=f"sandbox failed: {e}")

    def _finish(self, status: str, *, error: str | None = None) -> str:
        self._flush_time()
        fields: dict[str, Any] = {"status": status, "error": error}
        if status in ("succeeded", "budget_exhausted", "failed"):
            fields["finished_at"] = _utcnow()
        self.store.update_goal(self.goal_id, **fields)
        self._event("status", status=status, error=error)
        return status

    def _settle(self, steps: list[Any]) -> bool:
        """On resume: finish the last assistant turn's tool calls without repeating any that
        had started. Returns True if a verified completion happens here."""
        pending, started = pending_tool_calls(steps)
        succeeded = False
        for call in pending:
            if call.id in started:
                self._journal(
                    "tool_result",
                    ToolResultPart(tool_call_id=call.id, content=prompts.interrupted_result(call.name), is_error=True).model_dump(),
                )
            else:
                succeeded = self._run_tool(call) or succeeded
        if pending:
            self._event("resumed", settled=len(pending), interrupted=len(started))
        return succeeded

    def _turn(self) -> str | None:
        spent = self._spent()
        if (which := exhausted(self.budgets, spent)) is not None:
            self._event("budget_exhausted", budget=which, spent=spent.model_dump())
            return "budget_exhausted"
        steps = self.store.steps(self.session_id)
        if self.compactor is not None:
            steps = self.compactor.before_call(self, steps)
        if near_end(self.budgets, spent, WRAP_UP_AT) and not any(
            s.kind == "user" and s.payload.get("why") == "wrap_up" for s in steps
        ):
            self._journal("user", {"text": prompts.wrap_up_message(describe(self.budgets, spent)), "why": "wrap_up"})
            steps = self.store.steps(self.session_id)

        messages = fold(steps)
        turn = self.store.get_goal(self.goal_id).turns + 1
        self._journal("request", {"turn": turn, "messages": len(messages)})
        started = time.monotonic()
        try:
            if self.compactor is not None:  # compacts and retries on ContextTooLong
                response = self.compactor.complete(self, messages)
            else:
                response = self.model.complete(self.system, self.tools, messages, session_id=self.session_id)
        except ProviderError as e:
            if not getattr(e, "transient", False) or sum(self._outage) >= OUTAGE_GIVE_UP_S:
                raise
            # Retries are used up but the error is transient (overload, 5xx, network): an
            # unattended run waits the outage out instead of failing; the wall-time budget still rules.
            wait = OUTAGE_BACKOFF_S[min(len(self._outage), len(OUTAGE_BACKOFF_S) - 1)]
            self._event("provider_outage", error=str(e)[:500], wait_s=wait, attempts=len(getattr(e, "attempts", [])))
            self._outage.append(wait)
            self.sleep(wait)
            return None
        self._outage.clear()
        self._record(response, time.monotonic() - started)

        calls = response.message.tool_calls
        if not calls:
            idle = _idle_turns(self.store.steps(self.session_id))
            goal = self.store.get_goal(self.goal_id)
            text = prompts.continuation_message(goal.objective, self._budget_text(), idle)
            self._journal("user", {"text": text, "why": "continuation"})
            return None
        succeeded = False
        for call in calls:
            succeeded = self._run_tool(call) or succeeded
        return "succeeded" if succeeded else None

    def _record(self, response: ModelResponse, duration: float) -> None:
        msg = response.message
        if not msg.parts:  # an empty assistant message would be rejected by the APIs on replay
            msg = Message(role="assistant", parts=[TextPart(text="(empty response)")])
        seq = self._journal(
            "assistant",
            {"message": msg.model_dump(), "stop_reason": response.stop_reason, "usage": response.usage.model_dump()},
        )
        self.record_call(response, seq, duration, turn=True)

    def record_call(self, response: ModelResponse, seq: int, duration: float, *, turn: bool) -> None:
        """The call's usage row and the goal's totals, in one transaction. ``turn`` counts it
        as a main turn (a compaction's summary call is not one)."""
        cost, uncached = self.costs(response.usage)
        self.store.record_usage(
            self.session_id, step_seq=seq, provider=self.model.provider, model=self.model.name,
            usage=response.usage, cost_usd=cost, uncached_cost_usd=uncached, attempts=response.attempts,
            duration_s=duration, add_to_totals=True, turns=1 if turn else 0,
        )

    # -- tools ------------------------------------------------------------------------------
    def _run_tool(self, call: ToolCallPart) -> bool:
        self._journal("tool_started", {"id": call.id, "name": call.name})
        succeeded = False
        if call.name == "complete_goal":
            verdict = self._complete(call)
            outcome: ToolOutcome = verdict
            succeeded = verdict.passed
        elif call.name in self.extra_tools:
            outcome = _safe(lambda: self.extra_tools[call.name][1](call.arguments))
        else:
            outcome = _safe(lambda: self.toolbox.call(call.name, call.arguments))
        self._journal(
            "tool_result", ToolResultPart(tool_call_id=call.id, content=outcome.content, is_error=outcome.is_error).model_dump()
        )
        if succeeded:
            summary = call.arguments.get("summary") if isinstance(call.arguments.get("summary"), str) else ""
            self.store.update_goal(self.goal_id, summary=summary)
        return succeeded

    def _complete(self, call: ToolCallPart) -> Verdict:
        summary = call.arguments.get("summary", "")
        summary = summary if isinstance(summary, str) else str(summary)
        goal = self.store.get_goal(self.goal_id)
        if goal.check_cmd:
            result = self.sandbox.exec(goal.check_cmd, timeout=self.check_timeout)
            output = _tail((result.stdout + ("\n" + result.stderr if result.stderr else "")).strip(), OUTPUT_TAIL)
            passed = result.ok
            self._event("check", command=goal.check_cmd, passed=passed, exit_code=result.exit_code,
                        timed_out=result.timed_out, output_tail=output[-1500:])
            if passed:
                return Verdict(passed=True, content=f"Check passed: `{goal.check_cmd}` exited 0. The goal is complete.\n{output}")
            why = "timed out" if result.timed_out else f"exited {result.exit_code}"
            return Verdict(
                passed=False,
                is_error=True,
                content=f"The check `{goal.check_cmd}` {why}; the goal is NOT complete. Keep working.\n--- check output ---\n{output}",
            )
        if self.judge is None:
            return Verdict(passed=False, is_error=True, content="No check command and no judge configured; cannot verify.")
        passed, report = self.judge(summary, self.session_id)
        self._event("judge", passed=passed, report=report[-2000:])
        if passed:
            return Verdict(passed=True, content=f"The independent reviewer accepted the work.\n{report}")
        return Verdict(passed=False, is_error=True, content=f"The independent reviewer rejected the work; keep going.\n{report}")


def _safe(fn: Callable[[], ToolOutcome]) -> ToolOutcome:
    """Tool errors go back to the model as tool results; only the sandbox dying stops the run."""
    try:
        return fn()
    except SandboxError:
        raise
    except Exception as e:  # noqa: BLE001 - anything a tool raises is reported to the model
        return ToolOutcome(is_error=True, content=f"tool failed: {type(e).__name__}: {e}")


def _idle_turns(steps: list[Any]) -> int:
    """How many assistant turns in a row (ending now) made no tool call."""
    n = 0
    for s in reversed(steps):
        if s.kind == "assistant":
            if Message.model_validate(s.payload["message"]).tool_calls:
                break
            n += 1
    return n


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]


def _utcnow() -> Any:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)
