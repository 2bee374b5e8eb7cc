"""Bring an ``isolation: "copy"`` sub-agent's changes back into the lead's workspace.

The changes are the copy's entries that differ from its baseline manifest (``copies.scan`` of the
copy when it was made, which equals the workspace at that moment: ``copytree`` keeps mtimes):
added, modified and deleted files and symlinks. Each one is applied on its own:

- **conflict**: the workspace's entry no longer matches the baseline (kind, size, mtime_ns, link
  target), i.e. the lead (or someone) changed it since the copy was made. It is left untouched
  and reported; the rest is applied. Per-file, not all-or-nothing: each file is written
  atomically, the result names every file it skipped and why, and the model can reconcile the
  conflicts itself (read both versions) - refusing everything would only make it redo by hand
  what could be applied safely.
- **already applied**: the workspace already holds exactly the copy's version (same bytes and
  mode, same link target, or gone for a deletion). Nothing is written, so a second apply is a
  no-op.
- **refused**: anything that would follow a symlink or leave the workspace - a symlink whose
  target is absolute or resolves outside the workspace, a path whose parent directory is a
  symlink (in the copy or in the workspace), a non-regular file (fifo, device).

Writes never follow symlinks: every directory is opened component by component with
``O_NOFOLLOW`` relative to its parent's fd, files are written to a temporary name in that
directory (``O_EXCL | O_NOFOLLOW``) and renamed over the target. Modes are kept (without
setuid/setgid/sticky bits). New files and directories get the owner ``DockerSandbox`` uses: the
workspace root's owner, or the sandbox user (10001) when root owns it.

``.git`` internals are skipped unless a path under ``.git`` is asked for explicitly: half a
repository's metadata applied next to a conflict would be worse than none.
"""

from __future__ import annotations

import json
import os
import posixpath
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenax.sandbox.image import SANDBOX_GID, SANDBOX_UID
from tenax.subagents.copies import manifest_path, scan

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 20


class Refused(Exception):
    """This entry cannot be applied safely (the message says why)."""


@dataclass
class ApplyResult:
    applied: list[dict[str, str]] = field(default_factory=list)        # {"path", "change"}
    already_applied: list[str] = field(default_factory=list)
    conflicts: list[dict[str, str]] = field(default_factory=list)      # {"path", "change", "reason"}
    refused: list[dict[str, str]] = field(default_factory=list)        # {"path", "change", "reason"}
    skipped: list[dict[str, str]] = field(default_factory=list)        # {"path", "change", "reason"}
    unmatched: list[str] = field(default_factory=list)                 # requested paths with no change

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "already_applied": self.already_applied, "conflicts": self.conflicts,
                "refused": self.refused, "skipped": self.skipped, "unmatched_paths": self.unmatched}


def normalize_paths(paths: Any) -> list[str] | str:
    """The ``paths`` filter as clean relative paths, or an error message."""
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        return "'paths' must be a list of workspace-relative path strings"
    out = []
    for p in paths:
        s = p.strip()
        if s.startswith("/workspace/"):
            s = s[len("/workspace/"):]  # the path as the model sees it inside its sandbox
        if not s or s.startswith("/") or "\x00" in s:
            return f"bad path {p!r}: give paths relative to the workspace (e.g. src/app.py)"
        if ".." in s.split("/"):
            return f"bad path {p!r}: '..' is not allowed"
        out.append(posixpath.normpath(s))
    return out


def _matches(rel: str, paths: list[str] | None) -> bool:
    if paths is None:
        return True
    return any(p == "." or rel == p or rel.startswith(p + "/") for p in paths)


def _owner(workspace: str) -> tuple[int, int] | None:
    """Who owns applied files (the rule of DockerSandbox._prepare_workspace); None: leave as is."""
    if os.geteuid() != 0:
        return None  # an unprivileged host process: its files are the workspace owner's already
    st = os.stat(workspace)
    return (st.st_uid, st.st_gid) if st.st_uid != 0 else (SANDBOX_UID, SANDBOX_GID)


def _open_dir(root_fd: int, parts: list[str], *, where: str, modes: list[int] | None = None,
              mkdir_modes: list[int] | None = None, owner: tuple[int, int] | None = None) -> int:
    """An fd for root/parts, never through a symlink. ``modes`` collects each directory's mode;
    with ``mkdir_modes`` missing directories are created (with those modes and ``owner``)."""
    fd = os.dup(root_fd)
    try:
        for i, name in enumerate(parts):
            shown = "/".join(parts[: i + 1])
            try:
                st = os.lstat(name, dir_fd=fd)
            except FileNotFoundError:
                if mkdir_modes is None:
                    raise
                os.mkdir(name, 0o700, dir_fd=fd)
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                os.fchmod(nfd, mkdir_modes[i] & 0o777)
                if owner is not None:
                    os.fchown(nfd, *owner)
                os.close(fd)
                fd = nfd
                continue
            if stat.S_ISLNK(st.st_mode):
                raise Refused(f"its parent directory {shown} in {where} is a symlink (never followed)")
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(f"{shown} in {where} is not a directory")
            try:
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:  # swapped for a symlink since the lstat
                raise Refused(f"cannot open directory {shown} in {where} without following links: {e.strerror}") from e
            if modes is not None:
                modes.append(st.st_mode)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _state(dir_fd: int, name: str) -> list | None:
    """The entry as ``copies.scan`` records it: [kind, size, mtime_ns | link target]; None if absent."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return ["link", st.st_size, os.readlink(name, dir_fd=dir_fd)]
    if stat.S_ISDIR(st.st_mode):
        return ["dir", 0, 0]
    return ["file", st.st_size, st.st_mtime_ns]


@dataclass
class _Source:
    kind: str  # file | link
    target: str = ""
    fd: int = -1
    size: int = 0
    mode: int = 0


def _open_source(dir_fd: int, name: str) -> _Source:
    st = os.lstat(name, dir_fd=dir_fd)
    if stat.S_ISLNK(st.st_mode):
        return _Source("link", target=os.readlink(name, dir_fd=dir_fd))
    if not stat.S_ISREG(st.st_mode):
        raise Refused("not a regular file or symlink in the copy")
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        raise Refused(f"cannot open it in the copy without following links: {e.strerror}") from e
    fst = os.fstat(fd)
    if not stat.S_ISREG(fst.st_mode):
        os.close(fd)
        raise Refused("not a regular file in the copy")
    return _Source("file", fd=fd, size=fst.st_size, mode=stat.S_IMODE(fst.st_mode) & 0o777)


def _same_bytes(a: int, b: int, size: int) -> bool:
    off = 0
    while off < size:
        x, y = os.pread(a, _CHUNK, off), os.pread(b, _CHUNK, off)
        if x != y:
            return False
        if not x:
            break
        off += len(x)
    return True


def _holds(dir_fd: int, name: str, src: _Source) -> bool:
    """Does the workspace entry already equal the copy's version?"""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    if src.kind == "link":
        return stat.S_ISLNK(st.st_mode) and os.readlink(name, dir_fd=dir_fd) == src.target
    if not stat.S_ISREG(st.st_mode) or st.st_size != src.size or stat.S_IMODE(st.st_mode) & 0o777 != src.mode:
        return False
    fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    try:
        return _same_bytes(fd, src.fd, src.size)
    finally:
        os.close(fd)


def _link_escape(rel: str, target: str, roots: list[str]) -> str | None:
    """Why a symlink at ``rel`` -> ``target`` would leave the tree, or None when it stays inside."""
    if not target:
        return "an empty symlink target"
    if posixpath.isabs(target):
        return f"a symlink with an absolute target ({target}) points outside the workspace"
    lexical = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    if lexical == ".." or lexical.startswith("../"):
        return f"a symlink to {target} points outside the workspace"
    for root in roots:  # also resolved through the links that exist (a/.. where a is a link)
        real_root = os.path.realpath(root)
        resolved = os.path.realpath(os.path.join(root, posixpath.dirname(rel), target))
        if resolved != real_root and not resolved.startswith(real_root + os.sep):
            return f"a symlink to {target} resolves outside the workspace"
    return None


def _write(dir_fd: int, name: str, src: _Source, owner: tuple[int, int] | None) -> None:
    """Replace ``name`` in ``dir_fd`` with the source, atomically, never following a link."""
    tmp = f".{name[:200]}.tenax-apply-{secrets.token_hex(4)}"
    try:
        if src.kind == "link":
            os.symlink(src.target, tmp, dir_fd=dir_fd)
            if owner is not None:
                os.chown(tmp, *owner, dir_fd=dir_fd, follow_symlinks=False)
        else:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
            try:
                off = 0
                while True:
                    chunk = os.pread(src.fd, _CHUNK, off)
                    if not chunk:
                        break
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                    off += len(chunk)
                os.fchmod(fd, src.mode)
                if owner is not None:
                    os.fchown(fd, *owner)
            finally:
                os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def _dir_gone_in_copy(copy_fd: int, parts: list[str]) -> bool:
    try:
        fd = _open_dir(copy_fd, parts, where="the copy")
    except (FileNotFoundError, NotADirectoryError, Refused):
        return True
    os.close(fd)
    return False


def apply_copy_changes(workspace: str | Path, copy: str | Path, *, paths: list[str] | None = None) -> ApplyResult:
    """Apply what changed in ``copy`` (against its baseline manifest) to ``workspace``."""
    workspace, copy = str(Path(workspace).resolve()), str(Path(copy))
    base: dict[str, list] = json.loads(manifest_path(Path(copy)).read_text(encoding="utf-8"))
    now = scan(Path(copy))
    changes = ([(p, "deleted") for p in sorted(set(base) - set(now))]  # deletions first: a dir may become a file
               + [(p, "added") for p in sorted(set(now) - set(base))]
               + [(p, "modified") for p in sorted(p for p in set(now) & set(base) if now[p] != base[p])])
    result = ApplyResult()
    if paths is not None:
        result.unmatched = [p for p in paths if not any(_matches(rel, [p]) for rel, _ in changes)]
    owner = _owner(workspace)
    ws_fd = os.open(workspace, _DIR_FLAGS)
    copy_fd = os.open(copy, _DIR_FLAGS)
    emptied: set[tuple[str, ...]] = set()
    try:
        for rel, change in changes:
            if not _matches(rel, paths):
                continue
            parts = rel.split("/")
            if parts[0] == ".git" and not (paths and any(p == ".git" or p.startswith(".git/") for p in paths)):
                result.skipped.append({"path": rel, "change": change, "reason": (
                    "repository metadata (.git) is not applied unless you name a .git path in 'paths'")})
                continue
            try:
                if change == "deleted":
                    _apply_delete(ws_fd, parts, base[rel], result)
                    for i in range(len(parts) - 1, 0, -1):
                        emptied.add(tuple(parts[:i]))
                    continue
                if change == "added":
                    _remove_dirs_gone_from_copy(ws_fd, copy_fd, emptied)
                _apply_put(ws_fd, copy_fd, parts, change, base.get(rel), owner, [workspace, copy], result)
            except Refused as e:
                result.refused.append({"path": rel, "change": change, "reason": str(e)})
            except OSError as e:
                result.refused.append({"path": rel, "change": change, "reason": f"{type(e).__name__}: {e.strerror or e}"})
        _remove_dirs_gone_from_copy(ws_fd, copy_fd, emptied)
    finally:
        os.close(ws_fd)
        os.close(copy_fd)
    return result


def _remove_dirs_gone_from_copy(ws_fd: int, copy_fd: int, emptied: set[tuple[str, ...]]) -> None:
    """Directories the copy no longer has, emptied by deletions here, go too (deepest first)."""
    for d in sorted(emptied, key=len, reverse=True):
        if not _dir_gone_in_copy(copy_fd, list(d)):
            continue
        try:
            parent = _open_dir(ws_fd, list(d[:-1]), where="your workspace")
        except (OSError, Refused):
            continue
        try:
            st = os.lstat(d[-1], dir_fd=parent)
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(d[-1], dir_fd=parent)  # only when empty: OSError otherwise
        except OSError:
            pass
        finally:
            os.close(parent)
    emptied.clear()


def _apply_delete(ws_fd: int, parts: list[str], baseline: list, result: ApplyResult) -> None:
    rel = "/".join(parts)
    try:
        parent = _open_dir(ws_fd, parts[:-1], where="your workspace")
    except (FileNotFoundError, NotADirectoryError):
        result.already_applied.append(rel)
        return
    try:
        current = _state(parent, parts[-1])
        if current is None:
            result.already_applied.append(rel)
        elif current != baseline:
            result.conflicts.append({"path": rel, "change": "deleted", "reason": (
                "changed in your workspace since the copy was made; left in place")})
        else:
            os.unlink(parts[-1], dir_fd=parent)
            result.applied.append({"path": rel, "change": "deleted"})
    finally:
        os.close(parent)


def _apply_put(ws_fd: int, copy_fd: int, parts: list[str], change: str, baseline: list | None,
               owner: tuple[int, int] | None, roots: list[str], result: ApplyResult) -> None:
    rel, name = "/".join(parts), parts[-1]
    modes: list[int] = []
    cparent = _open_dir(copy_fd, parts[:-1], where="the copy", modes=modes)
    try:
        src = _open_source(cparent, name)
    finally:
        os.close(cparent)
    try:
        if src.kind == "link":
            why = _link_escape(rel, src.target, roots)
            if why:
                raise Refused(why + " (only symlinks that stay inside are applied)")
        try:
            parent = _open_dir(ws_fd, parts[:-1], where="your workspace")
        except FileNotFoundError:
            parent = None
        if parent is None:
            if baseline is not None:  # it was there when the copy was made: the lead removed its directory
                result.conflicts.append({"path": rel, "change": change, "reason": (
                    "its directory was removed from your workspace since the copy was made; not recreated")})
                return
            parent = _open_dir(ws_fd, parts[:-1], where="your workspace", mkdir_modes=modes, owner=owner)
        try:
            if _holds(parent, name, src):
                result.already_applied.append(rel)
                return
            current = _state(parent, name)
            if current != baseline:
                reason = ("created in your workspace since the copy was made" if baseline is None else
                          "removed from your workspace since the copy was made" if current is None else
                          "changed in your workspace since the copy was made")
                result.conflicts.append({"path": rel, "change": change, "reason": reason + "; left untouched"})
                return
            _write(parent, name, src, owner)
            result.applied.append({"path": rel, "change": change})
        finally:
            os.close(parent)
    finally:
        if src.fd >= 0:
            os.close(src.fd)


__all__ = ["ApplyResult", "Refused", "apply_copy_changes", "normalize_paths"]
