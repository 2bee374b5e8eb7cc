"""The live status line under the streaming transcript of `tenax goal` / `resume`.

An ``on_event`` consumer: each step updates what the line shows (turn, elapsed, tokens, cached
share, USD against the budget, the current action, running sub-agents); rich's ``Live`` redraws
it twice a second, so "running `bash` 12 s" counts up while a tool runs. Only the engine's thread
reads the store; the redraw thread reads the last values. Untrusted text (tool names) goes
through ``short`` and is shown as plain text.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from rich.console import Console
from rich.live import Live
from rich.text import Text

from tenax.export.describe import duration, short


class StatusLine:
    def __init__(self, store: Any, goal_id: str, clock: Callable[[], float] = time.monotonic):
        self.store, self.goal_id, self.clock = store, goal_id, clock
        goal = store.get_goal(goal_id)
        self.started, self.elapsed_before = clock(), goal.elapsed_s
        self.turn, self.action, self.since, self.agents = goal.turns, "starting", clock(), 0
        self.wait_s: float | None = None
        self._totals(goal)

    def _totals(self, goal: Any) -> None:
        total_in = goal.input_tokens + goal.cache_read_tokens + goal.cache_write_tokens
        self.tokens, self.cached = total_in + goal.output_tokens, goal.cache_read_tokens / total_in if total_in else 0.0
        self.usd, self.max_usd = goal.cost_usd, (goal.budgets or {}).get("max_usd")

    def _now(self, action: str, wait_s: float | None = None) -> None:
        self.action, self.since, self.wait_s = action, self.clock(), wait_s

    def __call__(self, kind: str, p: dict[str, Any]) -> None:
        if kind == "request":
            self.turn = p.get("turn", self.turn + 1)
            self._now("thinking…")
        elif kind == "assistant":
            self._totals(self.store.get_goal(self.goal_id))
            self._now("")
        elif kind == "tool_started":
            self._now(f"running {short(p.get('name'), 40)}")
        elif kind == "tool_result":
            self._now("")
        elif kind == "event" and p.get("type") in ("provider_retry", "provider_outage"):
            self._now("waiting on retry", float(p.get("wait_s") or 0))
        if kind in ("tool_started", "tool_result"):  # spawn_agent / wait_agents change who runs
            # a spawned agent counts from its spawn: "pending" only means its thread has not begun yet
            self.agents = sum(a.status in ("pending", "running") for a in self.store.agents_for_goal(self.goal_id))

    def text(self) -> Text:
        now = self.clock()
        action = self.action
        if action and self.wait_s is not None:
            action += f" {max(self.wait_s - (now - self.since), 0):.0f} s"
        elif action and action != "starting":
            action += f" {now - self.since:.0f} s"
        budget = f" of ${self.max_usd:g}" if self.max_usd else ""
        fields = [f"turn {self.turn}", duration(self.elapsed_before + now - self.started), f"{self.tokens:,} tokens",
                  f"{self.cached:.0%} cached", f"${self.usd:.4f}{budget}", action or "…",
                  f"{self.agents} sub-agent(s) running" if self.agents else ""]
        return Text(" · ".join(f for f in fields if f), style="reverse")


def live_status(console: Console, store: Any, goal_id: str) -> tuple[Live, StatusLine]:
    """The status line and the ``Live`` that draws it (transient: gone when the run ends). Lines printed
    on ``console`` appear above it; give it the console the transcript goes to when that is a terminal."""
    line = StatusLine(store, goal_id)
    return Live(console=console, get_renderable=line.text, transient=True, refresh_per_second=2,
                redirect_stdout=False, redirect_stderr=False), line
