"""Exec round trips in the sandbox against `docker exec` via the CLI and the bare command on the host.

    .venv/bin/python bench/sandbox_exec.py [--runs N] [--json]

Cases: `true`, `echo`, 1 MB of output (each through DockerSandbox.exec, i.e. the exec server, and
the same `bash -lc CMD` via `docker exec` of the CLI into the same container and via subprocess on
the host, the three taking turns run by run so that a load on the machine weighs on each alike),
then read_file and write_file through the ToolBox. Warm-up runs are excluded; each
write writes new content and each read reads a different file, so no run is a cached no-op.
With --json the last line is one JSON object (exec_ms_p50, docker_exec_ms_p50, bare_ms_p50 are
the `true` case).
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

from tenax.sandbox import DockerSandbox, ToolBox, cleanup_by_label

CASES = {"true": "true", "echo": "echo hello", "1MB": "head -c 1048576 /dev/zero | tr '\\0' x"}


def timed(fns, runs: int, warmup: int = 3) -> list[list[float]]:
    """Each of ``fns`` run ``runs`` times (after ``warmup``), taking turns; ms per run, per fn."""
    for i in range(warmup):
        for fn in fns:
            fn(-1 - i)
    out: list[list[float]] = [[] for _ in fns]
    for i in range(runs):
        for fn, ms in zip(fns, out):
            t0 = time.perf_counter()
            fn(i)
            ms.append((time.perf_counter() - t0) * 1000)
    return out


def p(ms: list[float], q: float) -> float:
    return statistics.quantiles(ms, n=100)[int(q) - 1] if len(ms) > 1 else ms[0]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ws = tempfile.mkdtemp(prefix="tenax-bench-")
    sb = DockerSandbox(ws, goal_id=f"bench-{uuid.uuid4().hex[:8]}", labels={"tenax.bench": "1"})
    rows, summary = [], {}
    try:
        sb.start()
        tools = ToolBox(sb)
        for name, cmd in CASES.items():
            def via_server(_i, cmd=cmd):
                r = sb.exec(cmd, max_output_chars=2 * 1024 * 1024)
                assert r.exit_code == 0 and r.note is None, r

            def via_cli(_i, cmd=cmd):
                subprocess.run(["docker", "exec", "-u", sb.user, sb.container.id, "bash", "-lc", cmd],
                               check=True, stdout=subprocess.PIPE)

            def bare(_i, cmd=cmd):
                subprocess.run(["bash", "-c", cmd], check=True, stdout=subprocess.PIPE)

            server, cli, host = timed([via_server, via_cli, bare], args.runs)
            rows.append((f"exec {name}", server, cli, host))
        for i in range(-3, args.runs):  # files for the reads, each distinct
            sb.exec(f"seq 1 {200 + i % 7} > r{i}.txt")

        def write(i):
            out = tools.call("write_file", {"path": f"w/{i}.txt", "content": f"run {i}\n" * 100})
            assert not out.is_error, out

        def read(i):
            out = tools.call("read_file", {"path": f"r{i}.txt"})
            assert not out.is_error and out.content.startswith(f"r{i}.txt: lines 1-"), out

        rows.append(("write_file", timed([write], args.runs)[0], None, None))
        rows.append(("read_file", timed([read], args.runs)[0], None, None))
    finally:
        cleanup_by_label(goal_id=sb.goal_id)
        shutil.rmtree(ws, ignore_errors=True)

    print(f"{'case':<12} {'sandbox p50':>11} {'p90':>7} {'docker exec p50':>15} {'bare p50':>9} "
          f"{'docker/sandbox':>14} {'sandbox-bare':>12}")
    for name, server, cli, host in rows:
        s50 = statistics.median(server)
        line = f"{name:<12} {s50:>9.1f}ms {p(server, 90):>5.1f}ms"
        if cli is not None:
            c50, b50 = statistics.median(cli), statistics.median(host)
            line += f" {c50:>13.1f}ms {b50:>7.1f}ms {c50 / s50:>13.1f}x {s50 - b50:>10.1f}ms"
        print(line)
        summary[name] = {"p50": round(s50, 2), "p90": round(p(server, 90), 2)}
        if cli is not None:
            summary[name].update(docker_exec_p50=round(statistics.median(cli), 2), bare_p50=round(statistics.median(host), 2))
    print(f"({args.runs} runs each after 3 warm-up runs; bare = `bash -c CMD` via subprocess on the host: its login profile is not the sandbox's)")
    if args.json:
        t = summary["exec true"]
        print(json.dumps({"exec_ms_p50": t["p50"], "docker_exec_ms_p50": t["docker_exec_p50"], "bare_ms_p50": t["bare_p50"],
                          "read_file_ms_p50": summary["read_file"]["p50"], "write_file_ms_p50": summary["write_file"]["p50"],
                          "cases": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
