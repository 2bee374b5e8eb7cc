"""``python -m tenax.testing --script FILE --port N``: serve the provider simulator until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from tenax.testing.compat import PRESETS
from tenax.testing.script import Script
from tenax.testing.server import Simulator


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tenax.testing", description=__doc__)
    ap.add_argument("--script", help="YAML script: {replies: [{text: ..., tool_calls: [...]}, ...]}")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--min-cacheable-tokens", type=int, default=1024)
    ap.add_argument("--context-window", type=int, default=200_000)
    ap.add_argument("--compat", choices=sorted(PRESETS),
                    help="answer /v1/chat/completions like this OpenAI-compatible server, quirks included")
    args = ap.parse_args(argv)
    try:
        script = Script.from_yaml(open(args.script, encoding="utf-8").read()) if args.script else Script([])
    except (OSError, ValueError) as exc:
        print(f"error: cannot load script {args.script!r}: {exc}", file=sys.stderr)
        return 2
    try:
        sim = Simulator(script, host=args.host, port=args.port, min_cacheable_tokens=args.min_cacheable_tokens,
                        context_window=args.context_window, compat=args.compat).start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    print(f"tenax simulator listening on {sim.url}  (anthropic base_url={sim.url}, openai base_url={sim.url}/v1)",
          flush=True)
    done = threading.Event()
    # Explicit handlers: a shell starts background jobs with SIGINT ignored, and Python then never
    # raises KeyboardInterrupt; SIGTERM is what service managers and `kill` send.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: done.set())
    try:
        while not done.wait(0.5):
            pass
    finally:
        sim.stop()
        print(f"served {len(sim.requests)} requests", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
