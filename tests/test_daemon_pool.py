"""The daemon's warm pool (``tenax daemon run --pool N``), through a real daemon process, real
containers and the simulator: a goal runs in a pool container and succeeds, the pool is refilled
with never-used containers, and unused pool containers go at the daemon's stop and, when a dead
daemon left them, at the next daemon's cleanup."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import docker
import pytest
from daemonproc import Env, call, fixer, marked, until

from tenax.app import store_labels
from tenax.sandbox.pool import POOL_LABEL, UNUSED, SandboxPool, cleanup_pools
from tenax.store import open_store
from tenax.testing import Simulator

pytestmark = [pytest.mark.docker, pytest.mark.skipif(os.geteuid() != 0, reason="the warm pool needs root")]


def unused(client: docker.DockerClient, pool_id: str | None = None) -> dict[str, str]:
    """Unused pool containers (id -> pool id), of one pool or of all."""
    label = f"{POOL_LABEL}={pool_id}" if pool_id else POOL_LABEL
    return {c["Id"]: c["Labels"][POOL_LABEL] for c in client.api.containers(all=True, filters={"label": label})
            if c["Names"][0].lstrip("/").startswith(UNUSED)}  # the listing only: containers come and go meanwhile


def test_a_goal_runs_in_a_pool_container_and_the_pool_is_refilled_and_cleaned(tmp_path: Path, monkeypatch):
    client = docker.from_env()
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "status.txt").write_text("broken\n")
    with Simulator(marked({"[W]": fixer(call("bash", command="cat /etc/hostname > host.txt"))})) as sim:
        env = Env(tmp_path, sim.url)
        env.home.mkdir()
        monkeypatch.setenv("TENAX_HOME", str(env.home))
        with open_store(f"sqlite:///{env.db}") as store:
            mine = store_labels(store)
        dead = SandboxPool(1, labels=mine)  # what a crashed daemon of this installation left behind
        dead.fill(detach=True)
        foreign = SandboxPool(1, labels={"tenax.store": "another-store"})  # another installation's
        foreign.fill(detach=True)
        try:
            daemon = env.start_daemon("--pool", "2")
            pool_id = None

            def pool_ready() -> bool:
                nonlocal pool_id
                ours = {p for p in unused(client).values() if p not in (dead.id, foreign.id)}
                pool_id = next(iter(ours), None)
                return pool_id is not None and len(unused(client, pool_id)) == 2
            until(pool_ready, 60, env)
            until(lambda: not unused(client, dead.id), 30, env)  # the dead daemon's pool: removed at start
            assert unused(client, foreign.id)  # another installation's pool is left alone
            before = unused(client, pool_id)
            with open_store(f"sqlite:///{env.db}") as store:
                gid = env.queue(store, "[W] Make status.txt say fixed.", ws)
                until(lambda: store.get_goal(gid).status == "succeeded", 90, env)
            # it ran in one of the pool's containers: the container's hostname is its short id
            host = (ws / "host.txt").read_text().strip()
            taken = [cid for cid in before if cid.startswith(host)]
            assert len(taken) == 1, (host, before, env.log())
            assert f"pool container {taken[0][:12]}" in (env.home / "test-daemon.log").read_text()
            # refilled with a new, never-used container; the taken one is gone with its goal
            until(lambda: len(unused(client, pool_id)) == 2 and taken[0] not in unused(client, pool_id), 60, env)
            until(lambda: not client.containers.list(all=True, filters={"id": taken[0]}), 30, env)
            # a workspace owned by another user than the pool's gets a cold-started sandbox of its own user
            other = tmp_path / "other"
            other.mkdir()
            (other / "status.txt").write_text("broken\n")
            for path in (other, other / "status.txt"):
                os.chown(path, 1234, 1234)
            pool_before = unused(client, pool_id)
            with open_store(f"sqlite:///{env.db}") as store:
                cold = env.queue(store, "[W] Make status.txt say fixed.", other)
                until(lambda: store.get_goal(cold).status == "succeeded", 90, env)
            assert (other / "host.txt").read_text().strip() not in str(pool_before)
            assert (other / "status.txt").stat().st_uid == 1234 and unused(client, pool_id) == pool_before
            assert f"goal {cold}: worker" in (log := (env.home / "test-daemon.log").read_text())
            assert "pool container" not in next(line for line in log.splitlines() if f"goal {cold}: worker" in line)
            assert "warm pool 2" in env.tenax("daemon", "status").stdout
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
            assert unused(client, pool_id) == {}  # the daemon's stop removed its unused containers
            assert f"/pool/{pool_id}-" not in Path("/proc/self/mountinfo").read_text()
            assert not list((Path(os.environ.get("TENAX_RUN_DIR", "/run/tenax")) / "pool").glob(f"{pool_id}-*"))
        finally:
            env.shutdown()
            cleanup_pools(client, labels={POOL_LABEL: foreign.id})
            cleanup_pools(client, labels={POOL_LABEL: dead.id})
            client.close()


def test_pool_needs_a_whole_number(tmp_path: Path):
    with Simulator(marked({})) as sim:
        env = Env(tmp_path, sim.url)
        env.home.mkdir()
        done = env.tenax("daemon", "run", "--pool", "-1", check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr and "--pool" in done.stderr + done.stdout


def test_a_goal_waiting_for_a_slot_gets_its_pool_container_ahead_and_runs_in_it(tmp_path: Path):
    """While every slot is busy, the next goals' pool containers (as many as there are slots) are
    claimed for them (named after them, their workspaces bound in), so the start that follows a
    slot's release makes no Docker call in the daemon. A goal removed before it starts takes its
    container with it, and the next one in the queue gets one; the daemon's stop removes it (no
    container waits for a daemon that is gone), the next daemon claims one again, and the goal then
    runs in it."""
    client = docker.from_env()
    wss = {}
    for name in ("a", "b", "c"):
        wss[name] = tmp_path / name
        wss[name].mkdir()
        (wss[name] / "status.txt").write_text("broken\n")
    hold = call("bash", command="while [ ! -e go ]; do sleep 0.2; done")
    host = call("bash", command="cat /etc/hostname > host.txt")
    with Simulator(marked({"[A]": fixer(hold), "[B]": fixer(host), "[C]": fixer(host)})) as sim:
        env = Env(tmp_path, sim.url)
        env.home.mkdir()
        try:
            daemon = env.start_daemon("--pool", "2", "--concurrency", "1")
            named = lambda gid: client.containers.list(all=True, filters={"name": f"tenax-{gid}"})  # noqa: E731
            with open_store(f"sqlite:///{env.db}") as store:
                a = env.queue(store, "[A] Make status.txt say fixed.", wss["a"])
                until(lambda: store.get_goal(a).status == "running", 60, env)
                b = env.queue(store, "[B] Make status.txt say fixed.", wss["b"])
                c = env.queue(store, "[C] Make status.txt say fixed.", wss["c"])
                until(lambda: named(b), 60, env)
                assert store.get_goal(b).status == "pending"  # claimed ahead, still waiting for the slot
                time.sleep(2)
                assert not named(c)  # one slot: one goal claimed ahead
                env.tenax("stop", b)
                env.tenax("rm", b)  # stopped and removed before it started: its container goes with it
                assert not named(b)
                until(lambda: named(c), 60, env)
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=30)
                assert not named(c) and store.get_goal(a).status == "running"  # its worker goes on
                env.start_daemon("--pool", "2", "--concurrency", "1")
                until(lambda: named(c), 60, env)
                ahead = named(c)[0].id
                assert f"goal {c}: pool container {ahead[:12]} claimed ahead" in (env.home / "test-daemon.log").read_text()
                (wss["a"] / "go").touch()
                until(lambda: store.get_goal(c).status == "succeeded", 90, env)
                assert store.get_goal(a).status == "succeeded"
            assert ahead.startswith((wss["c"] / "host.txt").read_text().strip())
        finally:
            env.shutdown()
            client.close()
