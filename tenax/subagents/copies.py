"""Workspace copies for ``isolation: "copy"`` sub-agents.

A copy is made once per agent, atomically: into ``<dest>.partial``, then renamed to ``<dest>``, so
an existing ``dest`` is always a complete copy (a crash mid-copy leaves only the ``.partial``,
which the next attempt discards). Symlinks are copied as symlinks, never followed, so a link in
the workspace that points outside it (``leak -> /etc/shadow``) does not pull the host file into
the copy; inside the container it points at the container's own filesystem, as it does in the
main sandbox.

Next to the copy, ``<dest>.manifest.json`` holds its baseline (path -> [kind, size, mtime_ns]),
so ``copy_changes(dest)`` can tell the lead (and the user) what the agent added, modified and
deleted in its copy, regardless of what the agent itself reported.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tenax.core.errors import ConfigError


def _partial(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


def manifest_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".manifest.json")


def scan(root: Path) -> dict[str, list]:
    """Every non-directory entry under ``root`` (symlinks not followed): [kind, size, mtime_ns]."""
    out: dict[str, list] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        names = list(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in names:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            kind = "link" if os.path.islink(full) else "file"
            key = os.readlink(full) if kind == "link" else st.st_mtime_ns
            out[os.path.relpath(full, root)] = [kind, st.st_size, key]
    return out


def ensure_copy(workspace: str | Path, dest: Path) -> bool:
    """Make the copy of ``workspace`` at ``dest`` unless it exists. True when it was made now.

    A copy whose manifest exists but whose directory is gone was removed by someone: that is an
    error (silently re-copying would hand a resumed agent a workspace without its own work)."""
    if dest.is_dir():
        return False
    partial = _partial(dest)
    if manifest_path(dest).exists() and not partial.exists():
        raise ConfigError(f"the workspace copy {dest} is gone (its manifest is still there); "
                          "the sub-agent's work in it cannot be resumed")
    if partial.exists():
        shutil.rmtree(partial)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(workspace, partial, symlinks=True)
    manifest_path(dest).write_text(json.dumps(scan(partial)), encoding="utf-8")
    os.replace(partial, dest)
    return True


def copy_changes(dest: Path) -> dict[str, list[str]] | None:
    """What changed in the copy since it was made: added / modified / deleted paths (sorted)."""
    try:
        base = json.loads(manifest_path(dest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not dest.is_dir():
        return None
    now = scan(dest)
    return {
        "added": sorted(set(now) - set(base)),
        "modified": sorted(p for p in set(now) & set(base) if now[p] != base[p]),
        "deleted": sorted(set(base) - set(now)),
    }
