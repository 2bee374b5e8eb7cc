"""Goals at once: turns per second against the ideal, with a 200 ms model, and the memory of each goal.

    .venv/bin/python bench/concurrency.py [--goals 1,4,16] [--turns 40] [--latency 0.2] [--json]

Each goal is its own process (as the daemon runs them) driving the real goal wiring
(``harness_overhead.run_goal``: engine, goal policy, hooks and guards, the Anthropic provider and
SDK over HTTP, a sandbox that executes nothing) on ONE shared SQLite store, against one threaded
simulator process whose every answer waits ``--latency`` seconds. Every goal first starts up
(imports, store, model) and reports ready; the clock starts when all are released together and
stops when the last one ends, so start-up is not counted (it is shown as RSS at start).

ideal = goals / (latency per turn): what N goals would reach if tenax cost nothing. The baseline
of the ratio is that ideal, computed for the same latency in the same run; the 1-goal row shows
what one goal alone loses per turn. RSS per goal: at start (ready) and at the end of its run.

The bench's goals reuse bench scaffolding that imports both SDKs, so their RSS overstates a goal;
the RSS of a real goal process at start is measured apart, in a fresh process that does what a
goal does before its first turn (import ``tenax.app``, build the Anthropic model, open the existing
store, start a real sandbox and run one command in it, build the goal engine), RSS after each step.
``--rss-only`` runs only that.

With --json the last line is one JSON object ({"runs": {N: {...}}, "ratio_16": ..., "goal_start_rss": {...}}).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness_overhead import KEY, SPEC, SimProcess, rss_mb, run_goal  # noqa: E402

TARGET = 0.90  # of the ideal, at 16 goals


def goal_main(db: str, url: str, turns: int, workspace: str) -> None:
    """One goal process: start up, say ready, wait for go, run, report one JSON line."""
    def ready() -> None:
        print("ready", flush=True)
        sys.stdin.readline()

    info = run_goal(db, url, turns, workspace, ready=ready)
    info["ended"] = time.time()
    print(json.dumps(info), flush=True)


def start_rss_main(db: str, url: str, workspace: str) -> None:
    """A real goal process up to its first turn; prints [[step, RSS MB, modules loaded], ...]."""
    steps = [("python", rss_mb(), len(sys.modules))]
    from tenax.app import build_model, goal_engine
    from tenax.config import Settings
    from tenax.sandbox import DockerSandbox, ToolBox, cleanup_by_label
    from tenax.store import open_store

    steps.append(("import tenax.app", rss_mb(), len(sys.modules)))
    model = build_model(SPEC, url, KEY)
    steps.append(("+ Anthropic model", rss_mb(), len(sys.modules)))
    store = open_store(db)
    gid = store.create_goal(objective="x", check_cmd="true", model=SPEC, workspace=workspace)
    steps.append(("+ store (existing DB), goal", rss_mb(), len(sys.modules)))
    sandbox = DockerSandbox(workspace, goal_id=f"bench-rss-{gid}")
    try:
        sandbox.start()
        assert sandbox.exec("true").ok
        steps.append(("+ sandbox started, one exec", rss_mb(), len(sys.modules)))
        goal_engine(store, gid, model, sandbox, ToolBox(sandbox), settings=Settings(pricing_file=None))
        steps.append(("+ goal engine (first turn next)", rss_mb(), len(sys.modules)))
    finally:
        cleanup_by_label(goal_id=sandbox.goal_id)
    print(json.dumps(steps), flush=True)


def goal_start_rss(url: str, tmp: str) -> list[list]:
    db = f"sqlite:///{tmp}/tenax-rss.db"
    from tenax.store import open_store

    open_store(db).close()
    ws = Path(tmp, "ws-rss")
    ws.mkdir()
    out = subprocess.run([sys.executable, __file__, "--start-rss", db, url, str(ws)], check=True, text=True,
                         stdout=subprocess.PIPE, timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


def print_start_rss(steps: list[list]) -> None:
    print(f"{'a real goal process, at start':<32} {'RSS':>8} {'modules':>8}")
    for name, mb, modules in steps:
        print(f"{name:<32} {mb:>6.1f}MB {modules:>8}")


SIM_PID: list[int] = []  # the simulator process, whose CPU the run also reports


def sim_cpu_s() -> float:
    """CPU seconds the simulator process has used (0 when unknown)."""
    try:
        fields = Path(f"/proc/{SIM_PID[0]}/stat").read_text().rsplit(")", 1)[1].split()
    except (IndexError, OSError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(goals: int, turns: int, url: str, tmp: str) -> dict[str, float]:
    db = f"sqlite:///{tmp}/tenax-{goals}.db"
    from tenax.store import open_store

    open_store(db).close()  # created and migrated once, before the goals race to it
    sim_cpu0 = sim_cpu_s()
    procs = []
    for i in range(goals):
        ws = Path(tmp, f"ws-{goals}-{i}")
        ws.mkdir()
        procs.append(subprocess.Popen([sys.executable, __file__, "--goal", db, url, str(turns), str(ws)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    start = time.time()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    infos = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        infos.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(i["ended"] for i in infos) - start
    done = sum(i["turns"] for i in infos)
    return {"goals": goals, "turns": done, "wall_s": wall, "turns_per_s": done / wall,
            "cpu_ms_per_turn": 1000 * sum(i["cpu_s"] for i in infos) / done,
            "simulator_cpu_s": sim_cpu_s() - sim_cpu0,
            "ok": all(i["status"] == "succeeded" for i in infos),
            "rss_start_mb": max(i["rss_start_mb"] for i in infos), "rss_end_mb": max(i["rss_end_mb"] for i in infos)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--goals", default="1,4,16")
    ap.add_argument("--turns", type=int, default=40)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rss-only", action="store_true", help="only the RSS of a real goal process at start")
    ap.add_argument("--goal", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--start-rss", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.goal:
        db, url, turns, ws = args.goal
        goal_main(db, url, int(turns), ws)
        return 0
    if args.start_rss:
        start_rss_main(*args.start_rss)
        return 0
    counts = [] if args.rss_only else [int(n) for n in args.goals.split(",")]
    sim = SimProcess(args.turns, args.latency)
    SIM_PID[:] = [sim.proc.pid]
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="tenax-bench-") as tmp:
            for n in counts:
                rows.append(run(n, args.turns, sim.url, tmp))
            start = goal_start_rss(sim.url, tmp)
    finally:
        sim.close()
    print_start_rss(start)
    if args.rss_only:
        if args.json:
            print(json.dumps({"goal_start_rss": {name: round(mb, 1) for name, mb, _ in start}}))
        return 0
    print(f"{'goals':>5} {'turns/s':>8} {'ideal':>7} {'of ideal':>8} {'CPU/turn':>9} {'sim CPU':>8} {'RSS/goal start':>14} "
          f"{'end':>7} {'all ok':>6}")
    for r in rows:
        # each turn is one model call of `latency` s; a goal makes turns + 1 calls (complete_goal)
        ideal = r["goals"] / args.latency
        r["ideal_turns_per_s"], r["ratio"] = ideal, r["turns_per_s"] / ideal
        print(f"{r['goals']:>5} {r['turns_per_s']:>8.1f} {ideal:>7.1f} {r['ratio']:>7.0%} {r['cpu_ms_per_turn']:>7.1f}ms "
              f"{r['simulator_cpu_s']:>7.1f}s {r['rss_start_mb']:>12.0f}MB "
              f"{r['rss_end_mb']:>5.0f}MB {'yes' if r['ok'] else 'NO':>6}")
    print(f"({args.turns} turns per goal, {args.latency * 1000:.0f} ms per model call, goals in their own processes "
          f"on one SQLite store, {os.cpu_count()} CPUs; CPU/turn: the goals' CPU while running over their turns; "
          "sim CPU: the simulator process's CPU seconds over the run; RSS is the largest goal's)")
    if args.json:
        out = {"runs": {str(r["goals"]): {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
                        for r in rows}}
        out["ratio_16"] = out["runs"].get("16", {}).get("ratio")
        out["goal_start_rss"] = {name: round(mb, 1) for name, mb, _ in start}
        print(json.dumps(out))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
