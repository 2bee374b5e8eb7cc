"""Token economics: tenax's prompt layout against a naive one, on the providers' caching rules.

A scripted long goal (200 main turns by default, realistic sizes) is replayed twice per provider
against the provider simulator (``tenax.testing``), through the real provider classes of
``tenax.harness`` and the real ``anthropic`` / ``openai`` SDKs over HTTP:

- **tenax**: the providers as shipped (frozen, deterministically serialized tools + system;
  Anthropic ``cache_control`` breakpoints; OpenAI ``prompt_cache_key`` = session id).
- **naive**: the same provider classes configured the way many harnesses work: the same
  messages, but no breakpoints, no cache key, and the current time at the head of the system
  prompt.

Both layouts see exactly the same workload (same seed, same tool-result sizes, same simulated
clock advancing between calls), each on a fresh simulator, so the figures differ only by layout.
Costs use tenax's own pricing table (``tenax.harness.pricing``), output tokens included.

What is simulated, and how (also printed with the results):
- The sandbox is bypassed: tool results are synthetic text of seeded pseudo-random sizes.
- Compaction is a PLACEHOLDER until ``tenax/compaction`` lands: one summary request on the current
  history, then the history is replaced by one user message (objective + summary); system and
  tools stay frozen.
- Sub-agents are a PLACEHOLDER until ``tenax/subagents`` lands: the main model calls a
  ``spawn_subagent`` tool; a separate short conversation with its own system prompt and session
  id runs on the same simulator; its final report is the tool result.

Run: ``python bench/cache_economics.py [--turns N] [--compactions N] [--subagents N] [--json]``.
With ``--json`` the last line is one JSON object of the figures. Exit status 1 when a target is
missed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from tenax.goal import prompts
from tenax.harness import pricing
from tenax.harness.anthropic_model import AnthropicModel
from tenax.harness.anthropic_model import build_request as anthropic_build_request
from tenax.harness.messages import Message, TextPart, ToolResultPart, ToolSpec, Usage
from tenax.harness.openai_models import OpenAIResponsesModel
from tenax.sandbox.tools import ToolBox
from tenax.testing import Reply, SimClock, SimRequest, Simulator, ToolCall, count_tokens

ANTHROPIC_MODEL = "claude-sonnet-4-6"
OPENAI_MODEL = "gpt-5.5"
PROVIDERS = ("anthropic", "openai")
KEY = "bench-key"

TARGET_CACHED_SHARE = 0.95  # Anthropic rules
TARGET_COST_RATIO = 5.0  # naive / tenax, Anthropic rules

PREFIX_TOKENS = 6_000  # system + tools of the main session, about
SUBAGENT_SYSTEM_TOKENS = 2_000
SUBAGENT_TURNS = 6
RESULT_TOKENS = (200, 4_000)
SUMMARY_TOKENS = 1_500
REPORT_TOKENS = 400
SECONDS_PER_CALL = (5.0, 45.0)  # simulated wall time between model calls (tool runs, thinking)
EPOCH = datetime(2026, 1, 5, 9, 0, 0, tzinfo=timezone.utc)

SPAWN_TOOL = ToolSpec(
    name="spawn_subagent",
    description="Delegate a self-contained task to a sub-agent with a fresh context; returns its report.",
    parameters={
        "type": "object",
        "properties": {"task": {"type": "string", "description": "What the sub-agent must do and report."}},
        "required": ["task"],
        "additionalProperties": False,
    },
)

NOTES = [
    "sandbox: bypassed; tool results are synthetic text of seeded pseudo-random sizes "
    f"({RESULT_TOKENS[0]}-{RESULT_TOKENS[1]} tokens)",
    "compaction: PLACEHOLDER (tenax/compaction not built yet): one summary request, then the history is "
    "replaced by one user message (objective + summary); system + tools stay frozen",
    "sub-agents: PLACEHOLDER (tenax/subagents not built yet): a separate short conversation "
    f"({SUBAGENT_TURNS} tool turns + report) with its own system prompt and session on the same simulator",
    "naive layout: the same provider classes with no cache breakpoints, no prompt_cache_key and the current "
    "time at the head of the system prompt; same messages",
    "tokens are the simulator's ceil(chars/4) count; USD from tenax's pricing table, output included",
]


# --------------------------------------------------------------------------- workload


def _filler(rng: random.Random, tokens: int, tag: str) -> str:
    """Deterministic text of exactly ``tokens`` simulated tokens (4 characters each)."""
    words = ("config", "request", "handler", "retry", "session", "buffer", "parse", "render", "index", "cache",
             "module", "return", "assert", "value", "window", "token", "commit", "branch", "worker", "queue")
    out: list[str] = []
    size = 0
    n = 0
    target = tokens * 4
    while size < target:
        n += 1
        line = f"{tag}:{n}: " + " ".join(rng.choice(words) for _ in range(8)) + f" {rng.getrandbits(32):08x}\n"
        out.append(line)
        size += len(line)
    text = "".join(out)[:target]
    assert count_tokens(text) == tokens
    return text


def _prefix_padding(tools: list[ToolSpec], base_system: str, total: int, rng: random.Random) -> str:
    """A frozen project guide appended to the system prompt so system + tools come to ``total``."""
    tool_tokens = sum(count_tokens(t.canonical()) for t in tools)
    missing = max(0, total - tool_tokens - count_tokens(base_system))
    return _filler(rng, missing, "guide") if missing else ""


@dataclass
class SubPlan:
    task: str
    actions: list[tuple[str, dict[str, Any], int]]  # (tool, arguments, result tokens)
    report_tokens: int


@dataclass
class Workload:
    """Everything both layouts replay: identical for a given seed."""

    turns: int
    compactions: int
    subagents: int
    seed: int
    main_system: str = ""
    sub_system: str = ""
    tools: list[ToolSpec] = field(default_factory=list)
    sub_tools: list[ToolSpec] = field(default_factory=list)
    objective: str = ""
    # per main turn: (assistant text, tool name, arguments, result tokens)
    actions: list[tuple[str, str, dict[str, Any], int]] = field(default_factory=list)
    compact_after: set[int] = field(default_factory=set)
    spawn_at: dict[int, SubPlan] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)  # simulated time before each model call
    results: dict[str, str] = field(default_factory=dict)  # (where) -> synthetic tool result

    @classmethod
    def build(cls, turns: int, compactions: int, subagents: int, seed: int) -> "Workload":
        if turns < 1 or compactions < 0 or subagents < 0:
            raise ValueError("turns must be >= 1, compactions and subagents >= 0")
        if compactions + subagents >= turns:
            raise ValueError("need more turns than compactions + sub-agent spawns")
        rng = random.Random(seed)
        w = cls(turns=turns, compactions=compactions, subagents=subagents, seed=seed)
        w.tools = list(ToolBox(None).specs()) + [SPAWN_TOOL, prompts.COMPLETE_GOAL]
        w.sub_tools = list(ToolBox(None).specs())
        guide = _prefix_padding(w.tools, prompts.SYSTEM_PROMPT, PREFIX_TOKENS, rng)
        w.main_system = prompts.SYSTEM_PROMPT + "\nProject guide (frozen for the session):\n" + guide
        w.sub_system = ("You are a tenax sub-agent. Do the delegated task with the tools, then answer with a "
                        "short report.\n" + _filler(rng, SUBAGENT_SYSTEM_TOKENS, "sub-guide"))
        w.objective = ("GOAL:\nMigrate the service's storage layer to the new API and keep the test suite green."
                       "\n\nVerification: the goal is complete when this check passes in /workspace:\n"
                       "    make test\n\nStart now.")
        w.compact_after = {round((k + 1) * turns / (compactions + 1)) - 1 for k in range(compactions)}
        spawn: set[int] = set()
        for k in range(subagents):
            at = int((k + 0.5) * turns / subagents)
            while at in spawn or at in w.compact_after:
                at = (at + 1) % turns
            spawn.add(at)
        for i in range(turns):
            text = f"Turn {i}: " + _filler(rng, rng.randint(15, 120), f"plan{i}")
            if i in spawn:
                task = f"Investigate area {i} of the codebase and report the changes it needs."
                sub_actions = []
                for j in range(SUBAGENT_TURNS):
                    sub_actions.append(("read_file", {"path": f"src/area_{i}/part_{j}.py"}, rng.randint(*RESULT_TOKENS)))
                w.spawn_at[i] = SubPlan(task=task, actions=sub_actions, report_tokens=REPORT_TOKENS)
                w.actions.append((text, SPAWN_TOOL.name, {"task": task}, 0))
            elif rng.random() < 0.5:
                w.actions.append((text, "read_file", {"path": f"src/mod_{i}.py"}, rng.randint(*RESULT_TOKENS)))
            else:
                w.actions.append((text, "bash", {"command": f"make test TESTS=t{i}"}, rng.randint(*RESULT_TOKENS)))
        n_calls = turns + compactions + subagents * (SUBAGENT_TURNS + 1)
        w.seconds = [rng.uniform(*SECONDS_PER_CALL) for _ in range(n_calls + 1)]
        return w

    def result(self, where: str, tokens: int) -> str:
        """The synthetic tool result for ``where`` (created once, identical for both layouts)."""
        if where not in self.results:
            self.results[where] = _filler(random.Random(f"{self.seed}:{where}"), tokens, where)
        return self.results[where]


# --------------------------------------------------------------------------- layouts


class NaiveAnthropicModel(AnthropicModel):
    """The real Anthropic provider with the cache layout switched off and a clock in the system."""

    def __init__(self, name: str, *, now: Callable[[], str], **kwargs: Any):
        super().__init__(name, **kwargs)
        self.now = now

    def build_request(self, system: str, tools: list[ToolSpec], messages: list[Message], *,
                      max_tokens: int = 8192) -> dict[str, Any]:
        return anthropic_build_request(self.name, f"Current time: {self.now()}\n\n{system}", tools, messages,
                                       max_tokens=max_tokens, cache=False, thinking=self.thinking)


class NaiveOpenAIResponsesModel(OpenAIResponsesModel):
    """The real OpenAI Responses provider with no prompt_cache_key and a clock in the instructions."""

    def __init__(self, name: str, *, now: Callable[[], str], **kwargs: Any):
        super().__init__(name, **kwargs)
        self.now = now

    def build_request(self, system: str, tools: list[ToolSpec], messages: list[Message], *, session_id: str,
                      max_tokens: int = 8192) -> dict[str, Any]:
        kwargs = super().build_request(f"Current time: {self.now()}\n\n{system}", tools, messages,
                                       session_id=session_id, max_tokens=max_tokens)
        kwargs.pop("prompt_cache_key", None)
        return kwargs


def make_model(provider: str, layout: str, sim: Simulator) -> Any:
    def now() -> str:
        return (EPOCH + timedelta(seconds=sim.clock.offset)).strftime("%Y-%m-%d %H:%M:%S UTC")

    if provider == "anthropic":
        cls = AnthropicModel if layout == "tenax" else NaiveAnthropicModel
        extra = {} if layout == "tenax" else {"now": now}
        return cls(ANTHROPIC_MODEL, api_key=KEY, base_url=sim.url, **extra)
    cls2 = OpenAIResponsesModel if layout == "tenax" else NaiveOpenAIResponsesModel
    extra = {} if layout == "tenax" else {"now": now}
    return cls2(OPENAI_MODEL, api_key=KEY, base_url=sim.url + "/v1", **extra)


# --------------------------------------------------------------------------- driver


class Director:
    """Simulator policy: answers each request with the reply the driver queued for it."""

    def __init__(self) -> None:
        self.queue: list[Reply] = []

    def __call__(self, req: SimRequest) -> Reply:
        if not self.queue:
            raise RuntimeError("bench driver sent a request with no reply queued")
        return self.queue.pop(0)


@dataclass
class Tally:
    usage: Usage = field(default_factory=Usage)
    usd: float = 0.0
    uncached_usd: float = 0.0
    requests: dict[str, int] = field(default_factory=lambda: {"main": 0, "compaction": 0, "subagent": 0})


def replay(provider: str, layout: str, w: Workload) -> Tally:
    """Run the workload once through ``provider`` with ``layout`` on a fresh simulator."""
    director = Director()
    tally = Tally()
    price = pricing.lookup_price(provider, ANTHROPIC_MODEL if provider == "anthropic" else OPENAI_MODEL)
    clock_steps = iter(w.seconds)
    with Simulator(director, clock=SimClock()) as sim:
        model = make_model(provider, layout, sim)

        def call(kind: str, system: str, tools: list[ToolSpec], messages: list[Message], session: str,
                 reply: Reply) -> Message:
            sim.clock.advance(next(clock_steps))
            director.queue.append(reply)
            resp = model.complete(system, tools, messages, session_id=session, max_tokens=4096)
            tally.usage = tally.usage + resp.usage
            tally.usd += pricing.cost_usd(price, resp.usage)
            tally.uncached_usd += pricing.uncached_cost_usd(price, resp.usage)
            tally.requests[kind] += 1
            return resp.message

        def run_subagent(i: int, plan: SubPlan) -> str:
            session = f"bench-sub-{i}"
            msgs = [Message(role="user", parts=[TextPart(text=plan.task)])]
            for j, (tool, args, size) in enumerate(plan.actions):
                out = call("subagent", w.sub_system, w.sub_tools, msgs, session,
                           Reply(text=f"Step {j}.", tool_calls=[ToolCall(name=tool, arguments=args)]))
                msgs.append(out)
                msgs.append(Message(role="user", parts=[
                    ToolResultPart(tool_call_id=out.tool_calls[0].id, content=w.result(f"sub{i}.{j}", size))]))
            report = w.result(f"report{i}", plan.report_tokens)
            final = call("subagent", w.sub_system, w.sub_tools, msgs, session, Reply(text=report))
            return final.text

        session = "bench-main"
        msgs = [Message(role="user", parts=[TextPart(text=w.objective)])]
        for i, (text, tool, args, size) in enumerate(w.actions):
            out = call("main", w.main_system, w.tools, msgs, session,
                       Reply(text=text, tool_calls=[ToolCall(name=tool, arguments=args)]))
            msgs.append(out)
            content = run_subagent(i, w.spawn_at[i]) if i in w.spawn_at else w.result(f"main{i}", size)
            msgs.append(Message(role="user", parts=[ToolResultPart(tool_call_id=out.tool_calls[0].id,
                                                                   content=content)]))
            if i in w.compact_after:
                msgs[-1].parts.append(TextPart(text="[runtime] The context is being compacted. Summarize the work "
                                                    "so far, the plan and the open problems."))
                summary = call("compaction", w.main_system, w.tools, msgs, session,
                               Reply(text=w.result(f"summary{i}", SUMMARY_TOKENS))).text
                msgs = [Message(role="user", parts=[TextPart(
                    text=f"{w.objective}\n\n[runtime] Summary of the work so far (the history was compacted):\n"
                         f"{summary}")])]
    return tally


def figures(t: Tally) -> dict[str, Any]:
    total = t.usage.total_input
    return {
        "input_tokens_total": total,
        "uncached_input_tokens": t.usage.input_tokens,
        "cache_read_tokens": t.usage.cache_read_tokens,
        "cache_write_tokens": t.usage.cache_write_tokens,
        "output_tokens": t.usage.output_tokens,
        "cached_share": t.usage.cache_read_tokens / total if total else 0.0,
        "usd": t.usd,
        "uncached_usd": t.uncached_usd,
        "requests": dict(t.requests),
    }


def _replay_job(provider: str, layout: str, turns: int, compactions: int, subagents: int,
                seed: int) -> dict[str, Any]:
    """One replay in a worker process (the workload is rebuilt from its seed: deterministic)."""
    return figures(replay(provider, layout, Workload.build(turns, compactions, subagents, seed)))


def run(turns: int = 200, compactions: int = 3, subagents: int = 5, seed: int = 1,
        jobs: int | None = None) -> dict[str, Any]:
    """Replay the workload for each provider and layout; ``jobs`` > 1 runs the four independent
    replays in worker processes (each with its own simulator), default: one per CPU, at most 4."""
    w = Workload.build(turns, compactions, subagents, seed)
    out: dict[str, Any] = {"turns": turns, "compactions": compactions, "subagents": subagents, "seed": seed}
    keys = [(p, layout) for p in PROVIDERS for layout in ("tenax", "naive")]
    jobs = min(len(keys), os.cpu_count() or 1) if jobs is None else max(1, jobs)
    if jobs == 1:
        done = {k: figures(replay(k[0], k[1], w)) for k in keys}
    else:
        # The SDKs' request building is CPU-bound Python: processes, not threads.
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {k: pool.submit(_replay_job, k[0], k[1], turns, compactions, subagents, seed) for k in keys}
            done = {k: f.result() for k, f in futures.items()}
    for provider in PROVIDERS:
        tenax, naive = done[(provider, "tenax")], done[(provider, "naive")]
        out[provider] = {
            "tenax": tenax,
            "naive": naive,
            "cached_share": tenax["cached_share"],
            "cost_ratio": naive["usd"] / tenax["usd"] if tenax["usd"] else float("inf"),
        }
        out["requests"] = tenax["requests"]
    out["prefix_tokens"] = {"main": sum(count_tokens(t.canonical()) for t in w.tools) + count_tokens(w.main_system),
                            "subagent": sum(count_tokens(t.canonical()) for t in w.sub_tools)
                            + count_tokens(w.sub_system)}
    return out


def targets(result: dict[str, Any]) -> list[tuple[str, float, float, bool]]:
    a = result["anthropic"]
    return [
        ("anthropic cached share", a["cached_share"], TARGET_CACHED_SHARE, a["cached_share"] >= TARGET_CACHED_SHARE),
        ("anthropic cost ratio naive/tenax", a["cost_ratio"], TARGET_COST_RATIO, a["cost_ratio"] >= TARGET_COST_RATIO),
    ]


def render(result: dict[str, Any], elapsed: float) -> str:
    req = result["requests"]
    lines = [
        f"cache economics: {result['turns']} main turns, {result['compactions']} compactions, "
        f"{result['subagents']} sub-agent spawns (seed {result['seed']}); "
        f"{sum(req.values())} requests per run (main {req['main']}, compaction {req['compaction']}, "
        f"sub-agent {req['subagent']}); main prefix (system + tools) {result['prefix_tokens']['main']:,} tokens",
    ]
    lines += [f"  note: {n}" for n in NOTES]
    header = f"{'provider':<10} {'layout':<6} {'input tokens':>13} {'cache read':>12} {'cache write':>12} " \
             f"{'cached':>7} {'USD':>9} {'naive/tenax':>11}"
    for provider in PROVIDERS:
        p = result[provider]
        lines += ["", header, "-" * len(header)]
        for layout in ("tenax", "naive"):
            f = p[layout]
            ratio = f"{p['cost_ratio']:.2f}x" if layout == "naive" else ""
            lines.append(f"{provider:<10} {layout:<6} {f['input_tokens_total']:>13,} {f['cache_read_tokens']:>12,} "
                         f"{f['cache_write_tokens']:>12,} {f['cached_share']:>7.1%} {f['usd']:>9.2f} {ratio:>11}")
    lines.append("")
    for name, value, target, ok in targets(result):
        shown = f"{value:.1%} (target >= {target:.0%})" if "share" in name else f"{value:.2f}x (target >= {target:g}x)"
        lines.append(f"{'PASS' if ok else 'FAIL'}  {name}: {shown}")
    lines.append(f"elapsed {elapsed:.1f}s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--turns", type=int, default=200, help="main-session turns (default 200)")
    ap.add_argument("--compactions", type=int, default=3)
    ap.add_argument("--subagents", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="last line: one JSON object of the figures")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPUs, at most 4)")
    args = ap.parse_args(argv)
    started = time.monotonic()
    try:
        result = run(args.turns, args.compactions, args.subagents, args.seed, jobs=args.jobs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(result, time.monotonic() - started))
    if args.json:
        print(json.dumps({
            "anthropic": {"cached_share": round(result["anthropic"]["cached_share"], 4),
                          "cost_ratio": round(result["anthropic"]["cost_ratio"], 3)},
            "openai": {"cached_share": round(result["openai"]["cached_share"], 4),
                       "cost_ratio": round(result["openai"]["cost_ratio"], 3)},
            "turns": result["turns"], "compactions": result["compactions"], "subagents": result["subagents"],
        }))
    return 0 if all(ok for *_, ok in targets(result)) else 1


if __name__ == "__main__":
    sys.exit(main())
