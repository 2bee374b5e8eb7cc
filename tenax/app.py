"""Library entry points the CLI (and the daemon) call: create, run and resume goals.

Everything a user can get wrong is checked before a goal row is written: the workspace, the
model spec and its API key, the Docker engine and the sandbox image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tenax.config import Settings, load_settings
from tenax.core.errors import ConfigError, ModelSwitchRefused
from tenax.core.budget import Budgets
from tenax.goal.loop import FINAL_STATUSES, EventHook, GoalRunner
from tenax.harness import pricing
from tenax.harness.registry import make_model, parse_model_spec
from tenax.core.protocols import Model


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


def validate_network(network: str) -> str:
    """``none`` (default), ``bridge`` or a user-defined Docker network. Sharing the host's or another
    container's network namespace would let model-issued commands reach host services: refused."""
    net = (network or "none").strip()
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


def price_for(model: Model, settings: Settings) -> pricing.Price:
    """The model's prices and context window: the built-in table, with TENAX_PRICING_FILE's overrides."""
    table = pricing.load_pricing(settings.pricing_file) if settings.pricing_file else None
    return pricing.lookup_price(model.provider, model.name, table=table)


def cost_function(model: Model, settings: Settings) -> Callable[[Any], tuple[float, float]]:
    price = price_for(model, settings)
    return lambda usage: (pricing.cost_usd(price, usage), pricing.uncached_cost_usd(price, usage))


def memory_wiring(store: Any, goal: Any, model: Model, settings: Settings) -> tuple[Any, dict[str, Any]]:
    """The compactor (window from the pricing/model table, overridable per goal in
    ``config["compaction"]``) and the memory tools (update_plan, note, recall)."""
    from tenax.compaction import CompactionConfig, Compactor, memory_tools

    window = price_for(model, settings).context_window
    compactor = Compactor(store, goal.id, window=window, config=CompactionConfig.from_goal(goal),
                          strategy=goal.strategy or "continuous")
    return compactor, memory_tools(store, goal.id)


def build_model(spec: str, base_url: str | None, api_key: str | None = None) -> Model:
    return make_model(spec, base_url=base_url, api_key=api_key)


def create_goal(store: Any, req: GoalRequest, *, settings: Settings | None = None, api_key: str | None = None) -> str:
    settings = settings or load_settings()
    if not req.objective or not req.objective.strip():
        raise ConfigError("the objective is empty; say what the goal is")
    workspace = validate_workspace(req.workspace)
    network = validate_network(req.network)
    spec = req.model or settings.model
    parse_model_spec(spec)
    build_model(spec, req.base_url, api_key)  # fails early on a missing API key
    _sandbox_preflight(settings)
    budgets = req.budgets or Budgets()
    if req.strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {req.strategy!r}; use one of: {', '.join(STRATEGIES)}")
    return store.create_goal(
        objective=req.objective.strip(),
        check_cmd=req.check or None,
        model=spec,
        workspace=workspace,
        budgets=budgets.model_dump(),
        network=network,
        strategy=req.strategy,
        config={"base_url": req.base_url, "image": settings.image,
                **({"compaction": dict(req.compaction)} if req.compaction else {})},
    )


def _sandbox_preflight(settings: Settings) -> None:
    from tenax.sandbox import ensure_docker, image_exists

    ensure_docker()
    if not image_exists(settings.image):
        raise ConfigError(
            f"sandbox image {settings.image!r} is missing; build it with `tenax sandbox build` "
            "(or set TENAX_IMAGE to an image you have)"
        )


def run_goal(
    store: Any,
    goal_id: str,
    *,
    api_key: str | None = None,
    model_override: str | None = None,
    budgets: Budgets | None = None,
    on_event: EventHook | None = None,
    settings: Settings | None = None,
) -> str:
    """Run (or resume) a goal to a final status. Resuming re-attaches to the goal's container
    and continues from its journal."""
    from tenax.sandbox import DockerSandbox, ToolBox

    settings = settings or load_settings()
    goal = store.get_goal(goal_id)
    if goal.status == "succeeded":
        raise ConfigError(f"goal {goal.id} already succeeded; there is nothing to resume")
    if model_override and model_override != goal.model:
        raise ModelSwitchRefused(
            f"goal {goal.id} runs on {goal.model}; switching the main session's model mid-goal would discard "
            f"its prompt cache (every later turn would pay full price for the whole history). "
            f"Spawn a sub-agent on {model_override} for that work instead."
        )
    if budgets is not None:
        store.update_goal(goal.id, budgets=budgets.model_dump())
    config = goal.config or {}
    model = build_model(goal.model, config.get("base_url"), api_key)
    validate_workspace(goal.workspace)
    image = config.get("image") or settings.image
    _sandbox_preflight(settings.model_copy(update={"image": image}))
    costs = cost_function(model, settings)
    sandbox = DockerSandbox(goal.workspace, goal_id=goal.id, image=image, network=goal.network or "none")
    sandbox.start()
    toolbox = ToolBox(sandbox, exec_timeout=settings.exec_timeout)
    from tenax.subagents import setup_subagents

    # sub-agent tools for the main model; with no check, the judge is a reviewer sub-agent
    agents, judge = setup_subagents(store, goal, model, toolbox, settings=settings, api_key=api_key, image=image)
    compactor, memory_extra = memory_wiring(store, goal, model, settings)
    runner = GoalRunner(
        store, goal.id, model, sandbox, toolbox, costs=costs, judge=judge, on_event=on_event,
        check_timeout=settings.check_timeout, extra_tools={**memory_extra, **agents.main_tools()}, compactor=compactor,
    )
    status = "failed"
    try:
        agents.resume_unfinished()  # crashed sub-agents continue from their journal, never re-spawned
        status = runner.run()
    finally:
        agents.shutdown(final=status in FINAL_STATUSES and status != "stopped")
        if status in FINAL_STATUSES and status != "stopped":
            sandbox.stop()
    return status
