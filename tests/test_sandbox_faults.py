"""The sandbox's fault suite, on real containers: leftover processes, disk limits, container death,
honest truncation, hostile tool arguments and escape attempts. Each fault is contained and the
next command still works."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

from tenax.core.errors import SandboxError
from tenax.sandbox import DockerSandbox, ToolBox, cleanup_by_label
from tenax.sandbox._incontainer import MARKER, cut_middle
from test_sandbox import _SKIP, needs_docker

pytestmark = [pytest.mark.docker, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

SECRET = f"host-secret-{uuid.uuid4().hex}"


def _sandbox(ws, **kw) -> DockerSandbox:
    return DockerSandbox(ws, goal_id=f"fault-{uuid.uuid4().hex[:10]}", labels={"tenax.test": "1"}, **kw)


@pytest.fixture(scope="module")
def sb(tmp_path_factory):
    os.environ["TENAX_TEST_SECRET"] = SECRET  # must never reach the sandbox
    box = _sandbox(tmp_path_factory.mktemp("ws"), pids_limit=96, tmp_mb=16, home_mb=8, mem_limit="256m")
    box.start()
    yield box
    os.environ.pop("TENAX_TEST_SECRET", None)
    cleanup_by_label(goal_id=box.goal_id)


@pytest.fixture
def fresh(tmp_path):
    """A sandbox of its own, for tests that stop, kill or remove its container."""
    box = _sandbox(tmp_path)
    box.start()
    yield box
    cleanup_by_label(goal_id=box.goal_id)


@pytest.fixture(scope="module")
def tools(sb):
    return ToolBox(sb, exec_timeout=30)


def _procs(sb: DockerSandbox) -> str:
    return sb.exec("ps -eo args").stdout


def _in_thread(fn):
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("result", fn()), daemon=True)
    t.start()
    return t, box


# -- leftover processes -----------------------------------------------------------------------


def test_background_processes_die_with_their_command(sb):
    escapes = (
        "sleep 301 & setsid sleep 302 & nohup sleep 303 >/dev/null 2>&1 & "
        "env -i setsid sleep 304 & (setsid bash -c 'sleep 305 & sleep 306' &); echo done"
    )
    for _ in range(25):  # 25 x 6 leftovers would fill the pids limit (96) many times over
        r = sb.exec(escapes)
        assert r.ok and r.stdout == "done\n", r
        assert r.reaped >= 4 and r.left_running == 0 and "left running were killed" in r.note
    left = _procs(sb)
    assert not any(f"sleep 30{i}" in left for i in range(1, 7)), left
    assert sb.exec("echo still fine").stdout == "still fine\n"


def test_timeout_kills_setsid_escapes_and_says_so_truthfully(sb, tools):
    r = sb.exec("setsid sleep 401 & env -i setsid sleep 402 & sleep 100", timeout=1)
    assert r.timed_out and r.left_running == 0
    assert "sleep 401" not in _procs(sb) and "sleep 402" not in _procs(sb)
    out = tools.call("bash", {"command": "setsid sleep 403 & sleep 100", "timeout": 1})
    assert out.is_error and "killed together with every process it started" in out.content
    assert "sleep 403" not in _procs(sb)


def test_a_job_survives_its_exec_until_reaped(sb):
    assert sb.exec("sleep 501 >/dev/null 2>&1 &", job="server").ok
    assert sb.exec("true").ok
    assert "sleep 501" in _procs(sb)
    assert sb.reap_all() == 0 and "sleep 501" in _procs(sb)  # resume keeps the goal's jobs
    assert sb.reap_all(keep_jobs=False) >= 1
    assert "sleep 501" not in _procs(sb)


def test_a_job_is_never_taken_for_an_escape_while_it_starts(sb):
    """A job forked off by its exec may still be inside execve when the exec's reap looks at it;
    its environment then reads as empty, as an ``env -i`` escape's does, and it was killed (14 of
    150 jobs under load). Two busy loops on the host widen that window."""
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        lost = []
        for i in range(60):
            assert sb.exec(f"sleep {700 + i} >/dev/null 2>&1 &", job=f"j{i}").ok
            if f"sleep {700 + i}" not in _procs(sb):
                lost.append(i)
            sb.reap_all(keep_jobs=False)
    finally:
        for p in load:
            p.kill()
            p.wait()
    assert lost == []


def test_resume_kills_what_a_crashed_run_left_running(fresh, tmp_path):
    first = fresh
    thread, _ = _in_thread(lambda: first.exec("sleep 601", timeout=120))  # the "crashed" run's exec
    deadline = time.monotonic() + 10
    while "sleep 601" not in _procs(first) and time.monotonic() < deadline:
        time.sleep(0.1)
    resumed = DockerSandbox(tmp_path, goal_id=first.goal_id, labels={"tenax.test": "1"})
    resumed.start()
    assert resumed.container.id == first.container.id
    assert "sleep 601" not in _procs(resumed)
    thread.join(10)
    assert not thread.is_alive()


def test_halt_kills_the_running_exec_and_keeps_the_container(fresh, tmp_path):
    box = fresh
    thread, result = _in_thread(lambda: box.exec("echo x > kept.txt; sleep 60", timeout=120))
    time.sleep(1.5)
    t0 = time.monotonic()
    box.halt()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - t0 < 10
    assert "halted" in result["result"].note
    box.container.reload()
    assert box.container.status == "exited"  # stopped, not removed: resume can restart it
    with pytest.raises(SandboxError, match="halted"):
        box.exec("true")
    cid = box.container.id
    box.start()
    assert box.container.id == cid and "sleep 60" not in _procs(box)
    assert (tmp_path / "kept.txt").read_text() == "x\n"


# -- disk --------------------------------------------------------------------------------------


def test_writes_outside_the_workspace_are_capped_and_enospc_is_said_plainly(sb, tools):
    r = sb.exec("head -c 64M /dev/zero > /tmp/fill; echo rc=$?")
    assert "rc=1" in r.stdout and "No space left on device: /tmp is limited to 16 MB" in r.note
    assert int(sb.exec("stat -c %s /tmp/fill").stdout) <= 16 * 1024 * 1024
    out = tools.call("bash", {"command": "head -c 64M /dev/zero > ~/fill"})
    assert "No space left on device: /tmp is limited to 16 MB" in out.content and "/home/tenax is limited to 8 MB" in out.content
    ro = sb.exec("touch /etc/evil /usr/local/evil /evil")
    assert ro.exit_code != 0 and "Read-only file system" in ro.stderr and "read-only" in ro.note
    assert sb.exec("rm -f /tmp/fill ~/fill").ok
    # what the image's user needs still works: a home directory, git, python
    ok = sb.exec("git config --global user.name t && git init -q /tmp/repo && python3 -c 'print(1)'")
    assert ok.ok, ok


# -- container death ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["kill", "rm"])
def test_container_death_mid_command_is_survived(fresh, tmp_path, how):
    box = fresh
    thread, result = _in_thread(lambda: box.exec("echo started; sleep 30", timeout=60))
    time.sleep(1.5)
    old = box.container.id
    box.client.api.kill(old) if how == "kill" else box.client.api.remove_container(old, force=True)
    thread.join(20)
    r = result["result"]
    word = "killed" if how == "kill" else "removed"
    assert f"The sandbox container was {word}" in r.note and "may not have completed" in r.note
    assert "fresh container was started over the same workspace" in r.note
    assert box.container.id != old
    assert box.exec("echo back").stdout == "back\n"
    attrs = box.client.api.inspect_container(box.container.id)
    assert attrs["Config"]["Labels"]["tenax.goal"] == box.goal_id and attrs["HostConfig"]["ReadonlyRootfs"]


def test_a_check_is_rerun_after_the_container_died_under_it(fresh, tmp_path):
    box = fresh
    thread, result = _in_thread(
        lambda: box.exec("echo run >> runs.txt; sleep 3; echo passed", timeout=60, retry_on_restart=True)
    )
    time.sleep(1.5)
    box.client.api.kill(box.container.id)
    thread.join(30)
    r = result["result"]
    assert r.ok and r.stdout == "passed\n" and "run again in the fresh container" in r.note
    assert (tmp_path / "runs.txt").read_text() == "run\nrun\n"
    # a container removed between commands: the next command simply runs in a fresh one
    box.client.api.remove_container(box.container.id, force=True)
    r = box.exec("echo fine")
    assert r.ok and r.stdout == "fine\n" and "was removed" in r.note and "may not have" not in r.note


def test_out_of_memory_is_named(sb, tools):
    out = tools.call("bash", {"command": "python3 -c 'x = bytearray(1024**3); print(len(x))'"})
    assert "out-of-memory killer" in out.content and "256m" in out.content, out.content
    assert sb.exec("echo alive").stdout == "alive\n"


# -- honest truncation -------------------------------------------------------------------------


def _dropped(text: str) -> tuple[int, int]:
    return sum(int(m[1]) for m in MARKER.finditer(text)), sum(int(m[2]) for m in MARKER.finditer(text))


def test_huge_and_binary_output_markers_state_what_was_dropped(sb, tools):
    r = sb.exec("yes 0123456789 | head -c 50M", timeout=60)
    kept = MARKER.sub("", r.stdout)
    assert _dropped(r.stdout) == (50 * 2**20 - len(kept), 50 * 2**20 // 11 - kept.count("\n"))
    assert r.truncated_bytes == 50 * 2**20 - len(kept)
    b = sb.exec("head -c 2M /dev/urandom")
    assert b.truncated_bytes >= 2 * 2**20 - 20_000 and _dropped(b.stdout)[0] == b.truncated_bytes
    out = tools.call("bash", {"command": "yes 0123456789 | head -c 50M"})
    assert len(out.content) <= tools.max_output_chars
    assert _dropped(out.content)[0] > 50 * 2**20 - tools.max_output_chars


def test_an_outer_cut_keeps_the_inner_markers_count():
    inner, cut = cut_middle("".join(f"line {i}\n" for i in range(100_000)), 4000)
    outer, total = cut_middle("x" * 3000 + inner, 1000)
    assert len(MARKER.findall(outer)) == 1
    kept = MARKER.sub("", outer)
    original = 3000 + len("".join(f"line {i}\n" for i in range(100_000)))
    assert total == _dropped(outer)[0] == original - len(kept)
    assert _dropped(outer)[1] == 100_000 - kept.count("\n")


# -- hostile tool arguments --------------------------------------------------------------------


def test_hostile_arguments_get_clear_errors_and_the_run_goes_on(sb, tools):
    assert sb.exec("ln -sfn / rootlink").ok
    cases = [
        ("read_file", {"path": "../../../../etc/shadow"}, "outside /workspace"),
        ("write_file", {"path": "/etc/cron.d/x", "content": "x"}, "outside /workspace"),
        ("write_file", {"path": "rootlink/tmp/x", "content": "x"}, "outside /workspace"),
        ("bash", "{not json", "must be a JSON object"),
        ("bash", {"cmd": "ls"}, "unknown argument(s) cmd"),
        ("read_file", {}, "needs the argument 'path'"),
        ("rm_rf", {"path": "."}, "unknown tool"),
    ]
    for name, args, expected in cases:
        out = tools.call(name, args)
        assert out.is_error and expected in out.content, (name, args, out.content)
    big = "A" * 200_000  # travels through put_file into the read-only container's /tmp
    assert not tools.call("write_file", {"path": "big.txt", "content": big}).is_error
    assert tools.call("bash", {"command": "wc -c < big.txt"}).content.endswith("200000")


def test_fork_bomb_and_endless_command_are_contained(sb, tools):
    bomb = tools.call("bash", {"command": "b() { b | b & }; b", "timeout": 5})
    assert "exit code" in bomb.content or "TIMED OUT" in bomb.content
    assert int(sb.exec("ps -e --no-headers | wc -l").stdout) < 10
    endless = tools.call("bash", {"command": "while :; do :; done", "timeout": 1})
    assert endless.is_error and "TIMED OUT" in endless.content
    assert tools.call("bash", {"command": "echo next"}).content.endswith("next")


# -- escape attempts ---------------------------------------------------------------------------


def test_escape_attempts_fail(sb):
    r = sb.exec("env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'")
    assert SECRET not in r.stdout and "TENAX_TEST_SECRET" not in r.stdout
    sock = sb.exec("ls -l /var/run/docker.sock /run/docker.sock; python3 -c "
                   "'import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"/var/run/docker.sock\")'")
    assert sock.exit_code != 0 and "No such file" in sock.stderr
    net = sb.exec("python3 -c 'import socket; socket.create_connection((\"172.17.0.1\", 2375), timeout=3)'", timeout=20)
    assert net.exit_code != 0 and "unreachable" in net.stderr
    outside = sb.exec("echo x > /workspace/../evil; echo x > /evil; mount -t tmpfs none /mnt")
    assert outside.exit_code != 0 and sb.exec("test -e /evil").exit_code != 0
    priv = sb.exec("grep NoNewPrivs /proc/self/status; su -c id root </dev/null; unshare -r id; id -u")
    assert "NoNewPrivs:\t1" in priv.stdout and priv.stdout.split()[-1] != "0" and "uid=0" not in priv.stdout
