"""Durable journal appends per second through tenax's store, against raw sqlite3 on the same disk.

    .venv/bin/python bench/store_throughput.py [--events 2000] [--json]

tenax: ``SqlStore.append_step`` of a tool-result-sized payload (about 600 bytes of JSON), one
committed transaction per event, as the engine journals them (``BEGIN IMMEDIATE``, the lease fence
when a lease is held, one insert that computes the next seq, commit; a WAL checkpoint every 200
writes); the payload is validated and encoded as strict JSON, the row carries a random text id. raw: Python's sqlite3 on a file in the
same temporary directory with the same settings (WAL, the same ``synchronous``), one transaction
per event: ``BEGIN IMMEDIATE``, an insert of the same row whose seq is computed by the same
``max(seq) + 1`` subquery over a (session, seq) unique index, ``COMMIT``. Both are measured
after 50 warm-up events, in two durability settings:

- normal: WAL + ``synchronous=NORMAL`` (tenax's default): survives ``kill -9`` and any crash of
  tenax; a power loss may drop the last commits, never corrupt the file.
- full: ``synchronous=FULL`` (``TENAX_DURABILITY=full``): every commit is fsynced.

With --json the last line is one JSON object: events_per_s and ratio_to_raw are the normal setting.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

WARMUP = 50
PAYLOAD = {"type": "tool_result", "tool_call_id": "toolu_0123456789", "is_error": False,
           "content": "exit code: 0\n--- stdout ---\n" + "collected 42 items; all passed. " * 18}


def tenax_rate(directory: str, events: int, durability: str) -> float:
    from tenax.store import open_store

    os.environ["TENAX_DURABILITY"] = durability
    try:
        store = open_store(f"sqlite:///{directory}/tenax.db")
    finally:
        del os.environ["TENAX_DURABILITY"]
    gid = store.create_goal(objective="bench", model="anthropic:claude-sonnet-4-6", workspace=directory)
    sid = store.create_session(gid, model="anthropic:claude-sonnet-4-6", system="s")
    for _ in range(WARMUP):
        store.append_step(sid, "tool_result", PAYLOAD)
    t0 = time.perf_counter()
    for _ in range(events):
        store.append_step(sid, "tool_result", PAYLOAD)
    rate = events / (time.perf_counter() - t0)
    assert store.last_seq(sid) == WARMUP + events
    store.close()
    return rate


def raw_rate(directory: str, events: int, durability: str) -> float:
    db = sqlite3.connect(f"{directory}/raw.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={durability.upper()}")
    db.execute("CREATE TABLE steps (id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, seq INTEGER NOT NULL, "
               "kind TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (session_id, seq))")
    data = json.dumps(PAYLOAD)

    def append() -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO steps (session_id, seq, kind, payload, created_at) SELECT ?, "
                   "coalesce(max(seq), 0) + 1, ?, ?, datetime('now') FROM steps WHERE session_id = ?",
                   ("s1", "tool_result", data, "s1"))
        db.execute("COMMIT")

    for _ in range(WARMUP):
        append()
    t0 = time.perf_counter()
    for _ in range(events):
        append()
    rate = events / (time.perf_counter() - t0)
    db.close()
    return rate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    results = {}
    for durability in ("normal", "full"):
        with tempfile.TemporaryDirectory(prefix="tenax-bench-", dir=os.environ.get("TENAX_BENCH_DIR")) as d:
            raw = raw_rate(d, args.events, durability)
            ours = tenax_rate(d, args.events, durability)
        results[durability] = (ours, raw)
    print(f"{'durability':<11} {'tenax events/s':>15} {'raw sqlite3/s':>14} {'ratio':>6} {'ms/event':>9}")
    for durability, (ours, raw) in results.items():
        print(f"{durability:<11} {ours:>15,.0f} {raw:>14,.0f} {ours / raw:>6.2f} {1000 / ours:>9.3f}")
    print(f"({args.events} events each after {WARMUP} warm-up; one committed transaction per event; "
          f"files under {Path(tempfile.gettempdir())})")
    if args.json:
        ours, raw = results["normal"]
        full, full_raw = results["full"]
        print(json.dumps({"events_per_s": round(ours), "ratio_to_raw": round(ours / raw, 3), "raw_events_per_s": round(raw),
                          "full_events_per_s": round(full), "full_ratio_to_raw": round(full / full_raw, 3),
                          "full_raw_events_per_s": round(full_raw), "events": args.events}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
