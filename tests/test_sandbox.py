"""The Docker sandbox against a real engine and the real tenax-sandbox image."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from tenax.core.errors import DockerUnavailable, SandboxError
from tenax.core.protocols import Sandbox
from tenax.sandbox import DEFAULT_IMAGE, DockerSandbox, ImageBuildError, ToolBox, build_image, cleanup_by_label
from tenax.sandbox._incontainer import MARKER
from tenax.sandbox.docker_sandbox import ensure_docker, truncate_middle


def _engine_and_image() -> str | None:
    """None when usable, else the reason to skip."""
    try:
        client = ensure_docker()
    except DockerUnavailable as exc:
        return f"no Docker engine: {exc}"
    try:
        client.images.get(DEFAULT_IMAGE)
    except Exception:  # noqa: BLE001
        return f"image {DEFAULT_IMAGE} missing; run `tenax sandbox build`"
    return None


_SKIP = _engine_and_image()
docker_only = [pytest.mark.docker, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]


def needs_docker(fn):
    for mark in docker_only:
        fn = mark(fn)
    return fn


def _goal() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    if _SKIP:
        pytest.skip(_SKIP)
    ws = tmp_path_factory.mktemp("ws")
    sb = DockerSandbox(ws, goal_id=_goal(), labels={"tenax.test": "1"})
    sb.start()
    yield sb
    sb.stop()
    cleanup_by_label(goal_id=sb.goal_id)


@pytest.fixture(scope="module")
def tools(sandbox):
    return ToolBox(sandbox, exec_timeout=30)


# -- pure helpers ------------------------------------------------------------------------------


def test_truncate_middle_keeps_head_and_tail():
    text = "".join(f"{i}\n" for i in range(10_000))
    out, cut = truncate_middle(text, 1000)
    assert out.startswith("0\n1\n2\n") and out.endswith("9998\n9999\n") and len(out) <= 1000
    m = MARKER.search(out)
    head, tail = out[: m.start()], out[m.end() :]
    lines = text.count("\n") - head.count("\n") - tail.count("\n")
    assert m[0] == f"\n[... {cut} bytes ({lines} lines) cut here; the full output was not kept ...]\n"
    assert cut == len(text) - len(head) - len(tail)
    assert truncate_middle("short", 1000) == ("short", 0)


def test_ensure_docker_names_the_address_when_no_engine(monkeypatch, tmp_path):
    sock = tmp_path / "nothing.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    with pytest.raises(DockerUnavailable) as err:
        ensure_docker()
    assert str(sock) in str(err.value) and "make setup" in str(err.value)


class _RecordingProxy:
    """A unix socket in front of the engine's that forwards everything and records request lines."""

    def __init__(self, path):
        import socket
        import threading

        self.lines: list[str] = []
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        self.listener.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import re
        import socket
        import threading

        def pump(src, dst, record):
            while data := src.recv(65536):
                if record:
                    self.lines += [m.decode() for m in re.findall(rb"(?m)^(?:GET|POST|DELETE|HEAD) \S+", data)]
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)

        while True:
            conn, _ = self.listener.accept()
            engine = socket.socket(socket.AF_UNIX)
            engine.connect("/var/run/docker.sock")
            for src, dst, record in ((conn, engine, True), (engine, conn, False)):
                threading.Thread(target=pump, args=(src, dst, record), daemon=True).start()


@needs_docker
def test_ensure_docker_asks_the_engine_version_once_per_process(monkeypatch, tmp_path):
    from tenax.sandbox import _docker

    proxy = _RecordingProxy(tmp_path / "engine.sock")
    target = f"unix://{tmp_path / 'engine.sock'}"
    monkeypatch.setenv("DOCKER_HOST", target)
    versions = lambda: [line for line in proxy.lines if line.endswith("/version")]
    first = ensure_docker()
    assert len(versions()) == 1 and _docker._API_VERSIONS[target] == first.version()["ApiVersion"]
    second = ensure_docker()  # a second client (a cold start makes two): no /version asked
    assert second.api.api_version == first.api.api_version and len(versions()) == 2  # only first.version() above
    assert second.containers.list(filters={"label": "tenax.none=1"}) == []
    monkeypatch.setitem(_docker._API_VERSIONS, target, "9.99")  # as after a downgrade of the engine
    third = ensure_docker()  # the engine refuses 9.99: asked again, and it works
    assert third.api.api_version == first.api.api_version == _docker._API_VERSIONS[target]
    assert any("/v9.99/_ping" in line for line in proxy.lines) and len(versions()) == 3


# -- container hardening -----------------------------------------------------------------------


@needs_docker
def test_implements_protocol_and_hardening_is_applied(sandbox):
    assert isinstance(sandbox, Sandbox)
    attrs = ensure_docker().api.inspect_container(sandbox.container.id)
    host, cfg = attrs["HostConfig"], attrs["Config"]
    assert cfg["User"] and not cfg["User"].startswith("0") and cfg["User"] != "root"
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["NetworkMode"] == "none"
    assert host["PidsLimit"] == 512
    assert host["Memory"] == 2 * 1024**3
    assert host["NanoCpus"] == 1_000_000_000
    assert host["Init"] is True
    assert cfg["Labels"]["tenax"] == "1" and cfg["Labels"]["tenax.goal"] == sandbox.goal_id
    assert cfg["Labels"]["tenax.test"] == "1"
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert set(mounts) == {"/workspace", "/run/tenax"} and mounts["/workspace"]["RW"] is True
    # the exec server's channel: read-only, and the host directory holds nothing but its socket
    assert mounts["/run/tenax"]["RW"] is False and os.listdir(mounts["/run/tenax"]["Source"]) == ["s"]
    assert not any("docker.sock" in (m.get("Source") or "") for m in attrs["Mounts"])
    env_keys = {e.split("=", 1)[0] for e in cfg["Env"]}
    assert env_keys <= {"PATH", "LANG", "HOME", "PYTHONDONTWRITEBYTECODE"}, env_keys  # nothing from the host


@needs_docker
def test_inside_the_container_non_root_no_caps_no_network(sandbox):
    r = sandbox.exec("id -u; grep CapEff /proc/self/status; ls /sys/class/net")
    uid, capeff, *ifaces = r.stdout.split("\n")
    assert r.ok and uid.strip() != "0"
    assert capeff.split()[1] == "0000000000000000"
    assert [i for i in ifaces if i] == ["lo"]
    net = sandbox.exec(
        "python3 -c 'import socket; socket.create_connection((\"1.1.1.1\", 53), timeout=3)'", timeout=20
    )
    assert net.exit_code != 0 and "Network is unreachable" in net.stderr


@needs_docker
def test_root_owned_workspace_is_handed_to_sandbox_user(sandbox):
    r = sandbox.exec("echo hi > made-inside.txt && mkdir -p d/e && touch d/e/f")
    assert r.ok, r
    st = os.stat(os.path.join(sandbox.workspace, "d", "e", "f"))
    if os.stat(sandbox.workspace).st_uid == 10001:  # this machine runs tests as root
        assert (st.st_uid, st.st_gid) == (10001, 10001)
    assert open(os.path.join(sandbox.workspace, "made-inside.txt")).read() == "hi\n"


# -- exec --------------------------------------------------------------------------------------


@needs_docker
def test_exec_cwd_env_and_separate_streams(sandbox):
    r = sandbox.exec('pwd; echo "$GREETING"; echo oops >&2; exit 3', cwd="/tmp", env={"GREETING": "a 'b' $(c)"})
    assert r.exit_code == 3 and not r.ok and not r.timed_out
    assert r.stdout == "/tmp\na 'b' $(c)\n"
    assert r.stderr == "oops\n"
    missing = sandbox.exec("pwd", cwd="/no/such/dir")
    assert missing.exit_code != 0 and "/no/such/dir" in missing.stderr and missing.stdout == ""
    with pytest.raises(SandboxError):
        sandbox.exec("true", env={"BAD=NAME": "x"})


@needs_docker
def test_timeout_kills_the_process_tree_inside_the_container(sandbox):
    r = sandbox.exec("echo started; sleep 300 & sleep 299; echo never", timeout=1.5)
    assert r.timed_out and r.exit_code == 124
    assert r.stdout == "started\n" and "timeout:" not in r.stderr
    assert r.duration_s < 10
    ps = sandbox.exec("ps -eo pid,args")
    assert "sleep 300" not in ps.stdout and "sleep 299" not in ps.stdout, ps.stdout
    # A command ignoring SIGTERM is SIGKILLed after the grace period.
    stubborn = sandbox.exec("trap '' TERM; sleep 200", timeout=1)
    assert stubborn.timed_out and stubborn.exit_code == 137
    assert "sleep 200" not in sandbox.exec("ps -eo args").stdout
    # Exit code 124 by itself is not a timeout.
    plain = sandbox.exec("exit 124")
    assert plain.exit_code == 124 and not plain.timed_out


@needs_docker
def test_long_output_is_cut_head_and_tail_with_a_note(sandbox):
    r = sandbox.exec("seq 1 200000; head -c 50000 /dev/zero | tr '\\0' e >&2")
    assert r.ok
    assert r.stdout.startswith("1\n2\n3\n") and r.stdout.rstrip().endswith("199999\n200000")
    full = "".join(f"{i}\n" for i in range(1, 200001))
    head, _, tail = r.stdout.partition("\n[... ")
    tail = tail.split("...]\n", 1)[1]
    assert full.startswith(head) and full.endswith(tail) and len(head) + len(tail) == 20_000
    lines = full.count("\n") - head.count("\n") - tail.count("\n")
    assert f"\n[... {len(full) - 20_000} bytes ({lines} lines) cut here; " in r.stdout
    assert "[... 30000 bytes (0 lines) cut here; " in r.stderr
    assert r.truncated_bytes == len(full) - 20_000 + 30_000


# -- lifecycle ---------------------------------------------------------------------------------


@needs_docker
def test_reattach_restart_revive_and_cleanup_by_label(tmp_path):
    goal = _goal()
    first = DockerSandbox(tmp_path, goal_id=goal)
    try:
        first.start()
        assert first.exec("echo kept > /tmp/state").ok
        again = DockerSandbox(tmp_path, goal_id=goal)
        again.start()  # resume: same container, same non-workspace state
        assert again.container.id == first.container.id
        assert again.exec("cat /tmp/state").stdout == "kept\n"

        again.stop(remove=False)
        assert not again.is_alive()
        third = DockerSandbox(tmp_path, goal_id=goal)
        third.start()
        assert third.container.id == first.container.id and third.is_alive()

        third.container.kill()  # the container dies under us: exec revives it once
        r = third.exec("echo back")
        assert r.stdout == "back\n" and third.is_alive()

        other_ws = tmp_path / "other"
        other_ws.mkdir()
        with pytest.raises(SandboxError, match="another workspace"):
            DockerSandbox(other_ws, goal_id=goal).start()
    finally:
        removed = cleanup_by_label(goal_id=goal)
    assert removed == 1
    assert not third.is_alive()
    client = ensure_docker()
    assert client.containers.list(all=True, filters={"label": f"tenax.goal={goal}"}) == []


@needs_docker
def test_clear_errors_for_missing_image_and_workspace(tmp_path):
    with pytest.raises(SandboxError, match="tenax sandbox build"):
        DockerSandbox(tmp_path, goal_id=_goal(), image="tenax-sandbox:does-not-exist").start()
    with pytest.raises(SandboxError, match="does not exist"):
        DockerSandbox(tmp_path / "missing", goal_id=_goal()).start()
    # ToolBox turns sandbox failures into error outcomes instead of raising.
    outcome = ToolBox(DockerSandbox(tmp_path / "missing", goal_id=_goal())).call("bash", {"command": "true"})
    assert outcome.is_error and "does not exist" in outcome.content


@needs_docker
def test_build_image_says_what_is_missing(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ImageBuildError, match="debootstrap"):
        build_image("tenax-test:never", force=True, log=lambda _m: None)


# -- tools -------------------------------------------------------------------------------------


def test_specs_are_stable_and_well_formed(tmp_path):
    box = ToolBox(DockerSandbox(tmp_path, goal_id="specs-only"))  # specs need no container
    specs = box.specs()
    assert [s.name for s in specs] == ["bash", "read_file", "write_file", "edit_file", "list_files", "grep"]
    assert [s.canonical() for s in specs] == [s.canonical() for s in box.specs()]
    for spec in specs:
        assert spec.parameters["type"] == "object" and len(spec.description) > 40
        assert set(spec.parameters["required"]) <= set(spec.parameters["properties"])
        json.dumps(spec.parameters)


@needs_docker
def test_bash_tool(tools):
    ok = tools.call("bash", {"command": "echo out; echo err >&2; exit 7"})
    assert not ok.is_error  # a failing command is information, not a tool error
    assert "exit code: 7" in ok.content and "out" in ok.content and "--- stderr ---\nerr" in ok.content
    slow = tools.call("bash", {"command": "sleep 30", "timeout": 1})
    assert slow.is_error and "TIMED OUT" in slow.content


@needs_docker
def test_write_read_round_trip_of_tricky_content(tools, sandbox):
    line = "quotes ' \" `id` $(rm -rf /) ${HOME} \\n \\\\ tab\t é 漢字 🚀 \r\n"
    content = line * (200_000 // len(line.encode()) + 1)
    assert len(content.encode()) > 200_000
    w = tools.call("write_file", {"path": "deep/new/dir/tricky.txt", "content": content})
    assert not w.is_error, w.content
    with open(os.path.join(sandbox.workspace, "deep/new/dir/tricky.txt"), encoding="utf-8", newline="") as fh:
        assert fh.read() == content
    r = tools.call("read_file", {"path": "deep/new/dir/tricky.txt", "start_line": 2, "end_line": 3})
    assert not r.is_error
    total = content.count("\n")
    assert r.content.splitlines()[0] == f"deep/new/dir/tricky.txt: lines 2-3 of {total}"
    assert r.content.splitlines()[1] == "2\t" + line.rstrip("\r\n")
    assert len(r.content.splitlines()) == 3
    empty = tools.call("write_file", {"path": "/workspace/empty.txt", "content": ""})
    assert not empty.is_error and os.path.getsize(os.path.join(sandbox.workspace, "empty.txt")) == 0


@needs_docker
def test_read_file_numbering_and_range_errors(tools):
    tools.call("write_file", {"path": "n.txt", "content": "".join(f"line {i}\n" for i in range(1, 11))})
    whole = tools.call("read_file", {"path": "n.txt"})
    assert whole.content.splitlines()[0] == "n.txt: lines 1-10 of 10"
    assert whole.content.splitlines()[10] == "10\tline 10"
    past = tools.call("read_file", {"path": "n.txt", "start_line": 11})
    assert past.is_error and "past the end" in past.content and "10 lines" in past.content
    assert tools.call("read_file", {"path": "nope.txt"}).is_error


@needs_docker
def test_edit_file_unique_match_rules(tools, sandbox):
    tools.call("write_file", {"path": "e.py", "content": "a = 1\nb = 2\na = 1\n"})
    none = tools.call("edit_file", {"path": "e.py", "old": "c = 3", "new": "x"})
    assert none.is_error and "old text not found in e.py" in none.content
    many = tools.call("edit_file", {"path": "e.py", "old": "a = 1", "new": "x"})
    assert many.is_error and "matches 2 times" in many.content and "more context" in many.content
    ok = tools.call("edit_file", {"path": "e.py", "old": "b = 2\na = 1", "new": "b = 'two'\na = $(x)"})
    assert not ok.is_error, ok.content
    assert open(os.path.join(sandbox.workspace, "e.py")).read() == "a = 1\nb = 'two'\na = $(x)\n"


@needs_docker
def test_list_files_and_grep(tools):
    tools.call("write_file", {"path": "pkg/mod.py", "content": "def hello():\n    return 'hi'\n"})
    tools.call("write_file", {"path": "pkg/notes.md", "content": "hello docs\n"})
    tools.call("bash", {"command": "mkdir -p pkg/.git && echo 'hello git' > pkg/.git/x"})
    listing = tools.call("list_files", {"path": "pkg", "max_depth": 2})
    assert not listing.is_error
    assert "pkg/mod.py" in listing.content and "pkg/notes.md" in listing.content and "pkg/.git/" in listing.content
    assert "pkg/.git/x" not in listing.content
    g = tools.call("grep", {"pattern": r"hel+o", "path": "pkg"})
    assert "pkg/mod.py:1: def hello():" in g.content and "pkg/notes.md:1: hello docs" in g.content
    assert ".git" not in g.content
    only_py = tools.call("grep", {"pattern": "hello", "path": "pkg", "glob": "*.py"})
    assert "mod.py" in only_py.content and "notes.md" not in only_py.content
    bad = tools.call("grep", {"pattern": "(unclosed"})
    assert bad.is_error and "invalid regular expression" in bad.content


@needs_docker
def test_paths_outside_workspace_are_refused(tools, sandbox):
    assert sandbox.exec("ln -sfn /etc escape && ln -sfn /tmp tmplink").ok
    cases = [
        ("read_file", {"path": "/etc/passwd"}),
        ("read_file", {"path": "../etc/passwd"}),
        ("read_file", {"path": "pkg/../../etc/passwd"}),
        ("read_file", {"path": "escape/passwd"}),
        ("write_file", {"path": "tmplink/pwned", "content": "x"}),
        ("write_file", {"path": "/tmp/pwned", "content": "x"}),
        ("edit_file", {"path": "escape/hostname", "old": "a", "new": "b"}),
        ("list_files", {"path": ".."}),
        ("grep", {"pattern": "root", "path": "escape"}),
    ]
    for name, args in cases:
        out = tools.call(name, args)
        assert out.is_error and f"path {args['path']} is outside /workspace" in out.content, (name, args, out)
    assert sandbox.exec("test ! -e /tmp/pwned").ok
    # grep over the workspace does not follow a file symlink out of it
    assert sandbox.exec("ln -sfn /etc/passwd pw").ok
    assert "pw:" not in tools.call("grep", {"pattern": "root", "path": "."}).content


@needs_docker
def test_hostile_and_malformed_arguments_never_raise(tools):
    bad_calls = [
        ("no_such_tool", {}),
        (None, {}),
        ("bash", "rm -rf /"),
        ("bash", {}),
        ("bash", {"command": 42}),
        ("bash", {"command": "true", "timeout": "soon"}),
        ("bash", {"command": "true", "timeout": -1}),
        ("bash", {"command": "true", "timeout": float("nan")}),
        ("bash", {"command": "a\x00b"}),
        ("read_file", {"path": "x", "start_line": True}),
        ("read_file", {"path": "x", "start_line": 0}),
        ("read_file", {"path": "x", "start_line": 1.5}),
        ("read_file", {"path": ""}),
        ("write_file", {"path": "x"}),
        ("write_file", {"path": ["a"], "content": "x"}),
        ("edit_file", {"path": "e.py", "old": "", "new": "x"}),
        ("list_files", {"path": ".", "max_depth": 10_000}),
        ("grep", {"pattern": "x", "unexpected": 1}),
    ]
    for name, args in bad_calls:
        out = tools.call(name, args)
        assert out.is_error and out.content, (name, args, out)
