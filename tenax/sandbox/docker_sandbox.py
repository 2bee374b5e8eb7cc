"""Hardened Docker sandbox (docker-py): one long-lived container per goal.

Model-issued commands never run on the host. The container runs as a non-root user with
``cap_drop=ALL``, ``no-new-privileges``, memory/pids/cpu limits, ``--init``, no network unless
asked, no host environment and never the docker socket. Containers carry the labels ``tenax=1``
and ``tenax.goal=<id>`` and are cleaned up by label. Every exec is wrapped in coreutils
``timeout``, which runs the command in its own process group and signals the whole group, so a
timeout really kills the command's process tree *inside* the container.
"""

from __future__ import annotations

import io
import os
import re
import select
import struct
import tarfile
import threading
import time
from collections import deque
from pathlib import Path

import docker
from docker.errors import APIError, ImageNotFound, NotFound

from tenax.core.errors import SandboxError
from tenax.core.protocols import ExecResult
from tenax.sandbox._docker import DEFAULT_IMAGE, SANDBOX_GID, SANDBOX_UID, WORKDIR, ensure_docker

KILL_AFTER_S = 2  # SIGKILL this long after SIGTERM when the command ignores TERM
_TIMEOUT_NOTE = re.compile(r"^timeout: sending signal \w+ to command .bash.$")
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.-]+")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def cleanup_by_label(client: docker.DockerClient | None = None, goal_id: str | None = None) -> int:
    """Force-remove tenax containers (all of them, or one goal's); return how many were removed."""
    client = client or ensure_docker()
    labels = ["tenax=1"] + ([f"tenax.goal={goal_id}"] if goal_id is not None else [])
    removed = 0
    for container in client.containers.list(all=True, filters={"label": labels}):
        try:
            container.remove(force=True)
            removed += 1
        except NotFound:
            pass
    return removed


def truncate_middle(text: str, limit: int) -> tuple[str, int]:
    """Keep the head and tail of ``text`` within ``limit`` characters; return (text, bytes cut)."""
    if limit <= 0 or len(text) <= limit:
        return text, 0
    head, tail = text[: limit // 2], text[len(text) - (limit - limit // 2) :]
    cut = len(text.encode("utf-8", "surrogateescape")) - len(head.encode("utf-8", "surrogateescape"))
    cut -= len(tail.encode("utf-8", "surrogateescape"))
    return f"{head}\n[... {cut} bytes truncated ...]\n{tail}", cut


class _StreamBuffer:
    """Keeps at most ``cap`` bytes of head and ``cap`` bytes of tail of an unbounded stream."""

    def __init__(self, cap: int):
        self.cap = cap
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_len = 0
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail.append(data)
            self.tail_len += len(data)
            while self.tail_len - len(self.tail[0]) >= self.cap:
                self.tail_len -= len(self.tail.popleft())

    def text(self, limit: int) -> tuple[str, int]:
        tail = b"".join(self.tail)
        if self.total == len(self.head) + len(tail):  # nothing dropped yet
            return truncate_middle((bytes(self.head) + tail).decode("utf-8", "replace"), limit)
        tail = tail[-self.cap :]
        head_s = bytes(self.head).decode("utf-8", "replace")[: limit // 2]
        tail_s = tail.decode("utf-8", "replace")[-(limit - limit // 2) :]
        cut = self.total - len(head_s.encode()) - len(tail_s.encode())
        return f"{head_s}\n[... {cut} bytes truncated ...]\n{tail_s}", cut


def _read_frames(sock, out: _StreamBuffer, err: _StreamBuffer, stop: threading.Event) -> None:
    """Read docker's multiplexed stdout/stderr frames from a hijacked exec socket until EOF."""

    def read_exactly(n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            if stop.is_set():
                return None
            ready, _, _ = select.select([sock], [], [], 0.5)
            if not ready:
                continue
            chunk = sock.recv(n - len(buf)) if hasattr(sock, "recv") else sock.read(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    while True:
        header = read_exactly(8)
        if header is None:
            return
        stream, size = struct.unpack(">BxxxL", header)
        payload = read_exactly(size) if size else b""
        if payload is None:
            return
        (err if stream == 2 else out).add(payload)


class DockerSandbox:
    """One hardened container per goal, with ``workspace`` bind-mounted read-write at /workspace.

    User: when the workspace is owned by a non-root host uid, commands run as that uid:gid so
    files stay the owner's. When it is owned by root (e.g. CI running as root), commands run as
    the image's ``tenax`` user (10001:10001) and ``start()`` recursively chowns the workspace to
    10001:10001 so the sandbox can write it (it never follows symlinks while doing so).

    ``start()`` re-attaches to an existing container of the same goal (label ``tenax.goal``),
    name and workspace, so a resumed goal keeps its container state.
    """

    def __init__(
        self,
        workspace: str | Path,
        *,
        goal_id: str,
        image: str = DEFAULT_IMAGE,
        network: str = "none",
        mem_limit: str = "2g",
        pids_limit: int = 512,
        cpus: float = 1.0,
        labels: dict | None = None,
        name_suffix: str = "",
        max_output_chars: int = 20_000,
        client: docker.DockerClient | None = None,
    ):
        if not goal_id or not isinstance(goal_id, str):
            raise SandboxError("DockerSandbox needs a non-empty goal_id")
        self.workspace = str(Path(workspace).expanduser().resolve())
        self.goal_id = goal_id
        self.image = image
        self.network = network or "none"
        self.mem_limit = mem_limit
        self.pids_limit = int(pids_limit)
        self.cpus = float(cpus)
        self.extra_labels = {str(k): str(v) for k, v in (labels or {}).items()}
        self.name = _NAME_BAD.sub("-", f"tenax-{goal_id}{name_suffix}").strip("-.")[:200]
        self.max_output_chars = max_output_chars
        self.user: str | None = None
        self._client = client
        self._container = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = ensure_docker()
        return self._client

    @property
    def container(self):
        if self._container is None:
            raise SandboxError("sandbox not started: call start() first")
        return self._container

    @property
    def labels(self) -> dict[str, str]:
        return {**self.extra_labels, "tenax": "1", "tenax.goal": self.goal_id}

    def _prepare_workspace(self) -> str:
        ws = Path(self.workspace)
        if not ws.is_dir():
            raise SandboxError(f"workspace {ws} does not exist or is not a directory; create it first")
        st = ws.stat()
        if st.st_uid != 0:
            return f"{st.st_uid}:{st.st_gid}"
        # Root-owned workspace: hand it to the sandbox user (never following symlinks).
        for dirpath, dirnames, filenames in os.walk(ws):
            for name in [*dirnames, *filenames]:
                os.lchown(os.path.join(dirpath, name), SANDBOX_UID, SANDBOX_GID)
        os.lchown(ws, SANDBOX_UID, SANDBOX_GID)
        return f"{SANDBOX_UID}:{SANDBOX_GID}"

    def _find_existing(self):
        filters = {"label": ["tenax=1", f"tenax.goal={self.goal_id}"], "name": self.name}
        for c in self.client.containers.list(all=True, filters=filters):
            if c.name != self.name:
                continue
            mounts = c.attrs.get("Mounts") or []
            if any(m.get("Destination") == WORKDIR and m.get("Source") == self.workspace for m in mounts):
                return c
            raise SandboxError(
                f"container {self.name} for goal {self.goal_id} exists but mounts another workspace; "
                f"remove it with `tenax sandbox cleanup --goal {self.goal_id}`"
            )
        return None

    def _create(self):
        try:
            self.client.images.get(self.image)
        except ImageNotFound:
            raise SandboxError(
                f"sandbox image {self.image} is missing; run `tenax sandbox build` (or `make setup`) to build it"
            ) from None
        kwargs = dict(
            image=self.image,
            command=["sleep", "infinity"],
            name=self.name,
            labels=self.labels,
            detach=True,
            user=self.user,
            working_dir=WORKDIR,
            volumes={self.workspace: {"bind": WORKDIR, "mode": "rw"}},
            environment={
                "HOME": "/home/tenax" if self.user == f"{SANDBOX_UID}:{SANDBOX_GID}" else "/tmp",
                # Agents edit and re-run within the same second; a same-size edit would then be
                # shadowed by a stale .pyc (its mtime check has one-second resolution).
                "PYTHONDONTWRITEBYTECODE": "1",
            },
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=self.pids_limit,
            mem_limit=self.mem_limit,
            memswap_limit=self.mem_limit,
            nano_cpus=int(self.cpus * 1e9),
            init=True,
            network_mode=self.network,
            stdin_open=False,
            tty=False,
        )
        try:
            return self.client.containers.run(**kwargs)
        except APIError as exc:
            raise SandboxError(f"could not create sandbox container {self.name}: {exc.explanation or exc}") from exc

    def start(self) -> None:
        self.user = self._prepare_workspace()
        container = self._find_existing()
        if container is None:
            container = self._create()
        else:
            self.user = container.attrs.get("Config", {}).get("User") or self.user
            if container.status != "running":
                try:
                    container.start()
                except APIError as exc:
                    raise SandboxError(
                        f"could not restart sandbox container {self.name}: {exc.explanation or exc}"
                    ) from exc
        self._container = container
        self._wait_running()

    def _wait_running(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.container.reload()
            if self.container.status == "running":
                return
            if self.container.status in ("exited", "dead") or time.monotonic() > deadline:
                logs = self.container.logs(tail=20).decode("utf-8", "replace")
                raise SandboxError(f"sandbox container {self.name} is {self.container.status}, not running: {logs}")
            time.sleep(0.1)

    def is_alive(self) -> bool:
        if self._container is None:
            return False
        try:
            self._container.reload()
        except (NotFound, APIError):
            return False
        return self._container.status == "running"

    def stop(self, remove: bool = True) -> None:
        if self._container is None:
            return
        try:
            if remove:
                self._container.remove(force=True)
            else:
                self._container.stop(timeout=2)
        except NotFound:
            pass
        except APIError as exc:
            raise SandboxError(f"could not stop sandbox container {self.name}: {exc.explanation or exc}") from exc
        if remove:
            self._container = None

    def halt(self) -> None:
        """Stop the container (and so everything running in it), keeping it for ``start()``."""
        self.stop(remove=False)

    def _revive(self) -> None:
        """Restart the dead container (or recreate it if it is gone)."""
        try:
            self.container.reload()
            self.container.start()
        except NotFound:
            self._container = None
            self._container = self._create()
        except APIError as exc:
            raise SandboxError(f"sandbox container {self.name} died and could not be restarted: {exc}") from exc
        self._wait_running()

    # -- exec --------------------------------------------------------------------------------

    def exec(
        self,
        command: str,
        *,
        timeout: float = 120.0,
        cwd: str = WORKDIR,
        env: dict[str, str] | None = None,
        max_output_chars: int | None = None,
    ) -> ExecResult:
        """Run ``bash -lc command`` in the container, killing its process tree after ``timeout`` s.

        Each of stdout/stderr is cut to ``max_output_chars`` (default: the sandbox's) keeping
        head and tail, with a ``[... N bytes truncated ...]`` note; ``truncated_bytes`` says how
        much was dropped.
        On timeout ``timed_out`` is True and the exit code is 124 (TERM) or 137 (KILL).
        Raises SandboxError when the container is gone and cannot be revived.
        """
        if not isinstance(command, str):
            raise SandboxError("command must be a string")
        if "\x00" in command:
            raise SandboxError("command contains a NUL byte")
        timeout = float(timeout)
        if not timeout > 0:
            raise SandboxError(f"timeout must be > 0 seconds, got {timeout}")
        environment = {}
        for k, v in (env or {}).items():
            if not isinstance(k, str) or not _ENV_KEY.match(k):
                raise SandboxError(f"invalid environment variable name {k!r}")
            if not isinstance(v, str) or "\x00" in v:
                raise SandboxError(f"environment variable {k} must be a string without NUL bytes")
            environment[k] = v
        argv = ["timeout", "--verbose", f"--kill-after={KILL_AFTER_S}", "-s", "TERM", f"{timeout:.3f}"]
        argv += ["bash", "-lc", command]
        if self._container is None:
            self.start()
        elif not self.is_alive():
            self._revive()
        for attempt in (1, 2):
            try:
                return self._exec_once(argv, timeout, cwd, environment, max_output_chars or self.max_output_chars)
            except (NotFound, APIError) as exc:
                if attempt == 2 or self.is_alive():
                    explanation = getattr(exc, "explanation", None) or str(exc)
                    raise SandboxError(f"exec in sandbox {self.name} failed: {explanation}") from exc
                self._revive()
        raise AssertionError("unreachable")

    def _exec_once(self, argv: list[str], timeout: float, cwd: str, env: dict[str, str], limit: int) -> ExecResult:
        api = self.client.api
        exec_id = api.exec_create(
            self.container.id, argv, stdout=True, stderr=True, environment=env or None, workdir=cwd, user=self.user or ""
        )["Id"]
        started = time.monotonic()
        sock = api.exec_start(exec_id, socket=True)
        cap = max(4 * limit, 4096)
        out, err = _StreamBuffer(cap), _StreamBuffer(cap)
        stop = threading.Event()
        reader = threading.Thread(target=_read_frames, args=(sock, out, err, stop), daemon=True)
        reader.start()
        # The in-container timeout ends the exec; this host-side deadline is only a backstop.
        reader.join(timeout + KILL_AFTER_S + 15)
        hung = reader.is_alive()
        stop.set()
        reader.join(5)
        try:
            sock.close()
        except OSError:
            pass
        exit_code = None
        for _ in range(50):
            info = api.exec_inspect(exec_id)
            if not info.get("Running"):
                exit_code = info.get("ExitCode")
                break
            if hung:
                break
            time.sleep(0.05)
        duration = time.monotonic() - started
        stdout, cut_out = out.text(limit)
        stderr, cut_err = err.text(limit)
        timed_out = hung
        if exit_code in (124, 137):
            lines = stderr.split("\n")
            kept = [ln for ln in lines if not _TIMEOUT_NOTE.match(ln)]
            if len(kept) != len(lines):
                timed_out = True
                stderr = "\n".join(kept)
        if exit_code is None:
            exit_code = 124 if hung else -1
        if exit_code == 126 and stdout.startswith("OCI runtime exec failed") and not stderr:
            # The engine reports a failed exec start (e.g. a missing cwd) on stdout; it is an error.
            stdout, stderr = "", stdout.strip() + "\n"
        return ExecResult(
            exit_code=exit_code,
            stdout=stdout,
            stderr=stderr,
            timed_out=timed_out,
            duration_s=round(duration, 3),
            truncated_bytes=cut_out + cut_err,
        )

    # -- files -------------------------------------------------------------------------------

    def put_file(self, directory: str, name: str, data: bytes, mode: int = 0o600) -> None:
        """Copy ``data`` into the container as ``directory/name`` owned by the sandbox user.

        ``directory`` must already exist; used to stage payloads in /tmp (tools then move them
        into the workspace as the unprivileged user, after checking the path).
        """
        if "/" in name or name in ("", ".", ".."):
            raise SandboxError(f"invalid file name {name!r}")
        uid, _, gid = (self.user or f"{SANDBOX_UID}:{SANDBOX_GID}").partition(":")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.uid, info.gid = int(uid), int(gid or uid)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
        if self._container is None:
            self.start()
        try:
            self.container.put_archive(directory, buf.getvalue())
        except (NotFound, APIError) as exc:
            raise SandboxError(f"could not copy a file into sandbox {self.name}: {exc}") from exc

    def __enter__(self) -> "DockerSandbox":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
