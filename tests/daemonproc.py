"""Helpers for the daemon tests: a TENAX_HOME of its own, the real CLI in subprocesses, the daemon's
pid, and a simulator policy that tells goals apart by a marker in their objective."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
from goalproc import CHECK, KEY, wait_for

from tenax.testing import Reply, SimRequest, ToolCall

MODEL = "anthropic:claude-sonnet-4-6"


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(name=name, arguments=arguments)


class Env:
    """One tenax installation (TENAX_HOME) and the commands run against it."""

    def __init__(self, tmp: Path, base_url: str, **extra: str):
        self.home, self.db, self.base_url = tmp / "home", tmp / "home" / "tenax.db", base_url
        self.vars = {**os.environ, "TENAX_HOME": str(self.home), "ANTHROPIC_API_KEY": KEY,
                     "TENAX_WORKER_BACKOFF_S": "0.2", "COLUMNS": "250", **extra}
        self.vars.pop("TENAX_DB", None)

    def tenax(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "tenax.cli", *args], env=self.vars, capture_output=True,
                              text=True, timeout=timeout)
        assert not check or done.returncode == 0, f"tenax {' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done

    def submit(self, objective: str, workspace: Path, *extra: str) -> str:
        done = self.tenax("submit", objective, "--workspace", str(workspace), "--check", CHECK, "--model", MODEL,
                          "--base-url", self.base_url, "--max-turns", "20", *extra)
        return done.stdout.strip().splitlines()[-1]

    def queue(self, store, objective: str, workspace: Path, *, max_turns: int = 20, **kw) -> str:
        """Queue a goal in-process (what `tenax submit` does, without paying for a CLI start)."""
        from tenax.app import GoalRequest
        from tenax.core.budget import Budgets
        from tenax.daemon import queue

        req = GoalRequest(objective=objective, workspace=str(workspace), check=CHECK, model=MODEL,
                          base_url=self.base_url, budgets=Budgets(max_turns=max_turns))
        return queue.submit(store, req, api_key=KEY, **kw)

    def daemon_pid(self) -> int | None:
        try:
            return json.loads((self.home / "daemon.pid").read_text())["pid"]
        except (OSError, ValueError):
            return None

    def start_daemon(self, *args: str) -> subprocess.Popen:
        """`tenax daemon run` as a child of the test (so the test can kill -9 it)."""
        log = open(self.home / "test-daemon.log", "a")
        proc = subprocess.Popen([sys.executable, "-m", "tenax.cli", "daemon", "run", *args], env=self.vars,
                                stdout=log, stderr=subprocess.STDOUT)
        assert wait_for(lambda: self.daemon_pid() == proc.pid or proc.poll() is not None, 30), "daemon did not start"
        assert proc.poll() is None, (self.home / "test-daemon.log").read_text()
        return proc

    def log(self) -> str:
        out = []
        for p in [self.home / "daemon.log", self.home / "test-daemon.log", *sorted((self.home / "logs").glob("*.log"))]:
            if p.exists():
                out.append(f"--- {p.name}\n{p.read_text()[-3000:]}")
        return "\n".join(out)

    def shutdown(self) -> None:
        """Stop the daemon and every worker this installation started (by their pids)."""
        pid = self.daemon_pid()
        if pid:
            _kill(pid, signal.SIGTERM)
        from tenax.store import open_store

        if self.db.exists():
            with open_store(f"sqlite:///{self.db}") as store:
                for g in store.list_goals(limit=None):
                    if g.lease_pid and g.shown_status == "running":
                        _kill(g.lease_pid, signal.SIGTERM)
        wait_for(lambda: pid is None or not _alive(pid), 10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def ws(tmp_path: Path, name: str) -> Path:
    """A workspace whose status.txt says broken (the fixer's goals make it say fixed)."""
    path = tmp_path / name
    path.mkdir()
    (path / "status.txt").write_text("broken\n")
    return path


@pytest.fixture
def env_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``env_for(sim, **vars)``: an Env over the simulator (its TENAX_HOME also this process's, for the
    goals queued in-process); every daemon and worker it started is stopped at the end."""
    made: list[Env] = []

    def make(sim, **extra: str) -> Env:
        made.append(Env(tmp_path, sim.url, **extra))
        monkeypatch.setenv("TENAX_HOME", str(made[-1].home))
        made[-1].home.mkdir(exist_ok=True)
        return made[-1]
    yield make
    for env in made:
        env.shutdown()


def marked(policies: dict[str, Callable[[SimRequest], Reply]]) -> Callable[[SimRequest], Reply]:
    """A simulator policy for several goals at once: the goal is the marker its objective carries."""
    def policy(req: SimRequest) -> Reply:
        body = json.dumps(req.body)
        for marker, fn in policies.items():
            if marker in body:
                return fn(req)
        return Reply(text="[test] no goal marker in the request")
    return policy


def fixer(*first: ToolCall) -> Callable[[SimRequest], Reply]:
    """Run ``first`` calls one per turn, then fix status.txt, then complete the goal."""
    plan = [*first, call("write_file", path="status.txt", content="fixed\n"), call("complete_goal", summary="fixed it")]

    def policy(req: SimRequest) -> Reply:
        turn = sum(1 for m in req.body.get("messages", []) if m.get("role") == "assistant")
        return Reply(tool_calls=[plan[min(turn, len(plan) - 1)]])
    return policy


def gapless(store, goal_id: str) -> list:
    """The goal's main journal, checked to have no gap in its sequence numbers."""
    main = next(s for s in store.sessions_for_goal(goal_id) if s.role == "main")
    steps = store.steps(main.id)
    assert [s.seq for s in steps] == list(range(1, len(steps) + 1)), [s.seq for s in steps]
    return steps


def until(pred: Callable[[], bool], timeout: float, env: Env) -> None:
    assert wait_for(pred, timeout), env.log()


def now() -> float:
    return time.time()
