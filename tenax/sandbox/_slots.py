"""Pool slots on the host: the directory a pool container mounts at /workspace, and the goal's
workspace bind-mounted onto it when the container is taken (see ``pool``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tenax.core.errors import SandboxError

POOL_LABEL = "tenax.pool"


def _mounted(path: Path) -> bool:
    return any(line.split()[4] == str(path) for line in Path("/proc/self/mountinfo").read_text().splitlines())


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SandboxError(f"mount {' '.join(args)} failed: {done.stderr.strip()}")


def bind_workspace(slot: Path, workspace: str) -> None:
    """Point a slot's /workspace at ``workspace`` (recorded, so only that workspace ever again)."""
    record = slot / "workspace"
    if record.exists() and record.read_text() != workspace:
        raise SandboxError(f"pool slot {slot.name} serves {record.read_text()}, not {workspace}")
    record.write_text(workspace)
    ws = slot / "ws"
    if not (_mounted(ws) and os.path.samestat(os.stat(ws), os.stat(workspace))):
        _mount("--bind", workspace, str(ws))


def release_slot(slot: Path) -> None:
    ws = slot / "ws"
    if _mounted(ws):
        subprocess.run(["umount", "-l", str(ws)], capture_output=True)
    if _mounted(ws):
        return  # never delete through a mount that is still there
    for name in ("workspace", "ready"):
        (slot / name).unlink(missing_ok=True)
    try:
        ws.rmdir()
        slot.rmdir()
    except OSError:
        pass
