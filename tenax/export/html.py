"""The html export: one static file (no server, no network fetch, no framework).

The same data as the md export, through the same helpers (redaction, folding, event lines).
Every untrusted text is redacted, then escaped: it is never markup. A long run stays quick: turns
come in blocks of ``BLOCK`` and tool results, sub-agents and compaction bodies in closed
``<details>``; a closed one keeps its body in a ``<template>`` (parsed, never laid out or in the
live DOM) that a few lines of inline JS move in when it is first opened.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any, Callable

from tenax.core.messages import Message, ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from tenax.export.describe import duration, event_line, metric_values, plain, short
from tenax.export.redact import redactor
from tenax.export.transcript import RESULT_CHARS, _usage_line, _when, session_tree, spawned_agents
from tenax.sandbox._incontainer import cut_middle

BLOCK = 50  # turns per top-level block; only the last block is built when the page opens

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:70rem;padding:1rem;color:#222}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f6f6;padding:.5rem;margin:.3rem 0}
.text{white-space:pre-wrap}
summary{cursor:pointer}
.turn{border-top:1px solid #ddd;padding:.3rem 0}
.turn h3{font-size:1rem;margin:.3rem 0}
.meta,.usage{color:#666;font-size:.85rem}
.steer{border-left:4px solid #36c;padding-left:.5rem}
.pass{color:#070}.fail{color:#b00}
.agent{border-left:3px solid #aaa;padding-left:.6rem;margin:.4rem 0}
.compaction{background:#fff8e0;padding:.3rem}
table.totals td{padding:0 1rem 0 0}
"""

# one delegated listener: a <details> opened for the first time takes in its <template>'s body
SCRIPT = """document.addEventListener("toggle",function(e){var d=e.target,t=d.querySelector(":scope>template");
if(d.open&&t){t.replaceWith(t.content)}},true);"""


def to_html(store: Any, goal_id: str) -> str:
    goal = store.get_goal(goal_id)
    redact = redactor(goal)

    def t(text: Any) -> str:
        return escape(redact(text if isinstance(text, str) else str(text)))

    usage = {(u.session_id, u.step_seq): u for u in store.usage_for_goal(goal.id)}
    tree = session_tree(store, goal.id)
    sessions = {s.id: s for _, s in tree}
    by_call = spawned_agents(store, goal.id)
    fold_note = f"the full result is in `tenax export {goal.id} --format jsonl`"
    render = _Renderer(t, redact, usage, fold_note)

    def turns_of(s: Any) -> list[str]:
        """The session's turns as html sections, each sub-agent nested under its spawning call."""
        out: list[list[str]] = [[]]
        for st in store.steps(s.id):
            if st.kind == "request":
                out.append([f'<h3>turn {st.payload.get("turn", "?")} · {t(_when(st.created_at))}</h3>'])
            out[-1].append(render.step(st))
            a = by_call.get((s.id, st.payload.get("tool_call_id"))) if st.kind == "tool_result" else None
            if a is not None and a.session_id in sessions:
                body = "".join(turns_of(sessions[a.session_id]))
                out[-1].append(_fold(f"sub-agent {t(a.id)} ({t(a.role)}, {t(a.model)}): {t(a.status)}, "
                                     f"${a.cost_usd:.4f}", body, cls="agent"))
        return [f'<section class="turn">{"".join(parts)}</section>' for parts in out if parts]

    nested = {a.session_id for a in by_call.values()}
    roots = [s for depth, s in tree if s.id not in nested]
    body: list[str] = []
    for s in roots:
        body.append(f"<h2>session {t(s.id)} ({t(s.role)}, {t(s.model)})</h2>")
        sections = turns_of(s)
        blocks = [sections[i:i + BLOCK] for i in range(0, len(sections), BLOCK)]
        for i, block in enumerate(blocks):
            label = f"turn sections {i * BLOCK + 1}–{i * BLOCK + len(block)} of {len(sections)}"
            body.append(_fold(label, "".join(block), open_=i == len(blocks) - 1))
    main = next((s for s in roots if s.role == "main"), roots[0] if roots else None)
    steps = store.steps(main.id) if main is not None else []
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>tenax goal {t(goal.id)}: {t(goal.status)}</title><style>{STYLE}</style></head><body>",
        _header(goal, t, render.clean, [usage[k] for k in sorted(usage, key=lambda k: k[1] or 0)
                          if main is not None and k[0] == main.id], steps),
        *body, f"<script>{SCRIPT}</script></body></html>\n",
    ])


def _fold(summary: str, body: str, *, cls: str = "", open_: bool = False) -> str:
    """A <details>: open with its body in place, or closed with its body in a <template>."""
    c = f' class="{cls}"' if cls else ""
    if open_:
        return f"<details{c} open><summary>{summary}</summary>{body}</details>"
    return f"<details{c}><summary>{summary}</summary><template>{body}</template></details>"


def _pre(t: Callable[[Any], str], text: str) -> str:
    return f"<pre>{t(text)}</pre>"


class _Renderer:
    def __init__(self, t: Callable[[Any], str], redact: Callable[[str], str], usage: dict[Any, Any], fold_note: str):
        self.t, self.redact, self.usage, self.fold_note = t, redact, usage, fold_note

    def clean(self, payload: dict[str, Any]) -> dict[str, Any]:
        return json.loads(self.redact(json.dumps(payload, default=str)))

    def step(self, st: Any) -> str:
        # redacted whole first, so no line shortened below can keep half of a secret
        p = self.clean(st.payload)
        t, when = self.t, f'<span class="meta"> · {self.t(_when(st.created_at))}</span>'
        if st.kind == "user":
            why = p.get("why", "user")
            if why == "steering":
                return f'<div class="steer"><b>you (steering message)</b>{when}{_pre(t, p.get("verbatim", p.get("text", "")))}</div>'
            return _fold(f"tenax → model ({t(why)}){when}", _pre(t, p.get("text", "")))
        if st.kind == "assistant":
            msg = Message.model_validate(p["message"])
            out = [f"<div><b>model</b>{when}</div>"]
            for part in msg.parts:
                if isinstance(part, TextPart) and part.text:
                    out.append(f'<div class="text">{t(part.text)}</div>')
                elif isinstance(part, ReasoningPart) and part.text:
                    out.append(_fold("reasoning", _pre(t, part.text)))
                elif isinstance(part, ToolCallPart):
                    args = json.dumps(part.arguments, ensure_ascii=False, indent=1)
                    out.append(_fold(f"→ <code>{t(part.name)}</code> {t(short(part.arguments, 80))} ({t(part.id)})",
                                     _pre(t, args), cls="call"))
            u = self.usage.get((st.session_id, st.seq))
            return "".join(out) + f'<div class="usage">{t(_usage_line(u, p).strip("*"))}</div>'
        if st.kind == "tool_result":
            r = ToolResultPart.model_validate(p)
            shown, dropped = cut_middle(r.content, RESULT_CHARS, self.fold_note)
            size = f"{len(r.content.encode()):,} bytes, {r.content.count(chr(10)) + 1:,} lines" + \
                (f"; {dropped:,} bytes folded" if dropped else "")
            tag = "tool error" if r.is_error else "tool result"
            return _fold(f'<span class="{"fail" if r.is_error else ""}">{tag}</span> ({t(r.tool_call_id)}) '
                         f'<span class="meta">{size}</span>{when}', _pre(t, shown), cls="result")
        if st.kind == "compaction":
            rng = p.get("archived")
            head = (f"compaction ({t(p.get('mode'))}, {t(p.get('reason'))}): ~{t(p.get('tokens_before'))} → "
                    f"~{t(p.get('tokens_after'))} tokens; archived steps {t(rng[0])}–{t(rng[1])}"
                    if rng else f"compaction ({t(p.get('mode'))}, {t(p.get('reason'))}): nothing archived")
            body = (f"<p>ledger:</p>{_pre(t, p.get('ledger', ''))}<p>summary that replaced the archived turns:</p>"
                    f"{_pre(t, p.get('summary', ''))}")
            return f'<div class="compaction">{_fold(head + when, body)}</div>'
        if st.kind == "event" and (line := event_line(p)):
            cls = ("pass" if p.get("passed") else "fail") if p.get("type") in ("check", "judge") else "event"
            tail = _pre(t, p["output_tail"]) if p.get("type") == "check" and p.get("output_tail") else ""
            return f'<div class="{cls}">{t(plain(line))}{when}</div>' + (_fold("check output", tail) if tail else "")
        return ""


def _header(goal: Any, t: Callable[[Any], str], clean: Callable[[dict], dict], calls: list[Any], steps: list[Any]) -> str:
    total_in = goal.input_tokens + goal.cache_read_tokens + goal.cache_write_tokens
    cached = goal.cache_read_tokens / total_in if total_in else 0.0
    rows = [("status", goal.status), ("turns", f"{goal.turns:,}"),
            ("tokens", f"{total_in:,} input ({goal.cache_read_tokens:,} cache read, "
                       f"{goal.cache_write_tokens:,} cache write), {goal.output_tokens:,} output"),
            ("cached share", f"{cached:.0%}"), ("cost", f"${goal.cost_usd:.4f}"),
            ("duration", duration(goal.elapsed_s)), ("model", goal.model), ("workspace", goal.workspace),
            ("check", goal.check_cmd or "(independent judge)"),
            ("started", _when(goal.created_at)), ("finished", _when(goal.finished_at) if goal.finished_at else "-")]
    rows += [(k, v) for k, v in (("error", goal.error), ("summary", goal.summary)) if v]
    checks = [(st, clean(st.payload)) for st in steps
              if st.kind == "event" and st.payload.get("type") in ("check", "judge")]
    history = "".join(f'<li class="{"pass" if p.get("passed") else "fail"}">{t(plain(event_line(p) or []))} · '
                      f'{t(_when(st.created_at))}</li>' for st, p in checks) or "<li>no check ran</li>"
    return (f"<h1>tenax goal {t(goal.id)}: {t(goal.status)}</h1><p>{t(goal.objective)}</p>"
            '<table class="totals">' + "".join(f"<tr><td>{k}</td><td>{t(v)}</td></tr>" for k, v in rows) + "</table>"
            f"<h2>check history</h2><ol>{history}</ol>{_chart(calls)}"
            f"{_metric_chart(steps, ((goal.config or {}).get('metric') or {}).get('unit') or '', t)}")


def _chart(calls: list[Any], w: int = 640, h: int = 120) -> str:
    """Cost (scaled to the dearest) and cached share (0-100 %) per main-session model call; a long
    run is averaged over groups of calls so the lines stay at most w/2 points."""
    if not calls:
        return ""
    n = -(-len(calls) // (w // 2))
    groups = [calls[i:i + n] for i in range(0, len(calls), n)]

    def share(c: Any) -> float:
        total = c.input_tokens + c.cache_read_tokens + c.cache_write_tokens
        return c.cache_read_tokens / total if total else 0.0

    cost = [sum(c.cost_usd for c in g) / len(g) for g in groups]
    cached = [sum(map(share, g)) / len(g) for g in groups]
    top = max(cost) or 1.0
    per = f"per {n} calls" if n > 1 else "per call"
    return "<h2>per turn</h2>" + _svg(
        [("#c33", [c / top for c in cost]), ("#36c", cached)],
        f"cost (red, max ${top:.4f}) and cached share (blue, 0-100%), {per}",
        f"red: mean cost {per} (max ${top:.4f}); blue: cached share; {len(calls):,} model calls of the main session",
        w, h)


def _metric_chart(steps: list[Any], unit: str, t: Callable[[Any], str], w: int = 640, h: int = 120) -> str:
    """Every measured value of a metric goal (absolute, as journaled), believed or not."""
    values = metric_values(steps)
    if not values:
        return ""
    nums = [v for v, _ in values]
    lo, hi = min(nums), max(nums)
    span = (hi - lo) or 1.0
    rejected = sum(1 for _, ok in values if not ok)
    return "<h2>metric</h2>" + _svg(
        [("#393", [(v - lo) / span for v in nums])], t(f"metric values from {lo:g} to {hi:g}{unit}"),
        t(f"{len(nums)} measurement(s) from {lo:g}{unit} to {hi:g}{unit}; last {nums[-1]:g}{unit}; "
          f"{rejected} not accepted by the audit"), w, h)


def _svg(lines: list[tuple[str, list[float]]], title: str, caption: str, w: int, h: int) -> str:
    """Lines of values in 0..1 as one inline SVG (no script, no external reference)."""
    step = w / max(max(len(v) for _, v in lines) - 1, 1)

    def points(values: list[float]) -> str:
        return " ".join(f"{i * step:.1f},{h - v * h:.1f}" for i, v in enumerate(values))

    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 20}" viewBox="0 -2 {w} {h + 22}" '
            f'role="img"><title>{title}</title><rect x="0" y="0" width="{w}" height="{h}" fill="#fafafa"/>'
            + "".join(f'<polyline fill="none" stroke="{color}" stroke-width="1" points="{points(v)}"/>'
                      for color, v in lines)
            + f'<text x="0" y="{h + 16}" font-size="11">{caption}</text></svg>')
