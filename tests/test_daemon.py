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
from daemonproc import Env, call, env_for, fixer, gapless, marked, until, ws  # noqa: F401 - env_for is a fixture

from tenax.store import open_store
from tenax.testing import Reply, SimError, Simulator

pytestmark = pytest.mark.docker


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


def test_kill_9_of_a_worker_mid_tool_call_and_of_the_daemon_loses_and_repeats_nothing(tmp_path, env_for):
    slow = "echo run >> count.txt; while [ ! -e go ]; do sleep 0.2; done"  # runs until the test says go
    with Simulator(marked({"[W]": fixer(call("bash", command=slow)), "[D]": fixer(call("bash", command=slow))})) as sim:
        env = env_for(sim)
        daemon = env.start_daemon()
        w, d = ws(tmp_path, "w"), ws(tmp_path, "d")
        with store_of(env) as store:
            gw = env.queue(store, "[W] Make status.txt say fixed.", w)
            gd = env.queue(store, "[D] Make status.txt say fixed.", d)
            until(lambda: (w / "count.txt").exists() and store.get_goal(gw).lease_pid, 90, env)
            os.kill(store.get_goal(gw).lease_pid, signal.SIGKILL)  # the worker, in the middle of its tool call
            until(lambda: store.get_goal(gw).worker_attempts == 1, 30, env)
            until(lambda: (d / "count.txt").exists(), 90, env)
            daemon.send_signal(signal.SIGKILL)  # and the daemon, while D's worker runs a tool
            daemon.wait()
            env.start_daemon()  # a new daemon picks up every goal
            (w / "go").touch()
            (d / "go").touch()
            until(lambda: all(store.get_goal(g).status == "succeeded" for g in (gw, gd)), 120, env)
            for goal_id, path in ((gw, w), (gd, d)):
                gapless(store, goal_id)
                assert (path / "count.txt").read_text() == "run\n"  # no tool call ran twice
                assert (path / "status.txt").read_text() == "fixed\n"
            steps = gapless(store, gw)
            assert any(s.kind == "tool_result" and "interrupted" in str(s.payload).lower() for s in steps)


def test_steer_stop_usage_limit_and_budget_from_other_terminals(tmp_path, env_for):
    def steered(req):
        return fixer()(req) if "blue door" in json.dumps(req.body) else Reply(tool_calls=[call("bash", command="sleep 1")])

    limited = {"n": 0}

    def usage_limited(req):
        limited["n"] += 1
        if limited["n"] == 1:
            return Reply(error=SimError(status=429, message="usage limit reached", retry_after=3))
        return fixer()(req)

    policies = {"[S]": steered, "[T]": fixer(call("bash", command="touch started; sleep 120")),
                "[R]": lambda req: Reply(error=SimError(status=529, message="Overloaded")),
                "[U]": usage_limited, "[B]": fixer(call("bash", command="echo one"))}
    with Simulator(marked(policies)) as sim:
        env = env_for(sim, TENAX_USAGE_LIMIT_S="2", TENAX_CONCURRENCY="5")
        env.start_daemon()
        dirs = {m: ws(tmp_path, m) for m in "STRUB"}
        with store_of(env) as store:
            ids = {m: env.queue(store, f"[{m}] Make status.txt say fixed.", dirs[m], max_turns=1 if m == "B" else 20)
                   for m in "STRUB"}

            def status(m):
                return store.get_goal(ids[m]).status

            until(lambda: status("S") == "running", 60, env)
            env.tenax("steer", ids["S"], "take the blue door")
            until(lambda: (dirs["T"] / "started").exists(), 60, env)
            began = time.monotonic()
            assert "stop sent" in env.tenax("stop", ids["T"]).stdout
            until(lambda: status("T") == "stopped", 30, env)
            assert time.monotonic() - began < 15  # not the 120 s tool call
            until(lambda: sum("[R]" in json.dumps(r.body) for r in sim.requests) >= 2, 60, env)  # in a retry wait
            began = time.monotonic()
            env.tenax("stop", ids["R"])
            until(lambda: status("R") == "stopped", 30, env)
            assert time.monotonic() - began < 15
            until(lambda: status("B") == "budget_exhausted", 60, env)
            assert "queued again" in env.tenax("budget", ids["B"], "--max-turns", "5").stdout
            until(lambda: all(status(m) in ("succeeded", "failed") for m in "SUB"), 120, env)
            assert [status(m) for m in "SUB"] == ["succeeded"] * 3, env.log()
            steering = [s for s in gapless(store, ids["S"]) if s.kind == "user" and s.payload.get("why") == "steering"]
            assert steering and "take the blue door" in json.dumps(steering[0].payload)
            b = store.get_goal(ids["B"])
            assert b.turns == 3 and len([s for s in store.sessions_for_goal(b.id) if s.role == "main"]) == 1
            events = [s.payload for s in gapless(store, ids["U"]) if s.kind == "event"]
            assert any(e.get("type") == "usage_limit" and e.get("parked") for e in events)
            assert any(e.get("type") == "status" and e.get("status") == "waiting" for e in events)
            t = store.get_goal(ids["T"])
            assert t.control is None and t.error == "interrupted by the user"  # SIGTERM, as Ctrl-C
        import docker

        client = docker.from_env()
        running = client.containers.list(filters={"label": f"tenax.goal={ids['T']}"})
        assert not running  # the stopped goal's sandbox is halted (kept for resume, not running)
        client.close()


def test_two_goals_on_one_repo_get_worktrees_and_orphans_are_cleaned_by_label(tmp_path, env_for):
    import docker

    from tenax.app import store_labels

    repo = ws(tmp_path, "repo")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    git_in_sandbox = "echo one > who.txt && git status --porcelain && git log -1 --format=%s && git add who.txt"
    with Simulator(marked({"[1]": fixer(call("bash", command=git_in_sandbox)),
                           "[2]": fixer(call("bash", command="echo two > who.txt"))})) as sim:
        env = env_for(sim)
        client = docker.from_env()
        with store_of(env) as store:
            done = store.create_goal(objective="x", model="m", workspace=str(repo), status="succeeded")
            mine = store_labels(store)["tenax.store"]
        orphans = {name: client.containers.run("tenax-sandbox:default", "sleep 300", detach=True, labels=labels,
                                               network_mode="none")
                   for name, labels in (("unknown", {"tenax": "1", "tenax.goal": "feedc0ffee00", "tenax.store": mine}),
                                        ("finished", {"tenax": "1", "tenax.goal": done}),
                                        ("foreign", {"tenax": "1", "tenax.goal": "0123456789ab", "tenax.store": "other"}))}
        try:
            with store_of(env) as store:
                g1 = env.queue(store, "[1] Make status.txt say fixed.", repo)
                g2 = env.queue(store, "[2] Make status.txt say fixed.", repo)
            env.start_daemon()

            def exists(c):
                try:
                    c.reload()
                    return True
                except docker.errors.NotFound:
                    return False
            until(lambda: not exists(orphans["unknown"]) and not exists(orphans["finished"]), 60, env)
            assert exists(orphans["foreign"])  # another installation's container is left alone
            with store_of(env) as store:
                until(lambda: all(store.get_goal(g).status == "succeeded" for g in (g1, g2)), 120, env)
                trees = [store.get_goal(g).config["worktree"] for g in (g1, g2)]
            assert trees[0]["path"] != trees[1]["path"]
            assert [(Path(t["path"]) / "who.txt").read_text() for t in trees] == ["one\n", "two\n"]
            assert [t["branch"] for t in trees] == [f"tenax/{g1}", f"tenax/{g2}"]
            assert (repo / "status.txt").read_text() == "broken\n" and not (repo / "who.txt").exists()
            # each goal's work is a commit on its branch when it ends, and stays there after rm --purge
            def on_branch(g: str) -> str:
                return subprocess.run(["git", "show", f"tenax/{g}:who.txt"], cwd=repo, capture_output=True,
                                      text=True).stdout
            until(lambda: on_branch(g1) == "one\n" and on_branch(g2) == "two\n", 30, env)
            with store_of(env) as store:  # git works inside the sandbox: status and log; add is refused
                out = next(s.payload["content"] for s in gapless(store, g1) if s.kind == "tool_result")
                opening = next(s.payload["text"] for s in gapless(store, g1) if s.kind == "user")
            assert "?? who.txt" in out and "\ninit\n" in out and "Read-only file system" in out, out
            assert f"git worktree on branch tenax/{g1}" in opening and "do not commit" in opening
            (Path(trees[0]["path"]) / "late.txt").write_text("left in the worktree\n")
            assert "kept" in env.tenax("rm", g1, "--purge").stdout
            assert not Path(trees[0]["path"]).exists()
            shown = subprocess.run(["git", "show", f"tenax/{g1}:late.txt"], cwd=repo, capture_output=True, text=True)
            assert shown.stdout == "left in the worktree\n"
            log = subprocess.run(["git", "log", "--format=%an %s", f"tenax/{g1}"], cwd=repo, capture_output=True,
                                 text=True).stdout
            assert log.splitlines()[1] == f"tenax tenax goal {g1}: succeeded"
        finally:
            orphans["foreign"].remove(force=True)
            client.close()


def test_the_next_goals_container_is_started_ahead_while_the_slots_are_busy(tmp_path, env_for):
    """No pool: while every slot is busy, the container of the goal that starts next is created and
    started (its own workspace mounted), so that goal's start re-attaches instead of creating one.
    The daemon's stop removes it (the goal has not started), the next daemon starts it again, and the
    goal runs in it, over the container's exec server; the goal after it follows."""
    import docker

    hold = call("bash", command="while [ ! -e go ]; do sleep 0.2; done")
    host = call("bash", command="cat /etc/hostname > host.txt; tr '\\0' ' ' < /proc/$PPID/cmdline > parent.txt")
    client = docker.from_env()
    named = lambda gid: client.containers.list(all=True, filters={"name": f"tenax-{gid}"})  # noqa: E731
    with Simulator(marked({"[A]": fixer(hold), "[B]": fixer(host), "[C]": fixer(host)})) as sim:
        env = env_for(sim)
        daemon = env.start_daemon("--concurrency", "1")
        with store_of(env) as store:
            a = env.queue(store, "[A] Make status.txt say fixed.", ws(tmp_path, "a"))
            until(lambda: store.get_goal(a).status == "running", 60, env)
            b = env.queue(store, "[B] Make status.txt say fixed.", ws(tmp_path, "b"))
            c = env.queue(store, "[C] Make status.txt say fixed.", ws(tmp_path, "c"))
            until(lambda: named(b) and named(b)[0].status == "running", 60, env)
            assert store.get_goal(b).status == "pending" and not named(c)  # one slot: the next goal only
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
            assert not named(b) and store.get_goal(a).status == "running"  # removed; A's worker goes on
            env.start_daemon("--concurrency", "1")
            until(lambda: named(b) and named(b)[0].status == "running", 60, env)
            ahead = named(b)[0].id
            (tmp_path / "a" / "go").touch()
            until(lambda: store.get_goal(c).status == "succeeded", 120, env)
            assert (store.get_goal(a).status, store.get_goal(b).status) == ("succeeded", "succeeded")
        log = (env.home / "test-daemon.log").read_text()
        assert f"goal {b}: worker" in log and "its container started ahead" in log, env.log()
        assert ahead.startswith((tmp_path / "b" / "host.txt").read_text().strip())
        assert "TENAX_PY" not in (tmp_path / "b" / "parent.txt").read_text()  # run by its exec server (re-attached)
        client.close()
