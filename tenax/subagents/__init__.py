"""Sub-agents: isolated contexts that protect the main cache, and a ledger that survives everything.

- ``AgentManager`` (manager.py): spawn/wait/list tools, limits, threads, resume.
- ``SubAgentRun`` (runner.py): the small journaled loop one sub-agent runs, ending with ``report``.
- roles.py: explorer / worker / reviewer presets and ``.tenax/agents/*.md`` project roles.
- ``ReviewerJudge`` (judge.py): the no-check judge as a reviewer sub-agent.
- ``setup_subagents``: what ``run_goal`` calls to wire all of it into a goal run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tenax.subagents.judge import ReviewerJudge
from tenax.subagents.manager import MAX_CONCURRENT, MAX_DEPTH, AgentManager
from tenax.subagents.roles import BUILTIN_ROLES, Role, load_roles, parse_role_file

__all__ = [
    "AgentManager", "ReviewerJudge", "Role", "BUILTIN_ROLES", "MAX_CONCURRENT", "MAX_DEPTH",
    "load_roles", "parse_role_file", "setup_subagents", "copy_root", "remove_agent_containers",
]


def copy_root() -> Path:
    """Where ``isolation: copy`` workspaces go: ``$TENAX_COPY_DIR`` or ~/.local/share/tenax/copies."""
    env = os.environ.get("TENAX_COPY_DIR")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "tenax" / "copies"


def remove_agent_containers(goal_id: str) -> int:
    """Force-remove the goal's sub-agent containers (labels ``tenax.goal=<id>`` and ``tenax.agent``)."""
    from docker.errors import NotFound

    from tenax.sandbox.docker_sandbox import ensure_docker

    client = ensure_docker()
    removed = 0
    try:
        for c in client.containers.list(all=True, filters={"label": ["tenax=1", f"tenax.goal={goal_id}", "tenax.agent"]}):
            try:
                c.remove(force=True)
                removed += 1
            except NotFound:
                pass
    finally:
        client.close()
    return removed


def setup_subagents(store: Any, goal: Any, model: Any, toolbox: Any, *, settings: Any, api_key: str | None,
                    image: str) -> tuple[AgentManager, ReviewerJudge | None]:
    """An AgentManager for ``goal`` (sub-agent models built on the goal's base_url / API key when they
    use the same provider, else from the environment) and, for a goal without a check, the reviewer
    judge (model: goal config ``judge_model``, else ``TENAX_JUDGE_MODEL``, else the goal's model)."""
    from tenax.app import build_model, cost_function
    from tenax.harness.registry import parse_model_spec
    from tenax.sandbox import DockerSandbox, ToolBox

    config = goal.config or {}
    main_provider = parse_model_spec(goal.model).provider

    def model_factory(spec: str) -> Any:
        same = parse_model_spec(spec).provider == main_provider
        return build_model(spec, config.get("base_url") if same else None, api_key if same else None)

    def sandbox_factory(agent_id: str, path: str) -> tuple[Any, Any]:
        sb = DockerSandbox(path, goal_id=goal.id, image=image, network=goal.network or "none",
                           name_suffix=f"-agent-{agent_id}", labels={"tenax.agent": agent_id})
        sb.start()
        return sb, ToolBox(sb, exec_timeout=settings.exec_timeout)

    manager = AgentManager(
        store, goal.id, toolbox=toolbox, model_factory=model_factory,
        costs_for=lambda m: cost_function(m, settings), default_model=goal.model,
        sandbox_factory=sandbox_factory, copy_root=copy_root(), workspace=goal.workspace,
        sandbox_cleanup=lambda: remove_agent_containers(goal.id),
    )
    judge = None
    if not goal.check_cmd:
        judge = ReviewerJudge(manager, toolbox.sandbox, model=config.get("judge_model") or settings.judge_model)
    return manager, judge
