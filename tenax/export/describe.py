"""Plain-text descriptions of journal steps, shared by the terminal (cli) and the exports.

Untrusted text stays data: ``short`` makes control characters visible, and the lines are
(text, style) parts that the terminal styles and the exports join, never markup.
"""

from __future__ import annotations

import json
from typing import Any, Union

Part = Union[str, "tuple[str, str]"]


CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0b, 0x20), 0x7f) if c != 0x0a}


def short(v: Any, n: int = 100) -> str:
    """One line of at most n characters; control characters (terminal escapes) made visible."""
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    s = s.replace("\n", "⏎ ").translate(CONTROL)
    return s if len(s) <= n else s[: n - 1] + "…"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"


def wait(p: dict[str, Any]) -> str:
    w = float(p.get("wait_s") or 0)
    return f"{w:.1f} s" if w < 10 else duration(w)


def event_line(p: dict[str, Any]) -> list[Part] | None:
    """An event's useful fields on one line; None for the ones not worth a line (status running)."""
    t, g = p.get("type"), p.get
    if t == "status":
        if g("status") == "running":
            return None
        color = "green" if g("status") == "succeeded" else "yellow" if g("status") in ("stopped", "waiting") else "red"
        return [("status ", "bold"), (str(g("status")), color), *([": ", short(g("error"), 300)] if g("error") else [])]
    if t == "check":
        why = "timed out" if g("timed_out") else f"exit {g('exit_code')}"
        tail = [ln for ln in str(g("output_tail") or "").splitlines() if ln.strip()][-1:]
        return [("check", "bold"), f" `{short(g('command'))}` ",
                ("passed", "green") if g("passed") else (f"failed ({why})", "red"),
                *([("  " + short(tail[0], 120), "dim")] if tail and not g("passed") else [])]
    if t == "judge":
        return [("judge", "bold"), " ", ("passed", "green") if g("passed") else ("rejected", "red"),
                *([": ", short(g("report"), 160)] if g("report") else [])]
    if t == "budget_exhausted":
        spent = g("spent") or {}
        used = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v:.4g}" for k, v in spent.items()
                         if isinstance(v, (int, float)) and v)
        return [("budget exhausted", "red"), f": {short(g('budget'))}", f" (spent {used})" if used else ""]
    if t == "provider_outage":
        return [("provider outage", "yellow"), ": ", f"HTTP {g('status')}: " if g("status") else "",
                short(g("error") or "", 160), f"; waiting {wait(p)}",
                f" (outage wait {g('outage_waits')}" if g("outage_waits") else " (",
                f", {g('attempts')} attempts failed)" if g("attempts") else ")"]
    if t == "provider_retry":  # live, before the wait
        return [("provider retry", "yellow"), ": ", f"HTTP {g('status')}: " if g("status") else "",
                short(g("error") or "", 160), f"; next attempt {(g('attempt') or 0) + 1}/{g('max_attempts')} in {wait(p)}"]
    if t == "provider_retries":
        tries = g("failed_attempts") or []
        what = "; ".join(short(f"HTTP {a.get('status')}: {a.get('error')}" if a.get("status") else a.get("error"), 80)
                         for a in tries[-3:])
        return [("provider retried", "yellow"), f" {len(tries)} failed attempt(s) before answering: ", what]
    if t == "usage_limit":
        return [("usage limit", "yellow"), f": {short(g('error') or '', 120)}; ",
                "parked until " if g("parked") else "waiting until ", short(g("until"))]
    if t == "resumed":
        return [("resumed", "bold"), f": {g('settled', 0)} pending tool call(s) settled, "
                f"{g('interrupted', 0)} of them interrupted mid-run (not repeated)"]
    if t == "interrupted_call":
        u = g("usage") or {}
        return [("interrupted call", "yellow"), f" (turn {g('turn')}): cut off by a crash, counted as ~"
                f"{u.get('input_tokens', 0):,} input + ~{u.get('output_tokens', 0):,} output tokens (estimated)"]
    if t == "stuck":
        return [("stuck", "red"), f": {g('count')} repeats without progress ({short(g('signature'), 100)}); "
                f"step-back {g('step_back')}, next: {g('action')}"]
    if t == "step_back":
        return [("step back", "yellow"), f" {g('step_back')}: ", short(g("answer") or "", 140)]
    if t == "protect_violation":
        return [("protected path", "red"), f" {short(g('path'))}: {short(g('tool'))} {g('action')}"]
    rest = {k: v for k, v in p.items() if k != "type"}
    return [(f"event {short(t)}", "dim"), *([" ", (short(rest, 200), "dim")] if rest else [])]


def plain(parts: list[Part]) -> str:
    """The parts of a line as plain text (styles dropped)."""
    return "".join(p if isinstance(p, str) else p[0] for p in parts)


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """Values as a one-line chart of block characters (lowest ▁, highest █)."""
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(SPARKS[round((v - lo) / span * (len(SPARKS) - 1))] for v in values)


def metric_values(steps: list[Any]) -> list[tuple[float, bool]]:
    """Every measured value of a metric goal, in order, with whether it was accepted (believed)."""
    return [(float(s.payload["value"]), bool(s.payload.get("accepted"))) for s in steps
            if s.kind == "event" and s.payload.get("type") == "metric" and isinstance(s.payload.get("value"), (int, float))]


def job_waiting(steps: list[Any]) -> str:
    """The job a goal is waiting on right now ('' when none): a job_wait with no job_done after it."""
    for s in reversed(steps):
        kind = s.payload.get("type") if s.kind == "event" else None
        if kind == "job_wait":
            return f"job {s.payload.get('job')}"
        if kind in ("job_done", "job_wait_timeout"):
            return ""
    return ""
