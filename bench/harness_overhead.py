"""What tenax itself costs per turn, and whether it stays flat over a 1,000-turn goal.

    .venv/bin/python bench/harness_overhead.py [--turns 1000] [--json]

One goal runs through the real wiring (``tenax.app.goal_engine``: the engine, the goal policy, its
hooks and guards, a temporary SQLite store in WAL, the real Anthropic provider and SDK over HTTP)
against the provider simulator, which runs in its own process so its work and its memory never
land in the measured one. Every turn the model answers with a short text and one ``bash`` call;
the sandbox is ``cache_economics.SyntheticSandbox``, which executes nothing (it only writes the one
file each command names, so the guards see progress, as in a goal that works).

Overhead of turn k = from the end of the model call k-1 (the response headers arrive: the server
has done all its work) to the start of model call k (the SDK hands the finished request to its
HTTP client), minus the time inside the sandbox. So it holds everything tenax does between two
calls: parsing the streamed reply, journaling the reply with its usage, running the tool through
the policy and guards, the next turn's budget and hooks, the request intent, and building and
serializing the next request through the SDK. Windows follow the issue: turns 3-10, 91-100,
491-500, 991-1000. The baseline is the first window of the same run (growth ratio); also shown:
write transactions per turn, GC pauses, and the process RSS at start and at the end.

With --json the last line is one JSON object (overhead_ms_p50_t10, overhead_ms_p50_t1000,
growth_ratio = t1000 / t10, and the rest). Exit status 1 when the run did not reach its turns.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

KEY = "bench-key"
SPEC = "anthropic:claude-sonnet-4-6"
TARGETS = {10: 2.0, 100: 3.0, 500: 5.0, 1000: 8.0}  # the targets, ms (median)
STEP = re.compile(r"\$ echo (\d+) > progress.txt")  # the command of each turn, as the sandbox echoes it
TEXT = "Running the next step of the plan and checking its output before going on."


# --------------------------------------------------------------------------- the simulator process


def serve(turns: int, latency: float) -> None:
    """Run the simulator in this process: each session gets ``turns`` bash turns, then complete_goal.
    ``latency``: seconds each answer waits (the server is threaded, so sessions overlap)."""
    from tenax.testing import Reply, Simulator, ToolCall

    box: dict[str, Any] = {}

    def policy(req: Any) -> Reply:
        box["sim"].requests.clear()  # keep the server's own memory flat over long runs
        if latency:
            time.sleep(latency)
        done = [int(m.group(1)) for r in req.last_tool_results if (m := STEP.search(str(r.get("content"))))]
        turn = max(done, default=0) + 1
        if turn > turns:
            return Reply(text="Done.", tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "ok"})])
        return Reply(text=f"{TEXT} ({turn})", tool_calls=[ToolCall(name="bash", arguments={"command": f"echo {turn} > progress.txt"})])

    with Simulator(policy, context_window=10_000_000, stream_at_once=True) as sim:
        box["sim"] = sim
        print(sim.url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


class SimProcess:
    def __init__(self, turns: int, latency: float = 0.0):
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(turns), "--latency", str(latency)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError("the simulator process did not start")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


# --------------------------------------------------------------------------- one measured goal


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Clock:
    """Timestamps of each model call's send and answer (HTTP client hooks) and the sandbox's time."""

    def __init__(self) -> None:
        self.sent: list[float] = []
        self.answered: list[float] = []
        self.tool: list[tuple[float, float]] = []  # (start, duration)
        self.gc_ms: list[float] = []
        self._gc_start = 0.0
        self.writes = 0

    def on_request(self, request: Any) -> None:
        self.sent.append(time.perf_counter())

    def on_response(self, response: Any) -> None:
        self.answered.append(time.perf_counter())

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_ms.append((time.perf_counter() - self._gc_start) * 1000)

    def overheads(self) -> list[float]:
        """Overhead (ms) of turns 2..n, by turn number (index 0 = turn 2)."""
        out = []
        tools = sorted(self.tool)
        for k in range(1, len(self.sent)):
            lo, hi = self.answered[k - 1], self.sent[k]
            busy = sum(d for s, d in tools if lo <= s < hi)
            out.append((hi - lo - busy) * 1000)
        return out


def run_goal(db: str, url: str, turns: int, workspace: str, *, clock: Clock | None = None,
             ready: Any = None) -> dict[str, Any]:
    """Run one goal of ``turns`` turns to its end; ``ready()`` is called once everything is set up,
    just before the loop starts (after imports, store, sandbox and model)."""
    import anthropic

    from cache_economics import SyntheticSandbox
    from tenax.app import build_model, goal_engine
    from tenax.config import Settings
    from tenax.core.budget import Budgets
    from tenax.goal.policy import drive
    from tenax.sandbox.tools import ToolBox
    from tenax.store import open_store

    clock = clock or Clock()

    class TimedSandbox(SyntheticSandbox):
        def exec(self, command: str, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                if m := STEP.fullmatch("$ " + command):  # the command's effect, so the guards see progress
                    Path(workspace, "progress.txt").write_text(m.group(1) + "\n")
                return super().exec(command, **kw)
            finally:
                clock.tool.append((t0, time.perf_counter() - t0))

    store = open_store(db)
    gid = store.create_goal(objective="Keep running the plan.", check_cmd="true", model=SPEC, workspace=workspace,
                            budgets=Budgets(max_turns=turns + 5).model_dump(), config={"base_url": url})
    model: Any = build_model(SPEC, url, KEY)
    model.client = model.client.with_options(http_client=anthropic.DefaultHttpxClient(
        event_hooks={"request": [clock.on_request], "response": [clock.on_response]}))
    sandbox = TimedSandbox(workspace, {}, 0)
    engine, policy = goal_engine(store, gid, model, sandbox, ToolBox(sandbox), settings=Settings(pricing_file=None))
    if ready is not None:
        ready()
    rss_start = rss_mb()
    writes_before = store.writes
    gc.callbacks.append(clock.on_gc)
    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        status = drive(engine, policy)
    finally:
        gc.callbacks.remove(clock.on_gc)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    clock.writes = store.writes - writes_before
    done = store.get_goal(gid).turns
    store.close()
    return {"status": status, "turns": done, "wall_s": wall, "cpu_s": cpu, "rss_start_mb": rss_start, "rss_end_mb": rss_mb(),
            "writes_per_turn": clock.writes / max(done, 1)}


# --------------------------------------------------------------------------- report


def window(values: list[float], turn: int) -> list[float]:
    """Overheads of turns max(3, turn-9)..turn (values[0] is turn 2)."""
    return values[max(3, turn - 9) - 2: turn - 1]


def p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10)[-1] if len(xs) > 1 else xs[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--latency", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve is not None:
        serve(args.serve, args.latency)
        return 0
    sim = SimProcess(args.turns)
    clock = Clock()
    try:
        with tempfile.TemporaryDirectory(prefix="tenax-bench-") as tmp:
            ws = Path(tmp, "ws")
            ws.mkdir()
            info = run_goal(f"sqlite:///{tmp}/tenax.db", sim.url, args.turns, str(ws), clock=clock)
    finally:
        sim.close()
    over = clock.overheads()
    points = [t for t in (10, 100, 500, 1000) if t <= args.turns]
    base = statistics.median(window(over, points[0]))
    rows = {t: (statistics.median(window(over, t)), p90(window(over, t))) for t in points}
    print(f"{'turns':<10} {'p50 ms':>8} {'p90 ms':>8} {'vs t10':>7} {'target':>8}")
    for t, (m, q) in rows.items():
        print(f"{f'{max(3, t - 9)}-{t}':<10} {m:>8.2f} {q:>8.2f} {m / base:>6.2f}x {f'<= {TARGETS[t]:g}':>8}")
    gc_total = sum(clock.gc_ms)
    print(f"goal: {info['status']} after {info['turns']} turns in {info['wall_s']:.1f} s; "
          f"{info['writes_per_turn']:.2f} write transactions per turn; GC {len(clock.gc_ms)} pauses, "
          f"{gc_total:.0f} ms in all, longest {max(clock.gc_ms, default=0):.1f} ms; "
          f"RSS {info['rss_start_mb']:.0f} MB at start, {info['rss_end_mb']:.0f} MB at the end")
    print("(overhead = end of model call k-1 to start of call k, minus sandbox time; the simulator runs in "
          "another process; the sandbox executes nothing)")
    if args.json:
        last = rows[points[-1]][0]
        out = {"overhead_ms_p50_t10": round(base, 3), "overhead_ms_p50_t1000": round(rows.get(1000, (last,))[0], 3),
               "growth_ratio": round(last / base, 3),
               "windows": {str(t): {"p50": round(m, 3), "p90": round(q, 3)} for t, (m, q) in rows.items()},
               "writes_per_turn": round(info["writes_per_turn"], 2), "gc_pauses": len(clock.gc_ms),
               "gc_ms_total": round(gc_total, 1), "gc_ms_max": round(max(clock.gc_ms, default=0), 1),
               "rss_start_mb": round(info["rss_start_mb"], 1), "rss_end_mb": round(info["rss_end_mb"], 1),
               "turns": info["turns"], "status": info["status"]}
        print(json.dumps(out))
    return 0 if info["turns"] >= args.turns else 1


if __name__ == "__main__":
    sys.exit(main())
