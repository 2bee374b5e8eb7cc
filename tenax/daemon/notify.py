"""``--notify CMD``: a user's command run when a background goal ends or gets stuck.

The command is the user's own (from the command line or ``TENAX_NOTIFY``), so it runs through the
shell; what the goal says (its summary or error, which may quote the model) reaches it only as
environment values - data, never part of the command line:

- ``TENAX_GOAL_ID``, ``TENAX_GOAL_STATUS``, ``TENAX_GOAL_SUMMARY`` (the summary, else the error),
  ``TENAX_GOAL_OBJECTIVE``, ``TENAX_GOAL_COST_USD``, ``TENAX_GOAL_TURNS``.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from tenax.config import load_settings

TIMEOUT_S = 60.0
MAX_VALUE = 4000  # characters of one environment value


def command_for(goal: Any, settings: Any = None) -> str | None:
    return (goal.config or {}).get("notify") or (settings or load_settings()).notify


def notify(goal: Any, log: Any = print, settings: Any = None) -> int | None:
    """Run the goal's notify command (if any) and return its exit code; a failure is logged, never raised.
    ``settings``: the caller's, when it has them (else they are loaded: the config default)."""
    command = command_for(goal, settings)
    if not command:
        return None
    env = {**os.environ, "TENAX_GOAL_ID": goal.id, "TENAX_GOAL_STATUS": goal.status,
           "TENAX_GOAL_SUMMARY": (goal.summary or goal.error or "")[:MAX_VALUE],
           "TENAX_GOAL_OBJECTIVE": goal.objective[:MAX_VALUE], "TENAX_GOAL_COST_USD": f"{goal.cost_usd:.4f}",
           "TENAX_GOAL_TURNS": str(goal.turns)}
    try:
        done = subprocess.run(command, shell=True, env=env, stdin=subprocess.DEVNULL, capture_output=True,  # noqa: S602 - the user's own command
                              text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as e:
        log(f"goal {goal.id}: notify command failed: {e}")
        return None
    if done.returncode != 0:
        log(f"goal {goal.id}: notify command exited {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}")
    return done.returncode
