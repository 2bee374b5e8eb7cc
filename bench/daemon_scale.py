"""The daemon at scale: N goals queued at once, run by a real daemon with real workers and real
containers against the simulator with a fixed model latency and a fixed tool latency.

    .venv/bin/python bench/daemon_scale.py [--goals 50] [--concurrency 4] [--model-latency 2]
                                           [--tool-latency 0.5] [--pool N] [--json]

Each goal takes three model turns (a `sleep TOOL_LATENCY` tool call, a file write, complete_goal
whose check passes). The ideal is what zero overhead would take: identical goals run in
ceil(N / concurrency) rounds of (3 x model latency + tool latency). Measured: from starting
`tenax daemon run` (its own start counts) until the last goal succeeded (its ``finished_at``). Also: the daemon's and
the workers' RSS (sampled from /proc every 0.5 s), and the latency of a journal write into the same
database while the goals run (a probe session appending a step every 0.1 s).
``--pool N`` runs the daemon with a warm pool of N containers (``tenax daemon run --pool N``, needs
root); the pool is filled by the daemon after it starts, inside the measured time.
With --json the last line is one JSON object; ``throughput_ratio`` is ideal time / measured time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from tenax.app import GoalRequest
from tenax.core.budget import Budgets
from tenax.testing import Reply, SimRequest, Simulator, ToolCall

KEY = "sim-bench-key"
TURNS = 3


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def policy(model_latency: float, tool_latency: float):
    plan = [ToolCall(name="bash", arguments={"command": f"sleep {tool_latency}"}),
            ToolCall(name="write_file", arguments={"path": "status.txt", "content": "fixed\n"}),
            ToolCall(name="complete_goal", arguments={"summary": "fixed"})]

    def answer(req: SimRequest) -> Reply:
        time.sleep(model_latency)  # the simulator is threaded: concurrent goals wait side by side
        turn = sum(1 for m in req.body.get("messages", []) if m.get("role") == "assistant")
        return Reply(tool_calls=[plan[min(turn, len(plan) - 1)]])
    return answer


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--goals", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--model-latency", type=float, default=2.0)
    ap.add_argument("--tool-latency", type=float, default=0.5)
    ap.add_argument("--pool", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tenax-daemon-bench-"))
    home = root / "home"
    os.environ.update({"TENAX_HOME": str(home), "ANTHROPIC_API_KEY": KEY})
    os.environ.pop("TENAX_DB", None)
    from tenax.daemon import queue
    from tenax.store import open_store

    store = open_store()
    rss_daemon: list[float] = []
    rss_workers: list[float] = []
    writes: list[float] = []
    with Simulator(policy(args.model_latency, args.tool_latency)) as sim:
        ids = []
        for i in range(args.goals):
            ws = root / f"ws{i}"
            ws.mkdir()
            (ws / "status.txt").write_text("broken\n")
            req = GoalRequest(objective=f"Make status.txt say fixed. ({i})", workspace=str(ws),
                              check="grep -qx fixed status.txt", model="anthropic:claude-sonnet-4-6",
                              base_url=sim.url, budgets=Budgets(max_turns=10))
            ids.append(queue.submit(store, req, api_key=KEY, use_worktree=False))
        probe_goal = store.create_goal(objective="journal write probe", model="m", workspace=str(root))
        probe = store.create_session(probe_goal, model="m", system="")
        done = threading.Event()

        def probe_writes() -> None:
            while not done.wait(0.1):
                t0 = time.perf_counter()
                store.append_step(probe, "event", {"type": "probe"})
                writes.append((time.perf_counter() - t0) * 1000)

        log = open(home / "bench-daemon.log", "w")
        began, began_at = time.monotonic(), datetime.now(timezone.utc)
        daemon = subprocess.Popen([sys.executable, "-m", "tenax.cli", "daemon", "run", "--concurrency",
                                   str(args.concurrency), "--pool", str(args.pool)], stdout=log, stderr=subprocess.STDOUT)
        prober = threading.Thread(target=probe_writes, daemon=True)
        prober.start()
        try:
            wanted = set(ids)
            while True:  # one query per poll (the bench's own load on the database stays small)
                goals = [g for g in store.list_goals(limit=None) if g.id in wanted]
                if all(g.status not in ("pending", "running", "waiting", "interrupted") for g in goals):
                    break
                if daemon.poll() is not None:
                    raise SystemExit(f"the daemon died: {(home / 'bench-daemon.log').read_text()[-2000:]}")
                if (r := rss_mb(daemon.pid)) is not None:
                    rss_daemon.append(r)
                rss_workers += [r for g in goals if g.status == "running" and g.lease_pid
                                and (r := rss_mb(g.lease_pid)) is not None]
                time.sleep(0.5)
            polled = time.monotonic() - began
        finally:
            done.set()
            daemon.terminate()
            daemon.wait()
    statuses = [g.status for g in goals]
    # the end is the last goal's own finished_at (the 0.5 s poll would add up to 0.5 s); the poll's
    # figure bounds it, in case a clock step made the stamps unusable
    last = max((g.finished_at for g in goals if g.finished_at), default=None)
    stamped = (last.replace(tzinfo=last.tzinfo or timezone.utc) - began_at).total_seconds() if last else polled
    elapsed = stamped if 0 < stamped <= polled else polled
    first = min((g.lease_acquired_at for g in goals if g.lease_acquired_at), default=None)
    first_start = (first.replace(tzinfo=first.tzinfo or timezone.utc) - began_at).total_seconds() if first else None
    failed = len(statuses) - statuses.count("succeeded")
    ideal = math.ceil(args.goals / args.concurrency) * (TURNS * args.model_latency + args.tool_latency)
    figures = {
        "goals": args.goals, "concurrency": args.concurrency, "pool": args.pool, "succeeded": statuses.count("succeeded"),
        "failed": failed, "elapsed_s": round(elapsed, 1), "ideal_s": round(ideal, 1),
        "throughput_goals_per_min": round(args.goals / elapsed * 60, 2),
        "ideal_goals_per_min": round(args.goals / ideal * 60, 2),
        "throughput_ratio": round(ideal / elapsed, 3),
        "first_goal_started_s": round(first_start, 2) if first_start is not None else None,
        "daemon_rss_mb_max": round(max(rss_daemon, default=0), 1),
        "worker_rss_mb_mean": round(statistics.mean(rss_workers), 1) if rss_workers else None,
        "worker_rss_mb_max": round(max(rss_workers, default=0), 1),
        "journal_write_ms_p50": round(pct(writes, 0.5), 2), "journal_write_ms_p99": round(pct(writes, 0.99), 2),
        "journal_writes": len(writes),
    }
    print(f"{'goals':<28}{args.goals} ({figures['succeeded']} succeeded), concurrency {args.concurrency}, "
          f"warm pool {args.pool or 'off'}")
    print(f"{'model / tool latency':<28}{args.model_latency} s / {args.tool_latency} s, {TURNS} turns per goal")
    print(f"{'elapsed vs ideal':<28}{elapsed:.1f} s vs {ideal:.1f} s -> {figures['throughput_ratio']:.0%} of ideal")
    print(f"{'daemon start to 1st goal':<28}{figures['first_goal_started_s']} s (included in elapsed)")
    print(f"{'throughput':<28}{figures['throughput_goals_per_min']} goals/min (ideal {figures['ideal_goals_per_min']})")
    print(f"{'daemon RSS (max)':<28}{figures['daemon_rss_mb_max']} MB")
    print(f"{'worker RSS (mean / max)':<28}{figures['worker_rss_mb_mean']} / {figures['worker_rss_mb_max']} MB")
    print(f"{'journal write p50 / p99':<28}{figures['journal_write_ms_p50']} / {figures['journal_write_ms_p99']} ms "
          f"({len(writes)} probe writes)")
    from tenax.sandbox import cleanup_by_label

    for g in ids:
        cleanup_by_label(goal_id=g)
    if args.json:
        print(json.dumps(figures))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
