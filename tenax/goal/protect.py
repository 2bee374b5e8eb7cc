"""Protected acceptance: the goalposts do not move.

At goal creation ``snapshot`` hashes (and keeps) the files the user protects (``--protect``
globs) plus the check's own script when it is a workspace file. While the goal runs,
``ProtectGuard`` refuses ``write_file``/``edit_file`` on a protected path before it runs, and after
every other tool call compares the files with their snapshot: a change (a ``sed -i`` in bash, a
delete, a symlink swap) is undone and reported to the agent as a tool error. Right before every
check the files are verified again and restored, so the check always runs the original tests.
Every attempt is a ``protect_violation`` event.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import os
import posixpath
import shlex
from typing import Any

from tenax.core.engine import TurnContext
from tenax.core.errors import ConfigError
from tenax.core.messages import ToolCallPart
from tenax.core.protocols import Sandbox, ToolOutcome
from tenax.goal.guards import Guard

MAX_PROTECTED_BYTES = 8 * 1024 * 1024
WORKDIR = "/workspace"
WRITERS = ("write_file", "edit_file")
SEPARATORS = ("&&", "||", ";", "|", "&")
INTERPRETERS = {"sh", "bash", "zsh", "dash", "python", "python3", "node", "ruby", "perl", "env", "exec", "time",
                "timeout", "nice", "uv", "run"}


def snapshot(workspace: str, globs: list[str], check_cmd: str | None) -> dict[str, Any]:
    """``{"globs": [...], "files": {relpath: {"sha256", "mode", "data" (base64)}}}``; bad globs
    and globs matching nothing are ConfigErrors naming the glob."""
    root = os.path.realpath(workspace)
    found: set[str] = set()
    for pattern in globs:
        if not pattern or os.path.isabs(pattern) or ".." in pattern.replace("\\", "/").split("/"):
            raise ConfigError(f"--protect {pattern!r} must be a glob relative to the workspace, without '..'")
        hits = [p for p in glob.glob(os.path.join(root, pattern), recursive=True) if os.path.isfile(p)]
        if not hits:
            raise ConfigError(f"--protect {pattern!r} matches no file in the workspace {workspace}; fix the glob")
        found.update(os.path.relpath(p, root) for p in hits)
    found.update(check_scripts(root, check_cmd))
    files: dict[str, dict[str, Any]] = {}
    total = 0
    for rel in sorted(found):
        path = os.path.join(root, rel)
        if os.path.realpath(path) != path:
            raise ConfigError(f"protected file {rel!r} is (or is under) a symlink; protect the real file instead")
        data = open(path, "rb").read()
        total += len(data)
        if total > MAX_PROTECTED_BYTES:
            raise ConfigError(f"the protected files exceed {MAX_PROTECTED_BYTES // 2**20} MiB; protect fewer files")
        files[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "mode": os.stat(path).st_mode & 0o777,
                      "data": base64.b64encode(data).decode("ascii")}
    return {"globs": list(globs), "files": files}


def check_scripts(root: str, check_cmd: str | None) -> set[str]:
    """The check's own scripts: the program of each command in it (``./run_tests.sh``), or the
    script an interpreter runs (``python tests/check.py``, ``bash ci/check.sh``), when it is a
    workspace file. Data files the check merely mentions are not included (protect them explicitly)."""
    try:
        lexer = shlex.shlex(check_cmd or "", posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
    except ValueError:
        words = (check_cmd or "").split()
    out, first = set(), True
    for w in words:
        if w in SEPARATORS:
            first = True
            continue
        if not first:
            continue
        if os.path.basename(w) in INTERPRETERS or w.startswith("-") or w.isdigit() or "=" in w.split("/")[0]:
            continue  # the interpreter, its options, or an env assignment: the script comes next
        first = False
        rel = w[len(WORKDIR) + 1:] if w.startswith(WORKDIR + "/") else w
        path = os.path.normpath(os.path.join(root, rel))
        if not os.path.isabs(rel) and path.startswith(root + os.sep) and os.path.isfile(path):
            out.add(os.path.relpath(path, root))
    return out


def _relative(path: Any) -> str | None:
    if not isinstance(path, str):
        return None
    p = posixpath.normpath(path if path.startswith("/") else posixpath.join(WORKDIR, path))
    return p[len(WORKDIR) + 1:] if p.startswith(WORKDIR + "/") else None


class ProtectGuard(Guard):
    def __init__(self, workspace: str, sandbox: Sandbox, protected: dict[str, Any]):
        self.root = os.path.realpath(workspace)
        self.sandbox = sandbox
        self.files: dict[str, dict[str, Any]] = dict(protected.get("files") or {})

    def before_tool(self, call: ToolCallPart, ctx: TurnContext) -> ToolOutcome | None:
        rel = _relative(call.arguments.get("path")) if call.name in WRITERS else None
        if rel not in self.files:
            return None
        ctx.emit({"type": "protect_violation", "path": rel, "tool": call.name, "action": "refused"})
        return ToolOutcome(is_error=True, content=(
            f"[runtime] REFUSED: {rel} is a protected acceptance file (it defines how the goal is judged); "
            "it cannot be edited. Change the code under test instead."))

    def after_tool(self, call: ToolCallPart, outcome: ToolOutcome, ctx: TurnContext) -> ToolOutcome:
        if call.name == "complete_goal":
            return outcome
        changed = self.restore(ctx, tool=call.name)
        if not changed:
            return outcome
        return ToolOutcome(is_error=True, content=(
            f"{outcome.content}\n[runtime] REFUSED: this call changed protected acceptance file(s) "
            f"{', '.join(changed)}; they were restored to their original content. The goal cannot be met by "
            "editing them: change the code under test instead."))

    def before_check(self, ctx: TurnContext) -> None:
        self.restore(ctx, tool="check")

    def changed(self) -> list[str]:
        out = []
        for rel, meta in self.files.items():
            path = os.path.join(self.root, rel)
            try:
                same = os.path.realpath(path) == path and hashlib.sha256(open(path, "rb").read()).hexdigest() == meta["sha256"]
            except OSError:
                same = False
            if not same:
                out.append(rel)
        return out

    def restore(self, ctx: TurnContext, *, tool: str) -> list[str]:
        changed = self.changed()
        for rel in changed:
            path = f"{WORKDIR}/{rel}"
            self.sandbox.exec('rm -rf -- "$P" && mkdir -p -- "$(dirname -- "$P")"', timeout=60, env={"P": path})
            meta = self.files[rel]
            self.sandbox.put_file(posixpath.dirname(path), posixpath.basename(path), base64.b64decode(meta["data"]),
                                  mode=int(meta.get("mode", 0o644)))
            ctx.emit({"type": "protect_violation", "path": rel, "tool": tool, "action": "restored"})
        return changed
