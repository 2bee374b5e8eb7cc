"""File tools that run INSIDE the sandbox container, as the unprivileged sandbox user.

The host (tenax.sandbox.tools.ToolBox) runs this file with ``python3 -c`` and hands it the tool
arguments as JSON, either in the env var TENAX_TOOL_ARGS or, for large payloads, in a staged file
named by TENAX_TOOL_ARGS_FILE (deleted after reading). Nothing is interpolated into a shell.
It prints one JSON object: {"ok": bool, "content": str}. Paths are resolved here, in the
container, with realpath semantics, so ``..`` and symlinks pointing outside /workspace are caught.
``cut_middle`` (the truncation every tenax output goes through) lives here so host and container
share one implementation.
Standard library only: the sandbox image has python3 but nothing else.
"""

import fnmatch
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time

ROOT = "/workspace"
SKIP_DIRS = {".git", "node_modules", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".tox"}
MAX_READ_LINES = 2000
MAX_LINE_CHARS = 2000
MAX_LIST_ENTRIES = 500
MAX_GREP_MATCHES = 200
MAX_GREP_FILE_BYTES = 4 * 1024 * 1024


class ToolError(Exception):
    pass


def inside(full):
    return full == ROOT or full.startswith(ROOT + "/")


def resolve(path, name="path"):
    if not isinstance(path, str) or not path.strip():
        raise ToolError(f"{name} must be a non-empty string")
    if "\x00" in path:
        raise ToolError(f"{name} contains a NUL byte")
    full = os.path.realpath(os.path.join(ROOT, path))
    if not inside(full):
        raise ToolError(f"path {path} is outside /workspace; only files under /workspace can be used")
    return full


def rel(full):
    return "." if full == ROOT else os.path.relpath(full, ROOT)


def is_binary(data):
    return b"\x00" in data[:8192]


def op_read(a):
    full = resolve(a.get("path"))
    if os.path.isdir(full):
        raise ToolError(f"{rel(full)} is a directory; use list_files to see what it holds")
    if not os.path.exists(full):
        raise ToolError(f"file {rel(full)} does not exist")
    with open(full, "rb") as fh:
        data = fh.read()
    if is_binary(data):
        raise ToolError(f"{rel(full)} looks binary ({len(data)} bytes); inspect it with bash (e.g. `od -c | head`)")
    lines = data.decode("utf-8", "replace").splitlines()
    total = len(lines)
    start = a.get("start_line") or 1
    end = a.get("end_line") or total
    if total == 0:
        return f"{rel(full)} is empty (0 lines)"
    if start > total:
        raise ToolError(f"start_line {start} is past the end of {rel(full)} ({total} lines)")
    if end < start:
        raise ToolError(f"end_line {end} is before start_line {start}")
    end = min(end, total)
    note = ""
    if end - start + 1 > MAX_READ_LINES:
        end = start + MAX_READ_LINES - 1
        note = f"\n[showing {MAX_READ_LINES} lines; call read_file with start_line={end + 1} to read on]"
    out = [f"{rel(full)}: lines {start}-{end} of {total}"]
    width = len(str(end))
    for n in range(start, end + 1):
        line = lines[n - 1]
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + f" [... line cut at {MAX_LINE_CHARS} of {len(line)} chars]"
        out.append(f"{n:>{width}}\t{line}")
    return "\n".join(out) + note


def _write_text(full, text):
    mode = None
    if os.path.exists(full):
        mode = os.stat(full).st_mode & 0o7777
    tmp = f"{full}.tenax-tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", errors="replace", newline="") as fh:
        fh.write(text)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, full)


def op_write(a):
    full = resolve(a.get("path"))
    content = a.get("content")
    if os.path.isdir(full):
        raise ToolError(f"{rel(full)} is a directory; give a file path")
    parent = os.path.dirname(full)
    try:
        os.makedirs(parent, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ToolError(f"cannot create directory {rel(parent)}: a file is in the way") from None
    existed = os.path.exists(full)
    _write_text(full, content)
    size = len(content.encode("utf-8", "replace"))
    nlines = len(content.splitlines())
    return f"{'overwrote' if existed else 'created'} {rel(full)}: {size} bytes, {nlines} lines"


def op_edit(a):
    full = resolve(a.get("path"))
    old, new = a.get("old"), a.get("new")
    if old == "":
        raise ToolError("old must not be empty; to create or replace a whole file use write_file")
    if old == new:
        raise ToolError("old and new are identical; nothing would change")
    if not os.path.isfile(full):
        raise ToolError(f"file {rel(full)} does not exist")
    with open(full, "rb") as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{rel(full)} is not UTF-8 text; edit it with bash instead") from None
    count = text.count(old)
    if count == 0:
        raise ToolError(
            f"old text not found in {rel(full)}; it must match exactly, including whitespace and "
            "indentation (use read_file to see the current content)"
        )
    if count > 1:
        raise ToolError(f"old text matches {count} times in {rel(full)}; include more context to make it unique")
    idx = text.index(old)
    _write_text(full, text[:idx] + new + text[idx + len(old) :])
    first = text.count("\n", 0, idx) + 1
    last = first + new.count("\n")
    return f"edited {rel(full)}: replaced 1 occurrence; new text is at lines {first}-{last}"


def op_list(a):
    full = resolve(a.get("path") or ".")
    depth = a.get("max_depth") or 3
    if not os.path.exists(full):
        raise ToolError(f"{rel(full)} does not exist")
    if not os.path.isdir(full):
        return rel(full)
    entries = []
    more = False

    def walk(d, level):
        nonlocal more
        try:
            names = sorted(os.listdir(d))
        except OSError as exc:
            entries.append(f"{rel(d)}/ [unreadable: {exc.strerror}]")
            return
        for name in names:
            if len(entries) >= MAX_LIST_ENTRIES:
                more = True
                return
            p = os.path.join(d, name)
            r = rel(p)
            if os.path.islink(p):
                entries.append(f"{r} -> {os.readlink(p)}")
            elif os.path.isdir(p):
                skipped = name in SKIP_DIRS
                entries.append(f"{r}/" + (" [not expanded]" if skipped and level < depth else ""))
                if level < depth and not skipped:
                    walk(p, level + 1)
            else:
                entries.append(r)

    walk(full, 1)
    if not entries:
        return f"{rel(full)}/ is empty"
    head = f"{rel(full)}/ (depth {depth}, {len(entries)} entries)"
    tail = f"\n[stopped at {MAX_LIST_ENTRIES} entries; list a subdirectory or lower max_depth]" if more else ""
    return head + "\n" + "\n".join(entries) + tail


def op_grep(a):
    full = resolve(a.get("path") or ".")
    pattern = a.get("pattern")
    glob = a.get("glob")
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ToolError(f"invalid regular expression {pattern!r}: {exc}") from None
    if not os.path.exists(full):
        raise ToolError(f"{rel(full)} does not exist")
    if os.path.isdir(full):
        files = []
        for dirpath, dirnames, filenames in os.walk(full):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            files.extend(os.path.join(dirpath, f) for f in sorted(filenames))
    else:
        files = [full]
    matches = []
    more = False
    for f in files:
        r = rel(f)
        if glob and not (fnmatch.fnmatch(os.path.basename(f), glob) or fnmatch.fnmatch(r, glob)):
            continue
        real = os.path.realpath(f)
        if not inside(real) or not os.path.isfile(real):
            continue
        try:
            if os.path.getsize(real) > MAX_GREP_FILE_BYTES:
                continue
            with open(real, "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        if is_binary(data):
            continue
        for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if rx.search(line):
                if len(matches) >= MAX_GREP_MATCHES:
                    more = True
                    break
                if len(line) > 300:
                    line = line[:300] + " [...]"
                matches.append(f"{r}:{n}: {line}")
        if more:
            break
    if not matches:
        return f"no matches for {pattern!r} in {rel(full)}" + (f" (glob {glob!r})" if glob else "")
    tail = f"\n[stopped at {MAX_GREP_MATCHES} matches; narrow the pattern, path or glob]" if more else ""
    return "\n".join(matches) + tail


NOT_KEPT = "the full output was not kept"
# One cut's marker, newlines included. Every cut states the bytes and lines it really dropped;
# a later cut that drops a marker adds that marker's counts to its own, so no count is lost.
MARKER = re.compile(r"\n\[\.\.\. (\d+) bytes \((\d+) lines\) cut here; ([^\]\n]*) \.\.\.\]\n")


def marker(nbytes, nlines, where=NOT_KEPT):
    return f"\n[... {nbytes} bytes ({nlines} lines) cut here; {where} ...]\n"


def cut_middle(text, limit, where=NOT_KEPT):
    """Keep the head and tail of ``text`` within about ``limit`` characters; return (text, bytes
    dropped). The host (tenax.sandbox) uses this same function."""
    if not limit or len(text) <= limit:
        return text, 0
    room = max(limit - len(marker(10**12, 10**9, where)), 2)
    head_end, tail_start = room // 2, len(text) - (room - room // 2)
    for m in MARKER.finditer(text):  # never split a marker: drop it whole instead
        if m.start() < head_end < m.end():
            head_end = m.start()
        if m.start() < tail_start < m.end():
            tail_start = m.end()
    dropped = text[head_end:tail_start]
    nbytes, nlines = len(dropped.encode("utf-8", "replace")), dropped.count("\n")
    for m in MARKER.finditer(dropped):
        nbytes += int(m[1]) - len(m[0].encode("utf-8", "replace"))
        nlines += int(m[2]) - m[0].count("\n")
    return text[:head_end] + marker(nbytes, nlines, where) + text[tail_start:], nbytes


OPS = {"read": op_read, "write": op_write, "edit": op_edit, "list": op_list, "grep": op_grep}


def file_op(args):
    """Run one file tool; {"ok": bool, "content": str}, content cut to args["limit"]."""
    try:
        limit = args.pop("limit", 0)
        return {"ok": True, "content": cut_middle(OPS[args.pop("op")](args), limit)[0]}
    except ToolError as exc:
        return {"ok": False, "content": str(exc)}
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        return {"ok": False, "content": f"{exc.strerror or exc}{where}".replace(ROOT + "/", "")}


# -- running commands: the exec server and its one-shot (docker exec) twin ------------------------


class StreamBuffer:
    """Keeps the first and the last ``cap`` bytes of an unbounded stream, and counts all of it."""

    def __init__(self, cap):
        self.cap = cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.lines = 0

    def add(self, data):
        self.total += len(data)
        self.lines += data.count(b"\n")
        room = self.cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        if len(self.tail) > 2 * self.cap:
            del self.tail[: len(self.tail) - self.cap]

    def wire(self, blobs):
        """Its JSON form; its bytes (head, then tail) are appended to ``blobs``, raw, at ``at``."""
        if len(self.tail) > self.cap:
            del self.tail[: len(self.tail) - self.cap]
        at = sum(map(len, blobs))
        blobs += [self.head, self.tail]
        return {"at": at, "head": len(self.head), "tail": len(self.tail), "total": self.total, "lines": self.lines}

    def _end(self):
        """The stream's last bytes held (all of it when nothing was dropped in the middle)."""
        gap = self.total - len(self.head) - len(self.tail)
        return bytes(self.tail) if gap else b"".join((self.head, self.tail))

    def text(self, limit):
        """The stream as text: at most ``limit`` bytes of it kept (head and tail), with a marker
        stating exactly how many bytes and lines were dropped between them; (text, bytes dropped)."""
        if self.total <= limit:
            whole = [part for part in (self.head, self.tail) if part]  # one part: decoded in place, no copy
            return str(whole[0] if len(whole) == 1 else b"".join(whole), "utf-8", "replace"), 0
        head = bytes(self.head[: min(limit // 2, len(self.head))])
        while len(head) < len(self.head) and head and self.head[len(head)] & 0xC0 == 0x80:
            head = head[:-1]  # do not end inside a UTF-8 character
        end = self._end()
        tail = end[len(end) - (limit - limit // 2) :]
        while tail and tail[0] & 0xC0 == 0x80:  # nor start inside one
            tail = tail[1:]
        dropped = self.total - len(head) - len(tail)
        lines = self.lines - head.count(b"\n") - tail.count(b"\n")
        text = head.decode("utf-8", "replace") + marker(dropped, lines, NOT_KEPT) + tail.decode("utf-8", "replace")
        return text, dropped

    @classmethod
    def from_wire(cls, cap, w, raw):
        """The buffer ``wire`` sent, to read (``text``): ``w`` its JSON form, ``raw`` the frame's bytes
        (a memoryview: head and tail are views of it, not copies)."""
        buf = cls(cap)
        at, mid = w["at"], w["at"] + w["head"]
        buf.head, buf.tail = raw[at:mid], raw[mid : mid + w["tail"]]
        buf.total, buf.lines = w["total"], w["lines"]
        return buf


def oom_kills():
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as fh:
                return next((int(v) for k, v in (line.split() for line in fh) if k == "oom_kill"), 0)
        except (OSError, ValueError):
            continue
    return 0


def _processes(skip):
    """{pid: (ppid, start time, TENAX_EXEC marker, TENAX_JOB)} of the container's live processes.

    An orphan whose environment reads as empty is read again a few milliseconds later (twice at
    most, all of them at once): a process inside execve shows an empty environment until the new
    program's is in place, and a job just forked off by its exec looked like an orphan that had
    cleared its environment (``env -i``, which stays empty) and was killed."""
    found, empty = {}, []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] in (b"Z", b"X"):
            continue
        env = _environ(pid)
        if not env and fields[1] == b"1":
            empty.append(pid)
        found[pid] = (int(fields[1]), int(fields[19]), *_markers(env))
    for wait in (0.003, 0.01):
        if not empty:
            break
        time.sleep(wait)
        again = [(pid, _environ(pid)) for pid in empty]
        for pid, env in again:
            if env:
                found[pid] = (*found[pid][:2], *_markers(env))
        empty = [pid for pid, env in again if not env]
    return found


def _environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return fh.read()
    except OSError:
        return b""  # gone, or not ours to read


def _markers(env):
    """(TENAX_EXEC, TENAX_JOB) of a process's environment (None when absent)."""
    marker_ = job = None
    for kv in env.split(b"\0"):
        if kv.startswith(b"TENAX_EXEC="):
            marker_ = kv[11:].decode("ascii", "replace")
        elif kv.startswith(b"TENAX_JOB="):
            job = kv[10:].decode("utf-8", "replace")
    return marker_, job


def reap(nonce, jobs, spare=()):
    """Kill what an exec left behind (``nonce``: processes carrying TENAX_EXEC=nonce, orphans that
    cleared their environment, and their descendants), or with ``nonce=None`` every process but
    init, the container's main process and this one. Processes of ``jobs`` survive. No fork, no
    thread: a fork bomb may have used up the pids limit. Returns (killed, could not be killed)."""
    skip = {1, os.getpid(), *spare}
    seen, victims = set(), set()
    deadline = time.monotonic() + 2  # a killed process lingers until the kernel has torn it down
    while True:
        procs = _processes(skip)
        orphans = [(start, pid) for pid, (ppid, start, _m, _j) in procs.items() if ppid == 1]
        main = min(orphans)[1] if orphans else None
        spared = {pid for pid, p in procs.items() if p[3] is not None and p[3] in jobs} | {main}
        victims = {pid for pid, (ppid, _s, mark, _j) in procs.items() if pid not in spared
                   and (nonce is None or mark == nonce or (mark is None and ppid == 1))}
        grew = True
        while grew:  # and every descendant of a victim
            more = {pid for pid, p in procs.items() if p[0] in victims and pid not in spared and pid not in victims}
            victims |= more
            grew = bool(more)
        if not victims or time.monotonic() > deadline:
            break
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in victims:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        if victims <= seen:
            time.sleep(0.002)
        seen |= victims
    return len(seen), len(victims)


CLEAN_PROFILE = "[ -r /etc/profile ] && . /etc/profile >/dev/null 2>&1\n"  # a check's only startup file


def shell(req):
    """The argv of a request's shell: a login shell (``bash -lc``), or for a check (``clean``) one that
    reads the system's /etc/profile and none of the user's startup files (~/.bash_profile, ~/.profile,
    ~/.bashrc are the sandbox user's to write)."""
    if req.get("clean"):
        return ["bash", "--noprofile", "--norc", "-c", CLEAN_PROFILE + req["command"]]
    return ["bash", "-lc", req["command"]]


def run(req, cancel=None):
    """Run the request's shell (``shell``) in its own session with the in-container timeout (TERM to its
    process group, KILL ``grace`` s later), capture stdout/stderr head and tail, then reap what it left.
    ``cancel``: a socket whose EOF (the host is gone) kills the command."""
    nonce, secs, cap = req["nonce"], float(req["timeout"]), int(req["cap"])
    out, err = StreamBuffer(cap), StreamBuffer(cap)
    oom_before, t0 = oom_kills(), time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENAX_")}
    env.update(req.get("env") or {}, TENAX_EXEC=nonce)
    rc, timed_out = 126, False
    try:
        proc = subprocess.Popen(shell(req), cwd=req.get("cwd") or ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        err.add(f"tenax: cannot run the command: {exc.strerror or exc}: {exc.filename or ''}\n".encode())
        proc = None
    if proc is not None:
        rc, timed_out = _pump(proc, {proc.stdout.fileno(): out, proc.stderr.fileno(): err}, t0 + secs,
                              float(req["grace"]), cancel)
    reaped, left = reap(nonce, set(req.get("jobs") or ()), req.get("spare") or ())
    if proc is not None:  # what the reaped processes still held open
        _drain({proc.stdout.fileno(): out, proc.stderr.fileno(): err}, time.monotonic() + 2)
        proc.stdout.close()
        proc.stderr.close()
    blobs = []
    return {"rc": rc, "timed_out": timed_out, "reaped": reaped, "left": left, "oom": oom_kills() - oom_before,
            "duration": time.monotonic() - t0, "out": out.wire(blobs), "err": err.wire(blobs)}, blobs


def _drain(pipes, until):
    while pipes:
        ready, _, _ = select.select(list(pipes), [], [], max(until - time.monotonic(), 0))
        if not ready:
            return
        for fd in ready:
            _read_into(pipes, fd)


def _read_into(pipes, fd):
    data = os.read(fd, 65536)
    if data:
        pipes[fd].add(data)
    else:
        del pipes[fd]


def _pump(proc, pipes, deadline, grace, cancel):
    """Read the pipes until the command exits; returns (exit code, timed out)."""
    pipes = dict(pipes)
    try:
        exited = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        exited = None
    killed = None  # the signal the timeout sent last
    while True:
        if proc.poll() is not None:
            break
        now = time.monotonic()
        if now >= deadline:
            sig = signal.SIGTERM if killed is None else signal.SIGKILL
            try:
                os.killpg(proc.pid, sig)
            except OSError:
                pass
            killed, deadline = sig, now + (grace if killed is None else 3600)
            continue
        watch = list(pipes) + [fd for fd in (exited, cancel) if fd is not None]
        ready, _, _ = select.select(watch, [], [], deadline - now if exited is not None else min(deadline - now, 0.005))
        for fd in ready:
            if fd in pipes:
                _read_into(pipes, fd)
            elif fd is cancel:
                if not cancel.recv(1, socket.MSG_PEEK):  # the host hung up: end the command now
                    deadline, killed = 0, signal.SIGTERM
                cancel = None
    if exited is not None:
        os.close(exited)
    rc = proc.returncode
    if killed is not None:
        return (137 if killed == signal.SIGKILL else 124), True
    return (128 - rc if rc < 0 else rc), False


# A frame, both ways: its JSON's length and its raw bytes' length (>II), the JSON (UTF-8), the raw
# bytes (a command's output, sent as is: no base64, no escaping, decoded once on the host).
FRAME_HEAD = struct.Struct(">II")


def frame(obj, blobs=()):
    data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return b"".join([FRAME_HEAD.pack(len(data), sum(map(len, blobs))), data, *blobs])


def unframe(data):
    """(JSON object, raw bytes as a memoryview) of one whole frame; ValueError when it is not one."""
    if len(data) < FRAME_HEAD.size:
        raise ValueError("short frame")
    n, m = FRAME_HEAD.unpack_from(data)
    if len(data) != FRAME_HEAD.size + n + m:
        raise ValueError(f"frame of {len(data)} bytes, not {FRAME_HEAD.size + n + m}")
    view = memoryview(data)
    return json.loads(bytes(view[FRAME_HEAD.size : FRAME_HEAD.size + n])), view[FRAME_HEAD.size + n :]


def _recv(sock):
    head = sock.recv(FRAME_HEAD.size, socket.MSG_WAITALL)
    if len(head) < FRAME_HEAD.size:
        return None
    n, m = FRAME_HEAD.unpack(head)
    data = sock.recv(n + m, socket.MSG_WAITALL) if n + m else b""
    return json.loads(data[:n]) if len(data) == n + m else None


def handle(req, conn=None):
    """One request; (reply, raw bytes the reply refers to)."""
    op = req.pop("op")
    if op == "run":
        return run(req, conn)
    if op == "reap":
        return dict(zip(("reaped", "left"), reap(None, set(req.get("jobs") or ()), req.get("spare") or ()))), []
    return file_op(req["args"]), []


def serve(conn, path=None):
    """The exec server: one request at a time over ``conn``; when the host goes away, wait for the
    next one to listen at ``path`` again (a resumed goal) and serve it."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    while True:
        try:
            conn.sendall(frame({"pid": os.getpid()}))
            while True:
                req = _recv(conn)
                if req is None:
                    break
                try:
                    reply, blobs = handle(req, conn)
                except OSError as exc:
                    reply, blobs = {"error": f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")}, []
                conn.sendall(frame(reply, blobs))
        except (OSError, ValueError):
            pass
        conn.close()
        while path:
            time.sleep(0.02)  # a re-attaching host (a resumed goal, a claimed pool container) waits for this
            conn = socket.socket(socket.AF_UNIX)
            try:
                conn.connect(path)
                (n,) = struct.unpack(">I", conn.recv(4, socket.MSG_WAITALL))
                conn.recv(n, socket.MSG_WAITALL)  # tenax always sends the code first; this one runs it
                break
            except (OSError, struct.error):
                conn.close()
        else:
            return


def main():
    if "TENAX_REQ" in os.environ:  # one exec or reap over docker exec (the fallback, and checks)
        req = json.loads(os.environ.pop("TENAX_REQ"))
        sys.stdout.buffer.write(frame(*handle(req)))
        return
    if os.environ.get("TENAX_TOOL_ARGS_FILE"):
        path = os.environ["TENAX_TOOL_ARGS_FILE"]
        with open(path, encoding="utf-8") as fh:
            args = json.load(fh)
        os.unlink(path)
        result = file_op(args)
    else:
        result = file_op(json.loads(os.environ["TENAX_TOOL_ARGS"]))
    sys.stdout.write(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
