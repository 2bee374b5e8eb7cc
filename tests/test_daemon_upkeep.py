"""The daemon's upkeep, through a real daemon process: it starts the next goal as soon as a worker's
goal ends (not at its next tick), and its cleanup removes the worktrees of goals its store no
longer has, and only those."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from daemonproc import call, env_for, fixer, marked, until, ws  # noqa: F401 - env_for is a fixture

from tenax.store import open_store
from tenax.testing import Simulator

pytestmark = pytest.mark.docker


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_the_next_goal_starts_when_a_goal_ends_not_at_the_next_tick(tmp_path, env_for):
    # A tick of 60 s: the queue is read once at the start, then only when something wakes the daemon.
    with Simulator(marked({"[A]": fixer(), "[B]": fixer(), "[C]": fixer()})) as sim:
        e = env_for(sim, TENAX_DAEMON_TICK_S="60")
        with open_store(f"sqlite:///{e.db}") as store:
            a = e.queue(store, "[A] Make status.txt say fixed.", ws(tmp_path, "a"))
            b = e.queue(store, "[B] Make status.txt say fixed.", ws(tmp_path, "b"))
        began = time.monotonic()
        e.start_daemon("--concurrency", "1")
        with open_store(f"sqlite:///{e.db}") as store:
            until(lambda: store.get_goal(b).status == "succeeded", 45, e)
            ga, gb = store.get_goal(a), store.get_goal(b)
        assert ga.status == "succeeded"
        assert time.monotonic() - began < 45  # B did not wait for a second tick (60 s)
        gap = (gb.lease_acquired_at - ga.finished_at).total_seconds()
        assert 0 <= gap < 5, gap  # A's worker told the daemon; B started while A's sandbox was removed
        submitted = time.monotonic()
        c = e.submit("[C] Make status.txt say fixed.", ws(tmp_path, "c"))  # `tenax submit` wakes the daemon
        with open_store(f"sqlite:///{e.db}") as store:
            until(lambda: store.get_goal(c).status == "succeeded", 45, e)
        assert time.monotonic() - submitted < 45


def test_bad_tick_setting_is_refused_in_one_line(tmp_path, env_for):
    with Simulator(marked({})) as sim:
        e = env_for(sim, TENAX_DAEMON_TICK_S="soon")
        done = e.tenax("daemon", "run", check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "TENAX_DAEMON_TICK_S='soon'" in done.stderr + done.stdout


def test_cleanup_removes_the_worktrees_of_goals_the_store_no_longer_has(tmp_path, env_for):
    repo = ws(tmp_path, "repo")
    git("init", "-q", cwd=repo)
    git("add", ".", cwd=repo)
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init", cwd=repo)
    with Simulator(marked({"[P]": fixer(call("bash", command="echo purged > p.txt")), "[K]": fixer()})) as sim:
        e = env_for(sim)
        with open_store(f"sqlite:///{e.db}") as store:
            purged = e.queue(store, "[P] Make status.txt say fixed.", repo)
            kept = e.queue(store, "[K] Make status.txt say fixed.", repo, at=None)
            store.update_goal(kept, background=False)  # not the daemon's to run: it only has to survive cleanup
            trees = {g: Path(store.get_goal(g).config["worktree"]["path"]) for g in (purged, kept)}
            store.delete_goal(purged)  # purged behind the daemon's back (as by another tenax, or by hand)
        worktrees = e.home / "worktrees"
        # a worktree of this installation's from before the owner notes, and one another store noted as its own
        git("worktree", "add", "-q", "-b", "tenax/0ld0ld0ld0l", str(worktrees / "0ld0ld0ld0l"), "HEAD", cwd=repo)
        git("worktree", "add", "-q", "-b", "tenax/f0re1gn0000", str(worktrees / "f0re1gn0000"), "HEAD", cwd=repo)
        (worktrees / ".f0re1gn0000.store").write_text("another-store")
        # work left in it, owned by the sandbox user as a root-owned repository's worktree is after a run
        (worktrees / "0ld0ld0ld0l" / "left.txt").write_text("unsaved work\n")
        for path in [worktrees / "0ld0ld0ld0l", *(worktrees / "0ld0ld0ld0l").rglob("*")]:
            os.lchown(path, 10001, 10001)
        assert all(p.is_dir() for p in trees.values())
        e.start_daemon()
        log = e.home / "test-daemon.log"
        # the log line comes after the whole sweep (the owner notes go last); the directories go before it
        until(lambda: log.exists() and "removed the worktrees of 2 goal(s)" in log.read_text(), 30, e)
        assert not trees[purged].exists() and not (worktrees / "0ld0ld0ld0l").exists()
        listed = git("worktree", "list", "--porcelain", cwd=repo)
        assert str(trees[purged]) not in listed and "0ld0ld0ld0l" not in listed  # pruned from git's records too
        assert trees[kept].is_dir() and str(trees[kept]) in listed  # a known goal's worktree stays
        assert (worktrees / "f0re1gn0000").is_dir() and "f0re1gn0000" in listed  # another store's stays
        assert not (worktrees / f".{purged}.store").exists() and (worktrees / f".{kept}.store").exists()
        branches = git("branch", "--list", "tenax/*", cwd=repo)
        assert f"tenax/{purged}" in branches and "tenax/0ld0ld0ld0l" in branches  # the work stays on its branch
        assert git("show", "tenax/0ld0ld0ld0l:left.txt", cwd=repo) == "unsaved work\n"


def _children(pid: int) -> set[int]:
    """Live (not zombie) child processes of ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and int(stat[1]) == pid and stat[0] != "Z":
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]) != "Z"
    except OSError:
        return False


def test_spare_workers_take_goals_and_never_outlive_the_daemon(tmp_path, env_for):
    with Simulator(marked({"[S]": fixer()})) as sim:
        e = env_for(sim, TENAX_DAEMON_TICK_S="0.1")
        daemon = e.start_daemon("--concurrency", "2")
        until(lambda: len(_children(daemon.pid)) == 2, 30, e)  # as many spares as goals may run, before any goal
        spares = _children(daemon.pid)
        with open_store(f"sqlite:///{e.db}") as store:
            goal = e.queue(store, "[S] Make status.txt say fixed.", ws(tmp_path, "s"))
            until(lambda: store.get_goal(goal).status == "succeeded", 60, e)
        started = [line for line in (e.home / "test-daemon.log").read_text().splitlines()
                   if f"goal {goal}: worker" in line and "started" in line]
        assert len(started) == 1 and int(started[0].split("worker ")[1].split()[0]) in spares, (started, spares)
        assert (tmp_path / "s" / "status.txt").read_text() == "fixed\n"
        log = e.home / "logs" / f"{goal}.log"  # its output moved to the goal's log (written after the status)
        until(lambda: f"goal {goal}: succeeded" in log.read_text(), 30, e)
        until(lambda: len(_children(daemon.pid)) == 2, 30, e)  # the spare taken is replaced once the start settled
        waiting = _children(daemon.pid)
        daemon.kill()  # kill -9: the spares see their pipes' EOF and exit
        daemon.wait()
        until(lambda: not any(_alive(p) for p in waiting), 15, e)


def test_the_cleanup_survives_containers_removed_while_it_lists_them(tmp_path, monkeypatch):
    """The cleanup listed the containers, then inspected each; one removed in between (a goal's own,
    removed 1.5 s after it ended, or another installation's) made the whole cleanup give up (seen in
    a full run: a dead daemon's pool was not removed at the next start). Here another process's
    containers go while the cleanup runs, and this store's orphan is still removed."""
    import threading

    import docker

    from tenax.app import store_labels
    from tenax.daemon.supervisor import Supervisor

    monkeypatch.setenv("TENAX_HOME", str(tmp_path / "home"))
    client = docker.from_env()
    store = open_store(f"sqlite:///{tmp_path / 'tenax.db'}")
    mine = store_labels(store)["tenax.store"]
    create = lambda goal, st: client.api.create_container(  # noqa: E731
        "tenax-sandbox:default", "true", labels={"tenax": "1", "tenax.goal": goal, "tenax.store": st})["Id"]
    others = [create(f"other{i:07d}", "another-store") for i in range(40)]
    orphan = create("unknowngoal1", mine)  # a goal this store does not know: the cleanup's to remove

    def remove_others() -> None:
        for cid in others:
            client.api.remove_container(cid, force=True)

    remover = threading.Thread(target=remove_others)
    try:
        remover.start()
        time.sleep(0.05)
        Supervisor(store, concurrency=1).cleanup()
        remover.join(60)
        assert not client.containers.list(all=True, filters={"id": orphan})
    finally:
        remover.join(60)
        for cid in [*others, orphan]:
            try:
                client.api.remove_container(cid, force=True)
            except docker.errors.NotFound:
                pass
        store.close()
        client.close()
