"""The goal policy over the engine: how a goal's main session opens, runs its tools and ends.

A goal ends ``succeeded`` only when ``complete_goal`` is verified: its check passes in the sandbox,
or (no check) the independent judge accepts. The model's "done" or "impossible" only starts a new
turn with a continuation message. Budgets end it ``budget_exhausted``; a transient provider
outage is waited out (journaled, backing off) instead of failing an overnight run.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

from tenax.core.budget import Budgets, Spent, describe, exhausted, near_end
from tenax.core.engine import Action, Append, End, Engine, TurnContext
from tenax.core.errors import ProviderError, SandboxError, TenaxError
from tenax.core.messages import Message, ToolCallPart, ToolSpec
from tenax.core.protocols import Sandbox, Store, ToolOutcome, Toolbox, UsageEntry
from tenax.core.status import GoalStatus
from tenax.goal import prompts
from tenax.goal.guards import Guard

WRAP_UP_AT = 0.85
OUTAGE_BACKOFF_S = (30.0, 60.0, 120.0, 300.0)  # between model calls that exhausted their retries
OUTAGE_GIVE_UP_S = 3600.0  # a continuous provider outage this long fails the goal
CHECK_TIMEOUT_S = 900.0
USAGE_LIMIT_S = 120.0  # a provider asking to wait this long or more has hit a usage limit, not a blip
CONTROLS = {"stop": GoalStatus.STOPPED, "pause": GoalStatus.PAUSED}
NAP_POLL_S = 1.0  # how often a wait looks for a stop request
NO_TOOL_TURNS = 5  # turns in a row without any tool call ever made: the tools are not reaching the model
OUTPUT_TAIL = 4000

ToolFn = Callable[[ToolCallPart], ToolOutcome]  # an extra tool gets the whole call (its id, its arguments)
Verifier = Callable[[str, str], tuple[bool, str]]  # (summary, session_id) -> (passed, report)


class Verdict(ToolOutcome):
    passed: bool = False
    progress: bool = False  # a guard saw progress in it (e.g. a metric improved)


class GoalPolicy:
    def __init__(self, store: Store, goal_id: str, sandbox: Sandbox, toolbox: Toolbox, *,
                 extra_tools: dict[str, tuple[ToolSpec, ToolFn]] | None = None, judge: Verifier | None = None,
                 check_timeout: float = CHECK_TIMEOUT_S, guards: Sequence[Guard] = (), park_on_limit: bool = False,
                 usage_limit_s: float = USAGE_LIMIT_S):
        self.store, self.goal_id = store, goal_id
        self.sandbox, self.toolbox = sandbox, toolbox
        self.extra_tools = extra_tools or {}
        self.judge = judge
        self.check_timeout = check_timeout
        self.guards = list(guards)  # circling, metric, protected files... (see tenax.goal.guards)
        goal = store.get_goal(goal_id)
        self.objective, self.check_cmd = goal.objective, goal.check_cmd
        self.branch = ((goal.config or {}).get("worktree") or {}).get("branch")  # a background goal's git worktree
        self.budgets = Budgets(**(goal.budgets or {}))
        self._outage: list[float] = []  # waits of the current provider outage
        self._clock = time.monotonic()
        self._wrapped_up = False
        self._called_tools = False  # has the model ever called a tool in this session?
        self._learnt = False  # the journal's state (a resume) is read once, on the first turn
        self.control: str | None = None  # a pending `tenax stop` / `tenax pause`
        self.park_on_limit = park_on_limit  # a usage limit parks the goal (daemon) instead of waiting in place
        self.usage_limit_s = usage_limit_s  # a server's wait this long or longer is a usage limit

    def tools(self) -> list[ToolSpec]:
        """The main session's tools, frozen when its session is created."""
        return list(self.toolbox.specs()) + [spec for spec, _ in self.extra_tools.values()] + [prompts.COMPLETE_GOAL]

    # -- budget -----------------------------------------------------------------------------
    def spent(self, flush: bool = True) -> Spent:
        """What the goal has spent, this turn's time included. The goal row is read anyway, so a
        budget raised in place (`tenax budget`) and a control request are seen here too. The time is
        written to the goal's totals with each model reply (``accounted``); ``flush`` writes it now
        (at the end of a run, on a failed call)."""
        now = time.monotonic()
        if flush:
            self.store.add_to_goal_totals(self.goal_id, elapsed_s=now - self._clock)
            self._clock = now
        goal = self.store.get_goal(self.goal_id)
        self.budgets = Budgets(**(goal.budgets or {}))
        self.control = goal.control
        return Spent.of_goal(goal, extra_seconds=now - self._clock)

    def nap(self, seconds: float) -> None:
        """Sleep (an outage or usage-limit wait), waking early for a `tenax stop` / `pause`."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, NAP_POLL_S))
            if self.store.goal_control(self.goal_id) in CONTROLS:
                return

    def obey(self) -> End | None:
        """A `tenax stop` / `tenax pause` from any terminal ends the run here, resumably."""
        if self.control in CONTROLS:
            return End(CONTROLS[self.control], detail=f"{self.control} requested (tenax {self.control})")
        return None

    def budget_text(self) -> str:
        return describe(self.budgets, self.spent(flush=False))

    # -- the policy ---------------------------------------------------------------------------
    def opening(self, ctx: TurnContext) -> Append:
        text = prompts.objective_message(self.objective, self.check_cmd, self.budget_text())
        if self.branch:
            text += "\n\n" + prompts.worktree_note(self.branch)
        return Append("user", {"text": text, "why": "objective"})

    def before_turn(self, ctx: TurnContext) -> End | Sequence[Action]:
        if not self._learnt and (verified := self._learn(ctx.journal())) is not None:
            return verified
        spent = self.spent(flush=False)
        if (obeyed := self.obey()) is not None:
            return obeyed
        if (which := exhausted(self.budgets, spent)) is not None:
            ctx.emit({"type": "budget_exhausted", "budget": which, "spent": spent.model_dump()})
            return End(GoalStatus.BUDGET_EXHAUSTED)
        if not self._wrapped_up and near_end(self.budgets, spent, WRAP_UP_AT):
            self._wrapped_up = True
            return [Append("user", {"text": prompts.wrap_up_message(describe(self.budgets, spent)), "why": "wrap_up"})]
        actions: list[Action] = []
        for guard in self.guards:
            got = guard.before_turn(ctx)
            if isinstance(got, End):
                return got
            actions += got
        return actions

    def _learn(self, steps: list[Any]) -> End | None:
        """On the first turn (a resume): what the journal already says. A passed verification ends
        the goal here, so a crash between the check and the final status never runs another turn."""
        self._learnt = True
        summary = ""
        for s in steps:
            if s.kind == "assistant":
                calls = Message.model_validate(s.payload["message"]).tool_calls
                self._called_tools = self._called_tools or bool(calls)
                summary = next((str(c.arguments.get("summary", "")) for c in calls if c.name == "complete_goal"), summary)
            elif s.kind == "user" and s.payload.get("why") == "wrap_up":
                self._wrapped_up = True
            elif s.kind == "event" and s.payload.get("type") in ("check", "judge") and s.payload.get("passed"):
                return End(GoalStatus.SUCCEEDED, detail=summary)
        return None

    def idle(self, ctx: TurnContext) -> End | Sequence[Action]:
        idle = 0
        for msg in reversed(ctx.conversation.messages):
            if msg.role == "assistant":
                if msg.tool_calls:
                    break
                idle += 1
        if not self._called_tools and idle >= NO_TOOL_TURNS:
            # A model that never calls a tool while tools are offered is not reasoning its way to a
            # call: the server is dropping the tools. Say so instead of looping on it all night.
            return End(GoalStatus.FAILED, detail=(
                f"the model answered {idle} turns in a row without ever calling a tool although "
                f"{len(ctx.tools)} tools are offered; its server may be dropping the tools from the prompt "
                "(some OpenAI-compatible servers need tool calling enabled, e.g. llama.cpp's --jinja). "
                "Check with `tenax doctor`, then resume."))
        text = prompts.continuation_message(self.objective, self.budget_text(), idle)
        return [Append("user", {"text": text, "why": "continuation"})]

    def on_model_error(self, error: ProviderError, ctx: TurnContext) -> float | End | None:
        self.spent()  # the failed call's time counts
        if (obeyed := self.obey()) is not None:
            return obeyed
        if error.transient and (error.retry_after or 0) >= self.usage_limit_s:
            # A usage limit with a reset time: park until then (the daemon resumes it) or, in the
            # foreground, wait in place. Either way it is not an outage and never fails the goal.
            until = _utcnow() + timedelta(seconds=float(error.retry_after or 0))
            ctx.emit({"type": "usage_limit", "error": str(error)[:500], "until": until.isoformat(),
                      "parked": self.park_on_limit})
            if self.park_on_limit:
                return End(GoalStatus.WAITING, detail={"until": until, "why": f"usage limit until {until:%H:%M} UTC"})
            return float(error.retry_after or 0)
        if not error.transient or sum(self._outage) >= OUTAGE_GIVE_UP_S:
            return None
        if error.unreachable and ctx.turn == 0:  # never reached at all: a wrong URL, not an outage
            return None
        # Retries are used up but the cause is transient (overload, 5xx, network): an unattended
        # run waits the outage out instead of failing; the wall-time budget still rules.
        wait = OUTAGE_BACKOFF_S[min(len(self._outage), len(OUTAGE_BACKOFF_S) - 1)]
        self._outage.append(wait)
        ctx.emit({"type": "provider_outage", "error": str(error)[:500], "status": error.status, "wait_s": wait,
                  "attempts": len(error.attempts), "outage_waits": len(self._outage)})
        return wait

    def accounted(self, entry: UsageEntry) -> None:
        """The call's entry also carries the goal's time since the last flush: one write per reply."""
        self._outage.clear()
        now = time.monotonic()
        entry.elapsed_s, self._clock = now - self._clock, now

    def rerun_interrupted(self, call: ToolCallPart) -> bool:
        return False  # a started call may have had effects: never repeated blindly

    def run_tool(self, call: ToolCallPart, ctx: TurnContext) -> ToolOutcome:
        self._called_tools = True
        self.control = self.store.goal_control(self.goal_id)
        if self.control in CONTROLS:  # a stop wins within one tool call: the rest are not run
            return ToolOutcome(is_error=True, content=f"[runtime] Not run: the goal is being {CONTROLS[self.control]} "
                                                      f"(tenax {self.control}). It continues from here on resume.")
        refused = next((r for g in self.guards if (r := g.before_tool(call, ctx)) is not None), None)
        if refused is not None:
            outcome: ToolOutcome = refused
        elif call.name == "complete_goal":
            outcome = self._complete(call, ctx)
        elif call.name in self.extra_tools:
            outcome = _safe(lambda: self.extra_tools[call.name][1](call))
        else:
            outcome = _safe(lambda: self.toolbox.call(call.name, call.arguments))
        for guard in self.guards:
            outcome = guard.after_tool(call, outcome, ctx)
        return outcome

    def after_tool(self, call: ToolCallPart, outcome: ToolOutcome, ctx: TurnContext) -> End | None:
        if isinstance(outcome, Verdict) and outcome.passed:
            summary = call.arguments.get("summary")
            return End(GoalStatus.SUCCEEDED, detail=summary if isinstance(summary, str) else "")
        return None

    # -- verification -------------------------------------------------------------------------
    def _complete(self, call: ToolCallPart, ctx: TurnContext) -> Verdict:
        summary = call.arguments.get("summary", "")
        summary = summary if isinstance(summary, str) else str(summary)
        if self.check_cmd:
            return self._check(ctx)
        if self.judge is None:
            return Verdict(passed=False, is_error=True, content="No check command and no judge configured; cannot verify.")
        passed, report = self.judge(summary, ctx.session_id)
        ctx.emit({"type": "judge", "passed": passed, "report": report[-2000:]})
        if passed:
            return Verdict(passed=True, content=f"The independent reviewer accepted the work.\n{report}")
        return Verdict(passed=False, is_error=True, content=f"The independent reviewer rejected the work; keep going.\n{report}")

    def _check(self, ctx: TurnContext) -> Verdict:
        cmd = self.check_cmd or ""
        for guard in self.guards:
            guard.before_check(ctx)
        result = self.sandbox.exec(cmd, timeout=self.check_timeout, retry_on_restart=True)
        output = _tail((result.stdout + ("\n" + result.stderr if result.stderr else "")).strip(), OUTPUT_TAIL)
        if result.note:  # e.g. the container died and the check ran again in a fresh one
            output = f"[sandbox] {result.note}\n{output}"
        ctx.emit({"type": "check", "command": cmd, "passed": result.ok, "exit_code": result.exit_code,
                  "timed_out": result.timed_out, "output_tail": output[-1500:]})
        if result.ok:
            verdict = Verdict(passed=True, content=f"Check passed: `{cmd}` exited 0. The goal is complete.\n{output}")
        else:
            why = "timed out" if result.timed_out else f"exited {result.exit_code}"
            verdict = Verdict(passed=False, is_error=True, content=(
                f"The check `{cmd}` {why}; the goal is NOT complete. Keep working.\n--- check output ---\n{output}"))
        for guard in self.guards:
            verdict = guard.after_check(verdict, ctx)
        return verdict


def drive(engine: Engine, policy: GoalPolicy) -> str:
    """Run the goal's engine to an end and record the goal's status. Returns the status."""
    store, goal_id = policy.store, policy.goal_id
    store.set_status(goal_id, GoalStatus.RUNNING)
    engine.journal("event", {"type": "status", "status": "running"})
    error: str | None = None
    try:
        end = engine.run()
        status = str(end.status)
        if status == GoalStatus.SUCCEEDED:
            store.update_goal(goal_id, summary=end.detail or "")
        elif status in (GoalStatus.FAILED, GoalStatus.STUCK):
            error = str(end.detail)
        elif status == GoalStatus.WAITING:
            store.update_goal(goal_id, not_before=end.detail["until"], waiting_on=end.detail["why"])
        elif status in (GoalStatus.STOPPED, GoalStatus.PAUSED):
            error = str(end.detail)
    except KeyboardInterrupt:
        status, error = GoalStatus.STOPPED.value, "interrupted by the user"
    except ProviderError as e:
        status, error = GoalStatus.FAILED.value, f"model call failed: {e}"
    except SandboxError as e:
        status, error = GoalStatus.FAILED.value, f"sandbox failed: {e}"
    except TenaxError as e:  # the store itself failed (busy, disk full) or this runner lost its lease:
        try:  # record it if the store still takes a write; else the goal shows as interrupted
            store.set_status(goal_id, GoalStatus.FAILED, error=f"{type(e).__name__}: {e}")
        except TenaxError:
            pass
        raise
    policy.spent()
    store.set_status(goal_id, status, error=error)
    if status in (GoalStatus.STOPPED, GoalStatus.PAUSED) and policy.control:
        store.update_goal(goal_id, control=None)  # honoured
    engine.journal("event", {"type": "status", "status": status, "error": error})
    return status


def _safe(fn: Callable[[], ToolOutcome]) -> ToolOutcome:
    """Tool errors go back to the model as tool results; only the sandbox dying stops the run."""
    try:
        return fn()
    except SandboxError:
        raise
    except Exception as e:  # noqa: BLE001 - anything a tool raises is reported to the model
        return ToolOutcome(is_error=True, content=f"tool failed: {type(e).__name__}: {e}")


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)
