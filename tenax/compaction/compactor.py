"""Compaction: keep a long goal inside the model's window without losing the plan.

Before each model call ``GoalRunner`` asks ``Compactor.before_call``, which

1. journals queued steering messages (``tenax steer``) as user steps;
2. (Ralph strategy) starts a fresh iteration when the model ended its turn or after K turns;
3. compacts when the context estimate (last call's reported input + output, plus chars/4 of what
   was appended since) reaches ``threshold`` x the model's window.

``Compactor.complete`` makes the main call and, on ``ContextTooLong``, compacts and retries.

A compaction asks the *same* model with the *same* system prompt and tools (so the request rides
the cached prefix) for a handoff summary, indexes the archived steps for ``recall``, and journals
a ``compaction`` step; ``tenax.core.journal.fold`` then starts the context from it. Nothing is
deleted from the journal.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from tenax.compaction.ledger import build_ledger, render
from tenax.core.errors import ContextTooLong
from tenax.core.journal import fold
from tenax.core.messages import Message, ModelResponse, TextPart, ToolResultPart
from tenax.store import memory

CONTEXT_KINDS = ("user", "assistant", "tool_result")

SUMMARY_REQUEST = (
    "[runtime] The context window is nearly full: this conversation is about to be compacted. Do not call "
    "any tool now. Write a handoff summary for yourself that lets you continue without the transcript: "
    "the goal; progress so far; decisions made and why; what remains, as concrete next steps; and critical "
    "data (paths, commands, error messages, values, names). The runtime separately keeps a ledger of the "
    "plan, notes, check runs, files touched, sub-agents and steering, so focus on what that would miss."
)


@dataclass
class CompactionConfig:
    threshold: float = 0.8  # fraction of the window that triggers a compaction
    keep_turns: int = 2  # assistant turns kept verbatim after a compaction
    window: int | None = None  # override the model table's context window (tokens)
    ralph_turns: int = 25  # Ralph: turns per iteration at most
    summary_max_tokens: int = 4096
    tail_share: float = 0.5  # the kept tail may use at most this share of the threshold

    @classmethod
    def from_goal(cls, goal: Any) -> "CompactionConfig":
        raw = dict((goal.config or {}).get("compaction") or {})
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        cfg = cls(**known)
        if not 0.05 <= cfg.threshold <= 1.0:
            cfg.threshold = 0.8
        cfg.keep_turns = max(0, int(cfg.keep_turns))
        cfg.ralph_turns = max(1, int(cfg.ralph_turns))
        return cfg


def estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _step_chars(step: Any) -> int:
    if step.kind == "user":
        return len(step.payload.get("text", ""))
    if step.kind == "tool_result":
        return len(step.payload.get("content", "")) + 40
    if step.kind == "assistant":
        return len(json.dumps(step.payload.get("message", {})))
    return 0


def _marker_index(steps: list[Any]) -> int | None:
    for i in range(len(steps) - 1, -1, -1):
        if steps[i].kind == "compaction":
            return i
    return None


def _context_steps(steps: list[Any]) -> list[Any]:
    """The steps that the current context folds (after the latest marker's kept_from)."""
    i = _marker_index(steps)
    if i is None:
        return [s for s in steps if s.kind in CONTEXT_KINDS]
    kept_from = int(steps[i].payload["kept_from"])
    return [s for s in steps if s.seq >= kept_from and s.kind in CONTEXT_KINDS]


def _doc(step: Any) -> str:
    p = step.payload
    if step.kind == "user":
        return p.get("text", "")
    if step.kind == "tool_result":
        return p.get("content", "")
    if step.kind == "assistant":
        msg = Message.model_validate(p["message"])
        bits = [msg.text] + [f"{c.name}({json.dumps(c.arguments, ensure_ascii=False)})" for c in msg.tool_calls]
        return "\n".join(b for b in bits if b)
    return ""


class Compactor:
    def __init__(self, store: Any, goal_id: str, *, window: int, config: CompactionConfig | None = None,
                 strategy: str = "continuous"):
        self.store = store
        self.goal_id = goal_id
        self.window = int(config.window if config and config.window else window)
        self.config = config or CompactionConfig()
        self.strategy = strategy

    @property
    def limit(self) -> int:
        return int(self.window * self.config.threshold)

    # -- estimate ----------------------------------------------------------------------------
    def context_tokens(self, runner: Any, steps: list[Any]) -> int:
        """Reported input + output of the last call in the current context, plus chars/4 of what
        was appended since; with no call since the last compaction, chars/4 of the whole fold."""
        ctx = _context_steps(steps)
        last = None
        for i in range(len(ctx) - 1, -1, -1):
            if ctx[i].kind == "assistant" and ctx[i].payload.get("usage"):
                last = i
                break
        if last is None:
            body = runner.system + "".join(t.canonical() for t in runner.tools)
            body += json.dumps([m.model_dump() for m in fold(steps)])
            return estimate_tokens(body)
        u = ctx[last].payload["usage"]
        reported = (u.get("input_tokens", 0) + u.get("cache_read_tokens", 0) + u.get("cache_write_tokens", 0)
                    + u.get("output_tokens", 0))
        appended = sum(_step_chars(s) for s in ctx[last + 1 :])
        return reported + (appended + 3) // 4

    # -- hooks for GoalRunner ----------------------------------------------------------------
    def before_call(self, runner: Any, steps: list[Any]) -> list[Any]:
        steps = self._take_steering(runner, steps)
        if self.strategy == "ralph" and self._iteration_over(steps):
            return self.compact(runner, steps, reason="ralph", mode="ralph")
        ctx = _context_steps(steps)
        if any(s.kind == "assistant" for s in ctx):  # never compact a freshly compacted context again
            tokens = self.context_tokens(runner, steps)
            if tokens >= self.limit:
                return self.compact(runner, steps, reason="threshold", tokens_before=tokens)
        return steps

    def complete(self, runner: Any, messages: list[Message]) -> ModelResponse:
        """The main call; on ContextTooLong compact (keeping fewer turns each time) and retry."""
        plans = [self.config.keep_turns, 0] if self.config.keep_turns else [0]
        for attempt in range(len(plans) + 1):
            try:
                return runner.model.complete(runner.system, runner.tools, messages, session_id=runner.session_id)
            except ContextTooLong:
                if attempt == len(plans):
                    raise
                steps = self.compact(runner, runner.store.steps(runner.session_id), reason="context_too_long",
                                     keep_turns=plans[attempt])
                messages = fold(steps)
        raise AssertionError("unreachable")

    # -- steering ----------------------------------------------------------------------------
    def _take_steering(self, runner: Any, steps: list[Any]) -> list[Any]:
        pending = memory.steering(self.store, self.goal_id, pending_only=True)
        if not pending:
            return steps
        done = {s.payload.get("steering_id") for s in steps if s.kind == "user" and s.payload.get("why") == "steering"}
        for item in pending:
            if item.id not in done:  # a kill between journaling and marking must not duplicate it
                runner._journal("user", {"text": f"[user steering message] {item.text}", "why": "steering",
                                         "steering_id": item.id, "verbatim": item.text})
            memory.mark_steering_consumed(self.store, item.id)
        return runner.store.steps(runner.session_id)

    # -- ralph -------------------------------------------------------------------------------
    def _iteration_over(self, steps: list[Any]) -> bool:
        ctx = _context_steps(steps)
        assistants = [s for s in ctx if s.kind == "assistant"]
        if not assistants:
            return False
        if len(assistants) >= self.config.ralph_turns:
            return True
        return not Message.model_validate(assistants[-1].payload["message"]).tool_calls

    # -- the compaction step -----------------------------------------------------------------
    def compact(self, runner: Any, steps: list[Any], *, reason: str, mode: str = "summary",
                keep_turns: int | None = None, tokens_before: int | None = None) -> list[Any]:
        sid = runner.session_id
        tokens_before = tokens_before if tokens_before is not None else self.context_tokens(runner, steps)
        ctx = _context_steps(steps)
        last_seq = steps[-1].seq if steps else 0
        first_ctx = ctx[0].seq if ctx else last_seq + 1

        keep = 0 if mode == "ralph" else (self.config.keep_turns if keep_turns is None else keep_turns)
        assistants = [s.seq for s in ctx if s.kind == "assistant"]
        k = max(0, min(keep, len(assistants) - 1))
        budget = self.limit * self.config.tail_share
        while k > 0 and sum(_step_chars(s) for s in ctx if s.seq >= assistants[-k]) / 4 > budget:
            k -= 1
        kept_from = assistants[-k] if k > 0 else last_seq + 1
        archived = [s for s in ctx if s.seq < kept_from]

        summary, usage, response = "", None, None
        started = time.monotonic()
        if mode == "ralph":
            summary = self._ralph_text(runner, steps, ctx)
        else:
            summary, response = self._summarize(runner, steps)
        duration = time.monotonic() - started

        memory.index_docs(self.store, self.goal_id, [(sid, s.seq, s.kind, _doc(s)) for s in archived])
        led = build_ledger(self.store, self.goal_id, sid, steps)
        led.archived = (first_ctx, kept_from - 1) if archived else None
        ledger_text = render(led)
        if response is not None:
            usage = response.usage.model_dump()
        head = ledger_text + "\n" + summary
        tail_chars = sum(_step_chars(s) for s in ctx if s.seq >= kept_from)
        tokens_after = estimate_tokens(runner.system + "".join(t.canonical() for t in runner.tools) + head) + tail_chars // 4
        payload = {
            "mode": mode,
            "reason": reason,
            "ledger": ledger_text,
            "summary": summary,
            "kept_from": kept_from,
            "kept_turns": k,
            "archived": list(led.archived) if led.archived else None,
            "tokens_before": tokens_before,
            "tokens_after": tokens_after,
            "window": self.window,
            "summary_usage": usage,
        }
        seq = runner._journal("compaction", payload)
        if response is not None:
            runner.record_call(response, seq, duration, turn=False)
        return runner.store.steps(sid)

    def _summarize(self, runner: Any, steps: list[Any]) -> tuple[str, ModelResponse | None]:
        messages = fold(steps)
        ask = TextPart(text=SUMMARY_REQUEST)
        if messages and messages[-1].role == "user":
            messages[-1] = Message(role="user", parts=[*messages[-1].parts, ask])
        else:
            messages.append(Message(role="user", parts=[ask]))
        try:
            response = runner.model.complete(runner.system, runner.tools, messages, session_id=runner.session_id,
                                             max_tokens=self.config.summary_max_tokens)
        except ContextTooLong:
            return self._fallback_summary(steps, "the summary request itself exceeded the window"), None
        text = response.message.text.strip()
        if not text:  # e.g. it called a tool anyway: such calls are not journaled, so pairing holds
            return self._fallback_summary(steps, "the model gave no summary text"), response
        header = "[runtime] Handoff summary you wrote before the context was compacted:"
        return f"{header}\n{text}\n\n[runtime] Continue working toward the goal from here.", response

    def _fallback_summary(self, steps: list[Any], why: str) -> str:
        texts = [Message.model_validate(s.payload["message"]).text for s in steps if s.kind == "assistant"]
        recent = [t.strip()[:600] for t in texts if t.strip()][-4:]
        lines = [f"[runtime] No model-written handoff summary ({why}). Your most recent remarks were:"]
        lines += [f"- {t}" for t in recent] or ["- (none)"]
        lines.append("[runtime] Continue working toward the goal from here; use recall(query) for details.")
        return "\n".join(lines)

    def _ralph_text(self, runner: Any, steps: list[Any], ctx: list[Any]) -> str:
        n = 1 + sum(1 for s in steps if s.kind == "compaction" and s.payload.get("mode") == "ralph")
        last = [Message.model_validate(s.payload["message"]).text for s in ctx if s.kind == "assistant"]
        said = next((t.strip() for t in reversed(last) if t.strip()), "")
        lines = [f"[runtime] Ralph iteration {n + 1}: a fresh context. The previous iteration's work is in "
                 "/workspace (inspect it); the ledger above is your memory. Continue toward the goal; only "
                 "complete_goal with a passing verification ends the run."]
        if said:
            lines.append(f"The previous iteration ended with: {said[:1500]}")
        lines.append(f"Budget: {runner._budget_text()}")
        return "\n".join(lines)

