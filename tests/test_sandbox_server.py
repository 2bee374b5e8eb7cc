"""The exec server path, on real containers: commands and file tools go over the channel (no docker
exec per call), a dead container is noticed from the channel, a killed server falls back to docker
exec, and hostile arguments are refused there as before."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest

from tenax.sandbox import DockerSandbox, ToolBox, cleanup_by_label
from test_sandbox import _SKIP

pytestmark = [pytest.mark.docker, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]


@pytest.fixture
def sb(tmp_path):
    box = DockerSandbox(tmp_path, goal_id=f"srv-{uuid.uuid4().hex[:10]}", labels={"tenax.test": "1"})
    box.start()
    yield box
    cleanup_by_label(goal_id=box.goal_id)


class _Execs:
    """Counts the docker execs the engine created in a container (its event stream) since made."""

    def __init__(self, box: DockerSandbox):
        self.box, self.since = box, f"{time.time():.6f}"

    def count(self) -> int:
        events = self.box.client.api.events(since=self.since, until=f"{time.time() + 0.5:.6f}", decode=True,
                                            filters={"container": self.box.container.id, "event": "exec_create"})
        return sum(1 for _ in events)


def test_commands_and_file_tools_go_over_the_server(sb):
    tools = ToolBox(sb, exec_timeout=30)
    assert sb.exec("true").ok
    execs = _Execs(sb)
    r = sb.exec("echo $PPID; echo err >&2; exit 5")
    assert r.exit_code == 5 and r.stderr == "err\n"
    assert int(r.stdout) == sb._chan.server_pid  # the command is the server's child
    assert not tools.call("write_file", {"path": "a/b.txt", "content": "hi\n"}).is_error
    assert tools.call("read_file", {"path": "a/b.txt"}).content.endswith("1\thi")
    assert "a/b.txt" in tools.call("list_files", {}).content
    assert "a/b.txt:1: hi" in tools.call("grep", {"pattern": "hi"}).content
    assert execs.count() == 0  # not one docker exec
    check = sb.exec("echo $PPID", retry_on_restart=True)  # a goal's check goes through docker exec
    assert check.ok and int(check.stdout) != sb._chan.server_pid and execs.count() == 1


def test_the_channel_directory_gives_the_container_nothing_else(sb):
    r = sb.exec("test -S /run/tenax/s && echo socket; ls /run/tenax; touch /run/tenax/x; mkdir /run/tenax/d")
    assert r.stdout == "socket\n" and "Permission denied" in r.stderr  # it may not even list the directory
    assert r.stderr.count("Read-only file system") + r.stderr.count("Permission denied") == 3
    source = next(m["Source"] for m in sb.container.attrs["Mounts"] if m["Destination"] == "/run/tenax")
    assert os.listdir(source) == ["s"]
    # a host process is not the container's server: the listener refuses to adopt it
    probe = subprocess.run(["python3", "-c", f"import socket; s=socket.socket(socket.AF_UNIX); s.connect('{source}/s');"
                            "s.settimeout(3); print(repr(s.recv(10)))"], capture_output=True, text=True, timeout=20)
    assert sb.exec("echo still").stdout == "still\n"
    assert "b''" in probe.stdout or probe.returncode != 0


def test_container_death_between_commands_is_noticed_from_the_channel(sb, tmp_path):
    assert sb.exec("true").ok
    old = sb.container.id
    sb.client.api.kill(old)
    r = sb.exec("echo back > back.txt; echo $PPID")
    assert "The sandbox container was killed" in r.note and "may not have" not in r.note
    assert sb.container.id != old and (tmp_path / "back.txt").read_text() == "back\n"
    assert int(r.stdout) == sb._chan.server_pid  # the fresh container has its own server
    sb.client.api.remove_container(sb.container.id, force=True)
    out = ToolBox(sb).call("write_file", {"path": "after.txt", "content": "x"})  # a file tool notices it too
    assert not out.is_error and (tmp_path / "after.txt").read_text() == "x"


def test_a_killed_server_falls_back_to_docker_exec(sb, tmp_path):
    tools = ToolBox(sb, exec_timeout=30)
    pid = sb._chan.server_pid if sb.exec("true").ok else None
    killed = sb.client.api.exec_create(sb.container.id, ["kill", "-9", str(pid)], user=sb.user)
    sb.client.api.exec_start(killed["Id"])
    while b" Z " not in sb.container.exec_run(["cat", f"/proc/{pid}/stat"], user=sb.user).output:
        time.sleep(0.05)  # gone before the next command is sent (a kill racing a request is reported, see below)
    r = sb.exec("echo fallback; sleep 300 &")
    assert r.ok and r.stdout == "fallback\n" and r.reaped == 1 and r.note and "left running were killed" in r.note
    assert not tools.call("write_file", {"path": "f.txt", "content": "via exec\n"}).is_error
    assert (tmp_path / "f.txt").read_text() == "via exec\n"
    assert sb.container.id and sb.exec("ps -eo args").stdout.count("sleep infinity") == 1
    # a command that kills the server under itself is reported, and the next one still runs
    fresh = DockerSandbox(tmp_path, goal_id=f"srv-{uuid.uuid4().hex[:10]}", labels={"tenax.test": "1"})
    try:
        fresh.start()
        assert fresh.exec("true").ok
        cut = fresh.exec(f"kill -9 {fresh._chan.server_pid}; sleep 1")
        assert "killed from outside" in cut.note
        assert fresh.exec("echo ok").stdout == "ok\n"
    finally:
        cleanup_by_label(goal_id=fresh.goal_id)


def test_resume_reconnects_to_the_running_server(sb, tmp_path):
    assert sb.exec("sleep 77 >/dev/null 2>&1 &", job="srv").ok
    for _ in range(50):  # the job is up before the channel goes (a loaded machine may lag its start)
        if "sleep 77" in sb.exec("ps -eo args", job="srv").stdout:
            break
        time.sleep(0.1)
    sb._chan.shutdown()  # the first tenax process dies: its end of the channel closes
    again = DockerSandbox(tmp_path, goal_id=sb.goal_id, labels={"tenax.test": "1"}, jobs={"srv"})
    again.start()
    assert again.container.id == sb.container.id
    execs = _Execs(again)
    r = again.exec("echo $PPID; ps -eo args | grep -c '^sleep 77'")
    assert r.stdout.split() == [str(again._chan.server_pid), "1"] and execs.count() == 0


def test_hostile_arguments_are_refused_over_the_server(sb):
    tools = ToolBox(sb, exec_timeout=30)
    assert sb.exec("ln -sfn /etc escape && ln -sfn / root").ok
    execs = _Execs(sb)
    for name, args in [
        ("read_file", {"path": "../../etc/passwd"}),
        ("read_file", {"path": "escape/passwd"}),
        ("write_file", {"path": "root/tmp/pwned", "content": "x"}),
        ("edit_file", {"path": "/etc/hostname", "old": "a", "new": "b"}),
        ("list_files", {"path": "/"}),
        ("grep", {"pattern": "root", "path": "escape"}),
    ]:
        out = tools.call(name, args)
        assert out.is_error and "outside /workspace" in out.content, (name, args, out.content)
    assert execs.count() == 0 and sb.exec("test ! -e /tmp/pwned").ok
    env = sb.exec("env | grep -c '^TENAX_PY\\|^TENAX_REQ' ; echo $TENAX_EXEC | wc -c")
    assert env.stdout.split() == ["0", "33"]  # the server's internals never reach a command


def test_output_crosses_the_channel_as_raw_bytes(sb):
    """A command's output travels after the reply's JSON as raw bytes (not base64 inside JSON), and
    comes back byte for byte, over the server and over the docker exec fallback alike."""
    mb = "head -c 1048576 /dev/zero | tr '\\0' x"
    reply, raw = sb._server().request({"op": "run", "command": mb, "timeout": 30, "grace": 2, "cwd": "/workspace",
                                   "env": {}, "jobs": [], "cap": 2 << 20, "nonce": uuid.uuid4().hex}, 60)
    assert reply["rc"] == 0 and reply["out"] == {"at": 0, "head": 1048576, "tail": 0, "total": 1048576, "lines": 0}
    assert len(raw) == 1048576 and bytes(raw) == b"x" * 1048576
    # text that looks like the framing itself, JSON, invalid UTF-8 and NULs comes back as sent
    hostile = r"""printf '\x00\x00\x00\x05{"a":1}"}\xff\xfe\x00end\n'; printf 'err\x00\xc3(' >&2"""
    for check in (False, True):  # the server, then docker exec (a goal's check)
        r = sb.exec(hostile, retry_on_restart=check)
        assert r.ok and r.stdout == '\x00\x00\x00\x05{"a":1}"}\ufffd\ufffd\x00end\n' and r.stderr == "err\x00\ufffd("
        big = sb.exec(mb, retry_on_restart=check)  # the default cap: head and tail with the exact marker
        head, _, tail = big.stdout.partition("\n[... ")
        assert len(head) == len(tail.split("...]\n", 1)[1]) == 10_000 and big.truncated_bytes == 1048576 - 20_000
        assert f"\n[... {1048576 - 20_000} bytes (0 lines) cut here; the full output was not kept ...]\n" in big.stdout


def test_the_server_code_is_sent_compiled_and_as_source_to_another_python(sb, tmp_path):
    """A fresh server runs the code compiled on the host when the container's Python reads this
    Python's bytecode (no compiling at start), else it compiles the source sent along."""
    from importlib.util import MAGIC_NUMBER

    from tenax.sandbox import _channel

    theirs = sb.exec("python3 -c 'import importlib.util as u; print(u.MAGIC_NUMBER.hex())'").stdout.strip()
    payload = _channel._payload()
    (tmp_path / "same.py").write_bytes(payload)
    (tmp_path / "other.py").write_bytes(payload.replace(repr(MAGIC_NUMBER).encode(), repr(b"\0\0\r\n").encode(), 1))
    run = "python3 -I -S -c \"import sys; g={}; exec(open(sys.argv[1],'rb').read(), g); print(g['serve'].__code__.co_filename)\""
    same, other = (sb.exec(f"{run} {name}.py") for name in ("same", "other"))
    assert same.ok and other.ok, (same, other)
    assert same.stdout == ("tenax_server\n" if theirs == MAGIC_NUMBER.hex() else "<string>\n")
    assert other.stdout == "<string>\n"
    assert sb.exec("echo served").stdout == "served\n"  # and the server itself runs from it


def test_a_check_cannot_be_faked_from_the_sandbox_users_home(sb, tmp_path):
    """The model writes the sandbox user's home. Neither its shell startup files nor a Python
    usercustomize there may change a check's result (both passed every check before)."""
    (tmp_path / "status.txt").write_text("broken\n")
    check = "grep -qx fixed status.txt"
    assert sb.exec(check, retry_on_restart=True).exit_code == 1
    planted = sb.exec(
        "for f in .bash_profile .profile .bashrc; do echo 'exit 0' > ~/$f; done\n"
        "d=$(python3 -c 'import site; print(site.getusersitepackages())') && mkdir -p $d && cat > $d/usercustomize.py <<'PY'\n"
        "import os\n"
        "if 'TENAX_REQ' in os.environ:\n"
        "    os.environ['TENAX_REQ'] = os.environ['TENAX_REQ'].replace('grep -qx fixed status.txt', 'true')\n"
        "PY\n"
        "python3 -c 'import usercustomize' && echo planted")
    assert planted.ok and planted.stdout.strip() == "planted", planted
    assert sb.exec("echo reached").stdout == ""  # the model's own commands do read its ~/.bash_profile
    result = sb.exec(check, retry_on_restart=True)
    assert result.exit_code == 1, result  # the check still fails
    (tmp_path / "status.txt").write_text("fixed\n")
    assert sb.exec(check, retry_on_restart=True).ok  # and passes once the work is done
    sb.exec("rm ~/.bash_profile ~/.profile ~/.bashrc", retry_on_restart=True)
    login_path = sb.exec("echo $PATH").stdout.strip()
    assert login_path and sb.exec("echo $PATH", retry_on_restart=True).stdout.strip() == login_path  # /etc/profile is read


def test_a_process_holding_over_1024_descriptors_still_runs_docker_execs_and_the_server(sb):
    """select(2) refuses a descriptor numbered 1024 or more; a long process (a goal with many
    sub-agents) got there, and every docker exec then failed in its reader thread (seen in the full
    suite's process). With the low descriptors all taken, the check's docker exec and the exec
    server's channel still work."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the descriptor limit ({hard}) is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = []
    try:
        while True:  # every descriptor below 1024 taken: the next sockets get numbers above it
            fd = os.open(os.devnull, os.O_RDONLY)
            held.append(fd)
            if fd >= 1030:
                break
        checked = sb.exec("echo checked", retry_on_restart=True)  # over docker exec
        served = sb.exec("echo served")  # over the exec server
        assert (checked.exit_code, checked.stdout) == (0, "checked\n"), checked
        assert (served.exit_code, served.stdout) == (0, "served\n"), served
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
