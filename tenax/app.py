"""The one place that wires concrete classes together: the entry points the CLI, the daemon and
the tests call to create, run and resume goals.

Everything a user can get wrong is checked before a goal row is written: the workspace, the
model spec and its API key, the Docker engine and the sandbox image.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from tenax.compaction import CompactionConfig, Compactor, Ralph, build_ledger, memory_tools, render
from tenax.config import Settings, load_settings
from tenax.core.budget import Budgets
from tenax.core.engine import Engine, EventHook, Hook, Replace, TurnContext
from tenax.core.errors import ConfigError, ModelSwitchRefused, ProviderError, SandboxError, TenaxError
from tenax.core.messages import Attempt, Message, TextPart, ToolCallPart, ToolSpec
from tenax.core.protocols import Model, Sandbox, Store, ToolOutcome, Toolbox
from tenax.core.status import ENDED, FINAL, GoalStatus
from tenax.export.otel import GoalTrace, traced
from tenax.export.summary import git_start
from tenax.goal import instructions, prompts
from tenax.goal.guards import CirclingGuard, Guard, GuardConfig
from tenax.goal import protect
from tenax.goal.hooks import SteeringHook
from tenax.goal.metric import MetricGuard, MetricSpec
from tenax.goal.policy import GoalPolicy, drive
from tenax.harness import pricing
from tenax.harness.registry import make_model, parse_model_spec
from tenax.harness.retry import RetryPolicy
from tenax.sandbox import (DockerSandbox, EgressGateway, ToolBox, cleanup_by_label, ensure_docker, image_exists,
                           parse_allow_hosts)
from tenax.sandbox.egress import firewall_preflight
from tenax.sandbox.jobs import Jobs
from tenax.store import open_store  # noqa: F401 - the CLI opens its store through the app
from tenax.subagents import AgentManager, ReviewerJudge, copy_root, remove_agent_containers


STRATEGIES = ("continuous", "ralph")


@dataclass
class GoalRequest:
    objective: str
    workspace: str
    check: str | None = None
    model: str | None = None
    base_url: str | None = None
    network: str = "none"
    budgets: Budgets | None = None
    strategy: str = "continuous"
    compaction: dict[str, Any] | None = None  # tenax.compaction.CompactionConfig fields
    guards: dict[str, Any] | None = None  # tenax.goal.guards.GuardConfig fields
    protect: list[str] | None = None  # globs of acceptance files the agent may not change
    metric: dict[str, Any] | None = None  # tenax.goal.metric.MetricSpec fields: command, target, unit, bound, jump
    allow_hosts: list[str] | None = None  # HOST[:PORT] the sandbox may reach through the egress proxy (else TENAX_ALLOW_HOSTS)
    price: dict[str, float] | None = None  # USD per million tokens {"input", "output"} for a model in no table


def validate_network(network: str, allow_hosts: list[str] | None = None, source: str = "--allow-host") -> str:
    """``none`` (default), ``bridge`` or a user-defined Docker network. Sharing the host's or another
    container's network namespace would let model-issued commands reach host services: refused.
    An egress allowlist (``source``: where it came from) is its own network: it goes with ``none`` only."""
    net = (network or "none").strip()
    if allow_hosts and net != "none":
        raise ConfigError(
            f"--network {network!r} cannot be combined with {source}: the allowlist gives the sandbox its own "
            f"internal network whose only way out is the egress proxy. Drop --network, or drop {source}.")
    if net == "host" or net.startswith("container:") or not net:
        raise ConfigError(
            f"--network {network!r} is refused: it would share a network namespace with the host or another "
            "container. Use 'none' (default), 'bridge', or a user-defined Docker network."
        )
    return net


def validate_workspace(workspace: str) -> str:
    path = Path(workspace).expanduser()
    if not path.exists():
        raise ConfigError(f"workspace {workspace!r} does not exist; create it or pass an existing directory to --workspace")
    if not path.is_dir():
        raise ConfigError(f"workspace {workspace!r} is not a directory")
    return str(path.resolve())


def price_for(model: Model, settings: Settings, given: dict[str, float] | None = None) -> pricing.Price:
    """The model's prices and context window: the built-in table, with TENAX_PRICING_FILE's overrides,
    and a goal's own ``--price`` (USD per million input / output tokens) over both."""
    table = pricing.load_pricing(settings.pricing_file) if settings.pricing_file else None
    price = pricing.lookup_price(model.provider, model.name, table=table)
    if given:
        inp, out = float(given["input"]), float(given["output"])
        price = price.model_copy(update={"input": inp, "output": out, "cache_read": inp / 10, "cache_write_5m": inp * 1.25,
                                         "cache_write_1h": inp * 2, "known": True, "estimated": False})
    return price


def cost_function(model: Model, settings: Settings, given: dict[str, float] | None = None) -> Callable[[Any], tuple[float, float]]:
    price = price_for(model, settings, given)
    return lambda usage: (pricing.cost_usd(price, usage), pricing.uncached_cost_usd(price, usage))


def parse_price(text: str) -> dict[str, float]:
    """``--price IN/OUT``: USD per million input and output tokens, e.g. ``3/15``."""
    try:
        inp, out = (float(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--price {text!r}: expected IN/OUT in USD per million tokens, e.g. 3/15") from None
    if not all(math.isfinite(v) and v >= 0 for v in (inp, out)):
        raise ConfigError(f"--price {text!r}: both prices must be finite and not negative")
    return {"input": inp, "output": out}


def build_model(spec: str, base_url: str | None, api_key: str | None = None, **options: Any) -> Model:
    return make_model(spec, base_url=base_url, api_key=api_key, **options)


def create_goal(store: Store, req: GoalRequest, *, settings: Settings | None = None, api_key: str | None = None) -> str:
    settings = settings or load_settings()
    if not req.objective or not req.objective.strip():
        raise ConfigError("the objective is empty; say what the goal is")
    workspace = validate_workspace(req.workspace)
    allow_hosts, source = (req.allow_hosts, "--allow-host") if req.allow_hosts else (settings.allow_hosts, "TENAX_ALLOW_HOSTS")
    network = validate_network(req.network, allow_hosts, source)
    if allow_hosts:
        parse_allow_hosts(allow_hosts)
        firewall_preflight()
    spec = req.model or settings.model
    parse_model_spec(spec)
    model = build_model(spec, req.base_url, api_key)  # fails early on a missing API key
    _sandbox_preflight(settings)
    budgets = req.budgets or Budgets()
    if budgets.max_usd is not None and not price_for(model, settings, req.price).known:
        raise ConfigError(
            f"the price of {spec} is unknown (it is in no pricing table), so --max-usd cannot be enforced: "
            "give its prices with --price IN/OUT (USD per million tokens) or a TENAX_PRICING_FILE entry, "
            "or budget with --max-tokens instead")
    if req.strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {req.strategy!r}; use one of: {', '.join(STRATEGIES)}")
    measure = MetricSpec.of(req.metric) if req.metric else None
    if measure is not None and not req.check:
        raise ConfigError("--metric needs --check: the goal succeeds when the check passes and the target is met")
    protected = protect.snapshot(workspace, list(req.protect or []),
                                 "; ".join(c for c in (req.check, measure and measure.command) if c))
    return store.create_goal(
        objective=req.objective.strip(),
        check_cmd=req.check or None,
        model=spec,
        workspace=workspace,
        budgets=budgets.model_dump(),
        network=network,
        strategy=req.strategy,
        config={"base_url": req.base_url, "image": settings.image,
                **({"compaction": dict(req.compaction)} if req.compaction else {}),
                **({"guards": dict(req.guards)} if req.guards else {}),
                **({"protect": protected} if protected["files"] else {}),
                **({"metric": asdict(measure)} if measure else {}),
                **({"allow_hosts": [h.strip() for h in allow_hosts]} if allow_hosts else {}),
                **({"price": dict(req.price)} if req.price else {}), **git_start(workspace)},
    )


def _sandbox_preflight(settings: Settings, client: Any = None) -> Any:
    """The Docker client the goal's sandbox uses (``client``, else a new one), once the engine answered
    and has the image."""
    if client is not None:
        try:
            client.ping()  # one made ahead may have waited long: its engine may be gone, or restarted
        except Exception:  # noqa: BLE001 - its engine is away: a new client answers, or DockerUnavailable says why
            client = None
    client = client or ensure_docker()
    if not image_exists(settings.image, client):
        raise ConfigError(
            f"sandbox image {settings.image!r} is missing; build it with `tenax sandbox build` "
            "(or set TENAX_IMAGE to an image you have)"
        )
    return client


def main_session(store: Store, goal: Any, tools: list[ToolSpec]) -> tuple[str, str, list[ToolSpec]]:
    """The goal's main session: created once with its system prompt and tools frozen, then reused
    verbatim on every resume so the cached prefix never moves."""
    for s in store.sessions_for_goal(goal.id):
        if s.role == "main":
            return s.id, s.system, [ToolSpec.model_validate(t) for t in s.tools]
    system = instructions.system_prompt(prompts.SYSTEM_PROMPT, goal.workspace)
    sid = store.create_session(goal.id, role="main", model=goal.model, system=system,
                               tools=[t.model_dump() for t in tools])
    return sid, system, tools


def goal_engine(store: Store, goal_id: str, model: Model, sandbox: Sandbox, toolbox: Toolbox, *,
                agents: AgentManager | None = None, judge: Any = None, settings: Settings | None = None,
                on_event: EventHook | None = None, sleep: Callable[[float], None] | None = None,
                park_on_limit: bool = False) -> tuple[Engine, GoalPolicy]:
    """The engine of a goal's main session with the goal policy and its hooks: steering,
    compaction (or Ralph) and the memory and sub-agent tools."""
    settings = settings or load_settings()
    goal = store.get_goal(goal_id)
    extra: dict[str, Any] = {name: (spec, _args_only(fn)) for name, (spec, fn) in memory_tools(store, goal.id).items()}
    if agents is not None:
        extra.update(agents.main_tools())
    jobs = Jobs(sandbox)
    extra.update(jobs.tools())
    guards: list[Guard] = []
    if (goal.config or {}).get("protect"):
        guards.append(protect.ProtectGuard(goal.workspace, sandbox, goal.config["protect"]))
    policy = GoalPolicy(store, goal.id, sandbox, toolbox, extra_tools=extra, judge=judge,
                        check_timeout=settings.check_timeout, guards=guards, park_on_limit=park_on_limit,
                        usage_limit_s=settings.usage_limit_s)
    session_id, system, tools = main_session(store, goal, policy.tools())
    if agents is not None:
        agents.main_session_id = session_id
    compactor = Compactor(store, goal.id, window=price_for(model, settings).context_window,
                          config=CompactionConfig.from_goal(goal), budget_text=policy.budget_text)
    advisor = StepBackAdvisor(store, goal.id, agents, compactor)
    if (goal.config or {}).get("metric"):
        measure = MetricGuard(sandbox, MetricSpec.of(goal.config["metric"]), goal.objective, advisor.consult)
        measure.learn(store.steps(session_id, kinds=["event"]))
        policy.guards.append(measure)
    policy.guards.append(CirclingGuard(goal.objective, goal.workspace, advisor, GuardConfig.of(goal.config),
                                       report=policy.budget_text))
    hooks: list[Hook] = [SteeringHook(store, goal.id)]
    hooks += [Ralph(compactor), compactor] if goal.strategy == "ralph" else [compactor]
    engine = Engine(store, goal.id, session_id, model, system, tools, policy, hooks=hooks,
                    costs=cost_function(model, settings, (goal.config or {}).get("price")), on_event=on_event,
                    sleep=sleep or policy.nap)
    jobs.emit = lambda payload: engine.journal("event", payload)  # a wait is shown live
    return engine, policy


class StepBackAdvisor:
    """What a step-back uses outside the goal package: a reviewer sub-agent (fresh context,
    read-only tools), the ledger, and a Ralph-style fresh context."""

    def __init__(self, store: Any, goal_id: str, agents: AgentManager | None, compactor: Compactor):
        self.store, self.goal_id, self.agents, self.compactor = store, goal_id, agents, compactor

    def consult(self, task: str, session_id: str) -> tuple[bool, str]:
        """A reviewer sub-agent's verdict (its report's ``passed``) and answer; no report is a no."""
        if self.agents is None:
            return False, "(no reviewer is available)"
        outcome = self.agents.spawn({"task": task, "role": "reviewer"}, parent_session_id=session_id, depth=0,
                                    judge=True)
        mine = [a for a in self.store.agents_for_session(session_id) if a.role == "reviewer"]
        summary = mine[-1].summary if mine else None
        if not summary:
            return False, f"(the reviewer could not run: {outcome.content[:500]})"
        text = "\n".join(x for x in (summary.get("findings"), "; ".join(summary.get("open_questions") or [])) if x)
        return summary.get("passed") is True, text

    def review(self, task: str, session_id: str) -> str | None:
        return self.consult(task, session_id)[1]

    def remember(self, text: str) -> None:
        self.store.add_note(self.goal_id, "pitfall", text, source="runtime")

    def ledger(self, session_id: str) -> str:
        return render(build_ledger(self.store, self.goal_id, session_id))

    def fresh_context(self, ctx: TurnContext) -> Replace:
        return self.compactor.compact(ctx, reason="circling", mode="ralph")


def _args_only(fn: Callable[[dict[str, Any]], ToolOutcome]) -> Callable[[ToolCallPart], ToolOutcome]:
    return lambda call: fn(call.arguments)


def run_goal(
    store: Store,
    goal_id: str,
    *,
    api_key: str | None = None,
    model_override: str | None = None,
    budgets: Budgets | None = None,
    on_event: EventHook | None = None,
    settings: Settings | None = None,
    model_options: dict[str, Any] | None = None,
    sleep: Callable[[float], None] | None = None,
    park_on_limit: bool = False,
    tracer_provider: Any = None,
    sweep: bool = True,
    remove_after_s: float = 0.0,
    docker_client: Any = None,
) -> str:
    """Run (or resume) a goal to an end and return its status. Resuming re-attaches to the goal's
    container and continues from its journal. ``model_options`` go to the provider (retry policy...).
    The run is an OpenTelemetry trace with ``tracer_provider``, or with OTEL_EXPORTER_OTLP_ENDPOINT set.
    ``sweep``: first remove the containers other finished goals of this store left behind
    (``sweep_ended``; the daemon's workers leave that to the daemon's own cleanup).
    ``remove_after_s``: once the goal ended, kill what runs in its container at once but remove the
    container this much later (the daemon's workers: removing one costs the Docker engine about 150 ms
    of CPU, which would otherwise land on the start of the goal that takes the freed slot).
    ``docker_client``: a client of the Docker engine to use (one made ahead, by a daemon's spare worker)."""
    settings = settings or load_settings()
    goal = store.get_goal(goal_id)
    if goal.status in FINAL:
        raise ConfigError(f"goal {goal.id} is {goal.status}; there is nothing to resume")
    with store.hold_lease(goal.id), _egress(store, goal) as egress, \
            traced(store, goal.id, tracer_provider) as trace:  # one runner per goal: a second one gets
        # GoalBusy, and a runner that lost the lease is fenced out of the journal
        return _run_leased(store, store.get_goal(goal.id), api_key=api_key, model_override=model_override,
                           budgets=budgets, on_event=fan_out(on_event, trace), settings=settings,
                           model_options=model_options, sleep=sleep, park_on_limit=park_on_limit, egress=egress,
                           trace=trace, sweep=sweep, remove_after_s=remove_after_s,
                           docker_client=docker_client)


def worktree_mounts(tree: dict[str, str] | None) -> dict[str, str]:
    """What git needs inside the sandbox of a goal working in a git worktree: the worktree's ``.git``
    file points at its admin directory in the repository (``.git/worktrees/<id>``, mounted
    read-write: its index and HEAD), which shares the repository's objects and refs (``.git``,
    mounted read-only: the sandbox can neither rewrite history nor plant hooks the host would run).
    So status, diff, log and show work; add and commit do not (tenax commits the work when the goal
    ends). Nothing when the goal has no worktree or it is not readable as one."""
    if not tree:
        return {}
    try:
        gitdir = Path(Path(tree["path"], ".git").read_text().partition("gitdir:")[2].strip())
        common = (gitdir / Path(gitdir, "commondir").read_text().strip()).resolve()
    except (OSError, KeyError):
        return {}
    return {str(common): "ro", str(gitdir.resolve()): "rw"} if gitdir.is_dir() and common.is_dir() else {}


def fan_out(*consumers: EventHook | None) -> EventHook | None:
    """One on_event hook calling each consumer; a fault in one never keeps the step from the others."""
    hooks = [c for c in consumers if c is not None]
    if len(hooks) < 2:
        return hooks[0] if hooks else None

    def each(kind: str, payload: dict[str, Any]) -> None:
        for hook in hooks:
            try:
                hook(kind, payload)
            except Exception:  # noqa: BLE001 - a display or telemetry fault must never end an unattended run
                pass
    return each


class EgressJournal(Guard):
    """The goal's egress gateway and its log: the proxy's threads queue each request, and the
    engine's thread journals them as ``egress`` events after every tool call and turn."""

    def __init__(self, goal: Any, keep: int = 10_000):
        self.events: deque[dict[str, Any]] = deque(maxlen=keep)
        self.dropped = 0
        self.gateway = EgressGateway(goal.id, goal.config["allow_hosts"], on_request=self.put)

    def put(self, event: dict[str, Any]) -> None:
        if len(self.events) == self.events.maxlen:
            self.dropped += 1
        self.events.append(event)

    def sandbox_net(self) -> dict[str, Any]:
        return {"network": self.gateway.network, "environment": self.gateway.env()}

    def flush(self, ctx: TurnContext) -> None:
        while self.events:
            ctx.emit(self.events.popleft())
        if self.dropped:
            ctx.emit({"type": "egress_dropped", "count": self.dropped})
            self.dropped = 0

    def before_turn(self, ctx: TurnContext) -> tuple:
        self.flush(ctx)
        return ()

    def after_tool(self, call: ToolCallPart, outcome: ToolOutcome, ctx: TurnContext) -> ToolOutcome:
        self.flush(ctx)
        return outcome


@contextmanager
def _egress(store: Store, goal: Any) -> Iterator[EgressJournal | None]:
    """A goal with an allowlist: its gateway runs while the goal does; when the goal is over (its
    containers removed) the network and firewall rules go too, else they stay for resume."""
    if not (goal.config or {}).get("allow_hosts"):
        yield None
        return
    log = EgressJournal(goal)
    log.gateway.start()
    try:
        yield log
    finally:
        status = store.get_goal(goal.id).status
        if status in {s.value for s in ENDED} and status != GoalStatus.STOPPED:
            log.gateway.remove()
        else:
            log.gateway.close()


def _sandbox_net(goal: Any, egress: EgressJournal | None) -> dict[str, Any]:
    return egress.sandbox_net() if egress is not None else {"network": goal.network or "none"}


def goal_sandbox(store: Store, goal: Any, settings: Settings, client: Any = None,
                 egress: EgressJournal | None = None) -> DockerSandbox:
    """A goal's sandbox, not started: its workspace, image, network, mounts, labels and limits."""
    config = goal.config or {}
    return DockerSandbox(goal.workspace, goal_id=goal.id, image=config.get("image") or settings.image,
                         **_sandbox_net(goal, egress), labels=store_labels(store),
                         mounts=worktree_mounts(config.get("worktree")), client=client, **sandbox_limits(settings))


def can_start_ahead(goal: Any) -> bool:
    """Whether a goal's container may be started before the goal (``goal_sandbox(...).start_ahead()``):
    a goal that never ran, without an egress allowlist (its gateway starts with the goal)."""
    return goal.status == GoalStatus.PENDING and not (goal.config or {}).get("allow_hosts")


def _run_leased(store: Store, goal: Any, *, api_key: str | None, model_override: str | None,
                budgets: Budgets | None, on_event: EventHook | None, settings: Settings,
                model_options: dict[str, Any] | None, sleep: Callable[[float], None] | None,
                park_on_limit: bool, egress: EgressJournal | None = None, trace: GoalTrace | None = None,
                sweep: bool = True, remove_after_s: float = 0.0, docker_client: Any = None) -> str:
    if model_override and model_override != goal.model:
        raise ModelSwitchRefused(
            f"goal {goal.id} runs on {goal.model}; switching the main session's model mid-goal would discard "
            f"its prompt cache (every later turn would pay full price for the whole history). "
            f"Spawn a sub-agent on {model_override} for that work instead."
        )
    if budgets is not None:
        store.update_goal(goal.id, budgets=budgets.model_dump())
    config = goal.config or {}
    model_options = _retry_options(model_options, on_event, park_on_limit, settings)
    model = build_model(goal.model, config.get("base_url"), api_key, **model_options)
    if trace is not None:  # prices the main session's calls on their spans
        trace.costs = cost_function(model, settings, config.get("price"))
    validate_workspace(goal.workspace)
    image = config.get("image") or settings.image
    client = _sandbox_preflight(settings.model_copy(update={"image": image}), docker_client)
    if sweep:
        sweep_ended(store, client, but=goal.id)
    sandbox = goal_sandbox(store, goal, settings, client, egress)
    sandbox.start()
    toolbox = ToolBox(sandbox, exec_timeout=settings.exec_timeout)
    # sub-agent tools for the main model; with no check, the judge is a reviewer sub-agent
    agents, judge = subagents_for(store, goal, toolbox, settings=settings, api_key=api_key, image=image,
                                  model_options=model_options, egress=egress)
    engine, policy = goal_engine(store, goal.id, model, sandbox, toolbox, agents=agents, judge=judge,
                                 settings=settings, on_event=on_event, sleep=sleep, park_on_limit=park_on_limit)
    if egress is not None:
        policy.guards.append(egress)
    status = GoalStatus.FAILED.value
    try:
        agents.resume_unfinished()  # crashed sub-agents continue from their journal, never re-spawned
        status = drive(engine, policy)
    finally:
        ended = status in {s.value for s in ENDED} and status != GoalStatus.STOPPED
        agents.shutdown(final=ended)
        if ended:
            if remove_after_s > 0:
                _linger(sandbox, remove_after_s)
            sandbox.stop()
        else:  # stopped or crashed: kill what runs, keep the container (stopped) for resume
            try:
                sandbox.halt()
            except SandboxError:
                pass  # already gone: resume starts a fresh one over the same workspace
    return status


def _linger(sandbox: DockerSandbox, seconds: float) -> None:
    """An ended goal's container, before its removal: nothing in it runs on, and it stays ``seconds``
    (cut short by a signal: a stop or shutdown removes it at once)."""
    try:
        sandbox.reap_all(keep_jobs=False)
        time.sleep(seconds)
    except (KeyboardInterrupt, SandboxError):
        pass


RESUMABLE_CONTAINERS = frozenset({GoalStatus.STOPPED.value, GoalStatus.PAUSED.value})  # kept for resume in place


def done_with_container(status: str) -> bool:
    """A goal in ``status`` needs its containers no more: it ended and does not resume in place."""
    return status in {s.value for s in ENDED} - RESUMABLE_CONTAINERS


def sweep_ended(store: Store, client: Any, but: str | None = None) -> int:
    """Remove the containers (and sub-agent containers) that finished goals of this store left
    behind: a runner killed between a goal's final status and its container's removal leaves it
    running, and a finished goal never runs again to remove it. Goals that can resume (stopped,
    paused) keep theirs; a goal whose runner still holds its lease is left to it; warm-pool
    containers are the daemon's. Never raises: a fault here must not keep a goal from starting."""
    from tenax.sandbox.pool import POOL_LABEL
    from tenax.store.lease import lease_live

    mine = store_labels(store)["tenax.store"]
    doomed: set[str] = set()
    try:
        for c in client.api.containers(all=True, filters={"label": ["tenax=1", f"tenax.store={mine}"]}):
            labels = c.get("Labels") or {}
            gid = labels.get("tenax.goal")
            if not gid or gid == but or gid in doomed or POOL_LABEL in labels:
                continue
            try:
                goal = store.get_goal(gid)
            except TenaxError:  # unknown here (purged): `tenax sandbox cleanup` or the daemon decides
                continue
            if done_with_container(goal.status) and not lease_live(goal.lease_host, goal.lease_pid, goal.lease_expires_at):
                doomed.add(gid)
        return sum(cleanup_by_label(client, goal_id=gid) for gid in sorted(doomed))
    except Exception:  # noqa: BLE001 - best effort (Docker or the store busy): the next start sweeps again
        return 0


def store_labels(store: Store) -> dict[str, str]:
    """The container label naming the store a goal belongs to: the daemon's cleanup removes the
    containers of unknown goals only when they carry its own store's label."""
    return {"tenax.store": hashlib.sha256(str(getattr(store, "url", "")).encode()).hexdigest()[:12]}


def _retry_options(options: dict[str, Any] | None, on_event: EventHook | None, park_on_limit: bool,
                   settings: Settings) -> dict[str, Any]:
    """The provider options: each retried attempt shown live ("HTTP 529 overloaded, retry 3/8 in
    20 s"; the journal records them once the call is over), and, when a usage limit parks the goal
    (the daemon), a long retry-after is handed to the goal at once instead of slept through."""
    options = dict(options or {})
    update: dict[str, Any] = {}
    if on_event is not None:
        def show(attempt: Attempt, of: int, wait: float) -> None:
            on_event("event", {"type": "provider_retry", "attempt": attempt.number, "max_attempts": of,
                               "status": attempt.status, "error": attempt.error, "wait_s": round(wait, 1)})
        update["on_retry"] = show
    policy = options.get("retry") or RetryPolicy()
    if park_on_limit:
        update["max_retry_after_s"] = min(policy.max_retry_after_s, settings.usage_limit_s)
    if update:
        options["retry"] = policy.model_copy(update=update)
    return options


def sandbox_limits(settings: Settings) -> dict[str, Any]:
    """The sandbox's resource limits from the configuration (memory, pids, CPUs, tmpfs sizes)."""
    return {"mem_limit": settings.mem_limit, "pids_limit": settings.pids_limit, "cpus": settings.cpus,
            "tmp_mb": settings.tmp_mb, "home_mb": settings.home_mb}


def default_budgets(settings: Settings | None = None) -> dict[str, Any]:
    """A new goal's budgets from the configuration (its command line overrides each)."""
    settings = settings or load_settings()
    return {k: v for k in ("max_turns", "max_usd", "max_tokens", "max_minutes") if (v := getattr(settings, k)) is not None}


def subagents_for(store: Store, goal: Any, toolbox: Toolbox, *, settings: Settings, api_key: str | None, image: str,
                  model_options: dict[str, Any] | None = None,
                  egress: EgressJournal | None = None) -> tuple[AgentManager, ReviewerJudge | None]:
    """An AgentManager for ``goal`` (sub-agent models built on the goal's base_url / API key when they
    use the same provider, else from the environment) and, for a goal without a check, the reviewer
    judge (model: goal config ``judge_model``, else ``TENAX_JUDGE_MODEL``, else the goal's model)."""
    config = goal.config or {}
    main_provider = parse_model_spec(goal.model).provider
    model_name = parse_model_spec(goal.model).name  # a goal's --price is for its own model only

    def model_factory(spec: str) -> Model:
        same = parse_model_spec(spec).provider == main_provider
        return build_model(spec, config.get("base_url") if same else None, api_key if same else None,
                           **(model_options or {}))

    def sandbox_factory(agent_id: str, path: str) -> tuple[Sandbox, Toolbox]:
        sb = DockerSandbox(path, goal_id=goal.id, image=image, **_sandbox_net(goal, egress),
                           name_suffix=f"-agent-{agent_id}", labels={"tenax.agent": agent_id, **store_labels(store)},
                           **sandbox_limits(settings))
        sb.start()
        return sb, ToolBox(sb, exec_timeout=settings.exec_timeout)

    manager = AgentManager(
        store, goal.id, toolbox=toolbox, model_factory=model_factory,
        costs_for=lambda m: cost_function(m, settings, config.get("price") if m.name == model_name else None),
        default_model=goal.model,
        sandbox_factory=sandbox_factory, copy_root=copy_root(), workspace=goal.workspace,
        sandbox_cleanup=lambda: remove_agent_containers(goal.id),
    )
    judge = None
    if not goal.check_cmd:
        judge = ReviewerJudge(manager, toolbox.sandbox, model=config.get("judge_model") or settings.judge_model)
    return manager, judge


# -- doctor ---------------------------------------------------------------------------------------
@dataclass
class Finding:
    what: str
    verdict: str  # "ok" | "warn" | "fail"
    detail: str


PING = ToolSpec.object("ping", "Answer a connectivity check.", {"ok": {"type": "boolean"}}, required=("ok",))
PING_ASK = "This is a connectivity check by tenax. Call the ping tool once with ok set to true, and nothing else."


def doctor(spec: str | None = None, base_url: str | None = None, *, api_key: str | None = None,
           settings: Settings | None = None, store_url: str | None = None) -> list[Finding]:
    """Check a setup end to end with one tiny model call: the key, the base URL, tool calling, usage
    reporting, the price table, the Docker engine and image, and the store. Never raises for bad
    input: every problem is a finding."""
    out: list[Finding] = []
    try:
        settings = settings or load_settings()
        spec = spec or settings.model
        model = build_model(spec, base_url, api_key, retry=RetryPolicy(max_attempts=2, base_delay=0.5))
        out.append(Finding("model", "ok", f"{spec} (provider {model.provider})"))
    except ConfigError as e:
        return [Finding("model", "fail", str(e))]
    out += _call_findings(model)
    price = price_for(model, settings)
    out.append(Finding("price", "ok" if price.known else "warn",
                       f"${price.input:g} in / ${price.output:g} out per million tokens" if price.known else
                       "unknown model: costs are estimated with a conservative default; --max-usd needs --price IN/OUT"))
    try:
        _sandbox_preflight(settings)
        out.append(Finding("sandbox", "ok", f"Docker engine answers; image {settings.image} is present"))
    except TenaxError as e:
        out.append(Finding("sandbox", "fail", str(e)))
    try:
        st = open_store(store_url)
        out.append(Finding("store", "ok", repr(st)))
        st.close()
    except TenaxError as e:
        out.append(Finding("store", "fail", str(e)))
    return out


def _call_findings(model: Model) -> list[Finding]:
    msg = Message(role="user", parts=[TextPart(text=PING_ASK)])
    try:
        r = model.complete("You are being health-checked.", [PING], [msg], session_id="tenax-doctor", max_tokens=256)
    except ProviderError as e:
        what = "endpoint" if e.unreachable else "key" if e.status in (401, 403) else "call"
        return [Finding(what, "fail", str(e))]
    found = [Finding("call", "ok", f"the endpoint answered in {sum(a.duration_s for a in r.attempts):.1f} s")]
    if any(c.name == "ping" for c in r.message.tool_calls):
        found.append(Finding("tools", "ok", "the model called the offered tool"))
    else:
        found.append(Finding("tools", "warn", "the model answered without calling the offered tool; the server may be "
                             "dropping tools (e.g. llama.cpp needs --jinja) - a goal would not get far"))
    u = r.usage
    if r.estimated or not (u.input_tokens + u.cache_read_tokens + u.cache_write_tokens):
        found.append(Finding("usage", "warn", "the server reports no token usage: tenax estimates tokens locally "
                             "(marked estimated in show and exports); budgets and compaction still work"))
    else:
        found.append(Finding("usage", "ok", f"reported: {u.total_input} input, {u.output_tokens} output tokens"))
    return found
