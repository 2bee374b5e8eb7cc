"""The warm pool on real containers: a taken container serves the goal's workspace, carries its
name, is found again on resume, never serves a second goal, and is cleaned up with the goal."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from tenax.core.errors import SandboxError
from tenax.sandbox import DockerSandbox, cleanup_by_label
from tenax.sandbox.pool import POOL_LABEL, SandboxPool, cleanup_pools
from test_sandbox import _SKIP

pytestmark = [pytest.mark.docker, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or ""),
              pytest.mark.skipif(os.geteuid() != 0, reason="the warm pool needs root")]


def test_a_taken_container_serves_the_goals_workspace_and_is_never_reused(tmp_path):
    pool = SandboxPool(2)
    goals = [f"pool-t-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    try:
        assert pool.fill() == 2
        ws = tmp_path / "ws"
        ws.mkdir()
        (ws / "hello.txt").write_text("hi\n")
        t0 = time.monotonic()
        sb = pool.take(ws, goals[0])
        r = sb.exec("cat hello.txt; echo made > made.txt; echo $PPID")
        taken_ms = (time.monotonic() - t0) * 1000
        assert r.stdout.split()[0] == "hi" and (ws / "made.txt").read_text() == "made\n"
        assert int(r.stdout.split()[1]) == sb._chan.server_pid and sb.slot is not None
        assert taken_ms < 1000  # the target (50 ms) is measured by bench/sandbox_start.py; this machine is shared
        attrs = sb.client.api.inspect_container(sb.container.id)
        assert attrs["Name"] == f"/tenax-{goals[0]}" and attrs["Config"]["Labels"][POOL_LABEL] == pool.id
        assert attrs["HostConfig"]["ReadonlyRootfs"] and attrs["HostConfig"]["NetworkMode"] == "none"
        # resume finds it by name; another workspace is refused
        again = DockerSandbox(ws, goal_id=goals[0])
        again.start()
        assert again.container.id == sb.container.id and again.exec("cat made.txt").stdout == "made\n"
        other = tmp_path / "other"
        other.mkdir()
        with pytest.raises(SandboxError, match="another workspace"):
            DockerSandbox(other, goal_id=goals[0]).start()
        # the second goal gets the other, never-used container
        sb2 = pool.take(other, goals[1])
        assert sb2.container.id != sb.container.id and sb2.exec("ls").stdout == ""
        # with the pool empty, take() cold-starts
        sb3 = pool.take(other, goals[2])
        assert sb3.slot is None and sb3.exec("true").ok
        slot = sb.slot
        assert cleanup_by_label(goal_id=goals[0]) == 1
        assert not slot.exists() and (ws / "made.txt").exists()  # the slot is gone, the workspace is not touched
    finally:
        pool.cleanup()
        for g in goals:
            cleanup_by_label(goal_id=g)
        cleanup_pools()
    assert sb.client.containers.list(all=True, filters={"label": f"{POOL_LABEL}={pool.id}"}) == []
    assert "/pool/" not in open("/proc/self/mountinfo").read()
