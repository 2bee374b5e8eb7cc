"""Sandbox start to first result: cold start, warm-pool start, and `docker run --rm` as the baseline.

    .venv/bin/python bench/sandbox_start.py [--runs N] [--json]

cold: DockerSandbox(...).start() and the first `exec("true")`. warm: SandboxPool.take() of a
filled pool and the first `exec("true")` (the pool is refilled outside the timed part; every
take gets a never-used container). baseline: `docker run --rm IMAGE true` via the CLI. floor:
the engine's own create + start of a plain container of the image (docker-py, nothing waited
for): what no cold start can go below. One warm-up run of each is excluded. The warm pool needs root (it bind-mounts workspaces).
With --json the last line is one JSON object (cold_ms_p50, warm_ms_p50, docker_run_ms_p50,
engine_start_ms_p50).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from tenax.sandbox import DEFAULT_IMAGE, DockerSandbox, cleanup_by_label, ensure_docker
from tenax.sandbox.pool import SandboxPool


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cold, warm, base, floor, goals = [], [], [], [], []
    tmp = tempfile.mkdtemp(prefix="tenax-bench-")
    pool = SandboxPool(1)
    client = ensure_docker()
    try:
        for i in range(args.runs + 1):
            goal = f"bench-start-{uuid.uuid4().hex[:8]}"
            goals.append(goal)
            t0 = time.perf_counter()
            sb = DockerSandbox(tempfile.mkdtemp(dir=tmp), goal_id=goal)
            sb.start()
            assert sb.exec("true").ok
            ms = (time.perf_counter() - t0) * 1000
            cleanup_by_label(goal_id=goal)
            if i:
                cold.append(ms)

            pool.fill()
            goal = f"bench-warm-{uuid.uuid4().hex[:8]}"
            goals.append(goal)
            ws = tempfile.mkdtemp(dir=tmp)
            t0 = time.perf_counter()
            sb = pool.take(ws, goal)
            r = sb.exec("true")
            ms = (time.perf_counter() - t0) * 1000
            assert r.ok and sb.slot is not None, r
            cleanup_by_label(goal_id=goal)
            if i:
                warm.append(ms)

            t0 = time.perf_counter()
            subprocess.run(["docker", "run", "--rm", "--network", "none", DEFAULT_IMAGE, "true"], check=True)
            if i:
                base.append((time.perf_counter() - t0) * 1000)

            t0 = time.perf_counter()
            plain = client.containers.create(DEFAULT_IMAGE, ["sleep", "infinity"], network_mode="none",
                                             labels={"tenax.bench": "1"})
            try:
                plain.start()
                ms = (time.perf_counter() - t0) * 1000
            finally:
                plain.remove(force=True)
            if i:
                floor.append(ms)
    finally:
        pool.cleanup()
        for goal in goals:
            cleanup_by_label(goal_id=goal)
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [("cold start", cold), ("warm pool", warm), ("docker run --rm", base), ("engine create+start", floor)]
    b50 = statistics.median(base)
    print(f"{'case':<20} {'p50':>8} {'p90':>8} {'vs docker run':>13}")
    for name, ms in rows:
        p90 = statistics.quantiles(ms, n=10)[-1] if len(ms) > 1 else ms[0]
        print(f"{name:<20} {statistics.median(ms):>6.1f}ms {p90:>6.1f}ms {statistics.median(ms) / b50:>12.2f}x")
    print(f"(cold start - engine create+start: {statistics.median(cold) - statistics.median(floor):.1f} ms of tenax: "
          "finding an existing container, waiting for the exec server, the first exec)")
    print(f"({args.runs} runs each after 1 warm-up run; start to the first result of `true`)")
    if args.json:
        print(json.dumps({"cold_ms_p50": round(statistics.median(cold), 1), "warm_ms_p50": round(statistics.median(warm), 1),
                          "docker_run_ms_p50": round(b50, 1), "engine_start_ms_p50": round(statistics.median(floor), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
