"""What a finished (or stopped) run did: the end-of-run summary of `tenax goal` / `resume`.

Plain data (rows of strings, lines of (text, style) parts); the CLI prints it. Untrusted text
(the check's output, the model's summary, file names) is passed through ``short`` and stays data.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

from tenax.export.describe import Part, event_line, short

MAX_FILES = 20  # changed files listed without git; the rest are counted


def git(workspace: str, *args: str) -> str | None:
    """git's stdout in the workspace, or None when it is no repository (or git is missing)."""
    try:
        done = subprocess.run(["git", "-c", "safe.directory=*", "-C", workspace, *args], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_start(workspace: str) -> dict[str, str]:
    """For a goal's config at creation: the commit its workspace starts from (nothing outside a repo)."""
    head = git(workspace, "rev-parse", "--verify", "-q", "HEAD")
    return {"git_start": head.strip()} if head else {}


def diff_stat(goal: Any) -> list[str]:
    """The workspace's changes since the goal began: git's diff stat against the start commit (else
    HEAD) plus untracked files, or outside a repository the files modified since the goal was created."""
    ws = goal.workspace
    if git(ws, "rev-parse", "--git-dir") is not None:
        base = (goal.config or {}).get("git_start") or "HEAD"
        stat = (git(ws, "diff", "--stat=100", base, "--", ".") or "").splitlines()
        new = (git(ws, "ls-files", "--others", "--exclude-standard", "--", ".") or "").splitlines()
        return [short(s, 120) for s in stat] + [f"{short(n, 100)} (new, untracked)" for n in new[:MAX_FILES]] + \
            ([f"… and {len(new) - MAX_FILES} more untracked files"] if len(new) > MAX_FILES else [])
    since, changed = goal.created_at.timestamp(), []
    for root, dirs, files in os.walk(ws):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            path = os.path.join(root, name)
            try:
                if os.lstat(path).st_mtime >= since:
                    changed.append(os.path.relpath(path, ws))
            except OSError:
                continue
    changed.sort()
    return [f"modified {short(c, 100)}" for c in changed[:MAX_FILES]] + \
        ([f"… and {len(changed) - MAX_FILES} more files"] if len(changed) > MAX_FILES else [])


SPEND = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd", "uncached_cost_usd")


def _money(d: dict[str, Any]) -> list[str]:
    total_in = d["input_tokens"] + d["cache_read_tokens"] + d["cache_write_tokens"]
    share = d["cache_read_tokens"] / total_in if total_in else 0.0
    return [f"{total_in:,}", f"{d['output_tokens']:,}", f"{share:.0%}", f"${d['cost_usd']:.4f}",
            f"${max(d['uncached_cost_usd'] - d['cost_usd'], 0):.4f}"]


COST_COLUMNS = ("input tokens", "output tokens", "cached", "cost", "cache saved")


@dataclass
class Summary:
    status: str
    why: str
    check: list[Part] | None
    diff: list[str]
    by_model: list[list[str]] = field(default_factory=list)  # model, calls, *COST_COLUMNS
    by_agent: list[list[str]] = field(default_factory=list)  # agent, role, model, status, *COST_COLUMNS
    transcript: str = ""


def end_summary(store: Any, goal_id: str) -> Summary:
    goal = store.get_goal(goal_id)
    why = goal.error or goal.summary or (f"waiting on {goal.waiting_on}" if goal.waiting_on else "")
    sessions = store.sessions_for_goal(goal.id)
    main = next((s for s in sessions if s.role == "main"), None)
    verdicts = [st.payload for st in (store.steps(main.id, kinds=["event"]) if main else [])
                if st.payload.get("type") in ("check", "judge")]
    totals = store.goal_usage_totals(goal.id)
    by_model = [[m, str(t["calls"]), *_money(t)] for m, t in sorted(totals["by_model"].items())]
    per_session: dict[str, dict[str, float]] = {}
    for u in store.usage_for_goal(goal.id):
        acc = per_session.setdefault(u.session_id, dict.fromkeys(SPEND, 0))
        for k in acc:
            acc[k] += getattr(u, k)
    zero = dict.fromkeys(SPEND, 0)
    by_agent = [["main", "main", goal.model, goal.status, *_money(per_session.get(main.id, zero) if main else zero)]]
    by_agent += [[a.id, a.role, a.model, a.status, *_money(per_session.get(a.session_id or "", zero))]
                 for a in store.agents_for_goal(goal.id)]
    return Summary(goal.status, short(why, 300), event_line(verdicts[-1]) if verdicts else None, diff_stat(goal),
                   by_model, by_agent, f"tenax export {goal.id} --format md|jsonl|html -o FILE")
