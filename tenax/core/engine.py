"""The turn loop every agent runs: a goal's main session and each sub-agent alike.

    open or resume        read the journal once; settle the calls a crash interrupted
    loop:
      policy.before_turn  end here (budget, verdict, report)? or what to append first
      hook.before_call    steering, compaction, Ralph, ...: append, or replace the context
      call the model      the intent is journaled first; the reply and its usage in one transaction
      no tool call        policy.idle: what to append (a continuation), or the end
      each tool call      tool_started, policy.run_tool, tool_result; policy.after_tool may end the run

The engine owns the state machine and the journal; the model may only *claim* completion and
the policy decides. Every step is journaled before the next acts on it, so a ``kill -9`` anywhere
loses nothing. The folded conversation lives in memory and grows one step at a time: turn 1,000
costs what turn 10 does.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any, Callable, Sequence

from tenax.core.errors import ContextTooLong, ProviderError
from tenax.core.journal import Conversation, Entry, pending_tool_calls
from tenax.core.messages import Message, ModelResponse, TextPart, ToolCallPart, ToolResultPart, ToolSpec, Usage
from tenax.core.protocols import Model, Store, ToolOutcome, UsageEntry
from tenax.core.turn import Action, Append, CostFn, End, EventHook, Hook, Policy, Replace, TurnContext

__all__ = ["Engine", "Action", "Append", "CostFn", "End", "EventHook", "Hook", "Policy", "Replace", "TurnContext"]


_FROZEN_IN: int | None = None  # the process whose heap was frozen


def _freeze_once() -> None:
    """Keep what a process's first goal loaded and journaled out of every later collection
    (``gc.freeze``). Once per process: a freeze at each engine's start (a sub-agent's, a next goal's
    in a library's process) froze the garbage of the ones before it for good, their Docker
    connections with it, and a process running many of them ran out of descriptors."""
    global _FROZEN_IN
    if _FROZEN_IN != os.getpid():
        _FROZEN_IN = os.getpid()
        gc.freeze()


class Engine:
    def __init__(self, store: Store, goal_id: str, session_id: str, model: Model, system: str,
                 tools: list[ToolSpec], policy: Policy, *, hooks: Sequence[Hook] = (), costs: CostFn | None = None,
                 on_event: EventHook | None = None, main: bool = True, sleep: Callable[[float], None] = time.sleep):
        self.store, self.goal_id, self.session_id = store, goal_id, session_id
        self.model, self.system, self.tools = model, system, tools
        self.policy, self.hooks = policy, list(hooks)
        self.costs = costs or (lambda usage: (0.0, 0.0))
        self.on_event = on_event or (lambda kind, payload: None)
        self.main, self.sleep = main, sleep
        self.conversation = Conversation()
        self.turn = 0
        self._prefix: int | None = None

    def context(self) -> TurnContext:
        return TurnContext(self.goal_id, self.session_id, self.model, self.system, self.tools, self.conversation,
                           lambda: self.store.steps(self.session_id), self.turn, lambda p: self.journal("event", p))

    def journal(self, kind: str, payload: dict[str, Any], usage: UsageEntry | None = None) -> int:
        seq = self.store.append_step(self.session_id, kind, payload, usage=usage)
        self.conversation.add(Entry(seq, kind, payload))
        try:
            self.on_event(kind, payload)
        except Exception:  # noqa: BLE001 - a display or telemetry fault must never end an unattended run
            pass
        return seq

    def apply(self, actions: Sequence[Action]) -> None:
        for a in actions:
            if isinstance(a, Replace):
                usage = self._usage(a.response, a.duration_s, turns=0) if a.response is not None else None
                self.journal("compaction", a.payload, usage)
            else:
                self.journal(a.kind, a.payload)
                if a.then is not None:
                    a.then()

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> End:
        steps = self.store.steps(self.session_id)  # the one full read: on open or resume
        self.conversation = Conversation.of(steps)
        _freeze_once()
        self.turn = sum(1 for s in steps if s.kind == "assistant")
        self._account_interrupted_call(steps)
        if not any(s.kind == "user" for s in steps):
            self.apply([self.policy.opening(self.context())])
        else:
            pending, started = pending_tool_calls(steps)
            dead = {c.id for c in pending if c.id in started and not self.policy.rerun_interrupted(c)}
            end = self._run_calls(pending, interrupted=dead)
            if pending:
                self.journal("event", {"type": "resumed", "settled": len(pending), "interrupted": len(started)})
            if end is not None:
                return end
        while True:
            end = self._turn()
            if end is not None:
                return end

    def _turn(self) -> End | None:
        ctx = self.context()
        got = self.policy.before_turn(ctx)
        if isinstance(got, End):
            return got
        self.apply(got)
        for hook in self.hooks:
            self.apply(hook.before_call(self.context()))
        response = self._call()
        if response is None or isinstance(response, End):
            return response
        calls = response.message.tool_calls
        if not calls:
            got = self.policy.idle(self.context())
            if isinstance(got, End):
                return got
            self.apply(got)
            return None
        return self._run_calls(calls)

    def _call(self) -> ModelResponse | End | None:
        # The intent is journaled first: a call cut off by a crash is still accounted on resume.
        self.journal("request", {"turn": self.turn + 1, "messages": len(self.conversation.messages),
                                 "est_input_tokens": self.conversation.tokens(self._prefix_chars())})
        started, attempt = time.monotonic(), 0
        while True:
            try:
                response = self.model.complete(self.system, self.tools, self.conversation.messages,
                                               session_id=self.session_id)
                break
            except ContextTooLong:
                replace = next((r for h in self.hooks if (r := h.on_context_too_long(self.context(), attempt))), None)
                if replace is None:
                    raise
                self.apply([replace])
                attempt += 1
            except ProviderError as e:  # the policy says: wait and retry next turn, end here, or fail
                wait = self.policy.on_model_error(e, self.context())
                if wait is None:
                    raise
                if isinstance(wait, End):
                    return wait
                self.sleep(wait)
                return None
        msg = response.message
        if not msg.parts:  # an empty assistant message would be rejected by the APIs on replay
            msg = Message(role="assistant", parts=[TextPart(text="(empty response)")])
            response = response.model_copy(update={"message": msg})
        failed = [a.model_dump() for a in response.attempts if not a.ok]
        if failed:  # retried failures are part of the record, not only of the usage table
            self.journal("event", {"type": "provider_retries", "failed_attempts": failed})
        usage = self._usage(response, time.monotonic() - started, turns=1 if self.main else 0)
        self.journal("assistant", {"message": msg.model_dump(), "stop_reason": response.stop_reason,
                                   "usage": response.usage.model_dump()}, usage)
        self.turn += 1
        return response

    def _prefix_chars(self) -> int:
        if self._prefix is None:
            self._prefix = len(self.system) + sum(len(t.canonical()) for t in self.tools)
        return self._prefix

    def _account_interrupted_call(self, steps: list[Any]) -> None:
        """A model call a crash cut off (its intent journaled, no reply, no outage after it) was
        probably billed: record it with its input as estimated and the output as the session's
        average, marked ``estimated``, so totals and budgets count every call."""
        last = max((i for i, s in enumerate(steps) if s.kind == "request"), default=None)
        if last is None or any(s.kind == "assistant" or s.payload.get("type") in
                               ("provider_outage", "interrupted_call") for s in steps[last + 1:]):
            return
        outs = [s.payload.get("usage", {}).get("output_tokens", 0) for s in steps if s.kind == "assistant"]
        usage = Usage(input_tokens=int(steps[last].payload.get("est_input_tokens") or 0),
                      output_tokens=sum(outs) // len(outs) if outs else 0)
        response = ModelResponse(message=Message(role="assistant"), usage=usage, estimated=True)
        self.journal("event", {"type": "interrupted_call", "turn": steps[last].payload.get("turn"),
                               "usage": usage.model_dump(), "estimated": True}, self._usage(response, 0.0, turns=0))

    def _usage(self, response: ModelResponse, duration: float, *, turns: int) -> UsageEntry:
        cost, uncached = self.costs(response.usage)
        entry = UsageEntry(provider=self.model.provider, model=self.model.name, usage=response.usage, cost_usd=cost,
                           uncached_cost_usd=uncached, attempts=[a.model_dump() for a in response.attempts],
                           duration_s=duration, turns=turns, estimated=response.estimated)
        self.policy.accounted(entry)
        return entry

    # -- tools ------------------------------------------------------------------------------
    def _run_calls(self, calls: list[ToolCallPart], interrupted: set[str] = frozenset()) -> End | None:
        end: End | None = None
        ctx = self.context()
        for call in calls:  # every call gets its result, even after one that ends the run
            if call.id in interrupted:  # started before a crash: may have had effects, never repeated
                self._result(call, ToolOutcome(is_error=True, content=interrupted_result(call.name)))
                continue
            self.journal("tool_started", {"id": call.id, "name": call.name})
            if call.error:  # cut off by max_tokens or not valid JSON: never executed
                outcome = ToolOutcome(is_error=True, content=f"[runtime] The {call.name} call was not run: "
                                      f"{call.error}. Send the complete call again (split large content).")
            else:
                outcome = self.policy.run_tool(call, ctx)
            self._result(call, outcome)
            end = end or (None if call.error else self.policy.after_tool(call, outcome, ctx))
        return end

    def _result(self, call: ToolCallPart, outcome: ToolOutcome) -> None:
        part = ToolResultPart(tool_call_id=call.id, content=outcome.content, is_error=outcome.is_error)
        self.journal("tool_result", part.model_dump())


def interrupted_result(name: str) -> str:
    return (f"[runtime] The {name} call was interrupted (tenax was stopped while it ran) and was not repeated "
            "on resume. Its effects may be partial: inspect the workspace before relying on it.")
