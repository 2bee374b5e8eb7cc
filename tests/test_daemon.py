"""The background daemon, end to end: the real CLI and daemon processes, real workers, real
containers, the simulator over real HTTP, a real SQLite file under a TENAX_HOME of the test's own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from daemonproc import Env, call, fixer, gapless, marked, until

from tenax.store import open_store
from tenax.testing import Reply, SimError, Simulator

pytestmark = pytest.mark.docker


def ws(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    (path / "status.txt").write_text("broken\n")
    return path


@pytest.fixture
def env_for(tmp_path: Path):
    made: list[Env] = []

    def make(sim: Simulator, **extra: str) -> Env:
        made.append(Env(tmp_path, sim.url, **extra))
        return made[-1]
    yield make
    for env in made:
        env.shutdown()


def store_of(env: Env):
    return open_store(f"sqlite:///{env.db}")


def test_a_queued_goal_succeeds_in_the_background_its_chain_follows_and_notify_runs(tmp_path, env_for):
    seen = tmp_path / "notified"
    policy = marked({"[A]": fixer(call("bash", command="sleep 2")), "[B]": fixer()})
    with Simulator(policy) as sim:
        env = env_for(sim)
        notify = f"env | grep ^TENAX_GOAL_ >> {seen}; echo --- >> {seen}"
        a = env.submit("[A] Make status.txt say fixed.", ws(tmp_path, "a"), "--notify", notify)
        with store_of(env) as store:
            assert store.get_goal(a).status in ("pending", "running")  # the id comes back at once
        b = env.submit("[B] Make status.txt say fixed.", ws(tmp_path, "b"), "--after", a)
        assert env.daemon_pid()
        status = env.tenax("daemon", "status").stdout
        assert str(env.daemon_pid()) in status and a in status and b in status
        with store_of(env) as store:
            until(lambda: store.get_goal(b).status in ("succeeded", "failed", "cancelled"), 90, env)
            ga, gb = store.get_goal(a), store.get_goal(b)
            assert (ga.status, gb.status) == ("succeeded", "succeeded"), env.log()
            first_b = min(s.created_at for s in gapless(store, b))
            assert first_b >= ga.finished_at  # the chained goal started only after its parent succeeded
            gapless(store, a)
        assert (tmp_path / "a" / "status.txt").read_text() == "fixed\n"
        until(lambda: seen.exists() and "---" in seen.read_text(), 10, env)
        got = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
        assert got["TENAX_GOAL_ID"] == a and got["TENAX_GOAL_STATUS"] == "succeeded"
        assert got["TENAX_GOAL_SUMMARY"] == "fixed it"
        listed = env.tenax("ls").stdout
        assert a in listed and "succeeded" in listed
        logs = env.tenax("logs", a).stdout
        assert "write_file" in logs and "sleep 2" in logs
