"""Hardened Docker sandbox (docker-py): one long-lived container per goal.

Model-issued commands never run on the host. The container runs as a non-root user with
``cap_drop=ALL``, ``no-new-privileges``, memory/pids/cpu limits, ``--init``, no network unless
asked, no host environment and never the docker socket. Its root filesystem is read-only; /tmp,
/var/tmp and the home directory are size-capped tmpfs, so only /workspace (the bind-mounted
host directory) can grow on the host disk. Containers carry the labels ``tenax=1`` and
``tenax.goal=<id>`` and are cleaned up by label. With an egress allowlist the container joins the
goal's internal network, its only way out the filtering proxy named in its environment (``egress``).

Every exec runs through ``_incontainer.run`` inside the container: the command runs in its own
session under the in-container timeout with a per-exec marker in its environment, and when it
returns every process it left behind (``cmd &``, ``setsid``, ``nohup``, even ones that cleared
their environment) is killed, unless it was started as a job. It runs in the exec server, a
long-lived process the container starts with, reached over a unix socket (see ``_channel``); when
the server is gone, and for checks (``retry_on_restart``), one ``docker exec`` runs the same code
once. A container that died (killed, OOM-killed, removed) is noticed from the channel's EOF (or a
failed docker exec), replaced by a fresh one over the same workspace, and the result's ``note``
says so.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import threading
import time
import uuid
from pathlib import Path

import docker
from docker.errors import APIError, ImageNotFound, NotFound

from tenax.core.errors import SandboxError
from tenax.core.protocols import ExecResult
from tenax.core.ready import readable
from tenax.sandbox import _channel
from tenax.sandbox._channel import BOOT, Channel, ChannelDown
from tenax.sandbox._docker import DEFAULT_IMAGE, SANDBOX_GID, SANDBOX_UID, WORKDIR, ensure_docker
from tenax.sandbox._incontainer import StreamBuffer, cut_middle, unframe
from tenax.sandbox._slots import POOL_LABEL, bind_workspace, release_slot
from tenax.sandbox.egress import cleanup_egress

KILL_AFTER_S = 2  # SIGKILL this long after SIGTERM when the command ignores TERM
HOME = "/home/tenax"
_SCRIPT = (Path(__file__).parent / "_incontainer.py").read_text(encoding="utf-8")
# one request over docker exec; -I -S: no user site directory, no .pth files, no usercustomize (the sandbox
# user's home is writable, and code planted there would run inside a goal's check and could fake its result)
_ONCE = ["python3", "-I", "-S", "-c", "import os; exec(os.environ.pop('TENAX_PY'))"]
CONNECT_S = 5.0  # how long the first exec waits for a fresh container's exec server
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.-]+")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_ENV = ("TENAX_EXEC", "TENAX_PY", "TENAX_REQ", "TENAX_JOB")

truncate_middle = cut_middle  # the name the rest of tenax knows


def cleanup_by_label(client: docker.DockerClient | None = None, goal_id: str | None = None, name: str | None = None) -> int:
    """Force-remove tenax containers (all of them, or one goal's); return how many were removed."""
    client = client or ensure_docker()
    labels = ["tenax=1"] + ([f"tenax.goal={goal_id}"] if goal_id is not None else [])
    filters = {"label": labels + [POOL_LABEL], "name": name} if name else {"label": labels}
    removed = 0
    for container in client.containers.list(all=True, filters=filters, ignore_removed=True):
        if name and not (container.name == name or container.name.startswith(name + "-")):
            continue
        try:
            container.remove(force=True)
            removed += 1
        except NotFound:
            pass
        _channel.remove_dir(_channel.mount_of(container.attrs))
        if POOL_LABEL in container.labels:
            release_slot(Path(_source(container.attrs, WORKDIR)).parent)
    if goal_id is not None:  # pool containers taken by the goal keep their pool labels, but carry its name
        removed += cleanup_by_label(client, goal_id=None, name=f"tenax-{goal_id}")
    if name is None:  # the goal's egress network (and its firewall rules), now that no container uses it
        cleanup_egress(client, goal_id)
    return removed


def _source(attrs: dict, destination: str) -> str | None:
    return next((m.get("Source") for m in attrs.get("Mounts") or [] if m.get("Destination") == destination), None)


def _read_frames(sock, out: StreamBuffer, err: StreamBuffer, stop: threading.Event) -> None:
    """Read docker's multiplexed stdout/stderr frames from a hijacked exec socket until EOF."""

    def read_exactly(n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            if stop.is_set():
                return None
            ready = readable([sock], 0.5)
            if not ready:
                continue
            try:
                chunk = sock.recv(n - len(buf))
            except OSError:
                return None
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


class _Raw:
    """What one docker exec gave back."""

    def __init__(self, out: StreamBuffer, err: StreamBuffer, exit_code: int | None, hung: bool, duration: float):
        self.out, self.err, self.exit_code, self.hung, self.duration = out, err, exit_code, hung, duration


class _Gone(Exception):
    """The exec could not be created: the container is not running or no longer exists."""

    def __init__(self, death: str = "stopped"):
        super().__init__(death)
        self.death = death


class DockerSandbox:
    """One hardened container per goal, with ``workspace`` bind-mounted read-write at /workspace.

    User: when the workspace is owned by a non-root host uid, commands run as that uid:gid so
    files stay the owner's. When it is owned by root (e.g. CI running as root), commands run as
    the image's ``tenax`` user (10001:10001) and ``start()`` recursively chowns the workspace to
    10001:10001 so the sandbox can write it (it never follows symlinks while doing so).

    ``start()`` re-attaches to an existing container of the same goal (label ``tenax.goal``),
    name and workspace, so a resumed goal keeps its container; whatever a crashed run left
    running in it is killed, except the processes of ``jobs``.
    """

    def __init__(
        self,
        workspace: str | Path,
        *,
        goal_id: str,
        image: str = DEFAULT_IMAGE,
        network: str = "none",
        environment: dict[str, str] | None = None,
        mem_limit: str = "2g",
        pids_limit: int = 512,
        cpus: float = 1.0,
        tmp_mb: int = 512,
        home_mb: int = 256,
        labels: dict | None = None,
        name_suffix: str = "",
        max_output_chars: int = 20_000,
        jobs: set[str] | None = None,
        client: docker.DockerClient | None = None,
        mounts: dict[str, str] | None = None,
    ):
        """``mounts``: more host directories, each mounted at its own path, ``"ro"`` or ``"rw"`` (e.g.
        a git worktree's repository read-only and its own admin directory read-write); a ``"rw"``
        one is handed to the sandbox user like the workspace."""
        if not goal_id or not isinstance(goal_id, str):
            raise SandboxError("DockerSandbox needs a non-empty goal_id")
        self.workspace = str(Path(workspace).expanduser().resolve())
        self.goal_id = goal_id
        self.image = image
        self.network = network or "none"
        self.environment = {str(k): str(v) for k, v in (environment or {}).items()}  # e.g. the egress proxy's
        self.mem_limit = mem_limit
        self.pids_limit = int(pids_limit)
        self.cpus = float(cpus)
        self.tmpfs_mb = {"/tmp": int(tmp_mb), "/var/tmp": min(int(tmp_mb), 64), HOME: int(home_mb)}
        self.extra_labels = {str(k): str(v) for k, v in (labels or {}).items()}
        self.name = _NAME_BAD.sub("-", f"tenax-{goal_id}{name_suffix}").strip("-.")[:200]
        self.max_output_chars = max_output_chars
        self.jobs: set[str] = set(jobs or ())  # TENAX_JOB values whose processes outlive their exec
        self.mounts = {str(Path(k).resolve()): v for k, v in (mounts or {}).items()}
        if any(mode not in ("ro", "rw") for mode in self.mounts.values()):
            raise SandboxError(f"a sandbox mount is 'ro' or 'rw', got {sorted(set(self.mounts.values()))}")
        self.user: str | None = None
        self._client = client
        self._container = None
        self._halted = False
        self.propagation: str | None = None  # of the /workspace mount ("rslave": a pool container)
        self.slot: Path | None = None  # the pool slot whose directory is this container's /workspace
        self._chan: Channel | None = None  # the exec server's channel (None: docker exec only)
        self._chan_wait = 0.0  # how long the next exec may wait for the server to connect
        self._chan_lock = threading.Lock()  # one request at a time; a concurrent exec uses docker exec

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
        for path, mode in self.mounts.items():
            if not Path(path).is_dir():
                raise SandboxError(f"sandbox mount {path} does not exist or is not a directory")
        if st.st_uid != 0:
            return f"{st.st_uid}:{st.st_gid}"
        # Root-owned workspace: hand it (and the read-write mounts) to the sandbox user (never following symlinks).
        for top in [ws, *(Path(p) for p, mode in self.mounts.items() if mode == "rw")]:
            for dirpath, dirnames, filenames in os.walk(top):
                for name in [*dirnames, *filenames]:
                    os.lchown(os.path.join(dirpath, name), SANDBOX_UID, SANDBOX_GID)
            os.lchown(top, SANDBOX_UID, SANDBOX_GID)
        return f"{SANDBOX_UID}:{SANDBOX_GID}"

    def _find_existing(self):
        for c in self.client.containers.list(all=True, filters={"label": ["tenax=1"], "name": self.name},
                                             ignore_removed=True):
            if c.name != self.name or (c.labels.get("tenax.goal") != self.goal_id and POOL_LABEL not in c.labels):
                continue
            source = _source(c.attrs, WORKDIR)
            if source == self.workspace:
                return c
            slot = Path(source or "/").parent
            if POOL_LABEL in c.labels and (slot / "workspace").is_file() and (slot / "workspace").read_text() == self.workspace:
                bind_workspace(slot, self.workspace)  # a pool container taken by this goal (re-bound after a reboot)
                self.slot = slot
                return c
            raise SandboxError(
                f"container {self.name} for goal {self.goal_id} exists but mounts another workspace; "
                f"remove it with `tenax sandbox cleanup --goal {self.goal_id}`"
            )
        return None

    def _create(self):
        uid, _, gid = (self.user or f"{SANDBOX_UID}:{SANDBOX_GID}").partition(":")
        tmpfs = {path: f"rw,nosuid,nodev,size={mb}m,mode=1777" for path, mb in self.tmpfs_mb.items()}
        tmpfs[HOME] = f"rw,nosuid,nodev,size={self.tmpfs_mb[HOME]}m,mode=0755,uid={uid},gid={gid or uid}"
        chan_dir = _channel.new_dir()
        kwargs = dict(
            image=self.image,
            command=["python3", "-I", "-S", "-c", BOOT],  # -I -S: the server needs the standard library only
            name=self.name,
            labels=self.labels,
            detach=True,
            user=self.user,
            working_dir=WORKDIR,
            volumes={self.workspace: {"bind": WORKDIR, "mode": "rw" + (f",{self.propagation}" if self.propagation else "")},
                     chan_dir: {"bind": _channel.MOUNT, "mode": "ro"},
                     **{path: {"bind": path, "mode": mode} for path, mode in self.mounts.items()}},
            read_only=True,
            tmpfs=tmpfs,
            environment={
                **self.environment,
                "HOME": HOME,
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
        self._listen(chan_dir)  # before the server starts, so it finds the socket at once
        try:  # create and start (not containers.run: it would pull a missing image)
            container = self.client.containers.create(**kwargs)
            container.start()
            return container
        except ImageNotFound:
            self._unlisten(remove=True)
            raise SandboxError(
                f"sandbox image {self.image} is missing; run `tenax sandbox build` (or `make setup`) to build it"
            ) from None
        except APIError as exc:
            self._unlisten(remove=True)
            raise SandboxError(f"could not create sandbox container {self.name}: {exc.explanation or exc}") from exc

    def _listen(self, chan_dir: str | None) -> None:
        """Listen for the exec server of a container created with ``chan_dir`` (None: it has none)."""
        self._unlisten()
        if chan_dir:
            self._chan = Channel(chan_dir, int((self.user or str(SANDBOX_UID)).partition(":")[0]))
            self._chan_wait = CONNECT_S

    def _unlisten(self, remove: bool = False) -> None:
        if self._chan is not None:
            self._chan.shutdown()
            if remove:
                _channel.remove_dir(self._chan.directory)
        self._chan = None

    def _server(self) -> Channel | None:
        """The connected exec server, if there is one (waiting once for a fresh container's)."""
        chan = self._chan
        if chan is None or self._halted:
            return None
        if chan.conn is None and self._chan_wait > 0:
            wait, self._chan_wait = self._chan_wait, 0.0
            chan.connect(self.container.id, wait)
        return chan if chan.conn is not None else None

    def start(self) -> None:
        """Create the container, or re-attach to this goal's (restarting it if stopped, and
        killing whatever a crashed run left running in it)."""
        self.user = self._prepare_workspace()
        self._halted = False
        container = self._find_existing()
        reattached = container is not None and container.status == "running"
        if container is None:
            container = self._create()
        else:
            self.user = container.attrs.get("Config", {}).get("User") or self.user
            self._listen(_channel.mount_of(container.attrs))  # its server reconnects (or starts anew)
            if container.status != "running":
                try:
                    container.start()
                except APIError as exc:
                    raise SandboxError(
                        f"could not restart sandbox container {self.name}: {exc.explanation or exc}"
                    ) from exc
        self._container = container
        if not reattached:  # (a container found running was just inspected: no need to ask again)
            self._wait_running()
        if reattached and self.reap_all() is None:
            raise SandboxError(f"sandbox container {self.name} stopped while tenax was re-attaching to it")

    def start_ahead(self) -> None:
        """Start the container before its goal runs, and let its exec server wait for the goal's runner
        (whose ``start()`` re-attaches to it by name)."""
        self.start()
        if self._server() is None:  # its server must be up and waiting, or the runner's start finds none to re-attach
            self.stop()
            raise SandboxError(f"container {self.name} started without its exec server; its goal starts its own")
        self._unlisten()

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
        return self._container is not None and self._death() is None

    def reap_all(self, keep_jobs: bool = True) -> int | None:
        """Kill every process in the container but its init, its main process and (with
        ``keep_jobs``) the jobs; return how many were killed (None: the container is not running)."""
        req = {"op": "reap", "jobs": sorted(self.jobs) if keep_jobs else []}
        try:
            reply, _hung = self._request(req, 30.0, via_docker=False)
        except _Gone:
            return None
        return int((reply or {}).get("reaped", 0))

    def halt(self) -> None:
        """Kill the running exec and everything else in the container, and stop it; the
        container is kept (stopped) so ``start()`` can resume it. Exec refuses until then."""
        self._halted = True
        if self._chan is not None:
            self._chan.hang_up()  # a request waiting on the server ends now
        if self._container is None:
            return
        try:
            self._container.stop(timeout=1)
        except NotFound:
            pass
        except APIError as exc:
            raise SandboxError(f"could not stop sandbox container {self.name}: {exc.explanation or exc}") from exc

    def stop(self, remove: bool = True) -> None:
        """Remove the container (the goal is over); ``remove=False`` is ``halt()``."""
        if not remove:
            return self.halt()
        self._halted = True
        if self._container is None:
            return
        try:
            self._container.remove(force=True)
        except NotFound:
            pass
        except APIError as exc:
            raise SandboxError(f"could not remove sandbox container {self.name}: {exc.explanation or exc}") from exc
        self._unlisten(remove=True)
        self._container = None
        if self.slot is not None:
            release_slot(self.slot)
            self.slot = None

    def _death(self, settle: float = 0.0) -> str | None:
        """None while the container runs; else what became of it, in words. ``settle``: how long
        a running container is watched (an exec cut off by a kill can end before the engine
        marks the container stopped)."""
        deadline = time.monotonic() + settle
        while True:
            try:
                self.container.reload()
            except NotFound:
                return "removed"
            state = self.container.attrs.get("State") or {}
            if not state.get("Running") or state.get("Paused") or state.get("Restarting"):
                break
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)
        if state.get("Status") == "removing":
            return "removed"
        if state.get("OOMKilled"):
            return f"OOM-killed (memory limit {self.mem_limit})"
        code = state.get("ExitCode")
        return "killed" if code == 137 else f"stopped (status {state.get('Status')}, exit code {code})"

    def _replace(self, death: str) -> str:
        """Start a fresh container over the same workspace (same name, labels and limits)."""
        self._unlisten(remove=True)
        try:
            self.container.remove(force=True)
        except NotFound:
            pass
        except APIError as exc:
            if "already in progress" not in str(exc):
                raise SandboxError(f"sandbox container {self.name} was {death} and could not be removed: {exc}") from exc
            death = "removed"
        for _ in range(100):  # someone else's removal may still be under way
            try:
                self.container.reload()
            except NotFound:
                break
            time.sleep(0.1)
        if self.slot is not None:  # the fresh container mounts the workspace itself
            release_slot(self.slot)
            self.slot = None
        self._container = self._create()
        self._wait_running()
        return (
            f"The sandbox container was {death}; a fresh container was started over the same workspace "
            f"(files outside /workspace and running processes are gone)"
        )

    # -- exec --------------------------------------------------------------------------------

    def exec(
        self,
        command: str,
        *,
        timeout: float = 120.0,
        cwd: str = WORKDIR,
        env: dict[str, str] | None = None,
        max_output_chars: int | None = None,
        retry_on_restart: bool = False,
        job: str | None = None,
    ) -> ExecResult:
        """Run ``bash -lc command`` in the container; every process it starts is killed when it
        returns (or after ``timeout`` s), except with ``job``: then processes it leaves running
        carry ``TENAX_JOB=<job>`` and survive until ``reap_all()``/``halt()``/``stop()``.

        Each of stdout/stderr keeps at most ``max_output_chars`` bytes (default: the sandbox's),
        head and tail, with a marker stating exactly what was dropped; ``truncated_bytes`` sums it.
        On timeout ``timed_out`` is True and the exit code is 124 (TERM) or 137 (KILL).
        When the container is dead or gone, a fresh one is started and ``note`` says so; with
        ``retry_on_restart`` (an idempotent check, which always goes through ``docker exec``) a
        command it interrupted is run once more in the fresh container. A check's shell reads the
        system's /etc/profile but none of the home directory's startup files (the model writes
        those: an ``exit 0`` in ~/.bash_profile would pass every check).
        Raises SandboxError for bad arguments, after ``halt()``, or when no container can be started.
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
            if not isinstance(k, str) or not _ENV_KEY.match(k) or k in _RESERVED_ENV:
                raise SandboxError(f"invalid environment variable name {k!r}")
            if not isinstance(v, str) or "\x00" in v:
                raise SandboxError(f"environment variable {k} must be a string without NUL bytes")
            environment[k] = v
        if job is not None:
            self.jobs.add(job)
            environment["TENAX_JOB"] = job
        if self._halted:
            raise SandboxError(f"sandbox {self.name} was halted (the goal is stopping); start() it to resume")
        if self._container is None:
            self.start()
        limit = max_output_chars or self.max_output_chars
        req = {"op": "run", "command": command, "timeout": timeout, "grace": KILL_AFTER_S, "cwd": cwd,
               "env": environment, "jobs": sorted(self.jobs), "cap": max(limit, 4096),
               **({"clean": True} if retry_on_restart else {})}  # a check: no startup file of the sandbox user's
        notes: list[str] = []
        for attempt in (1, 2, 3):
            req["nonce"] = uuid.uuid4().hex
            started = time.monotonic()
            try:
                reply, hung = self._request(req, timeout + KILL_AFTER_S + 15, via_docker=retry_on_restart)
            except _Gone as gone:  # dead before the command began: replace it and run the command
                if attempt == 3:
                    raise SandboxError(f"exec in sandbox {self.name} failed: the container is not usable") from None
                notes.append(self._replace(gone.death) + ".")
                continue
            if reply is not None or hung:
                result = self._result(reply, limit, time.monotonic() - started)
                break
            result = ExecResult(exit_code=-1, stdout="", stderr="", duration_s=round(time.monotonic() - started, 3))
            if self._halted:
                notes.append("The sandbox was halted (the goal is stopping) while the command ran.")
                break
            death = self._death(settle=3.0)
            if death is None:
                notes.append("The command was killed from outside its shell (its exec ended without a result).")
                break
            notes.append(self._replace(death) + "; the command may not have completed.")
            if not retry_on_restart or attempt == 3:
                break
            notes.append("It was run again in the fresh container.")
            retry_on_restart = False
        result.note = " ".join(notes + ([result.note] if result.note else [])) or None
        return result

    def _request(self, req: dict, deadline: float, *, via_docker: bool) -> tuple[dict | None, bool]:
        """Run one in-container request: over the exec server when it is connected and free (and
        ``via_docker`` is not set), else over one ``docker exec``. Returns (reply, hung): reply None
        when the request was cut off (something killed it or its container); its "raw" holds the
        frame's raw bytes (a command's output). Raises _Gone when the container was dead before
        the request began."""
        chan = None if via_docker else self._server()
        if chan is not None and self._chan_lock.acquire(blocking=False):
            try:
                reply, blob = chan.request(req, deadline)
                return {**reply, "raw": blob}, False
            except TimeoutError:
                return None, True
            except ChannelDown as down:
                if self._halted:
                    return None, False
                death = self._death(settle=3.0)
                if death is not None and down.before:
                    raise _Gone(death) from None
                if death is not None:
                    return None, False
                self._unlisten()  # the server died, the container lives: docker exec from now on
                if not down.before:
                    self.reap_all()  # what the cut-off command left running
                    return None, False
            finally:
                self._chan_lock.release()
        env = {"TENAX_PY": _SCRIPT, "TENAX_REQ": json.dumps({**req, "spare": self._spare()})}
        try:
            raw = self._exec_raw(_ONCE, env, WORKDIR, 2**31, deadline=deadline, inspect=False)
        except _Gone:
            death = self._death()
            if death is None:
                raise SandboxError(f"exec in sandbox {self.name} failed: the container is not usable") from None
            raise _Gone(death) from None
        if raw.hung:
            return None, True
        try:
            reply, blob = unframe(raw.out.head + raw.out.tail)
        except ValueError:
            return None, False
        return {**reply, "raw": blob}, False

    def _spare(self) -> list[int]:
        """In-container pids a docker exec's reap must leave alone: the exec server's."""
        pid = self._chan.server_pid if self._chan is not None else None
        return [pid] if pid else []

    def _result(self, reply: dict | None, limit: int, duration: float) -> ExecResult:
        """The ExecResult of a request's reply (None: it hung past the host-side deadline)."""
        if reply is None:
            return ExecResult(exit_code=124, stdout="", stderr="", timed_out=True, duration_s=round(duration, 3),
                              note="The exec did not end after its timeout; its processes may still be running.")
        cap = int(reply.get("cap", 0)) or max(limit, 4096)
        stdout, cut_out = StreamBuffer.from_wire(cap, reply["out"], reply["raw"]).text(limit)
        stderr, cut_err = StreamBuffer.from_wire(cap, reply["err"], reply["raw"]).text(limit)
        notes = []
        if reply["oom"] > 0:
            notes.append(f"The out-of-memory killer ended {reply['oom']} process(es) of this command "
                         f"(memory limit {self.mem_limit}).")
        if reply["reaped"] and not reply["timed_out"]:
            notes.append(f"{reply['reaped']} process(es) the command left running were killed when it returned "
                         f"(each command's processes end with it).")
        if reply["left"]:
            notes.append(f"{reply['left']} process(es) the command started could not be killed and are still running.")
        disk = self._disk_note(stdout, stderr)
        if disk:
            notes.append(disk)
        return ExecResult(
            exit_code=reply["rc"],
            stdout=stdout,
            stderr=stderr,
            timed_out=reply["timed_out"],
            duration_s=round(duration, 3),
            truncated_bytes=cut_out + cut_err,
            note=" ".join(notes) or None,
            reaped=reply["reaped"],
            left_running=reply["left"],
        )

    def file_op(self, args: dict) -> dict | None:
        """One file tool (``_incontainer.file_op``) over the exec server: {"ok", "content"}, or None
        when the server is not available (the caller then runs the tool through ``exec``)."""
        chan = None if self._halted or self._container is None else self._server()
        if chan is None or not self._chan_lock.acquire(blocking=False):
            return None
        try:
            return chan.request({"op": "file", "args": args}, 120.0)[0]
        except (TimeoutError, ChannelDown):
            return None
        finally:
            self._chan_lock.release()

    def _disk_note(self, *outputs: str) -> str | None:
        if any("No space left on device" in o for o in outputs):
            caps = ", ".join(f"{path} is limited to {mb} MB" for path, mb in self.tmpfs_mb.items())
            return (f"No space left on device: {caps}, and the rest of the root filesystem is read-only; "
                    f"delete files there, or write under /workspace.")
        if any("Read-only file system" in o for o in outputs):
            return (f"The sandbox's root filesystem is read-only: write under /workspace, "
                    f"{', '.join(self.tmpfs_mb)} instead.")
        return None

    def _exec_raw(
        self, argv: list[str], env: dict[str, str], cwd: str, limit: int, *, deadline: float, stdin: bytes | None = None,
        inspect: bool = True,
    ) -> _Raw:
        """One docker exec: stream its output into bounded buffers until it ends or ``deadline`` s."""
        api = self.client.api
        try:
            exec_id = api.exec_create(
                self.container.id, argv, stdout=True, stderr=True, stdin=stdin is not None,
                environment=env or None, workdir=cwd, user=self.user or "",
            )["Id"]
            sock = api.exec_start(exec_id, socket=True)
        except NotFound as exc:
            raise _Gone() from exc
        except APIError as exc:
            if exc.status_code == 409 or "is not running" in str(exc):
                raise _Gone() from exc
            raise SandboxError(f"exec in sandbox {self.name} failed: {exc.explanation or exc}") from exc
        started = time.monotonic()
        raw_sock = getattr(sock, "_sock", sock)
        cap = max(limit, 4096)
        out, err = StreamBuffer(cap), StreamBuffer(cap)
        stop = threading.Event()
        reader = threading.Thread(target=_read_frames, args=(raw_sock, out, err, stop), daemon=True)
        reader.start()
        if stdin is not None:
            try:
                raw_sock.sendall(stdin)
                raw_sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the process exited early; its exit code says why
        # The in-container timeout ends the exec; this host-side deadline is only a backstop.
        reader.join(deadline)
        hung = reader.is_alive()
        stop.set()
        reader.join(5)
        try:
            sock.close()
        except OSError:
            pass
        exit_code = None
        for _ in range(50 if inspect else 0):
            try:
                info = api.exec_inspect(exec_id)
            except (NotFound, APIError):
                break
            if not info.get("Running"):
                exit_code = info.get("ExitCode")
                break
            if hung:
                break
            time.sleep(0.02)
        return _Raw(out, err, exit_code, hung, time.monotonic() - started)

    # -- files -------------------------------------------------------------------------------

    def put_file(self, directory: str, name: str, data: bytes, mode: int = 0o600) -> None:
        """Write ``data`` to ``directory/name`` in the container as the sandbox user (streamed
        over the exec's stdin, so it works on tmpfs and a read-only root filesystem)."""
        if "/" in name or name in ("", ".", ".."):
            raise SandboxError(f"invalid file name {name!r}")
        if self._container is None:
            self.start()
        path = f"{directory.rstrip('/')}/{name}"
        script = 'umask 077 && cat > "$1" && chmod "$2" "$1"'
        argv = ["bash", "-c", script, "put-file", path, f"{mode:o}"]
        for _ in (1, 2):
            try:
                raw = self._exec_raw(argv, {}, WORKDIR, 4096, deadline=120, stdin=data)
                break
            except _Gone:
                death = self._death()
                if death is None:
                    raise SandboxError(f"could not copy a file into sandbox {self.name}: it is not running") from None
                self._replace(death)
        else:
            raise SandboxError(f"could not copy a file into sandbox {self.name}: it keeps dying")
        if raw.exit_code != 0:
            detail = raw.err.text(2000)[0].strip() or f"exit code {raw.exit_code}"
            raise SandboxError(f"could not write {path} in sandbox {self.name}: {detail}")

    def __enter__(self) -> "DockerSandbox":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
