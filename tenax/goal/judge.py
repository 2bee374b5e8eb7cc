"""The independent judge for goals without a check command.

It runs in a fresh context (its own session and journal, no parent history) with read-only
tools and the evidence: the objective, the worker's summary and the workspace diff. It must
answer through the ``verdict`` tool; anything else gets one reminder per turn, and no verdict
within its turn budget counts as a rejection.
"""

from __future__ import annotations

from typing import Any, Callable

from tenax.harness.messages import Message, TextPart, ToolResultPart, ToolSpec
from tenax.protocols import Model, Sandbox

READ_ONLY_TOOLS = ("read_file", "list_files", "grep")

JUDGE_SYSTEM = """\
You are an independent reviewer. A worker claims a goal is complete. Judge the claim strictly \
against the objective by inspecting the workspace (/workspace) with your read-only tools. You \
cannot change anything. Decide with the verdict tool: passed=true only if the objective is \
fully met; otherwise passed=false with concrete reasons and what is missing.
"""

VERDICT = ToolSpec(
    name="verdict",
    description="Give the final judgement on whether the objective is met.",
    parameters={
        "type": "object",
        "properties": {
            "passed": {"type": "boolean"},
            "reasons": {"type": "string", "description": "Why; for a failure, what is missing."},
        },
        "required": ["passed", "reasons"],
    },
)

EVIDENCE_CMD = (
    "cd /workspace && if git rev-parse --git-dir >/dev/null 2>&1; then "
    "echo '## git status'; git status --short; echo '## git diff'; git diff HEAD 2>/dev/null || git diff; "
    "else echo '## files'; find . -maxdepth 3 -type f -not -path './.git/*' | head -200; fi"
)


class Judge:
    def __init__(
        self,
        store: Any,
        goal_id: str,
        model: Model,
        sandbox: Sandbox,
        toolbox: Any,
        *,
        costs: Callable[[Any], tuple[float, float]] = lambda u: (0.0, 0.0),
        max_turns: int = 12,
    ):
        self.store, self.goal_id, self.model, self.sandbox, self.toolbox = store, goal_id, model, sandbox, toolbox
        self.costs = costs
        self.max_turns = max_turns
        self.tools = [t for t in toolbox.specs() if t.name in READ_ONLY_TOOLS] + [VERDICT]

    def __call__(self, summary: str, parent_session_id: str) -> tuple[bool, str]:
        goal = self.store.get_goal(self.goal_id)
        sid = self.store.create_session(
            goal.id, role="judge", model=f"{self.model.provider}:{self.model.name}", system=JUDGE_SYSTEM,
            tools=[t.model_dump() for t in self.tools], parent_session_id=parent_session_id,
        )
        evidence = self.sandbox.exec(EVIDENCE_CMD, timeout=60)
        first = (
            f"OBJECTIVE:\n{goal.objective}\n\nWORKER'S SUMMARY:\n{summary}\n\n"
            f"EVIDENCE (workspace state):\n{evidence.stdout[-30000:]}\n\nInspect as needed, then call verdict."
        )
        messages = [Message(role="user", parts=[TextPart(text=first)])]
        self.store.append_step(sid, "user", {"text": first, "why": "judge_task"})
        for _ in range(self.max_turns):
            resp = self.model.complete(JUDGE_SYSTEM, self.tools, messages, session_id=sid)
            msg = resp.message if resp.message.parts else Message(role="assistant", parts=[TextPart(text="(empty)")])
            seq = self.store.append_step(sid, "assistant", {"message": msg.model_dump(), "usage": resp.usage.model_dump()})
            cost, uncached = self.costs(resp.usage)
            self.store.record_usage(sid, step_seq=seq, provider=self.model.provider, model=self.model.name,
                                    usage=resp.usage, cost_usd=cost, uncached_cost_usd=uncached, attempts=resp.attempts)
            u = resp.usage
            self.store.add_to_goal_totals(self.goal_id, input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                                          cache_read_tokens=u.cache_read_tokens, cache_write_tokens=u.cache_write_tokens,
                                          cost_usd=cost, uncached_cost_usd=uncached)
            messages.append(msg)
            results: list[Any] = []
            verdict: tuple[bool, str] | None = None
            for call in msg.tool_calls:
                if call.name == "verdict":
                    passed = call.arguments.get("passed") is True
                    reasons = str(call.arguments.get("reasons", ""))
                    verdict = (passed, reasons)
                    content = "recorded"
                    is_error = False
                elif call.name in READ_ONLY_TOOLS:
                    out = self.toolbox.call(call.name, call.arguments)
                    content, is_error = out.content, out.is_error
                else:
                    content, is_error = f"tool {call.name!r} is not available to the reviewer", True
                part = ToolResultPart(tool_call_id=call.id, content=content, is_error=is_error)
                self.store.append_step(sid, "tool_result", part.model_dump())
                results.append(part)
            if verdict is not None:
                self.store.update_session(sid, status="passed" if verdict[0] else "failed")
                return verdict
            if not results:
                results.append(TextPart(text="Call the verdict tool now."))
                self.store.append_step(sid, "user", {"text": "Call the verdict tool now.", "why": "judge_nudge"})
            messages.append(Message(role="user", parts=results))
        self.store.update_session(sid, status="no_verdict")
        return False, f"The reviewer gave no verdict within {self.max_turns} turns."
