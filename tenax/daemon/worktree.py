"""One ``git worktree`` per background goal, so two goals on one repository never write the same
working tree. The worktree starts at the repository's HEAD (uncommitted changes stay behind) on
branch ``tenax/<goal id>``. When the goal ends, and before its worktree is removed, everything it
changed is committed onto that branch (``save``), so the branch keeps the goal's work after
``tenax rm`` removes the worktree.
Each worktree's store is noted beside it (``.<goal id>.store``), so the daemon's cleanup removes
only the worktrees of goals its own store no longer knows (purged), never another store's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable

from tenax.core.errors import ConfigError
from tenax.daemon import paths


def _git(*args: str, cwd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _git_in(tree: str | Path, *args: str) -> subprocess.CompletedProcess[str]:
    """git run in a goal's worktree. Its files (the top included) may belong to the sandbox user,
    and git refuses a directory another user owns ("dubious ownership"): tenax made it, so it is trusted."""
    return _git("-c", f"safe.directory={Path(tree).resolve()}", *args, cwd=tree)


def repo_root(workspace: str) -> Path | None:
    """The top of the git repository holding ``workspace``, or None when it is not in one."""
    try:
        done = _git("rev-parse", "--show-toplevel", cwd=workspace)
    except (OSError, subprocess.SubprocessError):
        return None  # no git on this machine: not a repository as far as tenax can tell
    return Path(done.stdout.strip()).resolve() if done.returncode == 0 else None


def require_commit(repo: Path) -> None:
    if _git("rev-parse", "--verify", "-q", "HEAD", cwd=repo).returncode != 0:
        raise ConfigError(f"{repo} has no commit yet, so a worktree cannot start from it; commit once, "
                          "or pass --no-worktree to work in the repository itself")


def _owner(goal_id: str) -> Path:
    return paths.worktrees() / f".{goal_id}.store"


def add(repo: Path, workspace: str, goal_id: str, store: str = "") -> dict[str, str]:
    """Create the goal's worktree (noted as ``store``'s); returns ``{"repo", "path", "branch", "workspace"}``
    (the workspace is the same sub-directory of the worktree as the given one is of the repository)."""
    path, branch = paths.worktrees() / goal_id, f"tenax/{goal_id}"
    path.parent.mkdir(parents=True, exist_ok=True)
    _owner(goal_id).write_text(store)
    done = _git("worktree", "add", "-b", branch, str(path), "HEAD", cwd=repo)
    if done.returncode != 0:
        raise ConfigError(f"git worktree add failed in {repo}: {done.stderr.strip()[-500:]}; "
                          "fix the repository or pass --no-worktree")
    sub = Path(workspace).resolve().relative_to(repo)
    return {"repo": str(repo), "path": str(path), "branch": branch, "workspace": str(path / sub)}


# git on the host over files the sandbox wrote: no hooks, no signing prompt, tenax as the author
_SAFE = ("-c", "core.hooksPath=/dev/null", "-c", "commit.gpgSign=false", "-c", "user.name=tenax",
         "-c", "user.email=tenax@localhost")


def save(path: str | Path, message: str) -> str | None:
    """Commit everything changed in the worktree at ``path`` onto its branch (untracked files too,
    ignored ones not); return the new commit, or None when nothing changed. ConfigError when git
    refuses (the worktree is then left as it is)."""
    if not Path(path).is_dir():
        return None
    done = _git_in(path, *_SAFE, "add", "-A")
    if done.returncode == 0 and _git_in(path, "diff", "--cached", "--quiet").returncode == 0:
        return None  # nothing changed
    if done.returncode == 0:
        done = _git_in(path, *_SAFE, "commit", "-q", "--no-verify", "-m", message)
    if done.returncode != 0:
        raise ConfigError(f"could not commit the work in {path}: {done.stderr.strip()[-300:]}")
    return _git_in(path, "rev-parse", "HEAD").stdout.strip()


def remove(info: dict[str, str], message: str = "tenax: the work left in the worktree") -> bool:
    """Commit what is left in the worktree onto its branch, then remove the worktree (the branch
    stays: it holds the goal's work). False when git refused either: the worktree is kept."""
    path = Path(info["path"])
    try:
        save(path, message)
    except ConfigError:
        return False
    if path.exists() and _git("worktree", "remove", "--force", str(path), cwd=info["repo"]).returncode != 0:
        return False
    _owner(path.name).unlink(missing_ok=True)
    return True


def remove_orphans(known: Callable[[str], bool], store: str) -> list[str]:
    """Remove the worktrees under TENAX_HOME whose goal ``known`` denies (purged, or its creation
    failed) and that are ``store``'s (or noted as no one's), with git's record of them (their
    branches stay); return those goals' ids."""
    root = paths.worktrees()
    gone = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        owner = _owner(path.name)
        if not path.is_dir() or path.name.startswith(".") or known(path.name) \
                or (owner.exists() and owner.read_text() not in ("", store)):
            continue
        common = _git_in(path, "rev-parse", "--path-format=absolute", "--git-common-dir")
        if common.returncode == 0:  # keep its work on its branch, then unregister it from its repository
            try:
                save(path, f"tenax: goal {path.name}'s work, kept when its worktree was removed")
            except ConfigError:
                continue  # git refused to commit it: leave the worktree for a human
            _git("worktree", "remove", "--force", str(path), cwd=common.stdout.strip())
        shutil.rmtree(path, ignore_errors=True)  # what git left (or all of it, when its repository is gone)
        if common.returncode == 0:
            _git("worktree", "prune", cwd=common.stdout.strip())
        owner.unlink(missing_ok=True)
        gone.append(path.name)
    return gone
