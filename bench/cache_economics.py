"""Token economics: tenax's prompt layout against a naive one, on the providers' caching rules.

A scripted long goal (200 main turns by default, realistic sizes) runs per provider through the
REAL goal loop against the provider simulator (``tenax.testing``): the engine with the goal policy, its
``Compactor`` (threshold trigger, handoff-summary request on the frozen system + tools, ledger +
summary + kept tail folded from the journal) and its ``AgentManager`` (``spawn_agent`` runs a
journaled sub-agent engine in its own session and context), the real provider classes of
``tenax.harness``, the real ``anthropic`` / ``openai`` SDKs over HTTP and a temporary SQLite store.

- **tenax**: what that run sent, as sent (frozen, deterministically serialized tools + system;
  Anthropic ``cache_control`` breakpoints; OpenAI ``prompt_cache_key`` = session id).
- **naive**: the exact same model calls (every recorded system prompt, tool list and message list,
  main session, compaction summaries and sub-agents alike, in the same order, with the same
  simulated time between calls and the same replies) replayed on a fresh simulator through the same
  provider classes configured the way many harnesses work: no breakpoints, no cache key, and the
  current time at the head of the system prompt.

The figures therefore differ only by layout. Costs use tenax's own pricing table
(``tenax.harness.pricing``), output tokens included.

What is simulated (also printed with the results):
- The model: a deterministic simulator policy plays the 200-turn workload (file reads and test
  runs with 200-4,000-token outputs, a plan update, ``spawn_agent`` calls, handoff summaries when the
  compactor asks, ``complete_goal`` at the end); the simulated clock advances 5-45 s per call.
- The sandbox: an in-process implementation of ``tenax.core.protocols.Sandbox`` that executes NOTHING
  and answers every command / file tool with deterministic synthetic text of the planned size
  (Docker execs would add ~40 s per run and nothing to the token figures).
- The compaction trigger: the goal's compaction ``window`` is set so that the real threshold
  (0.8 x window) is crossed ``--compactions`` times over the run; everything else is the shipped
  compactor.

Run: ``python bench/cache_economics.py [--turns N] [--compactions N] [--subagents N] [--json]``.
With ``--json`` the last line is one JSON object of the figures. Exit status 1 when a target is
missed (or the run did not produce the requested turns / compactions / sub-agents).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from tenax.compaction import SUMMARY_REQUEST, memory_tools
from tenax.config import Settings
from tenax.goal import instructions, prompts
from tenax.app import cost_function, goal_engine
from tenax.core.budget import Budgets
from tenax.goal.policy import drive
from tenax.harness import pricing
from tenax.harness.anthropic_model import AnthropicModel
from tenax.core.messages import Message, ModelResponse, TextPart, ToolSpec, Usage
from tenax.harness.openai_models import OpenAIResponsesModel
from tenax.harness.registry import make_model as make_provider_model
from tenax.core.protocols import ExecResult
from tenax.sandbox.jobs import SPECS as JOB_SPECS
from tenax.sandbox.tools import ToolBox
from tenax.store import open_store
from tenax.subagents import AgentManager
from tenax.subagents.manager import TOOL_SPECS as AGENT_TOOL_SPECS
from tenax.subagents.roles import BUILTIN_ROLES
from tenax.testing import Reply, SimClock, SimRequest, Simulator, ToolCall, count_tokens

SPECS = {"anthropic": "anthropic:claude-sonnet-4-6", "openai": "openai:gpt-5.5"}
PROVIDERS = ("anthropic", "openai")
KEY = "bench-key"

TARGET_CACHED_SHARE = 0.95  # Anthropic rules
TARGET_COST_RATIO = 5.0  # naive / tenax, Anthropic rules

SUBAGENT_ROLE = "explorer"
SUBAGENT_TURNS = 6  # tool turns of each sub-agent before its report
RESULT_TOKENS = (200, 4_000)
SUMMARY_TOKENS = 1_500
REPORT_TOKENS = 400
SECONDS_PER_CALL = (5.0, 45.0)  # simulated wall time before each model call (tool runs, thinking)
EPOCH = datetime(2026, 1, 5, 9, 0, 0, tzinfo=timezone.utc)
CHECK = "make test"

MAIN_MARK = prompts.SYSTEM_PROMPT.split("\n", 1)[0][:40]
SUB_MARK = BUILTIN_ROLES[SUBAGENT_ROLE].system.split("\n", 1)[0][:40]
SUMMARY_MARK = SUMMARY_REQUEST[:60]

NOTES = [
    "goal loop: the real engine with the goal policy, its Compactor and AgentManager, a temporary SQLite store, the real "
    "provider classes and SDKs over HTTP to the simulator",
    "model: a deterministic simulator policy plays the workload; simulated clock +5-45 s per call",
    "sandbox: an in-process Sandbox that executes nothing and returns deterministic synthetic outputs of "
    f"{RESULT_TOKENS[0]}-{RESULT_TOKENS[1]} tokens (Docker would only add time, not tokens)",
    "compaction: the shipped Compactor (summary request on the frozen prefix, ledger + summary + kept tail "
    "folded from the journal); its window is set so the real 0.8 threshold is crossed the requested number "
    "of times",
    f"sub-agents: real spawn_agent -> the sub-agent engine ({SUBAGENT_ROLE} role: own session, system, tools and "
    f"context; {SUBAGENT_TURNS} tool turns + report)",
    "naive layout: every recorded call replayed with no cache breakpoints, no prompt_cache_key and the current "
    "time at the head of the system prompt; same messages, same replies, same simulated clock",
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


def synthetic(key: str, tokens: int, seed: int) -> str:
    return _filler(random.Random(f"{seed}:{key}"), tokens, key.replace(" ", "_")[:40])


@dataclass
class Workload:
    """The scripted goal: identical for a given seed (both providers, both processes)."""

    turns: int
    compactions: int
    subagents: int
    seed: int
    objective: str = ("Migrate the service's storage layer to the new API and keep the test suite green.")
    # per main turn: (assistant text, ToolCall)
    actions: list[tuple[str, ToolCall]] = field(default_factory=list)
    spawn_at: dict[int, str] = field(default_factory=dict)  # main turn -> sub-agent task
    outputs: dict[str, int] = field(default_factory=dict)  # path or command -> output tokens

    @classmethod
    def build(cls, turns: int, compactions: int, subagents: int, seed: int) -> "Workload":
        if turns < 3 or compactions < 0 or subagents < 0:
            raise ValueError("turns must be >= 3, compactions and subagents >= 0")
        if subagents + 2 > turns:
            raise ValueError("need more turns than sub-agent spawns + 2 (plan and completion)")
        rng = random.Random(seed)
        w = cls(turns=turns, compactions=compactions, subagents=subagents, seed=seed)
        spawn: set[int] = set()
        for k in range(subagents):
            at = 1 + int((k + 0.5) * (turns - 2) / subagents)
            while at in spawn:
                at = 1 + at % (turns - 2)
            spawn.add(at)
        for i in range(turns):
            text = f"Turn {i}: " + _filler(rng, rng.randint(15, 120), f"plan{i}")
            if i == 0:
                items = [{"text": f"step {k}: migrate storage area {k}", "status": "pending"} for k in range(6)]
                call = ToolCall(name="update_plan", arguments={"items": items})
            elif i == turns - 1:
                call = ToolCall(name="complete_goal", arguments={"summary": "Storage layer migrated; make test passes."})
            elif i in spawn:
                task = (f"Investigate storage area {i} (src/area_{i}/) and report every call site that needs the "
                        "new API, with file paths.")
                w.spawn_at[i] = task
                for j in range(SUBAGENT_TURNS):
                    w.outputs[f"src/area_{i}/part_{j}.py"] = rng.randint(*RESULT_TOKENS)
                call = ToolCall(name="spawn_agent", arguments={"task": task, "role": SUBAGENT_ROLE})
            elif rng.random() < 0.5:
                path = f"src/mod_{i}.py"
                w.outputs[path] = rng.randint(*RESULT_TOKENS)
                call = ToolCall(name="read_file", arguments={"path": path})
            else:
                command = f"make test TESTS=t{i}"
                w.outputs[command] = rng.randint(*RESULT_TOKENS)
                call = ToolCall(name="bash", arguments={"command": command})
            w.actions.append((text, call))
        return w

    def sub_action(self, turn: int, j: int) -> Reply:
        if j < SUBAGENT_TURNS:
            return Reply(text=f"Reading part {j}.",
                         tool_calls=[ToolCall(name="read_file", arguments={"path": f"src/area_{turn}/part_{j}.py"})])
        findings = synthetic(f"report{turn}", REPORT_TOKENS, self.seed)
        return Reply(text="Done.", tool_calls=[ToolCall(name="report", arguments={
            "outcome": "success", "findings": findings, "files_changed": [], "open_questions": []})])

    def main_growth(self, turn: int) -> int:
        """About how many tokens main turn ``turn`` adds to the main context (call + result)."""
        text, call = self.actions[turn]
        size = len(text) // 4 + len(json.dumps(call.arguments)) // 4 + 20
        if call.name == "spawn_agent":
            return size + REPORT_TOKENS + 120
        return size + self.outputs.get(call.arguments.get("path") or call.arguments.get("command") or "", 40)

    def compaction_window(self, prefix_tokens: int, threshold: float = 0.8) -> int:
        """A compaction ``window`` for which the real threshold is crossed ``compactions`` times: the
        middle of the range of limits that a dry run of the context estimate says gives that count."""
        growth = [self.main_growth(i) for i in range(self.turns)]
        restart = prefix_tokens + 1_200 + SUMMARY_TOKENS  # ledger + handoff summary

        def count(limit: int) -> int:
            ctx, n, since = prefix_tokens + 150, 0, 0
            for i, g in enumerate(growth):
                if since and ctx >= limit:
                    n += 1
                    ctx, since = restart + sum(growth[max(0, i - 2):i]), 0
                ctx += g
                since += 1
            return n

        if self.compactions == 0:
            return 10 * (prefix_tokens + sum(growth))
        lo, hi = prefix_tokens + 1, prefix_tokens + sum(growth) + 1
        # count() falls as the limit grows: find the range where it equals `compactions`
        def first_at_most(k: int) -> int:
            a, b = lo, hi
            while a < b:
                m = (a + b) // 2
                if count(m) <= k:
                    b = m
                else:
                    a = m + 1
            return a
        low = first_at_most(self.compactions)
        high = first_at_most(self.compactions - 1) - 1
        if count(low) != self.compactions or high < low:
            raise ValueError(f"cannot place {self.compactions} compactions in {self.turns} turns")
        return int((low + high) / 2 / threshold)


# --------------------------------------------------------------------------- the run's parts


class SyntheticSandbox:
    """``tenax.core.protocols.Sandbox`` that executes NOTHING: every command and file tool gets
    deterministic synthetic output of the workload's planned size (the check passes)."""

    def __init__(self, workspace: str, outputs: dict[str, int], seed: int):
        self.workspace = workspace
        self.outputs = outputs
        self.seed = seed
        self.execs = 0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def exec(self, command: str, *, timeout: float = 120.0, cwd: str = "/workspace",
             env: dict[str, str] | None = None, max_output_chars: int | None = None,
             retry_on_restart: bool = False) -> ExecResult:
        self.execs += 1
        if env and "TENAX_TOOL_ARGS" in env:  # a ToolBox file tool (read_file, list_files, ...)
            args = json.loads(env["TENAX_TOOL_ARGS"])
            key = str(args.get("path", "."))
            body = synthetic(key, self.outputs[key], self.seed) if key in self.outputs else f"{key}: (empty)\n"
            return ExecResult(exit_code=0, stdout=json.dumps({"ok": True, "content": body}), stderr="")
        if command in self.outputs:
            return ExecResult(exit_code=0, stdout=synthetic(command, self.outputs[command], self.seed), stderr="")
        return ExecResult(exit_code=0, stdout=f"$ {command}\nall tests passed\n", stderr="")


class Policy:
    """The simulated model: plays the workload, routing on the system prompt (main session or
    sub-agent) and on the compactor's summary request."""

    def __init__(self, w: Workload):
        self.w = w
        self.turn = 0
        self.sub_turn: int | None = None  # main turn of the sub-agent being run (foreground)
        self.sub_step = 0

    def __call__(self, req: SimRequest) -> Reply:
        if req.system.startswith(SUB_MARK):
            if self.sub_turn is None:
                raise RuntimeError("sub-agent request with no spawn in progress")
            self.sub_step += 1
            return self.w.sub_action(self.sub_turn, self.sub_step - 1)
        if not req.system.startswith(MAIN_MARK):
            raise RuntimeError(f"unexpected system prompt: {req.system[:80]!r}")
        if SUMMARY_MARK in req.last_user_text:
            return Reply(text=synthetic(f"summary{self.turn}", SUMMARY_TOKENS, self.w.seed))
        if self.turn >= len(self.w.actions):
            return Reply(text="All done.", tool_calls=[ToolCall(name="complete_goal", arguments={"summary": "done"})])
        text, call = self.w.actions[self.turn]
        self.sub_turn, self.sub_step = (self.turn if call.name == "spawn_agent" else None), 0
        self.turn += 1
        return Reply(text=text, tool_calls=[call])


@dataclass
class Call:
    """One model call as tenax made it, kept for the naive replay."""

    kind: str  # main | compaction | subagent
    system: str
    tools: list[ToolSpec]
    messages: list[Message]
    session_id: str
    max_tokens: int
    seconds: float
    reply: Reply
    usage: Usage


class Recorder:
    def __init__(self, sim: Simulator, seed: int):
        self.sim = sim
        self.rng = random.Random(f"{seed}:clock")
        self.calls: list[Call] = []


class RecordingModel:
    """A ``tenax.core.protocols.Model`` around a real provider: advances the simulated clock before each
    call, delegates, and records what was sent (for the naive replay) and what came back."""

    def __init__(self, inner: Any, recorder: Recorder, kind: str):
        self.inner, self.recorder, self.kind = inner, recorder, kind
        self.provider, self.name = inner.provider, inner.name

    def complete(self, system: str, tools: list[ToolSpec], messages: list[Message], *, session_id: str,
                 max_tokens: int = 8192) -> ModelResponse:
        seconds = self.recorder.rng.uniform(*SECONDS_PER_CALL)
        self.recorder.sim.clock.advance(seconds)
        resp = self.inner.complete(system, tools, messages, session_id=session_id, max_tokens=max_tokens)
        kind = self.kind
        last = messages[-1] if messages else None
        if kind == "main" and last is not None and any(
                isinstance(p, TextPart) and p.text.startswith(SUMMARY_MARK) for p in last.parts):
            kind = "compaction"
        msg = resp.message
        reply = Reply(text=msg.text, tool_calls=[ToolCall(name=c.name, arguments=c.arguments) for c in msg.tool_calls])
        self.recorder.calls.append(Call(kind, system, list(tools), [m.model_copy(deep=True) for m in messages],
                                        session_id, max_tokens, seconds, reply, resp.usage))
        return resp


REPO = Path(__file__).resolve().parents[1]


def write_project_guide(workspace: Path) -> None:
    """A realistic project: its agent guide (AGENTS.md) is tenax's own DEVELOPERS.md + README.md.
    The goal loop freezes it into the main system prompt, as it does for any repository."""
    guide = "\n\n".join((REPO / name).read_text() for name in ("DEVELOPERS.md", "README.md"))
    (workspace / "AGENTS.md").write_text(guide)


def main_prefix_tokens() -> int:
    """System + tools of the main session as the goal loop builds them (simulator token count)."""
    tools = list(ToolBox(None).specs()) + [spec for spec, _ in memory_tools(None, "").values()]
    tools += list(JOB_SPECS.values()) + list(AGENT_TOOL_SPECS.values()) + [prompts.COMPLETE_GOAL]
    with tempfile.TemporaryDirectory() as ws:
        write_project_guide(Path(ws))
        system = instructions.system_prompt(prompts.SYSTEM_PROMPT, ws)
    return count_tokens(system) + sum(count_tokens(t.canonical()) for t in tools)


def run_tenax(provider: str, w: Workload, tmp: Path) -> tuple[list[Call], dict[str, Any]]:
    """Run the workload as a real goal through the engine (``tenax.app.goal_engine``); return the recorded calls and what the
    store says about the run."""
    spec = SPECS[provider]
    workspace = tmp / "workspace"
    workspace.mkdir()
    write_project_guide(workspace)
    store = open_store(f"sqlite:///{tmp / 'tenax.db'}")
    policy = Policy(w)
    settings = Settings(pricing_file=None)
    try:
        with Simulator(policy, clock=SimClock()) as sim:
            base_url = sim.url if provider == "anthropic" else sim.url + "/v1"
            recorder = Recorder(sim, w.seed)

            def model_factory(spec_: str, kind: str = "subagent") -> Any:
                return RecordingModel(make_provider_model(spec_, base_url=base_url, api_key=KEY), recorder, kind)

            window = w.compaction_window(main_prefix_tokens())
            gid = store.create_goal(objective=w.objective, check_cmd=CHECK, model=spec, workspace=str(workspace),
                                    budgets=Budgets(max_turns=w.turns + 50).model_dump(),
                                    config={"base_url": base_url, "compaction": {"window": window}})
            goal = store.get_goal(gid)
            model = model_factory(spec, "main")
            sandbox = SyntheticSandbox(str(workspace), w.outputs, w.seed)
            toolbox = ToolBox(sandbox)
            agents = AgentManager(store, gid, toolbox=toolbox, model_factory=model_factory,
                                  costs_for=lambda m: cost_function(m, settings), default_model=spec,
                                  workspace=str(workspace))
            engine, goal_policy = goal_engine(store, gid, model, sandbox, toolbox, agents=agents, settings=settings)
            try:
                status = drive(engine, goal_policy)
            finally:
                agents.shutdown(final=True)
        goal = store.get_goal(gid)
        steps = store.steps(engine.session_id)
        info = {
            "status": status,
            "error": goal.error,
            "turns": goal.turns,
            "compactions": sum(1 for s in steps if s.kind == "compaction"),
            "subagents": sum(1 for a in store.agents_for_goal(gid) if a.status == "done"),
            "store_usd": goal.cost_usd,
            "store_cache_read": goal.cache_read_tokens,
            "compaction_window": window,
            "sandbox_execs": sandbox.execs,
        }
    finally:
        store.close()
    return recorder.calls, info


# --------------------------------------------------------------------------- naive replay


class NaiveAnthropicModel(AnthropicModel):
    """The real Anthropic provider with the cache layout switched off and a clock in the system."""

    def __init__(self, name: str, *, now: Callable[[], str], **kwargs: Any):
        super().__init__(name, cache=False, **kwargs)
        self.now = now

    def complete(self, system: str, *args: Any, **kwargs: Any) -> Any:
        return super().complete(f"Current time: {self.now()}\n\n{system}", *args, **kwargs)


class NaiveOpenAIResponsesModel(OpenAIResponsesModel):
    """The real OpenAI Responses provider with no prompt_cache_key and a clock in the instructions."""

    def __init__(self, name: str, *, now: Callable[[], str], **kwargs: Any):
        super().__init__(name, **kwargs)
        self.now = now

    def _body(self, call: Any) -> dict[str, Any]:
        kwargs = super()._body(call)
        kwargs.pop("prompt_cache_key", None)
        return kwargs

    def complete(self, system: str, *args: Any, **kwargs: Any) -> Any:
        return super().complete(f"Current time: {self.now()}\n\n{system}", *args, **kwargs)


class Director:
    """Simulator policy of the replay: answers each request with the reply tenax's run got."""

    def __init__(self) -> None:
        self.queue: list[Reply] = []

    def __call__(self, req: SimRequest) -> Reply:
        if not self.queue:
            raise RuntimeError("replay sent a request with no reply queued")
        return self.queue.pop(0)


def replay_naive(provider: str, calls: list[Call]) -> list[Usage]:
    director = Director()
    usages = []
    with Simulator(director, clock=SimClock()) as sim:
        def now() -> str:
            return (EPOCH + timedelta(seconds=sim.clock.offset)).strftime("%Y-%m-%d %H:%M:%S UTC")

        name = SPECS[provider].split(":", 1)[1]
        if provider == "anthropic":
            model: Any = NaiveAnthropicModel(name, api_key=KEY, base_url=sim.url, now=now)
        else:
            model = NaiveOpenAIResponsesModel(name, api_key=KEY, base_url=sim.url + "/v1", now=now)
        for c in calls:
            sim.clock.advance(c.seconds)
            director.queue.append(c.reply)
            resp = model.complete(c.system, c.tools, c.messages, session_id=c.session_id, max_tokens=c.max_tokens)
            usages.append(resp.usage)
    return usages


# --------------------------------------------------------------------------- figures


def figures(provider: str, kinds: list[str], usages: list[Usage]) -> dict[str, Any]:
    price = pricing.lookup_price(provider, SPECS[provider].split(":", 1)[1])
    total = Usage()
    usd = uncached = 0.0
    requests = {"main": 0, "compaction": 0, "subagent": 0}
    by_kind = {k: {"input_tokens_total": 0, "cache_read_tokens": 0} for k in requests}
    for kind, u in zip(kinds, usages):
        total = total + u
        usd += pricing.cost_usd(price, u)
        uncached += pricing.uncached_cost_usd(price, u)
        requests[kind] += 1
        by_kind[kind]["input_tokens_total"] += u.total_input
        by_kind[kind]["cache_read_tokens"] += u.cache_read_tokens
    n = total.total_input
    return {
        "input_tokens_total": n,
        "uncached_input_tokens": total.input_tokens,
        "cache_read_tokens": total.cache_read_tokens,
        "cache_write_tokens": total.cache_write_tokens,
        "output_tokens": total.output_tokens,
        "cached_share": total.cache_read_tokens / n if n else 0.0,
        "usd": usd,
        "uncached_usd": uncached,
        "requests": requests,
        "by_kind": by_kind,  # main session, compaction summary requests, sub-agent sessions
    }


def provider_job(provider: str, turns: int, compactions: int, subagents: int, seed: int) -> dict[str, Any]:
    """Both layouts for one provider (one process: the recorded calls stay in memory)."""
    w = Workload.build(turns, compactions, subagents, seed)
    with tempfile.TemporaryDirectory(prefix="tenax-bench-") as tmp:
        calls, info = run_tenax(provider, w, Path(tmp))
    kinds = [c.kind for c in calls]
    tenax = figures(provider, kinds, [c.usage for c in calls])
    naive = figures(provider, kinds, replay_naive(provider, calls))
    sub_prefix = sorted({count_tokens(c.system) + sum(count_tokens(t.canonical()) for t in c.tools)
                         for c in calls if c.kind == "subagent"})
    return {"tenax": tenax, "naive": naive, "run": info, "sub_prefix_tokens": sub_prefix[0] if sub_prefix else 0}


def run(turns: int = 200, compactions: int = 3, subagents: int = 5, seed: int = 1,
        jobs: int | None = None) -> dict[str, Any]:
    """Run the workload for each provider (tenax run + naive replay); ``jobs`` > 1 runs the
    providers in worker processes, default one per CPU, at most 2."""
    Workload.build(turns, compactions, subagents, seed)  # bad arguments fail here, in this process
    out: dict[str, Any] = {"seed": seed, "requested": {"turns": turns, "compactions": compactions,
                                                       "subagents": subagents}}
    jobs = min(len(PROVIDERS), os.cpu_count() or 1) if jobs is None else max(1, jobs)
    if jobs == 1:
        done = {p: provider_job(p, turns, compactions, subagents, seed) for p in PROVIDERS}
    else:
        # The SDKs' request building and the simulator are CPU-bound Python: processes, not threads.
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {p: pool.submit(provider_job, p, turns, compactions, subagents, seed) for p in PROVIDERS}
            done = {p: f.result() for p, f in futures.items()}
    for provider in PROVIDERS:
        d = done[provider]
        tenax, naive = d["tenax"], d["naive"]
        out[provider] = {
            "tenax": tenax,
            "naive": naive,
            "run": d["run"],
            "cached_share": tenax["cached_share"],
            "cost_ratio": naive["usd"] / tenax["usd"] if tenax["usd"] else float("inf"),
        }
    first = out[PROVIDERS[0]]["run"]
    out["turns"], out["compactions"], out["subagents"] = first["turns"], first["compactions"], first["subagents"]
    out["requests"] = out[PROVIDERS[0]]["tenax"]["requests"]
    out["prefix_tokens"] = {"main": main_prefix_tokens(), "subagent": done[PROVIDERS[0]]["sub_prefix_tokens"]}
    return out


def targets(result: dict[str, Any]) -> list[tuple[str, float, float, bool]]:
    a = result["anthropic"]
    return [
        ("anthropic cached share", a["cached_share"], TARGET_CACHED_SHARE, a["cached_share"] >= TARGET_CACHED_SHARE),
        ("anthropic cost ratio naive/tenax", a["cost_ratio"], TARGET_COST_RATIO, a["cost_ratio"] >= TARGET_COST_RATIO),
    ]


def workload_ok(result: dict[str, Any]) -> list[str]:
    """Problems with the run itself: a goal that did not succeed, or counts off the request."""
    problems = []
    want = result["requested"]
    for provider in PROVIDERS:
        r = result[provider]["run"]
        if r["status"] != "succeeded":
            problems.append(f"{provider}: the goal ended {r['status']} ({r['error']})")
        for key in ("turns", "compactions", "subagents"):
            if r[key] != want[key]:
                problems.append(f"{provider}: {r[key]} {key}, {want[key]} requested")
    return problems


def render(result: dict[str, Any], elapsed: float) -> str:
    req = result["requests"]
    lines = [
        f"cache economics: {result['turns']} main turns, {result['compactions']} compactions, "
        f"{result['subagents']} sub-agent runs (seed {result['seed']}); "
        f"{sum(req.values())} requests per run (main {req['main']}, compaction summary {req['compaction']}, "
        f"sub-agent {req['subagent']}); prefix (system + tools): main {result['prefix_tokens']['main']:,} tokens, "
        f"sub-agent {result['prefix_tokens']['subagent']:,} tokens; compaction window "
        f"{result['anthropic']['run']['compaction_window']:,} tokens",
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
        r = p["run"]
        lines.append(f"  goal {r['status']}; the store recorded ${r['store_usd']:.2f} and "
                     f"{r['store_cache_read']:,} cache-read tokens for it")
    lines.append("")
    for problem in workload_ok(result):
        lines.append(f"FAIL  workload: {problem}")
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
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPUs, at most 2)")
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
    ok = all(ok for *_, ok in targets(result)) and not workload_ok(result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
