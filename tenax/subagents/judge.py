"""The no-check judge as a ``reviewer`` sub-agent.

When a goal has no check command, ``complete_goal`` calls ``ReviewerJudge(summary, session_id)``.
It spawns a reviewer sub-agent (fresh context, read-only tools, its own session, journal, usage
and ledger row) whose task holds the objective, the worker's summary and the evidence (the final
diff / file list). Its report's ``passed`` decides; no report, or a failed agent, is a rejection,
so the loop goes on. The judge's model may differ from the main model (``judge_model``).
"""

from __future__ import annotations

from typing import Any

from tenax.core.protocols import Sandbox
from tenax.subagents.manager import AgentManager

EVIDENCE_CHARS = 30_000
# What the reviewer is shown of the workspace: the diff when it is a git repo, else a file list.
EVIDENCE_CMD = (
    "cd /workspace && if git rev-parse --git-dir >/dev/null 2>&1; then "
    "echo '## git status'; git status --short; echo '## git diff'; git diff HEAD 2>/dev/null || git diff; "
    "else echo '## files'; find . -maxdepth 3 -type f -not -path './.git/*' | head -200; fi"
)


class ReviewerJudge:
    def __init__(self, manager: AgentManager, sandbox: Sandbox, *, model: str | None = None):
        self.manager = manager
        self.sandbox = sandbox
        self.model = model

    def __call__(self, summary: str, session_id: str) -> tuple[bool, str]:
        goal = self.manager.store.get_goal(self.manager.goal_id)
        evidence = self.sandbox.exec(EVIDENCE_CMD, timeout=60)
        task = (
            "Judge whether this goal is met. A worker claims it is complete.\n\n"
            f"OBJECTIVE:\n{goal.objective}\n\nWORKER'S SUMMARY:\n{summary}\n\n"
            f"EVIDENCE (workspace state):\n{evidence.stdout[-EVIDENCE_CHARS:]}\n\n"
            "Inspect the workspace as needed, then call report with passed=true only if the objective is fully "
            "met, else passed=false with the reasons and what is missing in findings."
        )
        args: dict[str, Any] = {"task": task, "role": "reviewer"}
        if self.model:
            args["model"] = self.model
        outcome = self.manager.spawn(args, parent_session_id=session_id, depth=0, call_id=None, judge=True)
        agents = [a for a in self.manager.store.agents_for_session(session_id) if a.role == "reviewer"]
        rec = agents[-1] if agents else None
        if rec is None or rec.summary is None:
            return False, f"The reviewer could not run: {outcome.content}"
        s = rec.summary
        passed = s.get("passed") is True
        lines = [f"reviewer {rec.id} ({rec.model}): {'PASSED' if passed else 'FAILED'}", s.get("findings", "")]
        if s.get("open_questions"):
            lines.append("open questions: " + "; ".join(s["open_questions"]))
        return passed, "\n".join(x for x in lines if x)
