"""The host end of the exec server's channel: a unix socket tenax listens on, in a directory of its
own that is bind-mounted read-only at /run/tenax in the container.

The container's main process forks the server (``BOOT``), which connects to the socket; tenax
checks that the peer is a process of that very container (its cgroup names the container id, its
uid is the sandbox user's), sends it the server's code (``_incontainer.py``) and then one
request at a time, each a frame (``_incontainer.frame``: JSON, then raw bytes such as a command's
output, so large output costs one copy and one decode). The directory holds nothing but the
socket, and the mount is read-only, so the container gets nothing of the host but the one socket
it must reach (no network needed: ``network none`` keeps working). A dead container closes the socket, so tenax
learns of its death from the channel (EOF) without asking the engine.
"""

from __future__ import annotations

import functools
import json
import marshal
import os
import shutil
import socket
import struct
import time
from importlib.util import MAGIC_NUMBER
from pathlib import Path

from tenax.core.ready import readable
from tenax.sandbox._incontainer import FRAME_HEAD, frame

MOUNT = "/run/tenax"
SOCKET_NAME = "s"
_SCRIPT = (Path(__file__).parent / "_incontainer.py").read_bytes()
_MAX_FRAME = 256 * 1024 * 1024

# The container's main process: the parent becomes `sleep infinity` (the main process, as before),
# the child connects to tenax and runs the code it is sent.
BOOT = (
    "import os,socket,time\n"
    "if os.fork():\n os.execvp('sleep',['sleep','infinity'])\n"
    f"p='{MOUNT}/{SOCKET_NAME}'\n"
    "while True:\n"
    " s=socket.socket(socket.AF_UNIX)\n"
    " try:\n  s.connect(p);break\n"
    " except OSError:\n  s.close();time.sleep(0.02)\n"
    "n=int.from_bytes(s.recv(4,socket.MSG_WAITALL),'big')\n"
    "g={'__name__':'tenax_server'};exec(s.recv(n,socket.MSG_WAITALL),g);g['serve'](s,p)\n"
)


@functools.cache
def _payload() -> bytes:
    """What a fresh server runs: its code compiled here, run as is when the container's Python reads
    this Python's bytecode (it then skips compiling it: 8-12 ms under the 1-CPU limit), else its source."""
    code = marshal.dumps(compile(_SCRIPT, "tenax_server", "exec", optimize=0))
    return (f"import marshal,sys\n"
            f"m=getattr(sys.modules.get('_frozen_importlib_external'),'MAGIC_NUMBER',None)\n"
            f"exec(marshal.loads({code!r}) if m=={MAGIC_NUMBER!r} else {_SCRIPT!r})\n").encode()


class ChannelDown(Exception):
    """The channel broke: the server or its container is gone (``before``: before the request was sent)."""

    def __init__(self, before: bool):
        super().__init__("exec channel closed")
        self.before = before


def run_root() -> Path:
    """Where channel directories live: $TENAX_RUN_DIR, else /run/tenax (root), else a per-user /tmp dir."""
    if os.environ.get("TENAX_RUN_DIR"):
        return Path(os.environ["TENAX_RUN_DIR"])
    return Path("/run/tenax") if os.geteuid() == 0 else Path(f"/tmp/tenax-run-{os.geteuid()}")


def new_dir() -> str:
    root = run_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o711)
    path = root / os.urandom(8).hex()
    path.mkdir(mode=0o711)
    return str(path)


def remove_dir(path: str | None) -> None:
    if path and Path(path).parent == run_root():
        shutil.rmtree(path, ignore_errors=True)


def mount_of(attrs: dict) -> str | None:
    """The channel directory a container was created with (None: an older container without one)."""
    for m in attrs.get("Mounts") or []:
        if m.get("Destination") == MOUNT:
            return m.get("Source")
    return None


class Channel:
    """One listening socket and, once the server has connected, its connection."""

    def __init__(self, directory: str, uid: int | None):
        self.directory = directory
        self.path = os.path.join(directory, SOCKET_NAME)
        Path(directory).mkdir(parents=True, exist_ok=True, mode=0o711)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        os.chmod(self.path, 0o600)
        if uid is not None and os.geteuid() == 0:
            os.chown(self.path, uid, uid)
        self.listener.listen(4)
        self.uid = uid
        self.conn: socket.socket | None = None
        self.server_pid: int | None = None

    def connect(self, container_id: str, timeout: float) -> bool:
        """Accept the container's server (and no other peer) within ``timeout`` s and send it its code."""
        deadline = time.monotonic() + timeout
        while self.conn is None:
            left = deadline - time.monotonic()
            if left <= 0 or not readable([self.listener], left):
                return False
            conn, _ = self.listener.accept()
            if not self._is_server(conn, container_id):
                conn.close()
                continue
            try:
                conn.sendall(struct.pack(">I", len(_payload())) + _payload())
                conn.settimeout(max(deadline - time.monotonic(), 1.0))
                hello, _ = self._recv(conn)
                conn.settimeout(None)
            except (OSError, ChannelDown, ValueError):
                conn.close()
                continue
            self.conn, self.server_pid = conn, int(hello["pid"])
        return True

    def _is_server(self, conn: socket.socket, container_id: str) -> bool:
        pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        if self.uid is not None and uid != self.uid:
            return False
        try:
            return container_id in Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return False

    def request(self, req: dict, deadline: float) -> tuple[dict, memoryview]:
        """Send one request and wait for its reply until ``deadline`` s (TimeoutError after it);
        (reply, the raw bytes its ``at`` offsets refer to)."""
        conn = self.conn
        if conn is None:
            raise ChannelDown(before=True)
        if readable([conn], 0):  # EOF already waiting: it died between requests
            self.close()
            raise ChannelDown(before=True)
        try:
            conn.sendall(frame(req))
        except OSError:
            self.close()
            raise ChannelDown(before=True) from None
        try:
            conn.settimeout(deadline)
            return self._recv(conn)
        except socket.timeout:
            self.close()
            raise TimeoutError from None
        except (OSError, ChannelDown, ValueError):
            self.close()
            raise ChannelDown(before=False) from None

    @staticmethod
    def _recv(conn: socket.socket) -> tuple[dict, memoryview]:
        def exactly(n: int) -> memoryview:
            buf = memoryview(bytearray(n))
            got = 0
            while got < n:
                k = conn.recv_into(buf[got:])
                if not k:
                    raise ChannelDown(before=False)
                got += k
            return buf

        n, m = FRAME_HEAD.unpack(exactly(FRAME_HEAD.size))
        if n + m > _MAX_FRAME:
            raise ValueError(f"exec server frame of {n + m} bytes")
        body = exactly(n + m)
        return json.loads(bytes(body[:n])), body[n:]

    def hang_up(self) -> None:
        """End the connection from any thread (a request waiting on it sees EOF at once)."""
        conn = self.conn
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None

    def shutdown(self) -> None:
        self.close()
        try:
            self.listener.close()
        except OSError:
            pass
        try:
            os.unlink(self.path)
        except OSError:
            pass
