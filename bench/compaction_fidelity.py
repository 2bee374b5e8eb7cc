"""Compaction fidelity: after every compaction, does the model still see everything it planted?

Workload (one goal, run by the real ``GoalRunner`` through ``tenax.app.run_goal``: the real
``anthropic`` SDK over HTTP to the provider simulator, a real Docker sandbox, a real SQLite store):

- early on the scripted model plants 20 plan items (``update_plan``), 10 pitfalls (``note``), two
  failing checks (``complete_goal`` while the check fails; each run prints a distinct line);
  5 sub-agents are written to the sub-agent ledger (``store.create_agent``, as the spawn tool
  does); a user queues 3 steering messages (``SqlStore.push_steering``, what
  ``tenax steer`` does) while the goal runs;
- then it keeps reading large files until 10 compactions have happened (the goal's window is set
  small, via ``config["compaction"]["window"]``, so that the threshold trigger fires often);
- then it fixes the file and the check passes.

Measured on the request bodies the simulator actually received: for each compaction, the first
main-session request after it is searched for the 40 planted items (retention), its input tokens
are compared with the last main request before it, and its cache read share is taken from the
usage the simulator reported (Anthropic prompt-cache rules). The baseline column is what a
summary-only compaction would retain: the share of planted items present in the model's handoff
summary text alone (the simulator's summary is generic prose, like a forgetful model's).

Target: 100% retention after every compaction, and every post-compaction request reads the
cached system + tools prefix (same system and tools as the first request, cache read > 0).

Run: ``python bench/compaction_fidelity.py [--compactions N] [--json]``. With ``--json`` the last
line is ``{"compactions": .., "retained_min": .., "cached_share_after": ..}``. Exit status 1 when
the target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tenax.compaction import SUMMARY_REQUEST
from tenax.app import GoalRequest, create_goal, run_goal
from tenax.core.budget import Budgets
from tenax.store import open_store
from tenax.testing import Reply, SimRequest, Simulator, ToolCall

KEY = "bench-key"
MODEL = "anthropic:claude-sonnet-4-6"
CHECK = 'grep -qx fixed status.txt || { echo "CHECK-FAIL: status is $(cat status.txt)"; exit 1; }'

PLAN = [f"PLAN-{i:02d} {what}" for i, what in enumerate([
    "map the parser module", "list failing tests", "reproduce bug A", "write regression test A", "fix tokenizer",
    "fix operator precedence", "handle unary minus", "add division by zero error", "document grammar",
    "refactor evaluator", "cache parsed ASTs", "benchmark evaluator", "add float support", "add int overflow check",
    "clean up CLI flags", "add --json output", "update README", "bump version", "run full test suite",
    "write status fixed"], start=1)]
PITFALLS = [f"PITFALL-{i:02d} {what}" for i, what in enumerate([
    "pip install fails: the sandbox has no network", "pytest -x hides the second failure",
    "sed -i loses the file mode on status.txt", "the tokenizer test fixtures use CRLF",
    "python3.8 lacks the walrus in comprehensions here", "tests/test_cli.py needs HOME set",
    "float repr differs between 3.11 and 3.12", "running make clean deletes the fixtures",
    "the evaluator recursion limit is hit at depth 900", "git stash drops untracked fixtures"], start=1)]
SUBAGENTS = [f"SUBAGENT-{i} {what}" for i, what in enumerate([
    "survey the parser for precedence bugs", "write regression tests for unary minus",
    "profile the evaluator", "review the README diff", "check the CLI flags against the docs"], start=1)]
CHECK_LINES = ["CHECK-FAIL: status is broken-1", "CHECK-FAIL: status is broken-2"]
STEERING = ["STEER-1 keep the public API unchanged", "STEER-2 prefer small commits over one big one",
            "STEER-3 do not touch the vendored directory"]
ITEMS = PLAN + PITFALLS + SUBAGENTS + CHECK_LINES + STEERING


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(name=name, arguments=arguments)


class Workload:
    """The scripted model: plants everything, then reads big files until N compactions happened."""

    def __init__(self, store, target: int, filler_chars: int):
        self.store = store
        self.goal_id: str | None = None
        self.target = target
        self.filler_chars = filler_chars
        self.summaries = 0
        self.turn = 0
        self.early = [
            Reply(text="Planning the work.", tool_calls=[call("update_plan", items=[
                {"text": t, "status": "in_progress" if i == 0 else "pending"} for i, t in enumerate(PLAN)])]),
            Reply(text="Recording pitfalls.", tool_calls=[call("note", kind="pitfall", text=p) for p in PITFALLS]),
            Reply(tool_calls=[call("bash", command="echo broken-1 > status.txt")]),
            Reply(tool_calls=[call("complete_goal", summary="try 1")]),
            Reply(tool_calls=[call("bash", command="echo broken-2 > status.txt")]),
            Reply(tool_calls=[call("complete_goal", summary="try 2")]),
        ]

    def __call__(self, req: SimRequest) -> Reply:
        if SUMMARY_REQUEST in req.last_user_text:
            self.summaries += 1
            return Reply(text=f"Handoff {self.summaries}: making progress on the parser; keep going with the plan.")
        self.turn += 1
        if self.turn in (2, 4, 6):  # the user steers while the goal runs
            self.store.push_steering(self.goal_id, STEERING[self.turn // 2 - 1])
        if self.early:
            return self.early.pop(0)
        if self.summaries < self.target:
            n = self.turn
            return Reply(text=f"Reading chunk {n}.", tool_calls=[call(
                "bash", command=f"echo chunk-{n}; head -c {self.filler_chars} /dev/zero | tr '\\0' x; echo")])
        if self.summaries == self.target and self.turn > 0 and not getattr(self, "_fixed", False):
            self._fixed = True
            return Reply(tool_calls=[call("write_file", path="status.txt", content="fixed\n")])
        return Reply(tool_calls=[call("complete_goal", summary="fixed")])


def total_input(usage: dict) -> int:
    return usage.get("input_tokens", 0) + usage.get("cache_read_input_tokens", 0) + usage.get("cache_creation_input_tokens", 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compactions", type=int, default=10)
    ap.add_argument("--window", type=int, default=24_000, help="context window given to the goal (tokens)")
    ap.add_argument("--filler-chars", type=int, default=12_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tenax-bench-compaction-"))
    ws = tmp / "ws"
    ws.mkdir()
    (ws / "status.txt").write_text("broken\n")
    store = open_store(f"sqlite:///{tmp / 'tenax.db'}")
    work = Workload(store, args.compactions, args.filler_chars)
    started = time.monotonic()
    with Simulator(work, min_cacheable_tokens=1024) as sim:
        req = GoalRequest(objective="Fix the calculator's parser and make status.txt say fixed.", workspace=str(ws),
                          check=CHECK, model=MODEL, base_url=sim.url, budgets=Budgets(max_turns=400),
                          compaction={"window": args.window, "threshold": 0.8, "keep_turns": 2})
        gid = create_goal(store, req, api_key=KEY)
        work.goal_id = gid
        for i, task in enumerate(SUBAGENTS):
            aid = store.create_agent(gid, task=task, role="explorer" if i % 2 else "worker", model=MODEL,
                                     status="done")
            store.update_agent(aid, summary={"summary": f"report {i + 1}: done"}, cost_usd=0.01 * (i + 1))
        status = run_goal(store, gid, api_key=KEY)
    elapsed = time.monotonic() - started

    reqs = sim.requests
    bad = [r for r in reqs if r.status != 200]
    first = reqs[0].body
    rows = []
    summary_idx = [i for i, r in enumerate(reqs) if SUMMARY_REQUEST in json.dumps(r.body)]
    main_sid = [s for s in store.sessions_for_goal(gid) if s.role == "main"][0].id
    comps = [s for s in store.steps(main_sid) if s.kind == "compaction"]
    for n, i in enumerate(summary_idx, start=1):
        before = next((reqs[j] for j in range(i - 1, -1, -1) if SUMMARY_REQUEST not in json.dumps(reqs[j].body)), None)
        after = next((reqs[j] for j in range(i + 1, len(reqs)) if SUMMARY_REQUEST not in json.dumps(reqs[j].body)), None)
        if after is None or before is None:
            continue
        text = json.dumps(after.body, ensure_ascii=False)
        retained = sum(1 for item in ITEMS if item in text) / len(ITEMS)
        summary_text = comps[n - 1].payload["summary"] if n - 1 < len(comps) else ""
        baseline = sum(1 for item in ITEMS if item in summary_text) / len(ITEMS)
        u = after.usage or {}
        tin = total_input(u)
        prefix_hit = after.body["system"] == first["system"] and after.body["tools"] == first["tools"] \
            and u.get("cache_read_input_tokens", 0) > 0
        rows.append({"n": n, "before": total_input(before.usage or {}), "after": tin, "retained": retained,
                     "baseline": baseline, "cache_read": u.get("cache_read_input_tokens", 0),
                     "cached_share": (u.get("cache_read_input_tokens", 0) / tin) if tin else 0.0,
                     "prefix_hit": prefix_hit})

    print(f"compaction fidelity: {len(ITEMS)} planted items ({len(PLAN)} plan, {len(PITFALLS)} pitfalls, "
          f"{len(SUBAGENTS)} sub-agents, {len(CHECK_LINES)} check failures, {len(STEERING)} steering); "
          f"window {args.window:,} tokens, threshold 0.8; goal {status} in {elapsed:.1f}s, {len(reqs)} requests")
    print(f"{'#':>3} {'tokens before':>14} {'tokens after':>13} {'ratio':>6} {'retained':>9} "
          f"{'summary-only':>13} {'cache read':>11} {'cached share':>13} {'prefix hit':>10}")
    for r in rows:
        ratio = r["after"] / r["before"] if r["before"] else 0.0
        print(f"{r['n']:>3} {r['before']:>14,} {r['after']:>13,} {ratio:>6.2f} {r['retained']:>9.0%} "
              f"{r['baseline']:>13.0%} {r['cache_read']:>11,} {r['cached_share']:>13.1%} {str(r['prefix_hit']):>10}")
    retained_min = min((r["retained"] for r in rows), default=0.0)
    cached_after = (sum(r["cache_read"] for r in rows) / sum(r["after"] for r in rows)) if rows else 0.0
    ok = (status == "succeeded" and not bad and len(rows) >= args.compactions and retained_min == 1.0
          and all(r["prefix_hit"] for r in rows))
    print(f"target: {args.compactions} compactions, 100% retained after each, cached prefix hit after each -> "
          f"{'MET' if ok else 'MISSED'} (compactions {len(rows)}, min retained {retained_min:.0%}, "
          f"summary-only baseline max {max((r['baseline'] for r in rows), default=0):.0%}, rejected requests {len(bad)})")
    store.close()
    if args.json:
        print(json.dumps({"compactions": len(rows), "retained_min": retained_min,
                          "cached_share_after": round(cached_after, 4)}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
