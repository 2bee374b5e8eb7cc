"""Compaction: keep a long goal inside the model's window without losing the plan.

Two hooks of the engine (``tenax.core.engine.Hook``):

- ``Compactor`` compacts before a model call when the context estimate (the last call's reported
  input + output, plus chars/4 of what was appended since) reaches ``threshold`` x the model's
  window, and on ``ContextTooLong`` (keeping fewer turns each time) so the engine can retry.
- ``Ralph`` (the Ralph strategy) starts a fresh iteration when the model ended its turn without a
  tool call, or after K turns, with the ledger as its memory.

Both return a ``Replace`` action; the engine journals it and restarts the context from it.

A compaction asks the *same* model with the *same* system prompt and tools (so the request rides
the cached prefix) for a handoff summary, indexes the archived steps for ``recall``, and hands the
engine a ``compaction`` step; the context then starts from it (``tenax.core.journal``). Nothing
is deleted from the journal.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable

from tenax.compaction.ledger import build_ledger, render
from tenax.core.engine import Hook, Replace, TurnContext
from tenax.core.errors import ContextTooLong
from tenax.core.journal import step_chars
from tenax.core.messages import Message, ModelResponse, TextPart
from tenax.core.protocols import Store

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


class Compactor(Hook):
    def __init__(self, store: Store, goal_id: str, *, window: int, config: CompactionConfig | None = None,
                 budget_text: Callable[[], str] = lambda: ""):
        self.store = store
        self.goal_id = goal_id
        self.window = int(config.window if config and config.window else window)
        self.config = config or CompactionConfig()
        self.budget_text = budget_text
        self._prefix_chars: int | None = None

    @property
    def limit(self) -> int:
        return int(self.window * self.config.threshold)

    # -- estimate ----------------------------------------------------------------------------
    def context_tokens(self, ctx: TurnContext) -> int:
        """The last call's reported input + output plus chars/4 of what was appended since (kept
        incrementally by the conversation); with no call in this context yet, chars/4 of all of it."""
        if self._prefix_chars is None:  # system and tools are frozen for the session
            self._prefix_chars = len(ctx.system) + sum(len(t.canonical()) for t in ctx.tools)
        return ctx.conversation.tokens(self._prefix_chars)

    # -- the hook ----------------------------------------------------------------------------
    def before_call(self, ctx: TurnContext) -> list[Replace]:
        if ctx.conversation.calls == 0:  # not again before a model call has followed the last compaction
            return []
        tokens = self.context_tokens(ctx)
        if tokens < self.limit:
            return []
        return [self.compact(ctx, reason="threshold", tokens_before=tokens)]

    def on_context_too_long(self, ctx: TurnContext, attempt: int) -> Replace | None:
        """Compact (keeping fewer turns each time) so the engine can retry the call."""
        plans = [self.config.keep_turns, 0] if self.config.keep_turns else [0]
        if attempt >= len(plans):
            return None
        return self.compact(ctx, reason="context_too_long", keep_turns=plans[attempt])

    # -- the compaction step -----------------------------------------------------------------
    def compact(self, ctx: TurnContext, *, reason: str, mode: str = "summary",
                keep_turns: int | None = None, tokens_before: int | None = None) -> Replace:
        steps = ctx.journal()  # the whole journal: once per compaction, for the ledger
        tokens_before = tokens_before if tokens_before is not None else self.context_tokens(ctx)
        context = list(ctx.conversation.steps)
        last_seq = steps[-1].seq if steps else 0
        first_ctx = context[0].seq if context else last_seq + 1

        keep = 0 if mode == "ralph" else (self.config.keep_turns if keep_turns is None else keep_turns)
        assistants = [s.seq for s in context if s.kind == "assistant"]
        k = max(0, min(keep, len(assistants) - 1))
        budget = self.limit * self.config.tail_share
        while k > 0 and sum(step_chars(s) for s in context if s.seq >= assistants[-k]) / 4 > budget:
            k -= 1
        kept_from = assistants[-k] if k > 0 else last_seq + 1
        archived = [s for s in context if s.seq < kept_from]

        started = time.monotonic()
        response = None
        if mode == "ralph":
            summary = self._ralph_text(steps, context)
        else:
            summary, response = self._summarize(ctx, steps)
        duration = time.monotonic() - started

        self.store.index_docs(self.goal_id, [(ctx.session_id, s.seq, s.kind, _doc(s)) for s in archived])
        led = build_ledger(self.store, self.goal_id, ctx.session_id, steps)
        led.archived = (first_ctx, kept_from - 1) if archived else None
        ledger_text = render(led)
        tail_chars = sum(step_chars(s) for s in context if s.seq >= kept_from)
        prefix = ctx.system + "".join(t.canonical() for t in ctx.tools)
        payload = {
            "mode": mode,
            "reason": reason,
            "ledger": ledger_text,
            "summary": summary,
            "kept_from": kept_from,
            "kept_turns": k,
            "archived": list(led.archived) if led.archived else None,
            "tokens_before": tokens_before,
            "tokens_after": estimate_tokens(prefix + ledger_text + "\n" + summary) + tail_chars // 4,
            "window": self.window,
            "summary_usage": response.usage.model_dump() if response is not None else None,
        }
        return Replace(payload, response=response, duration_s=duration)

    def _summarize(self, ctx: TurnContext, steps: list[Any]) -> tuple[str, ModelResponse | None]:
        messages = list(ctx.conversation.messages)
        ask = TextPart(text=SUMMARY_REQUEST)
        if messages and messages[-1].role == "user":
            messages[-1] = Message(role="user", parts=[*messages[-1].parts, ask])
        else:
            messages.append(Message(role="user", parts=[ask]))
        try:
            response = ctx.model.complete(ctx.system, ctx.tools, messages, session_id=ctx.session_id,
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

    def _ralph_text(self, steps: list[Any], context: list[Any]) -> str:
        n = 1 + sum(1 for s in steps if s.kind == "compaction" and s.payload.get("mode") == "ralph")
        last = [Message.model_validate(s.payload["message"]).text for s in context if s.kind == "assistant"]
        said = next((t.strip() for t in reversed(last) if t.strip()), "")
        lines = [f"[runtime] Ralph iteration {n + 1}: a fresh context. The previous iteration's work is in "
                 "/workspace (inspect it); the ledger above is your memory. Continue toward the goal; only "
                 "complete_goal with a passing verification ends the run."]
        if said:
            lines.append(f"The previous iteration ended with: {said[:1500]}")
        lines.append(f"Budget: {self.budget_text()}")
        return "\n".join(lines)


class Ralph(Hook):
    """The Ralph strategy: a fresh context per iteration (the model ended its turn without a tool
    call, or ``ralph_turns`` turns passed), carrying only the ledger and the workspace."""

    def __init__(self, compactor: Compactor):
        self.compactor = compactor

    def before_call(self, ctx: TurnContext) -> list[Replace]:
        last = ctx.conversation.last_assistant()
        if last is None:
            return []
        over = (ctx.conversation.turns >= self.compactor.config.ralph_turns
                or not Message.model_validate(last.payload["message"]).tool_calls)
        return [self.compactor.compact(ctx, reason="ralph", mode="ralph")] if over else []
