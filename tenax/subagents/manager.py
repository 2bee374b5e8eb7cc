"""Spawning, waiting for and listing sub-agents; the main model's tools; resume.

``AgentManager`` owns the sub-agents of one goal in this process. Every agent is first written to
the ledger (``store.create_agent``, status ``pending``), then gets its session row (system and
tools frozen), then runs - in the caller's thread (foreground) or a thread of its own
(background). The ledger is updated as it progresses (running -> done/failed/stopped, summary,
cost). ``resume_unfinished()`` picks ledger agents left pending/running by a crash and continues
them from their journal; they are never spawned again.

Limits (clear tool errors, the run goes on): at most ``max_concurrent`` (4) running agents, at
most ``max_depth`` (2) levels of nesting, and no spawn once the goal's budget is nearly used
(each agent may spend at most ``share`` of what was left of the goal's USD/token budget when it
started; its usage counts toward the goal's totals).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

from tenax.core.errors import ConfigError, TenaxError
from tenax.core.budget import Budgets, Spent, exhausted, fraction_used
from tenax.core.messages import ToolCallPart, ToolSpec, Usage
from tenax.core.engine import CostFn
from tenax.core.protocols import Model, Store, ToolOutcome, Toolbox
from tenax.store.agents import UNFINISHED_AGENT_STATUSES, AgentRecord
from tenax.subagents.copies import copy_changes, ensure_copy
from tenax.subagents.roles import SANDBOX_TOOLS, SPAWN_TOOLS, Role, load_roles
from tenax.subagents.runner import Halted, LiveAgent, render_summary, report_spec, run_subagent, summary_from_journal

MAX_CONCURRENT = 4
MAX_DEPTH = 2
SPAWN_REFUSE_AT = 0.85  # fraction of a goal budget used after which spawning is refused
SHARE = 0.5  # a sub-agent may spend at most this share of the goal budget left when it starts
WAIT_DEFAULT_S = 600.0
WAIT_MAX_S = 3600.0


SPAWN_AGENT = ToolSpec.object(
    "spawn_agent",
    (
        "Delegate a task to a sub-agent with a fresh, isolated context (it sees only the task you write, "
        "not this conversation) and get back only its structured summary. Use it for exploration, long "
        "investigations, reviews and risky experiments, so this conversation stays small. Roles: explorer "
        "(read-only), worker (all tools), reviewer (read-only, judges a change), or a project role from "
        ".tenax/agents. With background=true it returns an agent id at once (collect it with wait_agents); "
        "otherwise it waits and returns the summary. Limits: 4 running at once, nesting depth 2."
    ),
    {
        "task": {"type": "string", "description": "A self-contained task: what to do, where, what to report."},
        "role": {"type": "string", "description": "explorer | worker | reviewer | a project role (default worker)."},
        "model": {"type": "string", "description": "Model spec, e.g. anthropic:claude-haiku-4-5 (default: the role's, else yours)."},
        "tools": {"type": "array", "items": {"type": "string"}, "description": "Override the role's tool allowlist."},
        "background": {"type": "boolean", "description": "Return the agent id immediately (default false)."},
        "isolation": {"type": "string", "enum": ["shared", "copy"],
                      "description": "shared (default): your workspace; copy: a copy of it in a second container."},
    },
    required=("task",),
    closed=True,
)

WAIT_AGENTS = ToolSpec.object(
    "wait_agents",
    "Wait for sub-agents to finish and get their summaries. With no ids, waits for all your unfinished ones.",
    {
        "ids": {"type": "array", "items": {"type": "string"}, "description": "Agent ids (default: all yours)."},
        "timeout": {"type": "number", "description": "Seconds to wait at most (default 600).", "exclusiveMinimum": 0},
    },
    closed=True,
)

LIST_AGENTS = ToolSpec.object(
    "list_agents",
    "List your sub-agents from the durable ledger: id, role, model, status, cost, task and outcome.",
    {},
    closed=True,
)

APPLY_AGENT_CHANGES = ToolSpec.object(
    "apply_agent_changes",
    (
        "Bring a finished isolation=\"copy\" sub-agent's changes (files it added, modified or deleted in its copy) "
        "into your workspace, optionally only some paths (files or directories). A file you changed since the copy "
        "was made is never overwritten: it is reported as a conflict and the rest is applied. Symlinks leaving the "
        "workspace are refused. The result lists what was applied, already applied, and skipped with the reason; "
        "applying twice is harmless."
    ),
    {
        "id": {"type": "string", "description": "The agent id (from spawn_agent / list_agents)."},
        "paths": {"type": "array", "items": {"type": "string"},
                  "description": "Only these workspace-relative files or directories (default: all changes)."},
    },
    required=("id",),
    closed=True,
)

TOOL_SPECS = {"spawn_agent": SPAWN_AGENT, "wait_agents": WAIT_AGENTS, "list_agents": LIST_AGENTS,
              "apply_agent_changes": APPLY_AGENT_CHANGES}


class AgentManager:
    def __init__(
        self,
        store: Store,
        goal_id: str,
        *,
        toolbox: Toolbox,
        model_factory: Callable[[str], Model],
        costs_for: Callable[[Model], CostFn],
        default_model: str,
        sandbox_factory: Callable[[str, str], tuple[Any, Any]] | None = None,
        copy_root: str | Path | None = None,
        workspace: str | None = None,
        sandbox_cleanup: Callable[[], Any] | None = None,
        max_concurrent: int = MAX_CONCURRENT,
        max_depth: int = MAX_DEPTH,
    ):
        self.store = store
        self.goal_id = goal_id
        self.toolbox = toolbox
        self.model_factory = model_factory
        self.costs_for = costs_for
        self.default_model = default_model
        self.sandbox_factory = sandbox_factory
        self.copy_root = Path(copy_root) if copy_root else None
        self.sandbox_cleanup = sandbox_cleanup  # removes the goal's copy containers (by label)
        self.workspace = workspace or store.get_goal(goal_id).workspace
        self.max_concurrent = max_concurrent
        self.max_depth = max_depth
        self.roles: dict[str, Role] = load_roles(self.workspace)  # bad role files fail here, clearly
        self.stopping = threading.Event()
        self.final = False  # set by shutdown(final=True): unfinished agents end as "stopped"
        self._lock = threading.Lock()
        self._active: dict[str, LiveAgent] = {}
        self._threads: dict[str, threading.Thread] = {}
        self.main_session_id: str | None = None

    # -- the main session's tools --------------------------------------------------------------
    def main_tools(self) -> dict[str, tuple[ToolSpec, Callable[[ToolCallPart], ToolOutcome]]]:
        """The main session's sub-agent tools (``main_session_id`` is set once that session exists)."""
        return {
            "spawn_agent": (SPAWN_AGENT, lambda c: self.spawn(c.arguments, parent_session_id=self._main_sid(), depth=0,
                                                              call_id=c.id)),
            "wait_agents": (WAIT_AGENTS, lambda c: self.wait(c.arguments, parent_session_id=self._main_sid())),
            "list_agents": (LIST_AGENTS, lambda c: self.list(parent_session_id=self._main_sid(), depth=0)),
            "apply_agent_changes": (APPLY_AGENT_CHANGES,
                                    lambda c: self.apply_changes(c.arguments, session_id=self._main_sid())),
        }

    def _main_sid(self) -> str:
        if self.main_session_id is None:
            raise TenaxError(f"goal {self.goal_id} has no main session yet")
        return self.main_session_id

    # -- spawn ---------------------------------------------------------------------------------
    def spawn(self, args: dict[str, Any], *, parent_session_id: str, depth: int, call_id: str | None = None,
              judge: bool = False) -> ToolOutcome:
        err = _check_spawn_args(args)
        if err:
            return ToolOutcome(is_error=True, content=err)
        task = args["task"].strip()
        role_name = args.get("role") or "worker"
        role = self.roles.get(role_name)
        if role is None:
            return ToolOutcome(is_error=True, content=f"unknown role {role_name!r}; available roles: "
                               + ", ".join(f"{r.name} ({r.description})" for r in self.roles.values()))
        if depth + 1 > self.max_depth:
            return ToolOutcome(is_error=True, content=(
                f"depth limit reached: sub-agents nest at most {self.max_depth} levels deep and this agent is at "
                f"depth {depth}, so it cannot spawn. Do this task yourself with your own tools."))
        if not judge:
            dup = self._duplicate(task, role_name, parent_session_id, depth)
            if dup is not None:
                return ToolOutcome(content=(
                    f"Not spawned: agent {dup.id} is already {dup.status} on this exact task (role {dup.role}, "
                    f"model {dup.model}). No duplicate was started. Call wait_agents with ids [\"{dup.id}\"] "
                    "to get its summary, or list_agents to see all your agents."))
            refusal = self._budget_refusal()
            if refusal:
                return ToolOutcome(is_error=True, content=refusal)
        spec = args.get("model") or role.model or self.default_model
        try:
            model = self.model_factory(spec)
        except TenaxError as e:
            return ToolOutcome(is_error=True, content=f"cannot use model {spec!r} for the sub-agent: {e}")
        tool_names = list(args["tools"]) if args.get("tools") is not None else list(role.tools)
        with self._lock:
            if not judge and len(self._active) >= self.max_concurrent:
                running = ", ".join(sorted(self._active))
                return ToolOutcome(is_error=True, content=(
                    f"concurrency limit reached: {len(self._active)} sub-agents are already running ({running}); "
                    f"at most {self.max_concurrent} run at once. Call wait_agents for one of them first."))
            agent_id = self.store.create_agent(  # journal-before-act: the ledger row exists first
                self.goal_id, task=task, role=role_name, model=spec, parent_session_id=parent_session_id,
                depth=depth + 1, background=bool(args.get("background")), isolation=args.get("isolation") or "shared",
                tools=tool_names, max_turns=role.max_turns, spawn_call_id=call_id,
            )
            try:
                live = self._prepare(self.store.get_agent(agent_id), role, model)
            except Exception as e:  # noqa: BLE001 - e.g. no Docker for its copy: a clear tool error, not a crash
                msg = f"{type(e).__name__}: {e}"
                self.store.update_agent(agent_id, status="failed", error=msg)
                return ToolOutcome(is_error=True, content=f"agent {agent_id} could not be started: {msg}")
            self._active[agent_id] = live
        if args.get("background") and not judge:
            self._start_thread(live)
            return ToolOutcome(content=(
                f"Started agent {agent_id} (role {role_name}, model {spec}) in the background. "
                f"Collect its summary with wait_agents([\"{agent_id}\"])."))
        self._execute(live)
        rec = self.store.get_agent(agent_id)
        return ToolOutcome(content=render_summary(rec, rec.summary), is_error=rec.status == "failed")

    def _duplicate(self, task: str, role: str, parent_session_id: str, depth: int) -> AgentRecord | None:
        for a in self._visible(parent_session_id, depth):
            if a.status in UNFINISHED_AGENT_STATUSES and a.task.strip() == task and a.role == role:
                return a
        return None

    def _budget_refusal(self) -> str | None:
        goal = self.store.get_goal(self.goal_id)
        budgets, spent = Budgets(**(goal.budgets or {})), Spent.of_goal(goal)
        which = exhausted(budgets, spent)
        if which is not None or fraction_used(budgets, spent) >= SPAWN_REFUSE_AT:
            return (f"the goal's budget is nearly used up ({which or f'{fraction_used(budgets, spent):.0%} used'}); "
                    "no sub-agent was spawned. Finish the remaining work yourself.")
        return None

    def _caps(self) -> tuple[float | None, int | None]:
        goal = self.store.get_goal(self.goal_id)
        b, s = Budgets(**(goal.budgets or {})), Spent.of_goal(goal)
        usd = SHARE * max(b.max_usd - s.usd, 0.0) if b.max_usd else None
        tok = int(SHARE * max(b.max_tokens - s.tokens, 0)) if b.max_tokens else None
        return usd, tok

    # -- preparing and running one agent -------------------------------------------------------
    def _prepare(self, agent: AgentRecord, role: Role, model: Model) -> LiveAgent:
        """Build the agent's tools, session (created once, then reused verbatim) and sandbox."""
        with_verdict = agent.role == "reviewer"
        toolbox, sandbox, copy_path = self.toolbox, None, None
        if agent.isolation == "copy" and (self.sandbox_factory is None or self.copy_root is None):
            raise ConfigError("isolation 'copy' is not available here (no sandbox factory configured)")
        names = [n for n in SANDBOX_TOOLS if n in agent.tools] + [n for n in SPAWN_TOOLS if n in agent.tools]
        specs = {t.name: t for t in toolbox.specs()}
        tools = [specs[n] for n in names if n in specs] + [TOOL_SPECS[n] for n in names if n in TOOL_SPECS]
        tools.append(report_spec(with_verdict))
        if agent.session_id:
            sess = self.store.get_session(agent.session_id)
            system, tools = sess.system, [ToolSpec.model_validate(t) for t in sess.tools]
        else:
            system = role.system
            sid = self.store.create_session(self.goal_id, role="subagent", model=agent.model, system=system,
                                            tools=[t.model_dump() for t in tools],
                                            parent_session_id=agent.parent_session_id)
            self.store.update_agent(agent.id, session_id=sid)
            agent = self.store.get_agent(agent.id)
        if agent.isolation == "copy":  # the session exists first: its journal records where the copy is
            sandbox, toolbox, copy_path = self._copy_sandbox(agent)
        usd_cap, token_cap = self._caps()
        live = LiveAgent(agent=agent, session_id=agent.session_id or "", model=model, costs=self.costs_for(model),
                     system=system, tools=tools, toolbox=toolbox, first_message=_first_message(agent),
                     max_turns=agent.max_turns or role.max_turns, with_verdict=with_verdict,
                     usd_cap=usd_cap, token_cap=token_cap, sandbox=sandbox, copy_path=copy_path)
        for st in self.store.steps(live.session_id, kinds=["assistant"]):  # resumed: count what it spent
            u = Usage.model_validate(st.payload.get("usage") or {})
            live.add_spent(u, 0.0)
        live.spent_usd = agent.cost_usd
        return live

    def _copy_sandbox(self, agent: AgentRecord) -> tuple[Any, Any, Path]:
        """The agent's workspace copy and its container. The copy's path is journaled (an ``event``
        step of the agent's session) before it is made, and a resume uses the journaled path, so a
        resumed agent re-attaches to its own copy and container even if ``copy_root`` changed."""
        assert self.sandbox_factory is not None and self.copy_root is not None and agent.session_id
        recorded = [s.payload for s in self.store.steps(agent.session_id, kinds=["event"])
                     if s.payload.get("type") == "workspace_copy"]
        if recorded:
            dest = Path(recorded[0]["path"])
        else:
            dest = (self.copy_root / self.goal_id / agent.id).resolve()
            self.store.append_step(agent.session_id, "event",
                                   {"type": "workspace_copy", "path": str(dest), "source": self.workspace})
        ensure_copy(self.workspace, dest)
        sandbox, toolbox = self.sandbox_factory(agent.id, str(dest))
        return sandbox, toolbox, dest

    def _start_thread(self, live: LiveAgent) -> None:
        t = threading.Thread(target=self._execute, args=(live,), name=f"tenax-agent-{live.agent.id}", daemon=True)
        self._threads[live.agent.id] = t
        t.start()

    def _execute(self, live: LiveAgent) -> None:
        aid = live.agent.id
        try:
            self.store.update_agent(aid, status="running")
            summary = run_subagent(self, live)
            _add_copy_info(summary, live, can_apply=self._can_apply(live.agent))
            status = "stopped" if summary.get("outcome") == "stopped" else "done"
            self.store.update_agent(aid, status=status, summary=summary)
            self.store.update_session(live.session_id, status=status)
        except Halted:
            live.keep_sandbox = True  # like the main sandbox: a resume re-attaches to this container
            # left pending/running in the ledger on purpose: resume continues it
        except Exception as e:  # noqa: BLE001 - a failed sub-agent is reported to its parent, not fatal
            msg = f"{type(e).__name__}: {e}"
            steps = self.store.steps(live.session_id) if live.session_id else []
            summary = summary_from_journal(steps, outcome="failed", with_verdict=live.with_verdict,
                                           note=f"the sub-agent failed: {msg}")
            _add_copy_info(summary, live, can_apply=self._can_apply(live.agent))
            try:
                self.store.update_agent(aid, status="failed", summary=summary, error=msg)
                if live.session_id:
                    self.store.update_session(live.session_id, status="failed")
            except Exception:  # noqa: BLE001 - the store itself is gone; resume will find it running
                pass
        finally:
            if live.sandbox is not None and not live.keep_sandbox:
                try:
                    live.sandbox.stop()
                except Exception:  # noqa: BLE001
                    pass
            with self._lock:
                self._active.pop(aid, None)
            live.done.set()

    # -- wait / list ---------------------------------------------------------------------------
    def _visible(self, parent_session_id: str, depth: int) -> list[AgentRecord]:
        """The main session sees every agent of the goal (so nothing is lost if its session
        changes); a sub-agent sees the agents it spawned."""
        if depth == 0:
            return [a for a in self.store.agents_for_goal(self.goal_id) if a.depth == 1]
        return self.store.agents_for_session(parent_session_id)

    def wait(self, args: dict[str, Any], *, parent_session_id: str) -> ToolOutcome:
        if not isinstance(args, dict):
            return ToolOutcome(is_error=True, content="wait_agents arguments must be a JSON object")
        ids, timeout = args.get("ids"), args.get("timeout", WAIT_DEFAULT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            return ToolOutcome(is_error=True, content=f"timeout must be a positive number of seconds, got {timeout!r}")
        timeout = min(float(timeout), WAIT_MAX_S)
        known = {a.id: a for a in self.store.agents_for_goal(self.goal_id)}
        if ids is None or ids == []:
            depth = 0 if self._is_main(parent_session_id) else 1
            ids = [a.id for a in self._visible(parent_session_id, depth) if a.status in UNFINISHED_AGENT_STATUSES]
            if not ids:
                return ToolOutcome(content="You have no unfinished sub-agents. list_agents shows all of them.")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return ToolOutcome(is_error=True, content="ids must be a list of agent id strings")
        unknown = [i for i in ids if i not in known]
        if unknown:
            return ToolOutcome(is_error=True, content=f"unknown agent id(s) {', '.join(unknown)}; known: "
                               + (", ".join(known) or "none (spawn one with spawn_agent)"))
        deadline = time.monotonic() + timeout
        while True:
            recs = [self.store.get_agent(i) for i in ids]
            if all(r.finished for r in recs) or time.monotonic() >= deadline or self.stopping.is_set():
                break
            for r in recs:
                live = self._active.get(r.id)
                if live is not None and not r.finished:
                    live.done.wait(min(0.5, max(deadline - time.monotonic(), 0.01)))
                    break
            else:
                time.sleep(0.2)  # running elsewhere (another process): poll the ledger
        parts = [render_summary(r, r.summary) if r.finished else
                 json.dumps({"agent_id": r.id, "status": r.status, "note": f"still running after {timeout:g}s; wait again later"})
                 for r in recs]
        return ToolOutcome(content="\n".join(parts))

    def _is_main(self, session_id: str) -> bool:
        try:
            return self.store.get_session(session_id).role == "main"
        except TenaxError:
            return False

    def list(self, *, parent_session_id: str, depth: int) -> ToolOutcome:
        agents = self._visible(parent_session_id, depth)
        if not agents:
            return ToolOutcome(content="No sub-agents yet.")
        rows = [{"agent_id": a.id, "role": a.role, "model": a.model, "status": a.status, "depth": a.depth,
                 "background": a.background, "cost_usd": round(a.cost_usd, 6), "task": a.task[:200],
                 "outcome": (a.summary or {}).get("outcome")} for a in agents]
        return ToolOutcome(content=json.dumps(rows, ensure_ascii=False, indent=1))

    # -- apply a copy's changes ----------------------------------------------------------------
    def copy_path_of(self, agent: AgentRecord) -> Path | None:
        """Where an ``isolation: copy`` agent's copy is: its journaled location (as resume uses it)."""
        if agent.session_id:
            for s in self.store.steps(agent.session_id, kinds=["event"]):
                if s.payload.get("type") == "workspace_copy":
                    return Path(s.payload["path"])
        where = (agent.summary or {}).get("workspace_copy")
        return Path(where) if where else None

    def _can_apply(self, agent: AgentRecord) -> bool:
        """Does the agent's parent have apply_agent_changes (main sessions created since it exists)?"""
        if agent.depth != 1 or not agent.parent_session_id:
            return False
        try:
            tools = self.store.get_session(agent.parent_session_id).tools or []
        except TenaxError:
            return False
        return any(isinstance(t, dict) and t.get("name") == "apply_agent_changes" for t in tools)

    def apply_changes(self, args: dict[str, Any], *, session_id: str) -> ToolOutcome:
        """The ``apply_agent_changes`` tool: see ``tenax.subagents.apply`` for the rules."""
        from tenax.subagents.apply import apply_copy_changes, normalize_paths

        if not isinstance(args, dict):
            return ToolOutcome(is_error=True, content="apply_agent_changes arguments must be a JSON object")
        unknown = sorted(set(args) - set(APPLY_AGENT_CHANGES.parameters["properties"]))
        if unknown:
            return ToolOutcome(is_error=True, content=f"apply_agent_changes got unknown argument(s) {', '.join(unknown)}; "
                               "it accepts: id, paths")
        aid = args.get("id")
        if not isinstance(aid, str) or not aid.strip():
            return ToolOutcome(is_error=True, content="apply_agent_changes needs 'id': the agent id of a copy agent")
        paths = None
        if args.get("paths") is not None:
            paths = normalize_paths(args["paths"])
            if isinstance(paths, str):
                return ToolOutcome(is_error=True, content=paths)
        agents = {a.id: a for a in self.store.agents_for_goal(self.goal_id)}
        agent = agents.get(aid.strip())
        if agent is None:
            copies = [a.id for a in agents.values() if a.isolation == "copy"]
            return ToolOutcome(is_error=True, content=f"unknown agent id {aid!r}; your isolation=\"copy\" agents: "
                               + (", ".join(copies) or "none (spawn one with spawn_agent, isolation \"copy\")"))
        if agent.isolation != "copy":
            return ToolOutcome(is_error=True, content=(
                f"agent {agent.id} worked in your shared workspace (isolation {agent.isolation!r}): its changes are "
                "already there. Only isolation=\"copy\" agents have changes to apply."))
        live = self._active.get(agent.id)
        if agent.finished and live is not None:  # it reported; its container is being stopped: let that end
            live.done.wait(60.0)
        if not agent.finished or not (live is None or live.done.is_set()):
            return ToolOutcome(is_error=True, content=(
                f"agent {agent.id} is still running (status {agent.status}); its copy may still change. Call "
                f"wait_agents with ids [\"{agent.id}\"] first, then apply."))
        copy = self.copy_path_of(agent)
        if copy is None or not copy.is_dir():
            return ToolOutcome(is_error=True, content=f"agent {agent.id}'s workspace copy "
                               f"{'is unknown' if copy is None else f'at {copy} is gone'}; nothing can be applied")
        try:
            result = apply_copy_changes(self.workspace, copy, paths=paths)
        except (OSError, ValueError) as e:
            return ToolOutcome(is_error=True, content=f"cannot read agent {agent.id}'s copy at {copy}: {type(e).__name__}: {e}")
        report = {"agent_id": agent.id, "agent_outcome": (agent.summary or {}).get("outcome"), **result.as_dict()}
        self.store.append_step(session_id, "event", {"type": "agent_changes_applied", **report, "copy": str(copy),
                                                     "paths": paths})
        if not result.applied:
            left = len(result.conflicts) + len(result.refused) + len(result.skipped)
            report["note"] = ("Nothing left to apply: every change of this agent is already in your workspace."
                              if not left else f"Nothing left to apply: {len(result.already_applied)} change(s) are "
                              f"already in your workspace and {left} cannot be applied (see conflicts / refused / "
                              "skipped for why).")
        else:
            report["note"] = (f"Applied {len(result.applied)} change(s) to your workspace."
                              + (" Conflicting files keep your version; the agent's version exists only in its copy, which "
                                 "your sandbox cannot see: redo by hand what you want of those." if result.conflicts else ""))
        if result.unmatched:
            report["note"] += f" No change of this agent matches: {', '.join(result.unmatched)}."
        return ToolOutcome(content=json.dumps(report, ensure_ascii=False, indent=1))

    # -- resume / shutdown ---------------------------------------------------------------------
    def resume_unfinished(self) -> list[str]:
        """Continue every ledger agent a crash left pending/running, in background threads, from
        its journal. Returns their ids. Nothing is spawned anew."""
        resumed = []
        for a in self.store.agents_for_goal(self.goal_id):
            if a.status not in UNFINISHED_AGENT_STATUSES or a.id in self._active:
                continue
            role = self.roles.get(a.role)
            if role is None:
                self.store.update_agent(a.id, status="failed", error=f"role {a.role!r} no longer exists")
                continue
            try:
                model = self.model_factory(a.model)
            except TenaxError as e:
                self.store.update_agent(a.id, status="failed", error=f"cannot build model {a.model!r}: {e}")
                continue
            with self._lock:
                try:
                    live = self._prepare(a, role, model)
                except Exception as e:  # noqa: BLE001 - e.g. its workspace copy is gone
                    self.store.update_agent(a.id, status="failed", error=f"cannot resume: {type(e).__name__}: {e}")
                    continue
                self._active[a.id] = live
            self._start_thread(live)
            resumed.append(a.id)
        return resumed

    def shutdown(self, *, final: bool, timeout: float = 30.0) -> None:
        """Ask running agents to stop at their next turn and wait for them. ``final`` (the goal
        ended) marks unfinished ones ``stopped``; otherwise they stay unfinished for resume."""
        self.final = final
        self.stopping.set()
        end = time.monotonic() + timeout
        for t in list(self._threads.values()):
            t.join(max(end - time.monotonic(), 0.1))
        if final and self.sandbox_cleanup is not None and (self._threads or self.store.agents_for_goal(self.goal_id)):
            # an agent still stuck in a command keeps none (a goal that never had one has none to remove:
            # its ledger row is written before its container is created)
            try:
                self.sandbox_cleanup()
            except Exception:  # noqa: BLE001 - best effort; `tenax sandbox cleanup` remains
                pass

    def join(self, timeout: float | None = None) -> None:
        """Wait for background agents to finish on their own (tests, clean exits)."""
        for t in list(self._threads.values()):
            t.join(timeout)


def _check_spawn_args(args: Any) -> str | None:
    if not isinstance(args, dict):
        return "spawn_agent arguments must be a JSON object"
    unknown = sorted(set(args) - set(SPAWN_AGENT.parameters["properties"]))
    if unknown:
        return f"spawn_agent got unknown argument(s) {', '.join(unknown)}; it accepts: task, role, model, tools, background, isolation"
    if not isinstance(args.get("task"), str) or not args["task"].strip():
        return "spawn_agent needs 'task': a non-empty, self-contained description of the work"
    for k in ("role", "model"):
        if args.get(k) is not None and (not isinstance(args[k], str) or not args[k].strip()):
            return f"'{k}' must be a non-empty string"
    if args.get("background") is not None and not isinstance(args["background"], bool):
        return "'background' must be true or false"
    if args.get("isolation") not in (None, "shared", "copy"):
        return f"'isolation' must be 'shared' or 'copy', got {args.get('isolation')!r}"
    tools = args.get("tools")
    if tools is not None:
        known = set(SANDBOX_TOOLS + SPAWN_TOOLS)
        if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
            return "'tools' must be a list of tool names"
        bad = sorted(set(tools) - known)
        if bad:
            return f"unknown tool(s) {', '.join(bad)}; known: {', '.join(sorted(known))}"
    return None


def _add_copy_info(summary: dict[str, Any], live: LiveAgent, *, can_apply: bool = False) -> None:
    """For an ``isolation: copy`` agent: where its copy is on the host and what changed in it."""
    if live.copy_path is None:
        return
    summary["workspace_copy"] = str(live.copy_path)
    summary["copy_changes"] = copy_changes(live.copy_path)
    summary["copy_note"] = ("These changes exist only in the sub-agent's copy (on the host, outside your sandbox), "
                            "not in your workspace. " + (
                                f"To keep them, call apply_agent_changes with id \"{live.agent.id}\" (optionally "
                                "paths); files you changed meanwhile are left alone and reported."
                                if can_apply else "Redo in your workspace whatever you want to keep."))


def _first_message(agent: AgentRecord) -> str:
    where = ("a private copy of the workspace at /workspace (your changes do not touch the lead's)"
             if agent.isolation == "copy" else "the shared workspace at /workspace")
    return f"TASK:\n{agent.task}\n\nYou work in {where}. When done, call report."
