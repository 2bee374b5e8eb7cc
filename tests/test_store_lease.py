"""Goal leases through real processes and signals on a real SQLite file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from tenax.store import GoalBusy, LeaseLost, open_store
from tenax.store.lease import HOST
from tenax.store.models import GoalRow, utcnow

# A runner: takes the lease, says so, then journals a step every 200 ms until killed.
_RUNNER = textwrap.dedent(
    """
    import sys, time
    from tenax.store import LeaseLost, open_store
    st = open_store(sys.argv[1])
    gid, sid, ttl = sys.argv[2], sys.argv[3], float(sys.argv[4])
    with st.hold_lease(gid, ttl_s=ttl) as lease:
        st.set_status(gid, "running")
        print("held", lease.token, flush=True)
        try:
            while True:
                print("seq", st.append_step(sid, "event", {"t": time.time()}), flush=True)
                time.sleep(0.2)
        except LeaseLost as e:
            print("lost", e, flush=True)
            sys.exit(3)
    """
)


@pytest.fixture
def setup(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'lease.db'}"
    st = open_store(url)
    gid = st.create_goal(objective="o", model="m", workspace="/w")
    sid = st.create_session(gid, model="m", system="s")
    yield url, st, gid, sid
    st.close()


def _start(url: str, gid: str, sid: str, ttl: float) -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([sys.executable, "-c", _RUNNER, url, gid, sid, str(ttl)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.startswith("held"), p.stderr.read() if p.stderr else line
    return p, int(line.split()[1])


def _next_seq(p: subprocess.Popen) -> int:
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.startswith("seq"), line
    return int(line.split()[1])


def test_second_runner_is_refused_then_takes_over_after_kill_9(setup):
    url, st, gid, sid = setup
    p, token = _start(url, gid, sid, ttl=1.0)
    try:
        time.sleep(1.6)  # longer than the ttl: only the heartbeat keeps it held
        _next_seq(p)
        with pytest.raises(GoalBusy) as ei:
            with st.hold_lease(gid, ttl_s=1.0):
                pass
        msg = str(ei.value)
        assert f"pid {p.pid}" in msg and HOST in msg and "since" in msg and gid in msg
        assert st.get_goal(gid).shown_status == "running"
        info = st.lease_info(gid)
        assert (info.pid, info.host, info.token, info.live) == (p.pid, HOST, token, True)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
    # The owner died on this host: shown as interrupted at once, and taken over without waiting for expiry.
    g = st.get_goal(gid)
    assert g.status == "running" and g.shown_status == "interrupted"
    assert st.lease_info(gid).expires_at > utcnow()
    with st.hold_lease(gid, ttl_s=5) as lease:
        assert lease.token == token + 1
        assert st.get_goal(gid).shown_status == "running"
        n = st.append_step(sid, "event", {"resumed": True})
        assert [s.seq for s in st.steps(sid)] == list(range(1, n + 1))
    assert st.lease_info(gid).host is None  # released on exit
    assert st.get_goal(gid).shown_status == "interrupted"  # still marked running, no runner


def test_a_fenced_out_runner_can_never_write_again(setup):
    url, st, gid, sid = setup
    p, token = _start(url, gid, sid, ttl=1.0)
    try:
        _next_seq(p)
        os.kill(p.pid, signal.SIGSTOP)  # frozen: its heartbeat stops, its lease runs out
        time.sleep(1.5)
        with st.hold_lease(gid, ttl_s=30) as lease:  # its pid is alive, but the lease expired
            assert lease.token == token + 1
            before = st.last_seq(sid)
            os.kill(p.pid, signal.SIGCONT)
            out, err = p.communicate(timeout=30)
            assert p.returncode == 3, err
            assert "lost" in out and "taken over" in out
            assert st.last_seq(sid) == before  # not one step got through after the takeover
            assert st.append_step(sid, "event", {"new": "runner"}) == before + 1
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)


def test_owner_on_another_host_is_judged_by_expiry_alone(setup):
    _, st, gid, _ = setup

    def pretend(expires_in_s: float) -> None:
        with st._write() as s:
            s.execute(update(GoalRow).where(GoalRow.id == gid).values(
                lease_token=7, lease_host="other-host", lease_pid=1, lease_acquired_at=utcnow(),
                lease_heartbeat_at=utcnow(), lease_expires_at=utcnow() + timedelta(seconds=expires_in_s)))

    pretend(30)  # pid 1 means nothing on another host: the lease is live until it expires
    with pytest.raises(GoalBusy, match="other-host"):
        st.hold_lease(gid).__enter__()
    pretend(-1)
    with st.hold_lease(gid) as lease:
        assert lease.token == 8


def test_a_lost_lease_is_noticed_by_the_heartbeat(setup):
    _, st, gid, sid = setup
    with st.hold_lease(gid, ttl_s=0.6) as lease:
        with st._write() as s:  # another runner took it over
            s.execute(update(GoalRow).where(GoalRow.id == gid).values(lease_token=GoalRow.lease_token + 1))
        deadline = time.monotonic() + 5
        while not lease.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease.lost
        with pytest.raises(LeaseLost):
            st.append_step(sid, "event", {})
        with pytest.raises(LeaseLost):
            st.set_status(gid, "failed")
    assert st.steps(sid) == [] and st.get_goal(gid).status == "pending"
