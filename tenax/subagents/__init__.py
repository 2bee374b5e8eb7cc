"""Sub-agents: isolated contexts that protect the main cache, and a ledger that survives everything.

- ``AgentManager`` (manager.py): spawn/wait/list tools, limits, threads, resume.
- ``run_subagent`` (runner.py): the sub-agent policy over the engine, ending with ``report``.
- roles.py: explorer / worker / reviewer presets and ``.tenax/agents/*.md`` project roles.
- ``ReviewerJudge`` (judge.py): the no-check judge as a reviewer sub-agent.
- ``tenax.app.subagents_for`` wires all of it into a goal run.
"""

from __future__ import annotations

import os
from pathlib import Path

from tenax.config import tenax_home
from tenax.subagents.judge import ReviewerJudge
from tenax.subagents.manager import MAX_CONCURRENT, MAX_DEPTH, AgentManager
from tenax.subagents.roles import BUILTIN_ROLES, Role, load_roles, parse_role_file

__all__ = [
    "AgentManager", "ReviewerJudge", "Role", "BUILTIN_ROLES", "MAX_CONCURRENT", "MAX_DEPTH",
    "load_roles", "parse_role_file", "copy_root", "remove_agent_containers",
]


def copy_root() -> Path:
    """Where ``isolation: copy`` workspaces go: ``$TENAX_COPY_DIR`` or ``$TENAX_HOME/copies``."""
    env = os.environ.get("TENAX_COPY_DIR")
    return Path(env).expanduser() if env else tenax_home() / "copies"


def remove_agent_containers(goal_id: str) -> int:
    """Force-remove the goal's sub-agent containers (labels ``tenax.goal=<id>`` and ``tenax.agent``)."""
    from docker.errors import NotFound

    from tenax.sandbox.docker_sandbox import ensure_docker

    client = ensure_docker()
    removed = 0
    try:
        for c in client.containers.list(all=True, filters={"label": ["tenax=1", f"tenax.goal={goal_id}", "tenax.agent"]},
                                       ignore_removed=True):
            try:
                c.remove(force=True)
                removed += 1
            except NotFound:
                pass
    finally:
        client.close()
    return removed
