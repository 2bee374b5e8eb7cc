"""A warm pool of sandbox containers (opt-in): started, never-used containers of one image and one
set of limits, each handed to a new goal in a few milliseconds and never to a second goal.

How a container made before its goal serves that goal's workspace: /workspace is a bind mount
fixed when a container is created, so each pool slot gets a host directory of its own
(``<run root>/pool/<slot>/ws``), mounted at /workspace with ``rslave`` propagation, under a pool
root that tenax makes a shared mount. ``take()`` bind-mounts the goal's workspace onto the slot
directory on the host; the mount propagates into the running container, whose /workspace then is
the workspace. This needs root on the host (mount(2)); without it ``fill()`` says so. The slot
records its workspace in ``<slot>/workspace`` (host side, not mounted) so a resumed goal re-binds
it after a host reboot and a container is never pointed at another workspace.

Docker cannot change a container's labels, so a taken container keeps ``tenax.pool=<pool id>``
and is renamed ``tenax-<goal id>``; ``cleanup_by_label(goal_id=...)`` and resume find it by that
name. Unused pool containers are removed by ``cleanup()`` (label ``tenax.pool``). A workspace
that needs another sandbox user than the pool's (owned by a uid other than root or 10001), or
another image, network or limits, gets a cold-started sandbox instead.

Across processes (the daemon): ``fill(detach=True)`` in one process leaves each container ready
(its exec server let go, a ``ready`` file in its slot), and ``claim()`` in another hands one to a
goal before that goal's runner starts; the runner's ``DockerSandbox.start()`` then re-attaches to
it by name, as on resume.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import docker

from tenax.core.errors import SandboxError
from tenax.sandbox import _channel
from tenax.sandbox._slots import POOL_LABEL, _mount, _mounted, bind_workspace, release_slot
from tenax.sandbox._docker import DEFAULT_IMAGE, SANDBOX_GID, SANDBOX_UID, WORKDIR, ensure_docker
from tenax.sandbox.docker_sandbox import DockerSandbox, _source, cleanup_by_label

UNUSED = "tenax-pool-"  # the name prefix of a pool container no goal has taken
READY = "ready"  # a slot's file: its container is started and free for claim()


def pool_root() -> Path:
    return _channel.run_root() / "pool"


class SandboxPool:
    """``pool = SandboxPool(size, image=...)``; ``pool.fill()``; ``pool.take(workspace, goal_id) -> DockerSandbox``."""

    def __init__(self, size: int, *, image: str = DEFAULT_IMAGE, network: str = "none",
                 client: docker.DockerClient | None = None, pool_id: str | None = None,
                 labels: dict[str, str] | None = None, **limits):
        if int(size) < 1:
            raise SandboxError(f"pool size must be at least 1, got {size}")
        self.size = int(size)
        self.image, self.network, self.limits = image, network, limits
        self.id = pool_id or uuid.uuid4().hex[:8]
        self.labels = {**(labels or {}), POOL_LABEL: self.id}
        self._client = client
        self._ready: list[DockerSandbox] = []

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = ensure_docker()
        return self._client

    def _shared_root(self) -> Path:
        if os.geteuid() != 0:
            raise SandboxError("the warm pool needs root on the host (it bind-mounts each goal's workspace "
                               "into a running container); run without a pool, or as root")
        root = pool_root()
        root.mkdir(parents=True, exist_ok=True, mode=0o711)
        if not _mounted(root):
            _mount("--bind", str(root), str(root))
        _mount("--make-rshared", str(root))
        return root

    def fill(self, detach: bool = False) -> int:
        """Start containers until ``size`` wait unused, each with its exec server connected; return how
        many were started. ``detach``: let each server go and mark its slot ready for ``claim()``."""
        root = self._shared_root()
        started = 0
        for _ in range(self.size - len(self._ready)):
            slot = root / f"{self.id}-{uuid.uuid4().hex[:8]}"
            (slot / "ws").mkdir(parents=True, mode=0o755)
            os.chown(slot / "ws", SANDBOX_UID, SANDBOX_GID)
            box = DockerSandbox(slot / "ws", goal_id=f"pool-{slot.name}", image=self.image, network=self.network,
                                labels=self.labels, client=self.client, **self.limits)
            box.propagation = "rslave"
            try:
                box.start()
            except SandboxError:
                release_slot(slot)
                raise
            if box._server() is None:
                box.stop()
                release_slot(slot)
                raise SandboxError(f"pool container {box.name} started without its exec server")
            if detach:
                box._unlisten()  # its server waits for the goal's runner to listen again
                (slot / READY).write_text(box.container.id)
            else:
                self._ready.append(box)
            started += 1
        return started

    def take(self, workspace: str | Path, goal_id: str, *, name_suffix: str = "", max_output_chars: int = 20_000,
             jobs: set[str] | None = None) -> DockerSandbox:
        """A started sandbox for ``goal_id`` over ``workspace``: a pool container when one is ready
        and fits, else a cold-started one. The pool is not refilled here (call ``fill()``)."""
        cold = DockerSandbox(workspace, goal_id=goal_id, image=self.image, network=self.network, client=self.client,
                             name_suffix=name_suffix, max_output_chars=max_output_chars, jobs=jobs, **self.limits)
        if not self._ready or cold._prepare_workspace() != f"{SANDBOX_UID}:{SANDBOX_GID}":
            cold.start()
            return cold
        box = self._ready.pop(0)
        slot = Path(box.workspace).parent
        bind_workspace(slot, cold.workspace)
        box.propagation, box.slot = None, slot
        try:
            box.container.rename(cold.name)
        except docker.errors.APIError as exc:
            raise SandboxError(f"could not rename pool container {box.name} to {cold.name}: {exc}") from exc
        box.name, box.goal_id, box.workspace = cold.name, goal_id, cold.workspace
        box.max_output_chars, box.jobs = max_output_chars, set(jobs or ())
        return box

    def cleanup(self) -> int:
        """Remove this pool's unused containers and slots; return how many containers were removed."""
        removed = 0
        for box in self._ready:
            box.stop()
            release_slot(Path(box.workspace).parent)
            removed += 1
        self._ready.clear()
        return removed


def claim(pool_id: str, workspace: str, goal_id: str, client: docker.DockerClient | None = None) -> str | None:
    """Hand a ready, unused container of pool ``pool_id`` to ``goal_id`` over ``workspace`` (bound into
    its slot, the container renamed ``tenax-<goal id>``); return its id, or None when none is ready,
    the goal has a container already, or the workspace needs another sandbox user than the pool's."""
    client = client or ensure_docker()
    box = DockerSandbox(workspace, goal_id=goal_id)  # its name and resolved workspace; nothing is started
    named = lambda c: c["Names"][0].lstrip("/")  # noqa: E731 - the engine's listing, without an inspect per container
    if os.stat(box.workspace).st_uid not in (0, SANDBOX_UID) or any(
            named(c) == box.name for c in client.api.containers(all=True, filters={"name": box.name})):
        return None
    for c in client.api.containers(filters={"label": [f"{POOL_LABEL}={pool_id}", "tenax=1"], "status": "running"}):
        slot = Path(_source(c, WORKDIR) or "/").parent
        if not named(c).startswith(UNUSED):
            continue
        try:
            (slot / READY).unlink()  # the claim itself: of two claimers, only one removes the file
        except FileNotFoundError:
            continue  # still starting, or claimed by another
        try:
            bind_workspace(slot, box.workspace)
            client.api.rename(c["Id"], box.name)
        except (SandboxError, docker.errors.APIError) as exc:
            cleanup_by_label(client, goal_id=c["Labels"].get("tenax.goal"))  # never offered to another goal
            raise SandboxError(f"could not hand pool container {named(c)} to goal {goal_id}: {exc}") from exc
        return c["Id"]
    return None


def cleanup_pools(client: docker.DockerClient | None = None, *, labels: dict[str, str] | None = None,
                  keep: str | None = None) -> int:
    """Remove the unused pool containers (e.g. those a crashed daemon left) and their slots: of any
    pool, or those carrying ``labels``, except pool ``keep``'s."""
    client = client or ensure_docker()
    removed = 0
    wanted = [POOL_LABEL, "tenax=1", *(f"{k}={v}" for k, v in (labels or {}).items())]
    for c in client.containers.list(all=True, filters={"label": wanted}, ignore_removed=True):
        if not c.name.startswith(UNUSED) or (keep is not None and c.labels.get(POOL_LABEL) == keep):
            continue  # taken by a goal (it is that goal's now), or a pool that lives on
        slot = next((Path(m["Source"]).parent for m in c.attrs.get("Mounts") or [] if m.get("Destination") == "/workspace"), None)
        removed += cleanup_by_label(client, goal_id=c.labels.get("tenax.goal"))
        if slot is not None:
            release_slot(slot)
    return removed
