"""The ledger: structured memory the runtime keeps from the journal and the store, not from the
model's prose. It is rendered into the first message of every compacted (or Ralph) context.

Sections: objective and check; plan items with status; pitfalls (the model's notes plus failed
tool calls with their cause); check history (each run, pass/fail, key output lines); files
touched; sub-agents; decisions; facts; the user's steering messages, verbatim.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tenax.core.messages import Message, ToolResultPart
from tenax.core.protocols import Store
from tenax.store import memory

FILE_TOOLS = ("write_file", "edit_file")
MAX_ERROR_PITFALLS = 12
BASH_EXIT = re.compile(r"exit code: (-?\d+)")
KEY_LINE = re.compile(r"error|fail|assert|exception|traceback|expected|not found|denied", re.IGNORECASE)


@dataclass
class CheckRun:
    seq: int
    passed: bool
    exit_code: int | None
    timed_out: bool
    key_lines: list[str]


@dataclass
class Ledger:
    objective: str
    check: str | None
    plan: list[memory.PlanItem] = field(default_factory=list)
    pitfalls: list[str] = field(default_factory=list)
    error_pitfalls: list[str] = field(default_factory=list)
    checks: list[CheckRun] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)  # path -> tools used, in order
    subagents: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    steering: list[str] = field(default_factory=list)
    archived: tuple[int, int] | None = None


def _one_line(text: str, n: int = 200) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def key_lines(output: str, limit: int = 4) -> list[str]:
    lines = [ln.strip() for ln in (output or "").splitlines() if ln.strip()]
    keys = [ln for ln in lines if KEY_LINE.search(ln)]
    picked = keys[-limit:] if keys else lines[-2:]
    return [_one_line(ln, 200) for ln in picked]


def _agent_line(a: Any) -> str:
    summary = getattr(a, "summary", None)
    if isinstance(summary, dict):
        summary = summary.get("summary") or summary.get("text") or json.dumps(summary, ensure_ascii=False)
    cost = getattr(a, "cost_usd", 0.0) or 0.0
    parts = [f"[{getattr(a, 'id', '?')}] {getattr(a, 'role', '?')} on {getattr(a, 'model', '?')}",
             f"{getattr(a, 'status', '?')}", f"${cost:.4f}", f"task: {_one_line(getattr(a, 'task', ''), 300)}"]
    if summary:
        parts.append(f"result: {_one_line(str(summary), 300)}")
    return " | ".join(parts)


def build_ledger(store: Store, goal_id: str, session_id: str, steps: list[Any] | None = None) -> Ledger:
    goal = store.get_goal(goal_id)
    steps = steps if steps is not None else store.steps(session_id)
    led = Ledger(objective=goal.objective, check=goal.check_cmd, plan=store.plan_items(goal.id))
    for n in store.notes(goal.id):
        {"pitfall": led.pitfalls, "decision": led.decisions, "fact": led.facts}[n.kind].append(n.text)

    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    seen_errors: set[str] = set()
    errors: list[str] = []
    for st in steps:
        p = st.payload
        if st.kind == "assistant":
            for c in Message.model_validate(p["message"]).tool_calls:
                calls[c.id] = (c.name, c.arguments)
                path = c.arguments.get("path")
                if c.name in FILE_TOOLS and isinstance(path, str):
                    led.files.setdefault(path, []).append(c.name)
        elif st.kind == "tool_result":
            r = ToolResultPart.model_validate(p)
            name, args = calls.get(r.tool_call_id, ("?", {}))
            exit_code = BASH_EXIT.match(r.content) if name == "bash" else None
            failed = r.is_error or (exit_code is not None and exit_code.group(1) != "0")
            if failed and name != "complete_goal":  # failed checks live in the check history
                cause = " / ".join(key_lines(r.content, 3)) if exit_code else _one_line(r.content, 220)
                cause = _one_line(f"exit {exit_code.group(1)}: {cause}" if exit_code else cause, 260)
                what = _one_line(json.dumps(args, ensure_ascii=False), 120)
                key = f"{name}:{cause}"
                if key not in seen_errors:
                    seen_errors.add(key)
                    errors.append(f"step {st.seq}: {name} {what} failed: {cause}")
        elif st.kind == "event" and p.get("type") == "check":
            led.checks.append(CheckRun(seq=st.seq, passed=bool(p.get("passed")), exit_code=p.get("exit_code"),
                                       timed_out=bool(p.get("timed_out")), key_lines=key_lines(p.get("output_tail", ""))))
        elif st.kind == "user" and p.get("why") == "steering":
            led.steering.append(p.get("verbatim", p["text"]))
    led.error_pitfalls = errors[-MAX_ERROR_PITFALLS:]
    # steering queued but not journaled yet still belongs to the ledger
    journaled = {st.payload.get("steering_id") for st in steps if st.kind == "user" and st.payload.get("why") == "steering"}
    led.steering += [s.text for s in store.steering(goal.id) if s.id not in journaled]
    agents_for_goal = getattr(store, "agents_for_goal", None)
    if callable(agents_for_goal):
        led.subagents = [_agent_line(a) for a in agents_for_goal(goal.id)]
    return led


def render(led: Ledger, *, intro: str | None = None) -> str:
    out: list[str] = []
    out.append(intro or "[runtime] MEMORY LEDGER. The runtime keeps this from the journal; it is authoritative.")
    if led.archived:
        out.append(f"Journal steps {led.archived[0]}-{led.archived[1]} were archived out of the context; "
                   "search them (and the notes) with recall(query).")
    out += ["", "## Objective", led.objective, "", "## Check"]
    out.append(f"`{led.check}` must exit 0 in /workspace" if led.check else "(no check command; an independent reviewer judges)")
    out += ["", "## Plan (update_plan keeps it current)"]
    out += [f"{i + 1}. [{p.status}] {p.text}" for i, p in enumerate(led.plan)] or ["(no plan yet: call update_plan)"]
    out += ["", "## Pitfalls (do not repeat these)"]
    out += [f"- {t}" for t in led.pitfalls] + [f"- {t}" for t in led.error_pitfalls] or ["(none recorded)"]
    out += ["", "## Check history"]
    for i, c in enumerate(led.checks):
        status = "PASSED" if c.passed else ("TIMED OUT" if c.timed_out else f"FAILED (exit {c.exit_code})")
        out.append(f"- run {i + 1} (step {c.seq}): {status}" + (": " + " / ".join(c.key_lines) if c.key_lines else ""))
    if not led.checks:
        out.append("(the check has not run yet)")
    out += ["", "## Files touched"]
    out += [f"- {path} ({', '.join(dict.fromkeys(tools))} x{len(tools)})" for path, tools in led.files.items()] or ["(none)"]
    out += ["", "## Sub-agents"]
    out += [f"- {a}" for a in led.subagents] or ["(none)"]
    out += ["", "## Decisions made (instead of asking)"]
    out += [f"- {d}" for d in led.decisions] or ["(none recorded)"]
    if led.facts:
        out += ["", "## Facts"] + [f"- {f}" for f in led.facts]
    out += ["", "## User steering (verbatim, follow it)"]
    out += [f"- {json.dumps(s, ensure_ascii=False)}" for s in led.steering] or ["(none)"]
    return "\n".join(out)
